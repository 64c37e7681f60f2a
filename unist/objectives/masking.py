"""Token masks for masked reconstruction, diffusion and the contrastive views, on packed batches.

A mask is (L,) bool, True = hidden from the encoder. Every sample of the batch draws one strategy
(uniformly from the configured list) so one step mixes imputation- and forecasting-like tasks:
  random    any `ratio` of the sample's tokens (exact count);
  tube      `ratio` of the sample's spatial patches, hidden at every time patch (spatial kriging);
  block     a square region of side sqrt(ratio) of the [0, 1]^2 coordinate space, over all time;
  temporal  the last k time patches, k uniform on 1..ceil(ratio * n_time) per sample (forecasting the
            future at every horizon, from contexts of every length).
A sample keeps at least one visible and (if it has >= 2 tokens) one hidden token: when its strategy
cannot do that (one spatial patch for tube/block, one time patch for temporal) it falls back to random.
All sampling uses the global torch RNG on the batch's device, so `torch.manual_seed` reproduces it.
"""
from __future__ import annotations

import math

import torch

from unist.patching.tokens import TokenBatch

from unist.model.config import MASK_STRATEGIES
from unist.model.norm import count_ids, per_sample_sum


def per_sample_max(x: torch.Tensor, sample_id: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Max of x (L,) int64 per sample -> (B,) (-1 for samples without tokens)."""
    out = torch.full((num_samples,), -1, dtype=x.dtype, device=x.device)
    return out.scatter_reduce_(0, sample_id, x, reduce="amax")


def rank_within(group: torch.Tensor, score: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Rank (0 = smallest score) of each element among the elements of its group; group (N,) int64 in
    [0, num_groups), score in [0, 1)."""
    order = torch.argsort(group.double() + score.double())  # groups in order, each sorted by score
    counts = count_ids(group, num_groups)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(group)
    rank[order] = torch.arange(group.numel(), device=group.device) - starts[group[order]]
    return rank


def _count(ratio: float, n: torch.Tensor) -> torch.Tensor:
    """round(ratio * n) clamped to [1, n - 1] (0 when n < 2): how many of n units to hide."""
    k = torch.round(ratio * n.double()).long()
    return torch.minimum(k.clamp(min=1), n - 1).clamp(min=0)


def random_mask(batch: TokenBatch, ratio: float) -> torch.Tensor:
    sid = batch.sample_id
    n = count_ids(sid, batch.num_samples)  # (B,)
    rank = rank_within(sid, torch.rand(sid.shape, device=sid.device), batch.num_samples)
    return rank < _count(ratio, n)[sid]


def tube_mask(batch: TokenBatch, ratio: float) -> torch.Tensor:
    sid, B = batch.sample_id, batch.num_samples
    n_space = per_sample_max(batch.space_index, sid, B) + 1  # (B,)
    counts = batch.patch_counts()  # host-side from the specs; else one host sync
    width = (max(counts[0]) if counts else int(n_space.max())) if B else 0  # how many scores to draw
    score = torch.rand(B, width, device=sid.device)  # one score per (sample, spatial patch)
    group = torch.arange(B, device=sid.device)[:, None].expand(B, width)
    valid = torch.arange(width, device=sid.device)[None] < n_space[:, None]
    # patches a sample does not have rank after all of its own (score in [0.5, 1) against [0, 0.5): a halving
    # is exact, so the order of the real ones is the order of their scores)
    key = torch.where(valid, score * 0.5, torch.full_like(score, 0.75))
    rank = rank_within(group.reshape(-1), key.reshape(-1), B).view(B, width)
    return rank[sid, batch.space_index] < _count(ratio, n_space)[sid]


def block_mask(batch: TokenBatch, ratio: float) -> torch.Tensor:
    side = math.sqrt(ratio)
    centre = side / 2 + (1 - side) * torch.rand(batch.num_samples, 2, device=batch.coords.device)  # (B, 2)
    return ((batch.coords - centre[batch.sample_id]).abs() <= side / 2).all(dim=-1)


def temporal_mask(batch: TokenBatch, ratio: float) -> torch.Tensor:
    sid = batch.sample_id
    n_time = per_sample_max(batch.t_index, sid, batch.num_samples) + 1  # (B,)
    k_max = torch.minimum(torch.ceil(ratio * n_time.double()).long().clamp(min=1), n_time - 1)
    u = torch.rand(batch.num_samples, device=sid.device, dtype=torch.float64)
    k = torch.minimum((u * k_max).long() + 1, k_max)  # uniform on 1..k_max: short and long horizons alike
    return batch.t_index >= (n_time - k)[sid]


STRATEGY_FNS = {"random": random_mask, "tube": tube_mask, "block": block_mask, "temporal": temporal_mask}
assert tuple(STRATEGY_FNS) == MASK_STRATEGIES


def sample_mask(batch: TokenBatch, strategies: tuple[str, ...], ratio: float) -> torch.Tensor:
    """(L,) bool token mask, True = hidden: one strategy per sample, random fallback for degenerate cases."""
    sid, B = batch.sample_id, batch.num_samples
    unknown = [s for s in strategies if s not in STRATEGY_FNS]
    if unknown or not strategies:
        raise ValueError(f"unknown masking strategies {unknown or strategies}: use names from {MASK_STRATEGIES}")
    choice = torch.randint(len(strategies), (B,), device=sid.device)[sid]  # (L,) strategy of each token's sample
    fallback = random_mask(batch, ratio)
    hidden = torch.zeros_like(fallback)
    for i, name in enumerate(strategies):
        m = fallback if name == "random" else STRATEGY_FNS[name](batch, ratio)
        hidden = torch.where(choice == i, m, hidden)
    n = count_ids(sid, B)
    n_hidden = per_sample_sum(hidden.long(), sid, B)
    bad = ((n_hidden == 0) & (n >= 2)) | (n_hidden == n)  # (B,) nothing hidden, or nothing visible
    return torch.where(bad[sid], fallback, hidden)
