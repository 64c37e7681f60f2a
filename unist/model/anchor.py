"""Persistence anchor: hidden tokens are predicted as a residual on the last value seen before them.

Naive persistence ("tomorrow looks like today's last reading") is the strongest simple baseline in
traffic, flow and weather forecasting. Rather than make the network rediscover it from scratch, every
hidden token's prediction is `anchor + head(h)`: the anchor holds, per spatial slot and channel, the
last value the encoder saw in the nearest earlier visible token of the same sample and spatial patch,
repeated over the token's tau steps. For the forecast masking this is exactly the last-value forecast.
With the head's last layer zero-initialised, an untrained model forecasts persistence, and training
learns the correction. Tokens with no earlier visible token of their patch (and visible tokens) get
0, the instance mean. Only what the encoder sees (`seen`) enters the anchor, so no hidden target leaks.
"""
from __future__ import annotations

import torch


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
    return torch.where(has, val, torch.zeros_like(val)), has


def persistence_anchor(values: torch.Tensor, seen: torch.Tensor, keep: torch.Tensor, sample_id: torch.Tensor,
                       space_index: torch.Tensor, t_index: torch.Tensor, tau: int) -> torch.Tensor:
    """Anchor (L, S, C) for every token (0 for kept tokens and where nothing earlier was seen).

    values, seen (L, S, C): normalised values and what the encoder sees; keep (L,) visible tokens."""
    L, S, C = values.shape
    if L == 0:
        return values.new_zeros(L, S, C)
    last_val, has = last_seen_values(values, seen, tau)  # (L, P, C)
    n_space = int(space_index.max()) + 1
    n_time = int(t_index.max()) + 1
    group = sample_id * n_space + space_index  # (L,) one group per (sample, spatial patch)
    order = torch.argsort(group * n_time + t_index)  # by group, then time
    pos = torch.arange(L, device=values.device)
    cand = torch.where(keep[order], pos, torch.full_like(pos, -1))
    prev = torch.cummax(cand, 0).values  # (L,) latest kept position at or before, in sorted order
    src = order[prev.clamp(min=0)]
    ok = (prev >= 0) & (group[src] == group[order]) & ~keep[order]  # (L,) sorted
    anchor_sorted = torch.where((ok[:, None, None] & has[src]), last_val[src], torch.zeros_like(last_val[src]))
    anchor = torch.empty_like(anchor_sorted).index_copy_(0, order, anchor_sorted)  # (L, P, C)
    return anchor.unsqueeze(1).expand(L, tau, S // tau, C).reshape(L, S, C)
