"""Loss pieces on packed batches: per-sample instance normalisation, masked MSE, pooling, InfoNCE.

Missing values never reach a loss: every function takes an explicit observed-weight and selects with
`torch.where` (a NaN times a 0 weight would still be NaN), and `UniST` zeroes unobserved values once
at the entrance as well.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .masking import per_sample_sum


def instance_stats(values: torch.Tensor, mask: torch.Tensor, sample_id: torch.Tensor, num_samples: int,
                   min_std: float = 1e-2) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and std of the values where `mask` is True.

    values, mask (L, S, C) -> mean, std (B, C). Channels without observations get mean 0, std 1;
    std is floored at `min_std` so a flat context does not blow up the normalised targets.
    """
    m = mask.to(values.dtype)
    v = torch.where(mask, values, torch.zeros_like(values))
    count = per_sample_sum(m.sum(1), sample_id, num_samples)  # (B, C)
    mean = per_sample_sum(v.sum(1), sample_id, num_samples) / count.clamp(min=1)  # (B, C)
    dev = torch.where(mask, v - mean[sample_id][:, None, :], torch.zeros_like(v))  # (L, S, C)
    var = per_sample_sum(dev.pow(2).sum(1), sample_id, num_samples) / count.clamp(min=1)
    std = var.sqrt().clamp(min=min_std)
    seen = count > 0
    return torch.where(seen, mean, torch.zeros_like(mean)), torch.where(seen, std, torch.ones_like(std))


def normalise(values: torch.Tensor, mask: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
              sample_id: torch.Tensor, clip: float | None = None) -> torch.Tensor:
    """(values - mean) / std per sample and channel where observed (clipped to +-clip), 0 elsewhere. (L, S, C)."""
    z = (values - mean[sample_id][:, None, :]) / std[sample_id][:, None, :]
    if clip is not None:
        z = z.clamp(-clip, clip)
    return torch.where(mask, z, torch.zeros_like(z))


def denormalise(z: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, sample_id: torch.Tensor) -> torch.Tensor:
    """Inverse of `normalise` for predictions z (..., L, S, C) (every entry, observed or not)."""
    c = z.shape[-1]
    return z * std[sample_id][:, None, :c] + mean[sample_id][:, None, :c]


def masked_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the entries where `weight` (bool, same shape) is True; 0 if there are none."""
    err = torch.where(weight, pred - target, torch.zeros_like(pred)).pow(2)
    return err.sum() / weight.sum().clamp(min=1)


def masked_huber(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    """Huber loss (delta) over the entries where `weight` (bool, same shape) is True; 0 if there are none."""
    diff = torch.where(weight, pred - target, torch.zeros_like(pred)).abs()
    err = torch.where(diff < delta, 0.5 * diff.pow(2), delta * (diff - 0.5 * delta))
    return err.sum() / weight.sum().clamp(min=1)


def pool_samples(x: torch.Tensor, sample_id: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Mean of each sample's token features: x (L, d) -> (B, d) (zeros for a sample without tokens)."""
    count = torch.bincount(sample_id, minlength=num_samples).clamp(min=1).to(x.dtype)
    return per_sample_sum(x, sample_id, num_samples) / count[:, None]


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
