"""What each token has seen before it: the shared bookkeeping of every in-context forecast rule.

Used by the lag copy (`lags.py`, part of the network's output), the forecasting policy's self-check
(`unist.forecast.policy`) and the four-candidate classical ensemble (`unist.evaluation.ensemble`, a
baseline). All functions work on a packed `TokenBatch`'s tensors: values/seen (L, S, C) with
time-major slots (S = tau * P), sample_id / space_index / t_index (L,).
"""
from __future__ import annotations

import math

import torch

DAY_MINUTES = 1440.0


def last_seen_values(values: torch.Tensor, seen: torch.Tensor, tau: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Last seen value of each (spatial slot, channel) inside each token.

    values, seen (L, S, C) with time-major slots (S = tau * P) -> value, has (L, P, C)."""
    L, S, C = values.shape
    v = values.view(L, tau, S // tau, C)
    m = seen.view(L, tau, S // tau, C)
    step = torch.arange(tau, device=values.device).view(1, tau, 1, 1)
    last = torch.where(m, step, torch.full_like(step, -1)).amax(1)  # (L, P, C) latest seen step, -1 = none
    val = v.gather(1, last.clamp(min=0).unsqueeze(1)).squeeze(1)  # (L, P, C)
    has = last >= 0
    return torch.where(has, val, 0), has


def mean_seen_values(values: torch.Tensor, seen: torch.Tensor, tau: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over the token's tau steps of the seen values of each (spatial slot, channel): (L, P, C) x2."""
    L, S, C = values.shape
    m = seen.view(L, tau, S // tau, C)
    v = torch.where(m, values.view(L, tau, S // tau, C), torch.zeros_like(values).view(L, tau, S // tau, C))
    n = m.sum(1)
    return v.sum(1) / n.clamp(min=1), n > 0


def latest_kept(keep: torch.Tensor, sample_id: torch.Tensor, space_index: torch.Tensor,
                t_index: torch.Tensor, n_space: int | None = None, n_time: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """For every hidden token, the latest kept token at an earlier time of the same sample and spatial patch.

    Returns src (L,) token index and ok (L,) (False for kept tokens and where there is none). n_space / n_time:
    bounds on the patches (the caller's, from the batch's specs, save two host syncs)."""
    L = keep.numel()
    n_space = n_space or int(space_index.max()) + 1
    n_time = n_time or int(t_index.max()) + 1
    group = sample_id * n_space + space_index  # (L,) one group per (sample, spatial patch)
    order = torch.argsort(group * n_time + t_index)  # by group, then time
    pos = torch.arange(L, device=keep.device)
    cand = torch.where(keep[order], pos, torch.full_like(pos, -1))
    prev = torch.cummax(cand, 0).values  # (L,) latest kept position at or before, in sorted order
    src_sorted = order[prev.clamp(min=0)]
    ok_sorted = (prev >= 0) & (group[src_sorted] == group[order]) & ~keep[order]
    src = torch.empty_like(src_sorted).index_copy_(0, order, src_sorted)
    ok = torch.empty_like(ok_sorted).index_copy_(0, order, ok_sorted)
    return src, ok


def day_minute(time_feats: torch.Tensor) -> torch.Tensor:
    """(L,) minute of the day of each token's first step, from its sin/cos time-of-day features (float64)."""
    ang = torch.atan2(time_feats[:, 0].double(), time_feats[:, 1].double())  # (-pi, pi]
    return torch.remainder(ang / (2 * math.pi) * DAY_MINUTES, DAY_MINUTES)


def tokens_per_day(minute: torch.Tensor, has_time: torch.Tensor, sample_id: torch.Tensor, t_index: torch.Tensor,
                   space_index: torch.Tensor, num_samples: int) -> torch.Tensor:
    """(B,) tokens per day of each sample, 0 when the sample has no clock, one time token, or tokens that do
    not tile the day (daily/weekly data, video, odd intervals)."""
    B = num_samples
    first = (space_index == 0) & has_time

    def at(sel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) minute of each sample's one token where `sel`, and whether it has one (no host sync: the other
        tokens write to a dump slot B, dropped)."""
        idx = torch.where(sel, sample_id, torch.full_like(sample_id, B))
        m = torch.zeros(B + 1, dtype=torch.float64, device=minute.device).scatter_(0, idx, minute)
        has = torch.zeros(B + 1, dtype=torch.bool, device=minute.device).scatter_(0, idx, torch.ones_like(sel))
        return m[:B], has[:B]

    m0, has0 = at(first & (t_index == 0))
    m1, has1 = at(first & (t_index == 1))
    dur = torch.remainder(m1 - m0, DAY_MINUTES)  # token length in minutes (mod one day)
    per_day = DAY_MINUTES / dur.clamp(min=1e-6)
    whole = (per_day - per_day.round()).abs() < 1e-3
    ok = has0 & has1 & (dur > 0.5) & (dur < DAY_MINUTES - 0.5) & whole
    return torch.where(ok, per_day.round(), 0).long()


def group_mean(x: torch.Tensor, valid: torch.Tensor, group: torch.Tensor, num_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of x (L, P, C) over the valid entries of each group's tokens -> (G,) means, (G,) any-valid."""
    w = valid.to(x.dtype)
    total = x.new_zeros(num_groups).index_add_(0, group, torch.where(valid, x, 0).sum((1, 2)))
    count = x.new_zeros(num_groups).index_add_(0, group, w.sum((1, 2)))
    return total / count.clamp(min=1), count > 0


def expand_steps(x: torch.Tensor, tau: int) -> torch.Tensor:
    """(L, P, C) -> (L, tau * P, C), repeated over the token's steps (time-major slots)."""
    L, P, C = x.shape
    return x.unsqueeze(1).expand(L, tau, P, C).reshape(L, tau * P, C)


__all__ = ["DAY_MINUTES", "day_minute", "expand_steps", "group_mean", "last_seen_values", "latest_kept",
           "mean_seen_values", "tokens_per_day"]
