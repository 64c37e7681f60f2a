"""The lag copy's fill candidates: what a hidden cell looks like from the seen cells around it, in time and in space.

Imputation hides single cells or short outages inside tokens the encoder sees. The lag copy's other candidates
look only backwards (last value, lags, levels), so a hole was rebuilt from the previous token; the field's
first baselines, linear interpolation in time and the mean of the other locations, read the cells around it.
Two candidates do the same inside the model, each backtested in context like the others:

  interpolation  linear in time between the nearest seen steps before and after the cell, column by column
                 (`steps.interpolate`); backtest: interpolating every seen step from its two seen neighbours;
                 lag feature: the mean gap it bridges;
  cross-section  the mean of the other seen slots of the same token step and channel (the patch's other cells
                 or nodes; values are normalised per location, so this is the mean anomaly of the neighbours);
                 backtest: leaving each seen cell out of its step's mean.

Both exist only where seen cells lie around the hidden one. The future of a forecast has no seen cell after it
or beside it, so forecasts are unchanged (bit for bit: the scorer's logit of a candidate with nothing available
is masked to -1e4 and adds exact zeros).
"""
from __future__ import annotations

import torch

from .steps import StepGrid, interpolate, interpolation_errors

def own_steps(y: torch.Tensor, grid: StepGrid, t_index: torch.Tensor) -> torch.Tensor:
    """The steps of every token from a (G, T, P, C) step-grid tensor -> (L, tau * P, C)."""
    G, T, P, C = y.shape
    tau = grid.tau
    rows = ((grid.group * T + t_index * tau)[:, None] + torch.arange(tau, device=y.device)).reshape(-1)
    return y.reshape(G * T, P, C).index_select(0, rows).view(-1, tau * P, C)


def interp_parts(grid: StepGrid, t_index: torch.Tensor, error: str = "rmse") -> tuple[torch.Tensor, ...]:
    """Interpolation in time -> values, available (L, tau * P, C), backtest error (L,) (RMSE or MAE: `error`), mean
    gap (L,). Runs sample by sample over each sample's own steps and channels (the dense grid of a packed batch is
    mostly padding)."""
    y, ok = torch.zeros_like(grid.x), torch.zeros_like(grid.m)
    gap = torch.zeros(grid.x.shape, dtype=torch.long, device=grid.x.device)
    err = grid.x.new_full((grid.x.shape[0],), float("inf"))
    for g0, g1, steps, c in grid.spans or ((0, grid.x.shape[0], grid.x.shape[1], grid.x.shape[3]),):
        part = grid.part(g0, g1, steps, c)
        y[g0:g1, :steps, :, :c], ok[g0:g1, :steps, :, :c], gap[g0:g1, :steps, :, :c] = interpolate(part)
        err[g0:g1] = interpolation_errors(part, error)
    v, v_ok = own_steps(y, grid, t_index), own_steps(ok, grid, t_index)
    g = own_steps(gap.to(y.dtype), grid, t_index)
    mean_gap = torch.where(v_ok, g, 0).sum((1, 2)) / v_ok.sum((1, 2)).clamp(min=1)
    return torch.where(v_ok, v, 0), v_ok, err[grid.group], mean_gap.clamp(min=1)


def cross_parts(values: torch.Tensor, seen: torch.Tensor, tau: int, group: torch.Tensor, num_groups: int,
                error: str = "rmse") -> tuple[torch.Tensor, ...]:
    """The mean of the other seen slots of each token step -> values, available (L, S, C), backtest error (L,)
    (RMSE or MAE: `error`; leave-one-out over the seen cells of the token's spatial patch; inf where none has a
    seen neighbour)."""
    L, S, C = values.shape
    x = torch.where(seen, values, 0).float().view(L, tau, S // tau, C)
    m = seen.view(L, tau, S // tau, C)
    others = m.sum(2, keepdim=True) - m.to(torch.long)  # (L, tau, P, C) seen slots besides this one
    v = (x.sum(2, keepdim=True) - x) / others.clamp(min=1)
    ok = others > 0
    scored = m & ok
    e = torch.where(scored, x - v, 0)
    per = (e.abs() if error == "mae" else e.square()).sum((1, 2, 3))
    tot = x.new_zeros(num_groups).index_add_(0, group, per)
    n = x.new_zeros(num_groups).index_add_(0, group, scored.sum((1, 2, 3)).to(x.dtype))
    err = tot / n.clamp(min=1)
    err = torch.where(n > 0, err if error == "mae" else err.sqrt(), float("inf"))
    return torch.where(ok, v, 0).view(L, S, C).to(values.dtype), ok.view(L, S, C), err[group]


def fill_parts(grid: StepGrid, values: torch.Tensor, seen: torch.Tensor, t_index: torch.Tensor, error: str = "rmse"
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Both fill candidates -> values, available (L, 2, S, C), backtest error (L, 2) (`error`: "rmse" | "mae"),
    lag feature (L, 2)."""
    iv, iok, ierr, igap = interp_parts(grid, t_index, error)
    cv, cok, cerr = cross_parts(values, seen, grid.tau, grid.group, grid.x.shape[0], error)
    vals = torch.stack([iv.to(values.dtype), cv], 1)
    return vals, torch.stack([iok, cok], 1), torch.stack([ierr, cerr], 1), torch.stack([igap, torch.ones_like(igap)], 1)


__all__ = ["cross_parts", "fill_parts", "interp_parts", "own_steps"]
