"""`Pretrainer`: the joint pretraining objective around the network (what DeepSpeed trains).

`Pretrainer(model)(batch)` draws the masks itself and returns every loss term and some statistics:
  masked       Huber / MSE / MAE on hidden tokens (and on hidden cells of visible tokens), observed values only;
  diffusion    rectified-flow MSE of the hidden tokens' residual on their lag copy, conditioned on the
               decoder output (`losses.flow_matching_loss`);
  contrastive  InfoNCE between per-sample embeddings of two views: the masked view (shared with the
               two objectives above, so it costs nothing extra) and a second view with random token
               dropping, amplitude scaling and jitter, encoded without gradient (a stop-gradient
               target as in SimSiam / MoCo's key branch, with negatives from the batch): it costs one
               forward pass instead of a forward and a backward;
  moe_aux, moe_z  router load-balancing and z losses (mean over encoder layers);
  loss         the weighted sum (weights from `ObjectiveConfig` / `MoEConfig`).
The Pretrainer holds no parameters of its own, so a training checkpoint's keys are the network's with the
prefix "net." (the one key rename of `unist.train.export`).
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn as nn

from unist.model.moe import MoEStats
from unist.model.unist import NetOutput, UniST
from unist.patching.tokens import TokenBatch

from .losses import flow_matching_loss, info_nce, masked_huber, masked_l1, masked_mse
from .masking import random_mask, sample_mask

MASKED_LOSSES = {"huber": masked_huber, "mse": masked_mse, "mae": masked_l1}


def moe_terms(stats: list[MoEStats]) -> dict[str, torch.Tensor]:
    """The MoE losses and load statistics of one encoder pass (every block's `MoEStats`)."""
    return {"moe_aux": torch.stack([s.aux_loss for s in stats]).mean(),
            "moe_z": torch.stack([s.z_loss for s in stats]).mean(),
            "moe_load": torch.stack([s.load for s in stats]).sum(0),
            "moe_layout_load": torch.stack([s.layout_load for s in stats]).sum(0),
            "moe_dropped": torch.stack([s.dropped for s in stats]).mean()}


class Pretrainer(nn.Module):
    """Masked + contrastive + diffusion pretraining of `net` (weights and masks from its config)."""

    def __init__(self, net: UniST):
        super().__init__()
        self.net = net

    def contrastive_view(self, batch: TokenBatch) -> TokenBatch:
        """Second view: drop `contrastive_ratio` of the tokens, scale each sample's amplitude, add jitter."""
        o = self.net.config.objectives
        B = batch.num_samples
        keep = ~random_mask(batch, o.contrastive_ratio) if o.contrastive_ratio > 0 else torch.ones_like(batch.has_time)
        log_scale = (2 * torch.rand(B, device=keep.device) - 1) * math.log1p(o.scale_jitter)  # (B,)
        v = batch.values * log_scale.exp()[batch.sample_id][:, None, None]
        v = v + o.noise_std * torch.randn_like(v)
        v = torch.where(batch.mask, v, torch.zeros_like(v))
        return replace(batch, values=v).select(keep)

    def forward_loss(self, out: NetOutput, hidden: torch.Tensor, hidden_cells: torch.Tensor) -> dict[str, torch.Tensor]:
        """Masked-reconstruction and diffusion losses on the normalised values (observed entries only).
        The diffusion head generates the residual of the hidden tokens on their lag copy."""
        cfg = self.net.config
        o, batch = cfg.objectives, out.batch
        zero = batch.values.new_zeros(())
        losses = {"masked": zero, "diffusion": zero}
        if o.masked > 0:
            target_w = batch.mask & (hidden[:, None, None] | hidden_cells)  # (L, S, C)
            losses["masked"] = MASKED_LOSSES[cfg.masked_loss](out.pred, batch.values, target_w)
        if o.diffusion > 0:
            idx = hidden.nonzero().squeeze(1)  # (Lh,) one host sync for the four gathers
            values = batch.values.index_select(0, idx)
            residual = values if out.lagged is None else values - out.lagged.detach().index_select(0, idx)  # not the weights
            losses["diffusion"] = flow_matching_loss(self.net.flow, residual, batch.mask.index_select(0, idx),
                                                     out.h.index_select(0, idx))
        return losses

    def forward(self, batch: TokenBatch) -> dict[str, torch.Tensor]:
        """One training step's losses. batch: TokenBatch (any mix of layouts) -> dict of scalars and stats."""
        net = self.net
        cfg, o = net.config, net.config.objectives
        decode = o.masked > 0 or o.diffusion > 0
        hidden = sample_mask(batch, cfg.masking.strategies, cfg.masking.ratio)  # (L,) True = hidden token
        keep = ~hidden
        hidden_cells = torch.zeros_like(batch.mask)
        if decode and cfg.masking.cell_ratio > 0:
            hidden_cells = (torch.rand(batch.mask.shape, device=keep.device) < cfg.masking.cell_ratio) \
                & batch.mask & keep[:, None, None]  # (L, S, C) observed cells of visible tokens, hidden too
        seen = batch.mask & ~hidden_cells & keep[:, None, None]
        out = net(batch, keep, seen, decode=decode)
        losses = self.forward_loss(out, hidden, hidden_cells)

        losses["contrastive"] = losses["contrastive_acc"] = out.batch.values.new_zeros(())
        if o.contrastive > 0:
            view2 = self.contrastive_view(out.batch)
            with torch.no_grad():  # stop-gradient target view: a forward pass only (its MoE stats are not losses)
                latent2, _ = net.forward_encoder(view2)
            z1 = net.projector(net.embed_samples(out.latent, out.visible))
            z2 = net.projector(net.embed_samples(latent2, view2))
            losses["contrastive"], losses["contrastive_acc"] = info_nce(z1, z2, o.temperature)

        losses.update(moe_terms(out.moe))
        losses["loss"] = (o.masked * losses["masked"] + o.contrastive * losses["contrastive"]
                          + o.diffusion * losses["diffusion"] + cfg.moe.aux_loss_weight * losses["moe_aux"]
                          + cfg.moe.z_loss_weight * losses["moe_z"])
        losses["num_hidden_tokens"] = hidden.sum()
        losses["num_visible_tokens"] = keep.sum()
        return losses


__all__ = ["MASKED_LOSSES", "Pretrainer", "moe_terms"]
