"""Exponential-smoothing candidates of the lag copy: additive Holt-Winters (ETS(A,N,A)) run on the context.

Why: on daily station counts with a weekly cycle (Paris bike hire, a validation set) statsforecast's AutoETS fitted
on the context beats every candidate of the lag copy and their backtest-weighted mix by 7 % (docs/LOG.md, session
13): a level and a seasonal profile both smoothed over many cycles forecast better than any one copy, last value or
window mean. Here every spatial patch runs the recursion over its own seen steps (error-correction form):

    e_t = x_t - l_{t-1} - s_{t-m},   l_t = l_{t-1} + alpha e_t,   s_t = s_{t-m} + gamma e_t

with m the shortest lag the patch found in the values (`lags.best_lags`; of l, 2l, 3l of one period, l), the level
started at the mean of the first cycle's seen steps and the profile at their deviations from it; unseen steps carry
the states. A patch with no lag found gets no candidate (`ets_states` also runs m = 0, simple exponential smoothing,
but the rule over-trusted it: docs/LOG.md, session 13).
From an origin o the forecast at lead d is l_o + s_{o + d - m ceil(d/m)}.
`ETS_PARAMS` holds one (alpha, gamma) pair per candidate, a slowly and a fast adapting one; the rule picks between
them (and the other candidates) by their in-context MAE at the token's lead, over origins at least two cycles in.
The recursion is a loop over the T steps of the step grid (elementwise on (G, pairs, P, C)) for the groups
with a period only, run without gradient.
"""
from __future__ import annotations

import torch

from .steps import StepGrid

ETS_PARAMS = ((0.1, 0.3), (0.5, 0.3))  # (alpha, gamma) of each candidate


def ets_states(grid: StepGrid, season: torch.Tensor, params: tuple[tuple[float, float], ...] = ETS_PARAMS
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Level and seasonal states after every step: season (G,) the period m of each group (0: none) ->
    level (G, E, T, P, C), profile (G, E, T, P, C) (the seasonal state written at step t, for its phase) and
    start (G,) the first step of the recursion (the states before it are the initial ones)."""
    x, m = grid.x.float(), grid.m
    G, T, P, C = x.shape
    E = len(params)
    a = torch.tensor([p[0] for p in params], device=x.device)[None, :, None, None]  # (1, E, 1, 1)
    g = torch.tensor([p[1] for p in params], device=x.device)[None, :, None, None]
    start = season.clamp(min=1).clamp(max=T)  # (G,) the first cycle (one step without a season) starts the states
    steps = torch.arange(T, device=x.device)
    first = (steps[None] < start[:, None])[:, :, None, None] & m  # (G, T, P, C)
    cnt = first.sum(1)
    l0 = torch.where(first, x, 0).sum(1) / cnt.clamp(min=1)  # (G, P, C)
    seasonal = (season > 0)[:, None, None, None]
    s0 = torch.where(first & seasonal, x - l0[:, None], 0)  # (G, T, P, C): deviations in the first cycle
    level = x.new_zeros(G, E, T, P, C)
    prof = s0[:, None].expand(G, E, T, P, C).clone()
    lv = l0[:, None].expand(G, E, P, C).clone()
    gi = torch.arange(G, device=x.device)
    for t in range(T):
        on = (t >= start)[:, None, None, None]  # (G, 1, 1, 1)
        back = (t - season).clamp(min=0)
        st = torch.where(seasonal, prof[gi, :, back], 0)  # (G, E, P, C)
        ok = on & m[:, t][:, None]
        e = x[:, t][:, None] - lv - st
        lv = torch.where(ok, lv + a * e, lv)
        prof[:, :, t] = torch.where(on, torch.where(ok, st + g * e, st), prof[:, :, t])
        level[:, :, t] = lv
    return level, prof, start


def _ahead(level: torch.Tensor, prof: torch.Tensor, season: torch.Tensor, rows: torch.Tensor, origin: torch.Tensor,
           lead: torch.Tensor) -> torch.Tensor:
    """Forecasts l_o + s_{o + d - m ceil(d / m)}: level, prof (G, E, T, P, C) and season (G,) of the groups, rows
    (N,) the group of each forecast row, origin and lead (N, J) -> (N, E, J, P, C); gathered in place (a row never
    copies its group's whole state history)."""
    T = level.shape[2]
    m = season[rows][:, None]  # (N, 1)
    step = m.clamp(min=1)
    back = torch.where(m > 0, step * torch.div(lead + step - 1, step, rounding_mode="floor") - lead, 0)
    o = origin.clamp(0, T - 1)
    src = (o - back).clamp(0, T - 1)
    r = rows[:, None]
    lv = level[r, :, o]  # (N, J, E, P, C): the indexed dims come first
    sv = torch.where((m > 0)[..., None, None, None], prof[r, :, src], 0)
    return (lv + sv).transpose(1, 2)


def ets_mae(grid: StepGrid, season: torch.Tensor, states: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
            leads: list[int]) -> torch.Tensor:
    """In-context MAE of each candidate at each lead (`lags.lead_steps`) -> (G, E, D), inf where fewer than tau
    origins at least two cycles in (one cycle of updates after the first) have a seen target."""
    level, prof, start = states
    G, E, T, P, C = level.shape
    out = level.new_full((G, E, len(leads)), float("inf"))
    rows = torch.arange(G, device=level.device)
    origin = torch.arange(T, device=level.device)[None].expand(G, T)  # (G, T) every step as an origin
    warm = origin >= (2 * start - 1)[:, None]
    for j, d in enumerate(leads):
        if d >= T:
            continue
        pred = _ahead(level, prof, season, rows, origin[:, :T - d], torch.full_like(origin[:, :T - d], d))
        target, seen = grid.x[:, d:].float(), grid.m[:, d:] & warm[:, :T - d, None, None]  # (G, T - d, P, C)
        err = (pred - target[:, None]).abs() * seen[:, None]
        n = seen.sum((1, 2, 3))  # (G,)
        mae = err.sum((2, 3, 4)) / n.clamp(min=1)[:, None]
        out[:, :, j] = torch.where((n >= grid.tau)[:, None], mae, out[:, :, j])
    return out


def ets_parts(grid: StepGrid, t_index: torch.Tensor, src: torch.Tensor, src_ok: torch.Tensor, lead: torch.Tensor,
              season_g: torch.Tensor, leads: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                   torch.Tensor]:
    """The exponential-smoothing candidates of every token, forecast from the end of its last-value token `src`
    (L,) with its group's period season_g (G,) (0: none, and then no candidate: without a season the recursion is a
    smoothed level, which the smoothed candidates of `lags.smooth_parts` already offer) -> values, available
    (L, E, tau * P, C), their in-context MAE at the token's lead (L, E; `leads` = `lags.lead_steps`) and effective
    lags (L, E) (lead + the mean age of the level's weights, (1 - alpha) / alpha).

    Only the groups with a period run the recursion (a minority in a training batch; one host sync for their
    count)."""
    tau = grid.tau
    G, T, P, C = grid.x.shape
    L, E = t_index.shape[0], len(ETS_PARAMS)
    age = lead[:, None] + torch.tensor([(1 - p[0]) / p[0] for p in ETS_PARAMS], device=lead.device, dtype=lead.dtype)
    sel = torch.nonzero(season_g > 0)[:, 0]  # (Gs,) host sync: the subset's size
    if not sel.numel():  # no group has a period: no candidate anywhere
        none = torch.zeros(L, E, tau * P, C, dtype=torch.bool, device=grid.x.device)
        return grid.x.new_zeros(L, E, tau * P, C), none, grid.x.new_full((L, E), float("inf")), age
    sub = torch.full((G,), -1, dtype=torch.long, device=season_g.device)
    sub[sel] = torch.arange(sel.shape[0], device=season_g.device)
    part = StepGrid(grid.x[sel], grid.m[sel], grid.group, tau)
    season = season_g[sel]
    states = ets_states(part, season)
    level, prof, start = states
    rows = sub[grid.group].clamp(min=0)  # (L,) the token's group in the subset (0 where it has none)
    in_sub = (sub[grid.group] >= 0) & src_ok
    origin = ((t_index[src] + 1) * tau - 1)[:, None].expand(L, tau)  # (L, tau) last step of the source token
    steps = t_index[:, None] * tau + torch.arange(tau, device=t_index.device)[None]  # (L, tau)
    ahead = steps - origin  # (L, tau) the lead of each step
    ok = (in_sub & (origin[:, 0] >= start[rows] - 1))[:, None, None, None, None] \
        & (ahead >= 1)[:, None, :, None, None] & part.m.any(1)[rows][:, None, None]  # a cell the group saw at all
    vals = _ahead(level, prof, season, rows, origin, ahead.clamp(min=1))  # (L, E, tau, P, C)
    err = ets_mae(part, season, states, leads)[rows]  # (L, E, D)
    err = err.gather(2, (lead.long() // tau).clamp(0, err.shape[2] - 1)[:, None, None].expand(L, E, 1))[..., 0]
    ok = ok.expand(L, E, tau, P, C)
    err = torch.where(in_sub[:, None], err, float("inf"))
    vals = torch.where(ok, vals.to(grid.x.dtype), 0).reshape(L, E, tau * P, C)
    return vals, ok.reshape(L, E, tau * P, C), err, age


__all__ = ["ETS_PARAMS", "ets_mae", "ets_parts", "ets_states"]
