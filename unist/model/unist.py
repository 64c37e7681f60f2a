"""`UniST`: the network. A mixture-of-experts Transformer over patched spatio-temporal tokens (MAE / DiT style).

    TokenBatch (grids, graphs, video packed together), keep (L,) tokens the encoder sees
      -> per-location normalisation with the statistics of what the encoder sees     (norm.py)
      -> PatchEmbed (slot-basis embedding of each patch) + TokenPosition               (Lv, d)
      -> encoder: depth x [varlen attention + MoE FFN] on the VISIBLE tokens            (Lv, d)
      -> decoder: mask tokens inserted, dense Transformer at decoder_dim                (L, dd)
      -> prediction of every slot = PatchHead residual + lag copy weighted by LagScorer (L, S, C)
         (the lag copy: the context's own past at the lags each patch finds, `lags.py`)
    FlowHead (heads.py): the diffusion head's velocity, conditioned on the decoder features.

This file is the network only: what the encoder may see is the caller's choice (`keep`, `seen`). The
pretraining objectives (masks, losses, the contrastive view) live in `unist.objectives`, the
forecasting API and its policy (how far to trust the network over the lag copy's backtest rule) in
`unist.forecast`. Loading and saving releases: `PretrainedMixin` (`hub.py`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn as nn

from unist.patching.patcher import UniversalPatcher
from unist.patching.tokens import TokenBatch

from .blocks import Transformer
from .config import MoEConfig, UniSTConfig
from .embed import PatchEmbed, PatchHead, PointSetEmbed, PointSetHead
from .heads import FlowHead, LagScorer
from .history import day_minute, tokens_per_day
from .hub import PretrainedMixin
from .lags import LagParts, lag_parts
from .moe import MoEFeedForward, MoEStats
from .norm import instance_stats, location_stats, normalise, per_token, pool_samples
from .position import TokenPosition
from .registry import get_config


@dataclass
class NetOutput:
    """One pass of the network (`UniST.forward`); values in normalised units unless said.

    batch (L, S, C): the input, prepared and normalised; mean / std (L, S, C): for `norm.denormalise`;
    visible: what the encoder saw (a `select`ed batch); latent (Lv, d) its encoder output; moe: each
    encoder block's MoE statistics; h (L, dd): decoder features (None with decode=False); copy: the lag
    copy's candidates (None without one); lagged (L, S, C): the lag copy weighted with the decoder (None without
    one); pred (L, S, C): the prediction of every slot, the head's residual + lagged (None with decode=False)."""

    batch: TokenBatch
    mean: torch.Tensor
    std: torch.Tensor
    visible: TokenBatch
    latent: torch.Tensor
    moe: list[MoEStats]
    h: torch.Tensor | None = None
    copy: LagParts | None = None
    lagged: torch.Tensor | None = None
    pred: torch.Tensor | None = None


class UniST(PretrainedMixin, nn.Module):
    def __init__(self, config: UniSTConfig):
        super().__init__()
        self.config = cfg = config.validate()
        self.patcher = UniversalPatcher(cfg.patch)
        slots = cfg.patch.slots
        with torch.random.fork_rng(devices=[]):  # same config -> same weights, whatever the global RNG
            torch.manual_seed(cfg.seed)
            # encoder
            if cfg.patch_codec == "basis":  # rank = slots: full rank on a grid block, like MAE's linear embedding
                self.patch_embed = PatchEmbed(cfg.d_model, cfg.max_channels, d_point=cfg.patch_embed_dim, rank=slots)
            else:
                self.patch_embed = PointSetEmbed(cfg.d_model, cfg.max_channels, d_point=cfg.patch_embed_dim)
            self.pos = TokenPosition(cfg.d_model, cfg.fourier_freqs, cfg.domain_buckets)
            self.encoder = Transformer(cfg.d_model, cfg.depth, cfg.heads, cfg.mlp_ratio, cfg.moe,
                                       cfg.attn_backend, cfg.dropout)
            # decoder (light, dense) + heads
            self.decoder_embed = nn.Linear(cfg.d_model, cfg.decoder_dim)
            self.mask_token = nn.Parameter(torch.zeros(cfg.decoder_dim))
            self.decoder_pos = TokenPosition(cfg.decoder_dim, cfg.fourier_freqs, cfg.domain_buckets)
            self.decoder = Transformer(cfg.decoder_dim, cfg.decoder_depth, cfg.decoder_heads, cfg.mlp_ratio,
                                       MoEConfig(dense=True), cfg.attn_backend, cfg.dropout)
            if cfg.patch_codec == "basis":
                self.head = PatchHead(cfg.decoder_dim, cfg.max_channels, d_hidden=cfg.decoder_dim, rank=slots)
            else:
                self.head = PointSetHead(cfg.decoder_dim, cfg.max_channels, d_hidden=cfg.decoder_dim)
            self.lag_scorer = LagScorer(cfg.decoder_dim) if cfg.lag_candidates else None
            self.flow = FlowHead(slots, cfg.decoder_dim, cfg.diffusion_dim, cfg.diffusion_depth, cfg.max_channels)
            # projection of the per-sample embedding for the contrastive objective (SimCLR's projection head)
            self.projector = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_model), nn.GELU(),
                                           nn.Linear(cfg.d_model, cfg.objectives.proj_dim))
            self._init_weights()

    def _init_weights(self) -> None:
        """MAE/DiT init: xavier Linear, N(0, 0.02) embeddings and mask token, then module-specific inits."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, MoEFeedForward) and not m.dense:
                nn.init.normal_(m.router.weight, std=m.cfg.router_init_std)
        self.flow.zero_init_()
        if self.lag_scorer is not None:
            # an untrained model forecasts the lag copy's backtest rule; training learns the residual and the weights
            last = [m for m in self.head.out.modules() if isinstance(m, nn.Linear)][-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            self.lag_scorer.reset_parameters()

    # ------------------------------------------------------------------ input
    def prepare(self, batch: TokenBatch) -> TokenBatch:
        """Check the batch fits the model and zero every unobserved value (NaN/poison never goes further)."""
        S, C = batch.values.shape[1:]
        if S != self.config.patch.slots:
            raise ValueError(f"batch has {S} slots per token but the model was built for "
                             f"{self.config.patch.slots} (patch {self.config.patch}); patchify with model.patcher")
        if C > self.config.max_channels:
            raise ValueError(f"batch has {C} channels, model max_channels={self.config.max_channels}: select "
                             "channels or build the model with a larger max_channels")
        values = torch.where(batch.mask, batch.values, torch.zeros_like(batch.values))
        return replace(batch, values=values)

    def normalise_batch(self, batch: TokenBatch, seen: torch.Tensor) -> tuple[TokenBatch, torch.Tensor, torch.Tensor]:
        """Instance-normalise with the stats of the cells where `seen` (L, S, C) is True, per location or per
        sample (`config.norm_scope`) -> (batch, mean, std), mean/std (L, S, C) for `denormalise`."""
        v = batch.values
        if not self.config.instance_norm:
            return batch, torch.zeros_like(v), torch.ones_like(v)
        if self.config.norm_scope == "location":
            counts = batch.patch_counts()
            mean, std = location_stats(v, seen, batch.sample_id, batch.space_index, batch.num_samples,
                                       self.config.patch.time_patch, floor=self.config.norm_floor,
                                       n_space=max(counts[0]) if counts else None)
        else:
            mean, std = instance_stats(v, seen, batch.sample_id, batch.num_samples)
            mean, std = per_token(mean, batch.sample_id, v.shape[1]), per_token(std, batch.sample_id, v.shape[1])
        z = normalise(v, batch.mask, mean, std, self.config.norm_clip)
        return replace(batch, values=z), mean, std

    @staticmethod
    def encoder_view(batch: TokenBatch, seen: torch.Tensor, keep: torch.Tensor) -> TokenBatch:
        """What the encoder may see: the kept tokens, with only the `seen` (L, S, C) cells (others zeroed)."""
        values = torch.where(seen, batch.values, torch.zeros_like(batch.values))
        return replace(batch, values=values, mask=seen).select(keep)

    # ------------------------------------------------------------------ encoder / decoder / heads
    def forward_encoder(self, visible: TokenBatch) -> tuple[torch.Tensor, list[MoEStats]]:
        """Visible tokens only (a `select`ed, packed batch) -> latent (Lv, d) and each block's MoE stats."""
        x = self.patch_embed(visible.values, visible.mask, visible.rel_pos) + self.pos(visible)  # (Lv, d)
        return self.encoder(x, visible.cu_seqlens, visible.max_seqlen, visible.layout_id)

    def forward_decoder(self, latent: torch.Tensor, batch: TokenBatch, keep: torch.Tensor) -> torch.Tensor:
        """Latent of the kept tokens (Lv, d) + mask tokens elsewhere -> decoder features (L, dd)."""
        L, dd = batch.num_tokens, self.config.decoder_dim
        idx = keep.nonzero().squeeze(1)  # (Lv,) positions of the visible tokens (select keeps order)
        proj = self.decoder_embed(latent)  # (Lv, dd)
        vis = proj.new_zeros(L, dd).index_copy(0, idx, proj)
        x = torch.where(keep[:, None], vis, self.mask_token.to(proj.dtype))  # (L, dd)
        x = x + self.decoder_pos(batch)
        h, _ = self.decoder(x, batch.cu_seqlens, batch.max_seqlen, batch.layout_id)
        return h  # (L, dd)

    def copy_candidates(self, batch: TokenBatch, seen: torch.Tensor, keep: torch.Tensor) -> LagParts | None:
        """The lag copy's candidates of the normalised `batch` (`lags.py`; None without a lag copy)."""
        cfg = self.config
        if not cfg.lag_candidates:
            return None
        day = tokens_per_day(day_minute(batch.time_feats), batch.has_time, batch.sample_id, batch.t_index,
                             batch.space_index, batch.num_samples) * cfg.patch.time_patch  # (B,) 0 = no clock
        channels = [s.num_channels for s in batch.specs] if batch.specs else None  # (B,) host-side: no sync
        return lag_parts(batch.values, seen, keep, batch.sample_id, batch.space_index, batch.t_index,
                         cfg.patch.time_patch, batch.num_samples, cfg.lag_candidates, cfg.max_lag, day,
                         smooth=cfg.lag_smooth, fill=cfg.lag_fill, channels=channels, error=cfg.lag_error,
                         dip=cfg.lag_dip, cycles=cfg.lag_cycles,
                         edge_dip=cfg.lag_edge_dip, ets=cfg.lag_ets,
                         counts=batch.patch_counts())

    def lag_copy(self, copy: LagParts, h: torch.Tensor | None = None) -> torch.Tensor:
        """The lag copy (L, S, C): its candidates weighted by the scorer's rule on their in-context backtest
        features and, with decoder features h (L, dd), by the decoder too (h=None: the rule alone)."""
        return copy.combine(self.lag_scorer(copy.features, h))

    def reconstruct(self, h: torch.Tensor, batch: TokenBatch, copy: LagParts | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Decoder features (L, dd) -> (prediction of every slot (L, S, C), the weighted lag copy or None)."""
        out = self.head(h, batch.rel_pos, batch.values.shape[-1])
        if copy is None:
            return out, None
        lagged = self.lag_copy(copy, h)
        return out + lagged, lagged

    def embed_samples(self, latent: torch.Tensor, visible: TokenBatch) -> torch.Tensor:
        """Per-sample embedding: mean of the sample's encoder tokens (B, d)."""
        return pool_samples(latent, visible.sample_id, visible.num_samples)

    def forward(self, batch: TokenBatch, keep: torch.Tensor, seen: torch.Tensor | None = None,
                decode: bool = True) -> NetOutput:
        """One pass: the encoder sees the `keep` (L,) tokens' `seen` (L, S, C) cells (default: their observed
        cells), the decoder predicts every slot of every token. decode=False stops after the encoder."""
        batch = self.prepare(batch)
        seen = batch.mask & keep[:, None, None] if seen is None else seen
        batch, mean, std = self.normalise_batch(batch, seen)
        visible = self.encoder_view(batch, seen, keep)
        latent, stats = self.forward_encoder(visible)  # (Lv, d)
        out = NetOutput(batch, mean, std, visible, latent, stats)
        out.copy = self.copy_candidates(batch, seen, keep)
        if decode:
            out.h = self.forward_decoder(latent, batch, keep)  # (L, dd)
            out.pred, out.lagged = self.reconstruct(out.h, batch, out.copy)
        return out


def create_model(name: str, **overrides) -> UniST:
    """Build the registered model `name` (`registry.py`); overrides as in `registry.get_config`."""
    return UniST(get_config(name, **overrides))


__all__ = ["NetOutput", "UniST", "create_model"]
