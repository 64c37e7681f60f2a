"""`UniSTConfig`: every knob of the UniST model in typed, nested dataclasses.

One config object describes the architecture (encoder, MAE decoder, MoE feed-forward), the patcher
it tokenises with, and the training objectives (masked reconstruction, contrastive, diffusion) with
their weights and masking strategies. `validate()` checks everything up front and raises a
`ConfigError` that names the bad field and how to fix it, so a typo never trains a wrong model.
Named sizes live in `unist.model.registry`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from unist.errors import ConfigError
from unist.kernels import BACKENDS
from unist.patching.patcher import PatcherConfig

from .lags import LAG_ERRORS

MASK_STRATEGIES: tuple[str, ...] = ("random", "tube", "block", "temporal")
"""random: any tokens; tube: spatial patches over all time; block: a square spatial region over all
time; temporal: the last (future) time patches, i.e. forecasting."""


@dataclass
class MoEConfig:
    """Mixture-of-experts feed-forward of the encoder blocks.

    num_experts: E experts per block (dense=True ignores it and uses one plain MLP).
    top_k: experts per token (1 = Switch, 2 = GShard/Mixtral).
    capacity_factor: None = dropless (default, see docs/model.md); a float c caps every expert at
        ceil(c * tokens * top_k / E) assignments and drops the rest (token order priority).
    aux_loss_weight / z_loss_weight: load-balancing loss (Switch) and router z-loss (ST-MoE) weights.
    shared_expert: add one always-on dense expert (DeepSeekMoE style) next to the routed ones.
    """

    num_experts: int = 4
    top_k: int = 2
    capacity_factor: float | None = None
    aux_loss_weight: float = 0.01
    z_loss_weight: float = 1e-3
    shared_expert: bool = False
    dense: bool = False
    router_init_std: float = 0.02


@dataclass
class MaskingConfig:
    """Masks for the masked / diffusion objectives and the contrastive views.

    strategies: drawn uniformly per sample at every step, from MASK_STRATEGIES.
    ratio: fraction of tokens (random/tube/block) hidden from the encoder, or the most time patches
        (temporal: 1..ceil(ratio * n_time), drawn per sample).
    cell_ratio: fraction of the observed cells of *visible* tokens hidden as well and reconstructed,
        which teaches the model to fill scattered missing values (used by `impute`).
    """

    strategies: tuple[str, ...] = ("random", "tube", "block", "temporal")
    ratio: float = 0.5
    cell_ratio: float = 0.1


@dataclass
class ObjectiveConfig:
    """Joint loss = masked * L_mae + contrastive * L_nce + diffusion * L_flow + MoE aux + z terms.

    A weight of 0 switches the objective off (its branch does not run). `contrastive_ratio`: tokens
    each contrastive view drops; `scale_jitter`/`noise_std`: the view's amplitude augmentation;
    `flow_steps`: Euler steps of the diffusion (rectified-flow) sampler.
    """

    masked: float = 1.0
    contrastive: float = 0.1
    diffusion: float = 1.0
    temperature: float = 0.1
    contrastive_ratio: float = 0.5
    scale_jitter: float = 0.25
    noise_std: float = 0.05
    proj_dim: int = 128
    flow_steps: int = 8


MASKED_LOSSES = ("huber", "mse", "mae")


def _check_keys(d: dict[str, Any], cls: type, prefix: str) -> None:
    """`d` holds exactly the fields of dataclass `cls` (ConfigError naming the unknown or missing ones)."""
    known = {f.name for f in fields(cls)}
    unknown, missing = sorted(set(d) - known), sorted(known - set(d))
    if unknown or missing:
        what = "; ".join(x for x in (f"unknown fields {[prefix + k for k in unknown]}" if unknown else "",
                                     f"missing fields {[prefix + k for k in missing]}" if missing else "") if x)
        raise ConfigError(f"UniSTConfig.from_dict: {what}: this config was written by another version of unist; "
                          "re-export it with this one (docs/training.md, 'Releases')")

PATCH_CODECS = ("basis", "pointset")


@dataclass
class UniSTConfig:
    """The whole model. Encoder: depth x (attention + MoE FFN) at width d_model; decoder: a light dense
    Transformer at decoder_dim (MAE style) feeding the reconstruction head and the diffusion head.

    instance_norm / norm_scope / norm_floor / norm_clip: normalisation with the stats of what the
    encoder sees, per 'location' (each grid cell / graph node / pixel and channel, RevIN per variate;
    std floored at norm_floor x the sample's std) or per 'sample' (and channel); normalised values are
    clipped to +-norm_clip (a flat context, e.g. zero night-time flow, would otherwise turn the next
    reading into a 1000-sigma target).
    masked_loss: 'huber' (delta 1, robust to outliers as in Time-MoE), 'mse', or 'mae' (masked MAE as in
    DCRNN / Graph WaveNet: the median, what MAE-scored forecasts of skewed counts want).
    patch_codec: how tokens are embedded and reconstructed (`unist.model.embed`): 'basis' (slot-basis
    moments in, a rank-S slot expansion out; the default) or 'pointset' (a per-point MLP with attention
    pooling and a per-slot MLP head: 10-40x the FLOPs; kept as the throughput benchmark's baseline).
    lag_candidates: K > 0: hidden tokens are predicted as the head's residual on the lag copy (`lags.py`): last
    value and the K lags (plus their level-corrected copies) each spatial patch finds in its own context,
    weighted by the decoder (`heads.LagScorer`); 0 = the head alone (an ablation).
    lag_smooth: the lag copy also offers the means of the last tau and 4 tau seen steps (`lags.smooth_parts`):
    on noisy series (air quality, counts) a level forecasts better than the last reading (unist-tiny-2 had none).
    lag_fill: the lag copy also offers the fill candidates (`fill.py`): linear interpolation in time between the
    seen steps around a hidden cell and the mean of the other seen cells of its token step (imputation, outages,
    hidden tokens between visible ones; never the future). Releases up to unist-tiny-3 were trained without them.
    lag_error: the in-context backtest error that weights the lag copy's candidates: 'mae' (mean |error|, what the
    field scores; on skewed or intermittent series the RMSE favours mean-like candidates that lose in MAE) or
    'rmse' (releases up to unist-tiny-4).
    lag_dip: a period found in the values must dip to at most lag_dip times the median error over all lags
    (`lags.best_lags`' depth; 1 = any dip, releases up to unist-tiny-4): on a series without a period every
    ripple of the error curve is a dip, and copying it copies noise.
    lag_cycles: a lag is a candidate only where the context holds it at least lag_cycles times (its seen pairs
    span (lag_cycles - 1) x lag steps; `steps.lag_errors`): 2, the rule of seasonal models, or 1.5 (releases up
    to unist-tiny-5): a lag nearly as long as the context is backtested on a few pairs, and the best of many
    such lags is luck, which the scorer then trusts (docs/LOG.md, session 11).
    lag_edge_dip: True (releases up to unist-tiny-5): the longest lag the context holds often enough is always a
    period candidate, since the lags beyond it count as infinitely bad; False: it must dip below its valid neighbours
    like any other lag (`lags.best_lags`).
    lag_ets: the lag copy also offers additive Holt-Winters forecasts (`ets.py`: a smoothed level and a smoothed
    profile of the shortest lag found in the values, two smoothing speeds; none where no lag is found), backtested in
    MAE (needs lag_error='mae').
    Releases up to unist-tiny-6 were trained without them.
    """

    d_model: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    decoder_dim: int = 128
    decoder_depth: int = 2
    decoder_heads: int = 4
    diffusion_dim: int = 128
    diffusion_depth: int = 2
    moe: MoEConfig = field(default_factory=MoEConfig)
    patch: PatcherConfig = field(default_factory=PatcherConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    objectives: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    max_channels: int = 8
    patch_embed_dim: int = 64
    patch_codec: str = "basis"
    attn_backend: str | None = None
    dropout: float = 0.0
    domain_buckets: int = 64
    fourier_freqs: int = 8
    instance_norm: bool = True
    norm_scope: str = "location"
    norm_floor: float = 0.1
    norm_clip: float = 10.0
    masked_loss: str = "huber"
    lag_candidates: int = 4
    max_lag: int = 2048
    lag_smooth: bool = True
    lag_fill: bool = True
    lag_error: str = "mae"
    lag_dip: float = 0.8
    lag_cycles: float = 2.0
    lag_edge_dip: bool = False
    lag_ets: bool = False
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "UniSTConfig":
        """The config a saved `to_dict()` describes. Every field must be there and known (a missing one would
        silently take today's default, which can differ from what the model was trained with)."""
        d = dict(d)
        subs = {"moe": MoEConfig, "patch": PatcherConfig, "masking": MaskingConfig, "objectives": ObjectiveConfig}
        _check_keys(d, cls, "")
        for key, sub in subs.items():
            if isinstance(d.get(key), dict):
                _check_keys(d[key], sub, f"{key}.")
                d[key] = sub(**d[key])
        if isinstance(d.get("masking"), MaskingConfig):
            d["masking"].strategies = tuple(d["masking"].strategies)
        return cls(**d)

    # ------------------------------------------------------------------ validation
    def validate(self) -> "UniSTConfig":
        """Raise `ConfigError` naming the first bad field; return self so calls can chain."""
        for name in ("d_model", "depth", "heads", "decoder_dim", "decoder_depth", "decoder_heads",
                     "diffusion_dim", "diffusion_depth", "domain_buckets", "fourier_freqs", "max_channels",
                     "patch_embed_dim"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r} must be a positive integer")
        for dim_name, heads_name in (("d_model", "heads"), ("decoder_dim", "decoder_heads")):
            dim, heads = getattr(self, dim_name), getattr(self, heads_name)
            if dim % heads:
                raise ConfigError(f"{heads_name}={heads} does not divide {dim_name}={dim}: pick {heads_name} "
                                  f"so that {dim_name} % {heads_name} == 0")
        if self.norm_clip <= 0:
            raise ConfigError(f"norm_clip={self.norm_clip} must be > 0 (normalised values are clipped to +-norm_clip)")
        if self.norm_scope not in ("location", "sample"):
            raise ConfigError(f"norm_scope={self.norm_scope!r} unknown: use 'location' (per cell/node) or 'sample'")
        if not 0.0 <= self.norm_floor <= 1.0:
            raise ConfigError(f"norm_floor={self.norm_floor} must be in [0, 1] (a fraction of the sample's std)")
        if not isinstance(self.lag_candidates, int) or self.lag_candidates < 0:
            raise ConfigError(f"lag_candidates={self.lag_candidates!r} must be an int >= 0 (0 = no lag copy)")
        if not isinstance(self.max_lag, int) or self.max_lag < 1:
            raise ConfigError(f"max_lag={self.max_lag!r} must be a positive int (longest lag the lag copy tries)")
        if self.lag_error not in LAG_ERRORS:
            raise ConfigError(f"lag_error={self.lag_error!r} unknown: use one of {LAG_ERRORS}")
        if not 0.0 < self.lag_dip <= 1.0:
            raise ConfigError(f"lag_dip={self.lag_dip} must be in (0, 1] (1 = any dip of the lag errors is a period)")
        if not isinstance(self.lag_ets, bool):
            raise ConfigError(f"lag_ets={self.lag_ets!r} must be a bool")
        if self.lag_ets and self.lag_error != "mae":
            raise ConfigError(f"lag_ets=True needs lag_error='mae' (got {self.lag_error!r}): the exponential-smoothing "
                              "candidates are backtested in MAE only")
        if not isinstance(self.lag_edge_dip, bool):
            raise ConfigError(f"lag_edge_dip={self.lag_edge_dip!r} must be a bool (True: releases up to unist-tiny-5)")
        if not 1.0 <= self.lag_cycles <= 4.0:
            raise ConfigError(f"lag_cycles={self.lag_cycles} must be in [1, 4] (how many times the context must hold "
                              "a lag; 2 = two cycles, the rule of seasonal models)")
        if self.patch_codec not in PATCH_CODECS:
            raise ConfigError(f"patch_codec={self.patch_codec!r} unknown: use one of {PATCH_CODECS}")
        if self.masked_loss not in MASKED_LOSSES:
            raise ConfigError(f"masked_loss={self.masked_loss!r} unknown: use one of {MASKED_LOSSES}")
        if self.mlp_ratio <= 0:
            raise ConfigError(f"mlp_ratio={self.mlp_ratio} must be > 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout={self.dropout} must be in [0, 1)")
        self._validate_moe()
        self._validate_masking()
        self._validate_objectives()
        if not isinstance(self.patch, PatcherConfig):
            raise ConfigError(f"patch must be a unist.patching.PatcherConfig, got {type(self.patch).__name__}")
        if self.patch.max_channels is not None and self.patch.max_channels > self.max_channels:
            raise ConfigError(f"patch.max_channels={self.patch.max_channels} > max_channels={self.max_channels}: "
                              "the channel embeddings would be too small; raise max_channels")
        if self.attn_backend is not None and self.attn_backend not in BACKENDS:
            raise ConfigError(f"attn_backend={self.attn_backend!r} unknown: use None (auto) or one of {BACKENDS}")
        return self

    def _validate_moe(self) -> None:
        m = self.moe
        if m.dense:
            return
        if m.num_experts < 1:
            raise ConfigError(f"moe.num_experts={m.num_experts} must be >= 1 (or set moe.dense=True)")
        if m.top_k not in (1, 2):
            raise ConfigError(f"moe.top_k={m.top_k} unsupported: use 1 (Switch) or 2 (GShard/Mixtral)")
        if m.top_k > m.num_experts:
            raise ConfigError(f"moe.top_k={m.top_k} > moe.num_experts={m.num_experts}: a token cannot use more "
                              "experts than exist; lower top_k or add experts")
        if m.capacity_factor is not None and m.capacity_factor <= 0:
            raise ConfigError(f"moe.capacity_factor={m.capacity_factor} must be > 0, or None for dropless")
        for name in ("aux_loss_weight", "z_loss_weight"):
            if getattr(m, name) < 0:
                raise ConfigError(f"moe.{name}={getattr(m, name)} must be >= 0")

    def _validate_masking(self) -> None:
        mk = self.masking
        if isinstance(mk.strategies, str):
            raise ConfigError(f"masking.strategies must be a list of names, got the string {mk.strategies!r}: "
                              f"write ({mk.strategies!r},)")
        if not mk.strategies:
            raise ConfigError(f"masking.strategies is empty: pick some of {MASK_STRATEGIES}")
        unknown = [s for s in mk.strategies if s not in MASK_STRATEGIES]
        if unknown:
            raise ConfigError(f"unknown masking strategy {unknown}: use names from {MASK_STRATEGIES}")
        if not 0.0 < mk.ratio < 1.0:
            raise ConfigError(f"masking.ratio={mk.ratio} must be in (0, 1): some tokens must stay visible and "
                              "some must be hidden")
        if not 0.0 <= mk.cell_ratio < 1.0:
            raise ConfigError(f"masking.cell_ratio={mk.cell_ratio} must be in [0, 1)")

    def _validate_objectives(self) -> None:
        o = self.objectives
        weights = {"masked": o.masked, "contrastive": o.contrastive, "diffusion": o.diffusion}
        neg = {k: w for k, w in weights.items() if w < 0}
        if neg:
            raise ConfigError(f"objective weights must be >= 0 (0 switches one off), got {neg}")
        if not any(w > 0 for w in weights.values()):
            raise ConfigError("all objectives are off (masked, contrastive and diffusion weights are 0): "
                              "give at least one a positive weight")
        if o.temperature <= 0:
            raise ConfigError(f"objectives.temperature={o.temperature} must be > 0")
        if not 0.0 <= o.contrastive_ratio < 1.0:
            raise ConfigError(f"objectives.contrastive_ratio={o.contrastive_ratio} must be in [0, 1)")
        if o.scale_jitter < 0 or o.noise_std < 0:
            raise ConfigError("objectives.scale_jitter and noise_std must be >= 0")
        if o.flow_steps < 1 or o.proj_dim < 1:
            raise ConfigError("objectives.flow_steps and proj_dim must be >= 1")
