"""Instance normalisation of packed batches, per sample or per location (RevIN per variate).

Statistics come only from the cells the encoder sees, so no hidden target leaks into them; unobserved
cells are selected away with `torch.where` (a NaN times a 0 weight would still be NaN).
"""
from __future__ import annotations

import torch



def count_ids(ids: torch.Tensor, n: int) -> torch.Tensor:
    """(n,) occurrences of each id in 0..n-1. Unlike `torch.bincount`, whose output size depends on the
    data, this never waits for the device."""
    return torch.zeros(n, dtype=torch.long, device=ids.device).index_add_(0, ids, torch.ones_like(ids))


def per_sample_sum(x: torch.Tensor, sample_id: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Sum of x (L, ...) over each sample's tokens -> (B, ...)."""
    out = x.new_zeros((num_samples,) + tuple(x.shape[1:]))
    return out.index_add_(0, sample_id, x)


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


def location_stats(values: torch.Tensor, mask: torch.Tensor, sample_id: torch.Tensor, space_index: torch.Tensor,
                   num_samples: int, tau: int, min_std: float = 1e-2,
                   floor: float = 0.1, n_space: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-location (RevIN per variate) mean and std of the values where `mask` is True, broadcast to (L, S, C).

    A location is one spatial slot of one spatial patch of one sample (a grid cell, a graph node, a
    pixel); its statistics pool the location's observed values over every token in time. A location
    with fewer than 2 observations takes its sample's statistics; every std is floored at
    max(min_std, floor * sample std), so a location that was flat in the context (a closed station, a
    dark pixel) cannot turn its next reading into a 1000-sigma target.
    """
    L, S, C = values.shape
    if L == 0:
        return values.new_zeros(L, S, C), values.new_ones(L, S, C)
    P = S // tau
    s_mean, s_std = instance_stats(values, mask, sample_id, num_samples, min_std)  # (B, C)
    n_space = n_space or int(space_index.max()) + 1  # any bound >= the patches works; the caller's saves a sync
    group = sample_id * n_space + space_index  # (L,)
    G = num_samples * n_space
    m = mask.view(L, tau, P, C)
    v = torch.where(m, values.view(L, tau, P, C), torch.zeros_like(values).view(L, tau, P, C))
    count = values.new_zeros(G, P, C).index_add_(0, group, m.sum(1).to(values.dtype))  # (G, P, C)
    mean = values.new_zeros(G, P, C).index_add_(0, group, v.sum(1)) / count.clamp(min=1)
    dev = torch.where(m, v - mean[group][:, None], torch.zeros_like(v))
    var = values.new_zeros(G, P, C).index_add_(0, group, dev.pow(2).sum(1)) / count.clamp(min=1)
    enough = count[group] >= 2  # (L, P, C)
    sm, ss = s_mean[sample_id][:, None, :], s_std[sample_id][:, None, :]  # (L, 1, C)
    loc_mean = torch.where(enough, mean[group], sm)
    loc_std = torch.where(enough, var[group].sqrt(), ss)
    loc_std = torch.maximum(loc_std, (floor * ss).clamp(min=min_std))
    expand = lambda x: x.unsqueeze(1).expand(L, tau, P, C).reshape(L, S, C)  # noqa: E731
    return expand(loc_mean), expand(loc_std)


def normalise(values: torch.Tensor, mask: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
              clip: float | None = None) -> torch.Tensor:
    """(values - mean) / std where observed (clipped to +-clip), 0 elsewhere. mean/std (L, S, C), as
    `location_stats` returns (or `per_token` of per-sample stats). -> (L, S, C)."""
    z = (values - mean) / std
    if clip is not None:
        z = z.clamp(-clip, clip)
    return torch.where(mask, z, torch.zeros_like(z))


def per_token(stat: torch.Tensor, sample_id: torch.Tensor, slots: int) -> torch.Tensor:
    """Per-sample statistics (B, C) broadcast to every token slot (L, S, C)."""
    x = stat[sample_id][:, None, :]
    return x.expand(x.shape[0], slots, x.shape[2])


def denormalise(z: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Inverse of `normalise` for predictions z (..., L, S, C') (every entry, observed or not); C' <= C."""
    c = z.shape[-1]
    return z * std[..., :c] + mean[..., :c]


def pool_samples(x: torch.Tensor, sample_id: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Mean of each sample's token features: x (L, d) -> (B, d) (zeros for a sample without tokens)."""
    count = count_ids(sample_id, num_samples).clamp(min=1).to(x.dtype)
    return per_sample_sum(x, sample_id, num_samples) / count[:, None]
