"""`UniST`: a mixture-of-experts Transformer over patched spatio-temporal tokens (MAE / DiT style).

    TokenBatch (grids, graphs, video packed together)
      -> PatchEmbed (slot-basis embedding of each patch) + TokenPosition     (L, d)
      -> encoder: depth x [varlen attention + MoE FFN] on the VISIBLE tokens (Lv, d)
      -> decoder: mask tokens inserted, dense Transformer at decoder_dim   (L, dd)
      -> PatchHead: point reconstruction (L, S, C)  |  FlowHead: diffusion samples of hidden patches

`model(batch)` draws the masks itself and returns every loss term and some statistics:
  masked       MSE on hidden tokens (and on hidden cells of visible tokens), observed values only;
  diffusion    rectified-flow MSE on the hidden tokens, conditioned on the decoder output;
  contrastive  InfoNCE between per-sample embeddings of two views: the masked view (shared with the
               two objectives above, so it costs nothing extra) and a second view with random token
               dropping, amplitude scaling and jitter, encoded without gradient (a stop-gradient
               target as in SimSiam / MoCo's key branch, with negatives from the batch): it costs one
               forward pass instead of a forward and a backward;
  moe_aux, moe_z  router load-balancing and z losses (mean over encoder layers and passes);
  loss         the weighted sum (weights from `ObjectiveConfig` / `MoEConfig`).
Values are normalised per location (or per sample) and channel with the statistics of what the
encoder sees (no leak of hidden targets), and hidden tokens are predicted as a residual on an anchor
that weights last value, smoothed last value, seasonal naive and level-corrected seasonal naive by
an in-context backtest (`anchor.py`). `forecast`, `impute` and `embed` live in `unist.model.inference`.
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn as nn

from unist.patching.embed import PatchEmbed, PatchHead, PointSetEmbed, PointSetHead
from unist.patching.patcher import UniversalPatcher
from unist.patching.tokens import TokenBatch

from .blocks import Transformer
from .config import MoEConfig, UniSTConfig
from .diffusion import FlowHead
from .inference import InferenceMixin
from .anchor import CANDIDATES, GATE_FEATURES, AnchorParts, anchor_parts, day_minute, gate_init, tokens_per_day
from .lags import LagParts, LagScorer, lag_parts
from .losses import (info_nce, instance_stats, location_stats, masked_huber, masked_l1, masked_mse, normalise,
                     per_token, pool_samples)
from .masking import random_mask, sample_mask
from .moe import MoEFeedForward, MoEStats
from .position import TokenPosition


class UniST(InferenceMixin, nn.Module):
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
            # per-token weights of the seasonal and level terms (absent without them: older releases load as saved)
            # per-token gates of the anchor's smoothed / seasonal / level parts: from the decoder features and from
            # the in-context backtest features (absent without them: older releases load as saved)
            gated = cfg.persistence_anchor and cfg.gated_anchor and not cfg.lag_candidates
            self.anchor_gate = nn.Linear(cfg.decoder_dim, CANDIDATES) if gated else None
            self.anchor_gate_feats = nn.Linear(GATE_FEATURES, CANDIDATES) if gated else None
            self.lag_scorer = LagScorer(cfg.decoder_dim) if cfg.lag_candidates else None
            self.flow = FlowHead(slots, cfg.decoder_dim, cfg.diffusion_dim, cfg.diffusion_depth, cfg.max_channels)
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
        if self.config.persistence_anchor:  # an untrained model forecasts persistence; training learns the residual
            last = [m for m in self.head.out.modules() if isinstance(m, nn.Linear)][-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        if self.anchor_gate is not None:  # gates start from the in-context backtest rule (`anchor.gate_init`)
            nn.init.zeros_(self.anchor_gate.weight)
            nn.init.zeros_(self.anchor_gate.bias)
            gate_init(self.anchor_gate_feats.weight, self.anchor_gate_feats.bias)
        if self.lag_scorer is not None:  # starts from the backtest rule of the lag copy (`lags.LagScorer`)
            self.lag_scorer.reset_parameters()

    # ------------------------------------------------------------------ helpers
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
            mean, std = location_stats(v, seen, batch.sample_id, batch.space_index, batch.num_samples,
                                       self.config.patch.time_patch, floor=self.config.norm_floor)
        else:
            mean, std = instance_stats(v, seen, batch.sample_id, batch.num_samples)
            mean, std = per_token(mean, batch.sample_id, v.shape[1]), per_token(std, batch.sample_id, v.shape[1])
        z = normalise(v, batch.mask, mean, std, self.config.norm_clip)
        return replace(batch, values=z), mean, std

    @staticmethod
    def _moe_terms(stats: list[MoEStats]) -> dict[str, torch.Tensor]:
        return {"moe_aux": torch.stack([s.aux_loss for s in stats]).mean(),
                "moe_z": torch.stack([s.z_loss for s in stats]).mean(),
                "moe_load": torch.stack([s.load for s in stats]).sum(0),
                "moe_layout_load": torch.stack([s.layout_load for s in stats]).sum(0),
                "moe_dropped": torch.stack([s.dropped for s in stats]).mean()}

    # ------------------------------------------------------------------ encoder / decoder
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

    def anchor(self, batch: TokenBatch, seen: torch.Tensor, keep: torch.Tensor) -> AnchorParts | LagParts:
        """Anchor parts of the normalised `batch`: the lag copy's candidates (`lags.py`) or the four-candidate
        anchor (`anchor.py`; zeros for the parts switched off)."""
        cfg = self.config
        if not cfg.persistence_anchor:
            z = torch.zeros_like(batch.values)
            return AnchorParts(z, z, z, z)
        if cfg.lag_candidates:
            day = tokens_per_day(day_minute(batch.time_feats), batch.has_time, batch.sample_id, batch.t_index,
                                 batch.space_index, batch.num_samples) * cfg.patch.time_patch  # (B,) 0 = no clock
            return lag_parts(batch.values, seen, keep, batch.sample_id, batch.space_index, batch.t_index,
                             cfg.patch.time_patch, batch.num_samples, cfg.lag_candidates, cfg.max_lag, day,
                             smooth=cfg.lag_smooth)
        return anchor_parts(batch.values, seen, keep, batch.sample_id, batch.space_index, batch.t_index,
                            cfg.patch.time_patch, batch.time_feats, batch.has_time, batch.cu_seqlens,
                            gated=cfg.gated_anchor)

    def anchor_value(self, h: torch.Tensor, parts: AnchorParts | LagParts, use_decoder: bool = True) -> torch.Tensor:
        """The anchor (L, S, C): the candidates weighted by a softmax over logits from the in-context backtest
        features and (unless use_decoder=False) the decoder features h (L, dd)."""
        if isinstance(parts, LagParts):
            return parts.combine(self.lag_scorer(parts.features, h if use_decoder else None))
        if self.anchor_gate is None:
            return parts.persist
        logits = self.anchor_gate_feats(parts.gate_inputs().float())  # (L, 4)
        if use_decoder:
            logits = logits + self.anchor_gate(h).float()
        return parts.combine(parts.weights(logits))

    def reconstruct(self, h: torch.Tensor, batch: TokenBatch, anchor: AnchorParts | None = None,
                    anchor_only: bool = False) -> torch.Tensor:
        """Decoder features (L, dd) -> point prediction of every slot (L, S, C), in normalised units.

        anchor_only: the anchor weighted by the backtest features alone, no network output (an ablation)."""
        if anchor_only:
            return self.anchor_value(h, anchor, use_decoder=False)
        out = self.head(h, batch.rel_pos, batch.values.shape[-1])
        return out if anchor is None else out + self.anchor_value(h, anchor)

    @staticmethod
    def encoder_view(batch: TokenBatch, seen: torch.Tensor, keep: torch.Tensor) -> TokenBatch:
        """What the encoder may see: the kept tokens, with only the `seen` (L, S, C) cells (others zeroed)."""
        values = torch.where(seen, batch.values, torch.zeros_like(batch.values))
        return replace(batch, values=values, mask=seen).select(keep)

    def embed_samples(self, latent: torch.Tensor, visible: TokenBatch) -> torch.Tensor:
        """Per-sample embedding: mean of the sample's encoder tokens (B, d)."""
        return pool_samples(latent, visible.sample_id, visible.num_samples)

    # ------------------------------------------------------------------ objectives
    def contrastive_view(self, batch: TokenBatch) -> TokenBatch:
        """Second view: drop `contrastive_ratio` of the tokens, scale each sample's amplitude, add jitter."""
        o = self.config.objectives
        B = batch.num_samples
        keep = ~random_mask(batch, o.contrastive_ratio) if o.contrastive_ratio > 0 else torch.ones_like(batch.has_time)
        log_scale = (2 * torch.rand(B, device=keep.device) - 1) * math.log1p(o.scale_jitter)  # (B,)
        v = batch.values * log_scale.exp()[batch.sample_id][:, None, None]
        v = v + o.noise_std * torch.randn_like(v)
        v = torch.where(batch.mask, v, torch.zeros_like(v))
        return replace(batch, values=v).select(keep)

    def forward_loss(self, batch: TokenBatch, pred: torch.Tensor | None, h: torch.Tensor | None,
                     hidden: torch.Tensor, hidden_cells: torch.Tensor, anchor: AnchorParts) -> dict[str, torch.Tensor]:
        """Masked-reconstruction and diffusion losses on normalised `batch` values (observed entries only).

        The diffusion head generates the residual of the hidden tokens on their persistence anchor."""
        o, zero = self.config.objectives, batch.values.new_zeros(())
        out = {"masked": zero, "diffusion": zero}
        if pred is not None:
            target_w = batch.mask & (hidden[:, None, None] | hidden_cells)  # (L, S, C)
            loss_fn = {"huber": masked_huber, "mse": masked_mse, "mae": masked_l1}[self.config.masked_loss]
            out["masked"] = loss_fn(pred, batch.values, target_w)
        if o.diffusion > 0:
            base = self.anchor_value(h, anchor).detach()  # the flow models the residual, not the gates
            residual = batch.values[hidden] - base[hidden]
            out["diffusion"] = self.flow.loss(residual, batch.mask[hidden], h[hidden])
        return out

    def forward(self, batch: TokenBatch) -> dict[str, torch.Tensor]:
        """One training step's losses. batch: TokenBatch (any mix of layouts) -> dict of scalars and stats."""
        cfg, o = self.config, self.config.objectives
        batch = self.prepare(batch)
        need_decoder = o.masked > 0 or o.diffusion > 0

        hidden = sample_mask(batch, cfg.masking.strategies, cfg.masking.ratio)  # (L,) True = hidden token
        keep = ~hidden
        hidden_cells = torch.zeros_like(batch.mask)
        if need_decoder and cfg.masking.cell_ratio > 0:
            hidden_cells = (torch.rand(batch.mask.shape, device=keep.device) < cfg.masking.cell_ratio) \
                & batch.mask & keep[:, None, None]  # (L, S, C) observed cells of visible tokens, hidden too
        seen = batch.mask & ~hidden_cells & keep[:, None, None]
        batch, _, _ = self.normalise_batch(batch, seen)
        visible = self.encoder_view(batch, seen, keep)
        latent, stats = self.forward_encoder(visible)  # (Lv, d)

        out: dict[str, torch.Tensor] = {}
        pred = h = None
        anchor = self.anchor(batch, seen, keep)  # persistence / seasonal priors of the hidden tokens
        if need_decoder:
            h = self.forward_decoder(latent, batch, keep)  # (L, dd)
            pred = self.reconstruct(h, batch, anchor) if o.masked > 0 else None
        out.update(self.forward_loss(batch, pred, h, hidden, hidden_cells, anchor))

        out["contrastive"] = out["contrastive_acc"] = batch.values.new_zeros(())
        if o.contrastive > 0:
            view2 = self.contrastive_view(batch)
            with torch.no_grad():  # stop-gradient target view: a forward pass only (its MoE stats are not losses)
                latent2, _ = self.forward_encoder(view2)
            z1 = self.projector(self.embed_samples(latent, visible))
            z2 = self.projector(self.embed_samples(latent2, view2))
            out["contrastive"], out["contrastive_acc"] = info_nce(z1, z2, o.temperature)

        out.update(self._moe_terms(stats))
        out["loss"] = (o.masked * out["masked"] + o.contrastive * out["contrastive"] + o.diffusion * out["diffusion"]
                       + cfg.moe.aux_loss_weight * out["moe_aux"] + cfg.moe.z_loss_weight * out["moe_z"])
        out["num_hidden_tokens"] = hidden.sum()
        out["num_visible_tokens"] = keep.sum()
        return out
