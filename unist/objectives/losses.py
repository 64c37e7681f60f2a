"""Losses of the three pretraining objectives on packed batches: masked reconstruction (Huber / MSE / MAE on
observed entries), InfoNCE between two views, and rectified-flow matching for the diffusion head.

Missing values never reach a loss: every function takes an explicit observed-weight and selects with
`torch.where` (a NaN times a 0 weight would still be NaN), and `UniST.prepare` zeroes unobserved values
once at the entrance as well.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from unist.model.heads import FlowHead


def masked_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the entries where `weight` (bool, same shape) is True; 0 if there are none."""
    err = torch.where(weight, pred - target, torch.zeros_like(pred)).pow(2)
    return err.sum() / weight.sum().clamp(min=1)


def masked_huber(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    """Huber loss (delta) over the entries where `weight` (bool, same shape) is True; 0 if there are none."""
    diff = torch.where(weight, pred - target, torch.zeros_like(pred)).abs()
    err = torch.where(diff < delta, 0.5 * diff.pow(2), delta * (diff - 0.5 * delta))
    return err.sum() / weight.sum().clamp(min=1)


def masked_l1(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the entries where `weight` (bool, same shape) is True; 0 if there are none.

    The loss of the traffic forecasting literature (DCRNN, Graph WaveNet: masked MAE): its minimiser is
    the conditional median, which is what an MAE-scored forecast of skewed counts should be."""
    err = torch.where(weight, pred - target, torch.zeros_like(pred)).abs()
    return err.sum() / weight.sum().clamp(min=1)


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric InfoNCE (CLIP/SimCLR style) between two views (B, p): positives on the diagonal.

    Returns (loss, top-1 accuracy of matching view 1 to view 2). With B = 1 the loss is 0 (no negatives).
    """
    z1, z2 = F.normalize(z1.float(), dim=-1), F.normalize(z2.float(), dim=-1)
    logits = z1 @ z2.t() / temperature  # (B, B)
    target = torch.arange(z1.shape[0], device=z1.device)
    loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
    acc = (logits.argmax(dim=1) == target).float().mean()
    return loss, acc.detach()


def flow_matching_loss(flow: FlowHead, x1: torch.Tensor, observed: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Rectified-flow MSE of `flow`'s velocity on observed entries: x_t = (1 - t) x0 + t x1 with x0 ~ N(0, I),
    target velocity x1 - x0. x1, observed (N, S, C) targets; h (N, cond_dim) decoder context."""
    n, s, c = x1.shape
    if n == 0:
        return h.sum() * 0.0
    rows = rearrange(torch.where(observed, x1, torch.zeros_like(x1)), "n s c -> (n c) s")  # (R, S)
    weight = rearrange(observed, "n s c -> (n c) s")
    x0 = torch.randn_like(rows)
    t = torch.rand(rows.shape[0], device=rows.device)  # (R,)
    xt = (1 - t[:, None]) * x0 + t[:, None] * rows
    v = flow.velocity(xt, t, flow.condition(h, c))
    err = torch.where(weight, v - (rows - x0), torch.zeros_like(v)).pow(2)
    return err.sum() / weight.sum().clamp(min=1)


__all__ = ["flow_matching_loss", "info_nce", "masked_huber", "masked_l1", "masked_mse"]
