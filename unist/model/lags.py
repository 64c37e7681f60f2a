"""Lag copy: hidden tokens are predicted from the context's own past, at lags the network chooses.

Seasonal naive ("like one period ago") wins on most real series, but only when the period is
known; data without timestamps, weekly cycles in daily data or a 13-step cycle have none a clock
can tell. Here every spatial patch finds its candidate periods in its own context, and the decoder
decides how to combine them:

  1. the patch's observed steps form a series x[s, slot, channel] (s = t_index * tau + dt);
  2. for every lag l the in-context error of "x[s] = x[s - l]" over all seen pairs is one FFT
     cross-correlation away (`lag_errors`: sum of squares = R(m x^2, m) + R(m, m x^2) - 2 R(m x, m x));
  3. the K lags with the lowest error among the dips of the same error curve of the first differences
     (a trend does not pull the dip off the period; so l, 2l, 3l of one period are candidates, not l and
     l + 1; `best_lags`) are copied slot by slot: F_k[s] = x[s - l_k] (`copy_at`), and a
     level-corrected copy F_k + D_k (D_k: the last seen token minus the same steps l_k earlier);
  4. with last value P (and, with `smooth`, the means M_w of the last w = tau, 4 tau seen steps: on a noisy
     series a level beats one reading, `smooth_errors`) these are the 2K + 1 (+ 2) candidates; `LagScorer` weights them by a softmax over
     logits from each candidate's features (its log backtest error at the token's lead, lag, lead/lag,
     coverage) and the decoder features h of the token, and `LagParts.combine` mixes them slot by slot over the
     available ones. The backtest error is the MAE (`error="mae"`, `UniSTConfig.lag_error`, from unist-tiny-5 on;
     computed directly at the K lags and the tokens' leads, `steps.lag_mae`) or the FFT RMSE (releases up to
     unist-tiny-4): on bursty counts the RMSE rewards mean-like candidates that lose in the MAE the forecast is
     scored in.

The scorer starts from the rule "weights proportional to error^-4" (the sharpened Bates & Granger
combination), so an untrained model forecasts a backtest-weighted multi-lag ensemble; training
moves the weights with the decoder features and adds the head's residual on top. Only `seen`
cells (what the encoder sees) enter any candidate, error or feature, so no hidden target leaks.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .history import expand_steps, last_seen_values, latest_kept
from .ets import ets_parts
from .fill import fill_parts
from .steps import (StepGrid, differences, lag_errors, lag_mae, lead_mae, sample_lag_errors, sample_moving_mean,
                    sample_smooth_errors, sample_smooth_mae, step_grid)

LAG_FEATURES = 8   # log error, log1p(lag), min(lead / lag, 4), coverage, is_persist, is_level, log1p(lead), prominence
# local-minimum neighbourhood half-widths by lag: a period is a dip below its neighbours at its own scale
_SCALES = ((16, 1), (64, 4), (256, 16), (1 << 30, 32))  # (lags below, half-width)
_EPS = 1e-3


def best_lags(rmse: torch.Tensor, k: int, min_lag: int = 1, depth: float = 1.0, edge_dip: bool = False
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The k lags >= min_lag of lowest error among the dips of rmse (G, l) -> lags (G, k), their rmse, ok (G, k).

    A dip is a lag whose error is below the mean of its errors at +-w (w grows with the lag, `_SCALES`) and the
    deepest such lag within +-w: a period shows as a dip even on a rising error curve (a trend makes every
    longer lag worse), and the ripples of a noisy curve around lag 90 do not crowd out the day at 288. depth < 1:
    a dip must also lie at most `depth` times the median error over all lags: on a series without a period (noise,
    bursty counts) every ripple is a dip within a few % of the rest, and copying it copies noise.

    Near the end of the valid lags (a lag needs its cycles in the context, `steps.lag_errors`) the invalid
    neighbours take the nearest valid lag's error, so the longest valid lag is a dip only if it lies below its valid
    neighbours. edge_dip=True (releases up to unist-tiny-5): they count as +inf, and the longest valid lag is always
    a dip, whatever its error (it copied lags 59-68 of 104-step contexts of bursty counts)."""
    G, n = rmse.shape
    lags = torch.arange(n, device=rmse.device)
    finite = torch.isfinite(rmse)
    if edge_dip:
        big = torch.where(finite, rmse, torch.full_like(rmse, 1e30))
    else:  # each invalid lag takes the error of the nearest valid lag below it (above it, before the first)
        below = torch.where(finite, lags, -1).cummax(1).values  # (G, n) last valid lag <= l, -1: none yet
        first = torch.where(finite, lags, n).amin(1, keepdim=True).clamp(max=n - 1)  # (G, 1)
        src = torch.where(below >= 0, below, first)
        near = rmse.gather(1, src)
        big = torch.where(torch.isfinite(near), near, torch.full_like(rmse, 1e30))
    chosen = torch.zeros_like(finite)
    lo = 0
    for below, w in _SCALES:
        if lo >= n:
            break
        side = torch.nn.functional.pad(big[:, None], (w, w), mode="replicate")[:, 0]  # (G, n + 2w)
        dip = big - 0.5 * (side[:, :n] + side[:, 2 * w:])  # < 0: below the chord of its neighbours
        dip = torch.where(finite & (big < 1e29), dip, torch.full_like(dip, 1e30))
        deepest = -torch.nn.functional.max_pool1d(-dip[:, None], 2 * w + 1, stride=1, padding=w)[:, 0]
        band = (lags >= lo) & (lags < below)
        chosen |= band & (dip < 0) & (dip <= deepest)
        lo = below
    ok = finite & chosen & (lags >= min_lag)
    if depth < 1:
        med = torch.nanmedian(torch.where(finite, rmse, torch.full_like(rmse, float("nan"))), 1).values  # (G,)
        ok &= rmse <= depth * med[:, None]  # nan median (no finite lag): nothing is chosen
    score = torch.where(ok, rmse, torch.full_like(rmse, float("inf")))
    k = min(k, n)
    err, lag = torch.topk(score, k, dim=1, largest=False)
    return lag, err, torch.isfinite(err)


def sample_level_errors(grid: StepGrid, lags: torch.Tensor, max_lead: int, error: str = "rmse") -> torch.Tensor:
    """`level_errors` sample by sample -> (G, K, max_lead + 1) ("rmse") or (G, K, max_lead // tau + 1) ("mae")."""
    width = max_lead // grid.tau + 1 if error == "mae" else max_lead + 1
    out = grid.x.new_full((grid.x.shape[0], lags.shape[1], width), float("inf"))
    for g0, g1, steps, c in grid.spans:
        if steps > 1:
            e = level_errors(grid.part(g0, g1, steps, c), lags[g0:g1], max_lead, error)
            out[g0:g1, :, :e.shape[2]] = e
    return out


SMOOTH_WINDOWS = (1, 4)  # smoothed candidates: means over the last w * tau seen steps
LAG_ERRORS = ("mae", "rmse")  # the backtest error that weights the candidates (`UniSTConfig.lag_error`)


def lead_steps(max_lead: int, tau: int) -> list[int]:
    """The leads a token's backtests are needed at: a token lies a whole number of tokens after its last-value
    token, so its lead is k * tau (k = 0 counts as 1) -> [1, tau, 2 tau, ...] up to max_lead (host-side: no
    sync); the lead of a token is column lead // tau."""
    return [max(1, k * tau) for k in range(max_lead // tau + 1)]



def smooth_parts(grid: StepGrid, t_index: torch.Tensor, src: torch.Tensor, src_ok: torch.Tensor, lead: torch.Tensor,
                 error: str = "rmse") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The smoothed candidates of every token: the mean of the last w * tau seen steps up to the end of its
    last-value token `src` (L,), for w in `SMOOTH_WINDOWS` -> values, available (L, W, tau * P, C), their
    backtest errors (`error`) at the token's lead (L, W) and effective lags (L, W) (lead + half the window)."""
    tau = grid.tau
    G, T, P, C = grid.x.shape
    end = (t_index[src] + 1) * tau - 1  # (L,) last step of the source token
    vals, oks, errs, lags = [], [], [], []
    max_lead = max(1, int(lead.max()))  # one host sync for all windows
    for w in SMOOTH_WINDOWS:
        y, has = sample_moving_mean(grid, w * tau)
        flat = grid.group * T + end.clamp(0, T - 1)
        v = y.reshape(G * T, P, C).index_select(0, flat)  # (L, P, C)
        ok = has.reshape(G * T, P, C).index_select(0, flat) & src_ok[:, None, None]
        if error == "mae":
            e = sample_smooth_mae(grid, lead_steps(max_lead, tau), (y, has))[grid.group]  # (L, D)
            e = e.gather(1, (lead.long() // tau).clamp(0, e.shape[1] - 1)[:, None])[:, 0]
        else:
            e = sample_smooth_errors(grid, w * tau, max_lead, (y, has))[grid.group]  # (L, d)
            e = e.gather(1, lead.long().clamp(1, e.shape[1] - 1)[:, None])[:, 0]
        vals.append(expand_steps(torch.where(ok, v, 0), tau))
        oks.append(expand_steps(ok, tau))
        errs.append(e)
        lags.append(lead + (w * tau - 1) / 2)
    return torch.stack(vals, 1), torch.stack(oks, 1), torch.stack(errs, 1), torch.stack(lags, 1)


def level_errors(grid: StepGrid, lags: torch.Tensor, max_lead: int, error: str = "rmse") -> torch.Tensor:
    """In-context RMSE of each level-corrected copy at every lead: lags (G, K) -> (G, K, max_lead + 1); with
    error="mae" its MAE at the leads of `lead_steps` -> (G, K, max_lead // tau + 1).

    The level-corrected copy x[s - l] + (x[o] - x[o - l]) (o: the last seen step, lead d = s - o) is last value on
    the seasonal difference y[s] = x[s] - x[s - l], so its backtest is `lag_errors` of y at lag d."""
    G, T, P, C = grid.x.shape
    K = lags.shape[1]
    src = torch.arange(T, device=lags.device)[None, None] - lags[:, :, None]  # (G, K, T)
    ok = (src >= 0) & (lags[:, :, None] > 0)
    flat = (torch.arange(G, device=lags.device)[:, None, None] * T + src.clamp(min=0)).reshape(-1)
    past = grid.x.reshape(G * T, P, C).index_select(0, flat).view(G, K, T, P, C)
    past_m = grid.m.reshape(G * T, P, C).index_select(0, flat).view(G, K, T, P, C) & ok[..., None, None]
    y = StepGrid((grid.x[:, None] - past).view(G * K, T, P, C), (grid.m[:, None] & past_m).view(G * K, T, P, C),
                 grid.group, grid.tau)
    if error == "mae":
        return lead_mae(y, lead_steps(max_lead, grid.tau)).view(G, K, -1)
    rmse, _ = lag_errors(y, max(1, min(max_lead, T - 1)))
    return rmse.view(G, K, -1)


def copy_at(grid: StepGrid, t_index: torch.Tensor, lags: torch.Tensor, shift: torch.Tensor | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Values l steps before each step of each token: lags (L, K) -> (L, K, tau * P, C) values and seen mask.

    shift (L,): read the steps of the token `shift` tokens earlier instead of the token's own (then minus l)."""
    tau = grid.tau
    G, T, P, C = grid.x.shape
    L, K = lags.shape
    base = (t_index if shift is None else t_index - shift) * tau  # (L,)
    src = base[:, None, None] + torch.arange(tau, device=lags.device)[None, None] - lags[:, :, None]  # (L, K, tau)
    ok = (src >= 0) & (src < T)
    flat = (grid.group[:, None, None] * T + src.clamp(0, T - 1)).reshape(-1)
    vals = grid.x.reshape(G * T, P, C).index_select(0, flat).view(L, K, tau, P, C)
    seen = grid.m.reshape(G * T, P, C).index_select(0, flat).view(L, K, tau, P, C) & ok[..., None, None]
    return vals.reshape(L, K, tau * P, C), seen.reshape(L, K, tau * P, C)


@dataclass
class LagParts:
    """Candidates of every token: values (L, Q, S, C) and availability (L, Q, S, C) of Q = 2K + 1 (+ W) (+ E) (+ 2)
    candidates (P, the K lag copies, the K level-corrected copies, the W smoothed levels, the E exponential-smoothing
    forecasts of `ets.py`, the 2 fill candidates of `fill.py`), features (L, Q, LAG_FEATURES) for `LagScorer`."""

    values: torch.Tensor
    available: torch.Tensor
    features: torch.Tensor
    lags: torch.Tensor  # (L, K) the copied lags (0 = none), for diagnostics

    @property
    def persist(self) -> torch.Tensor:
        return self.values[:, 0]

    def combine(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax weights from logits (L, Q), renormalised slot by slot over the available candidates -> (L, S, C);
        0 (the location mean) where none is available."""
        any_ok = self.available.any(2).any(2)  # (L, Q)
        logits = logits.float().masked_fill(~any_ok, -1e4)
        w = torch.softmax(logits, dim=-1).to(self.values.dtype)[:, :, None, None] * self.available
        den = w.sum(1)
        num = (w * self.values).sum(1)
        return torch.where(den > 0, num / den.clamp(min=1e-12), 0)


def _with_clock_lag(lag_g: torch.Tensor, err_g: torch.Tensor, rmse: torch.Tensor, day_steps: torch.Tensor,
                    grid: StepGrid) -> tuple[torch.Tensor, torch.Tensor]:
    """lags / errors (G, K) plus one column: the clock's day, or its week when the day is among the K already,
    where that lag has a finite in-context error (0 / inf elsewhere)."""
    G, n = rmse.shape
    counts = torch.tensor([g1 - g0 for g0, g1, _, _ in grid.spans], device=lag_g.device)
    day = torch.repeat_interleave(day_steps.to(lag_g.device).long(), counts, output_size=G)  # every sample has a group
    week = day * 7
    clock = torch.where((lag_g == day[:, None]).any(1), week, day)
    ok = (clock > 0) & (clock < n)
    err = rmse.gather(1, clock.clamp(0, n - 1)[:, None])[:, 0]
    ok &= torch.isfinite(err)
    clock = torch.where(ok, clock, 0)
    err = torch.where(ok, err, torch.full_like(err, float("inf")))
    return torch.cat([lag_g, clock[:, None]], 1), torch.cat([err_g, err[:, None]], 1)


def lag_parts(values: torch.Tensor, seen: torch.Tensor, keep: torch.Tensor, sample_id: torch.Tensor,
              space_index: torch.Tensor, t_index: torch.Tensor, tau: int, num_samples: int, k: int,
              max_lag: int = 2048, day_steps: torch.Tensor | None = None, smooth: bool = False,
              fill: bool = False, channels: list[int] | None = None,
              counts: tuple[list[int], list[int]] | None = None, error: str = "rmse", dip: float = 1.0,
              cycles: float = 1.5, edge_dip: bool = True, ets: bool = False) -> LagParts:
    """`LagParts` of every token (see the module docstring).

    values, seen (L, S, C): normalised values and what the encoder sees; keep (L,) the visible tokens. Last value
    P is the last seen value of the nearest earlier visible token of the same spatial patch (`history.py`).
    day_steps (B,): steps per day of each sample from its clock (0: none, e.g. no timestamps or daily data); the
    clock's day (else its week) joins the K lags found in the values as one more candidate where the context
    covers it and it is not among them already. smooth: append the smoothed candidates (`smooth_parts`) after the
    level-corrected copies; fill: then interpolation in time and the cross-section mean (`fill.py`; only where
    seen cells lie around a hidden one, so forecasts of the future do not change). channels (B,): each sample's
    own channel count, host-side (default C): a candidate's coverage counts the sample's cells, and the backtests
    run over the sample's channels, not the ones a packed batch pads it with, so a window gets the same features
    alone or packed with windows of more channels.
    counts: the batch's exact per-sample (spatial, time) patch counts (`TokenBatch.patch_counts`), which spare the
    host syncs of sizing the step grid. error: the backtest error of every candidate, "rmse" or "mae" (`LAG_ERRORS`;
    the periods are picked on the RMSE of every lag either way, and the prominence feature compares a candidate's
    error with the median RMSE over all lags). dip: how deep a period's dip must be (`best_lags`' depth). cycles:
    how many times the context must hold a lag for it to be a candidate (`steps.lag_errors`; the clock's day and
    week too); edge_dip: whether the longest valid lag is always a dip (`best_lags`; releases up to unist-tiny-5).
    ets: append the exponential-smoothing candidates (`ets.py`; their season is the shortest lag found in the values)
    after the smoothed ones; needs error="mae"."""
    if error not in LAG_ERRORS:
        raise ValueError(f"lag_parts: error={error!r} unknown: use one of {LAG_ERRORS}")
    if ets and error != "mae":
        raise ValueError("lag_parts: the exponential-smoothing candidates (ets=True) are backtested in MAE only: "
                         "use error='mae'")
    L, S, C = values.shape
    with torch.no_grad():
        last_val, has = last_seen_values(values, seen, tau)  # (L, P, C)
        bounds = (max(counts[0]), max(counts[1])) if counts else (None, None)
        persist_src, persist_ok = latest_kept(keep, sample_id, space_index, t_index, *bounds)
        use_p = persist_ok[:, None, None] & has[persist_src]
        persist = expand_steps(torch.where(use_p, last_val[persist_src], 0), tau)
        grid = step_grid(values, seen, sample_id, space_index, t_index, tau, num_samples, counts, channels)
        T = grid.x.shape[1]
        rmse = sample_lag_errors(grid, min(max_lag, T - 1), cycles)  # (G, l)
        # periods are picked on the first differences (a trend or a wandering level makes every longer lag worse
        # and pulls the dip of the raw errors off the period); the copies' features keep the raw errors
        picked = sample_lag_errors(differences(grid), min(max_lag, T - 1), cycles)
        lag_g, _, ok_g = best_lags(picked, k, min_lag=tau, depth=dip, edge_dip=edge_dip)  # (G, K); shorter lags: last value covers them
        lag_g = torch.where(ok_g, lag_g, 0)
        # (G,) the exponential smoothing's period: the shortest lag found (of l, 2l, 3l of one period: l), 0 if none
        season_g = torch.where(lag_g > 0, lag_g, rmse.shape[1]).amin(1) if lag_g.shape[1] else \
            torch.zeros(lag_g.shape[0], dtype=torch.long, device=lag_g.device)
        season_g = torch.where(season_g < rmse.shape[1], season_g, 0)
        err_g = torch.where(ok_g, rmse.gather(1, lag_g), torch.full_like(rmse[:, :lag_g.shape[1]], float("inf")))
        if day_steps is not None:
            lag_g, err_g = _with_clock_lag(lag_g, err_g, rmse, day_steps, grid)
        if lag_g.shape[1] < k:  # a context shorter than k lags
            pad = k - lag_g.shape[1]
            lag_g = torch.cat([lag_g, lag_g.new_zeros(lag_g.shape[0], pad)], 1)
            err_g = torch.cat([err_g, err_g.new_full((err_g.shape[0], pad), float("inf"))], 1)
        if error == "mae":  # same validity rule as the RMSE, so only the finite ones are recomputed
            err_g = torch.where(torch.isfinite(err_g), lag_mae(grid, lag_g), err_g)
        k = lag_g.shape[1]
        lags, err = lag_g[grid.group], err_g[grid.group]  # (L, K)
        copy, copy_ok = copy_at(grid, t_index, lags)  # (L, K, S, C)
        copy_ok &= (lags > 0)[:, :, None, None]
        # level shift: the last seen token (P's source) minus its own steps l earlier, per slot, mean over its steps
        shift = (t_index - t_index[persist_src]).clamp(min=0)
        now, now_ok = copy_at(grid, t_index, torch.zeros_like(lags), shift)       # (L, K, S, C) P's token itself
        past, past_ok = copy_at(grid, t_index, lags, shift)
        pair = now_ok & past_ok & ((lags > 0) & persist_ok[:, None])[:, :, None, None]
        P = S // tau
        diff = torch.where(pair, now - past, 0).view(L, k, tau, P, C)
        cnt = pair.view(L, k, tau, P, C).sum(2)
        level = (diff.sum(2) / cnt.clamp(min=1)).unsqueeze(2).expand(L, k, tau, P, C).reshape(L, k, S, C)
        level_ok = (cnt > 0).unsqueeze(2).expand(L, k, tau, P, C).reshape(L, k, S, C) & copy_ok
        p_ok = expand_steps(use_p, tau).unsqueeze(1)  # (L, 1, S, C)
        vals = torch.cat([persist.unsqueeze(1), copy, copy + level], 1)  # (L, Q, S, C)
        avail = torch.cat([p_ok, copy_ok, level_ok], 1)
        # features
        lead = (t_index - t_index[persist_src]).clamp(min=0).to(values.dtype) * tau  # (L,) steps ahead of P's token
        G, lmax = rmse.shape
        max_lead = max(1, int(lead.max()))  # one host sync for every backtest at the tokens' leads
        if error == "mae":
            p_all = lead_mae(grid, lead_steps(max_lead, tau))  # (G, D)
            p_err = p_all[grid.group, (lead.long() // tau).clamp(0, p_all.shape[1] - 1)]
        else:
            p_err = rmse[grid.group, lead.long().clamp(1, lmax - 1)]  # persistence at this lead = the lag-lead copy's
        p_err = torch.where(torch.isfinite(p_err), p_err, err[:, :1].squeeze(1).clamp(max=1e3))
        p_err = torch.where(torch.isfinite(p_err), p_err, torch.ones_like(p_err))
        lvl_err = sample_level_errors(grid, lag_g, max_lead, error)[grid.group]  # (L, K, leads)
        col = (lead.long() // tau).clamp(0, lvl_err.shape[2] - 1) if error == "mae" else \
            lead.long().clamp(1, lvl_err.shape[2] - 1)
        lvl_err = lvl_err.gather(2, col[:, None, None].expand(L, k, 1))[..., 0]
        lvl_err = torch.where(torch.isfinite(lvl_err), lvl_err, err)
        errs = torch.cat([p_err[:, None], err, lvl_err], 1)  # (L, Q)
        errs = torch.where(torch.isfinite(errs), errs, torch.full_like(errs, 1e3))
        lag_all = torch.cat([lead[:, None].clamp(min=1), lags.to(values.dtype), lags.to(values.dtype)], 1)
        if smooth:
            sv, sok, serr, slag = smooth_parts(grid, t_index, persist_src, persist_ok, lead, error)
            vals, avail = torch.cat([vals, sv.to(vals.dtype)], 1), torch.cat([avail, sok], 1)
            errs = torch.cat([errs, torch.where(torch.isfinite(serr), serr, torch.full_like(serr, 1e3))], 1)
            lag_all = torch.cat([lag_all, slag.clamp(min=1).to(lag_all.dtype)], 1)
        if ets:
            ev, eok, eerr, elag = ets_parts(grid, t_index, persist_src, persist_ok, lead, season_g,
                                            lead_steps(max_lead, tau))
            vals, avail = torch.cat([vals, ev.to(vals.dtype)], 1), torch.cat([avail, eok], 1)
            errs = torch.cat([errs, torch.where(torch.isfinite(eerr), eerr, torch.full_like(eerr, 1e3))], 1)
            lag_all = torch.cat([lag_all, elag.clamp(min=1).to(lag_all.dtype)], 1)
        if fill:
            fv, fok, ferr, flag = fill_parts(grid, values, seen, t_index, error)
            vals, avail = torch.cat([vals, fv.to(vals.dtype)], 1), torch.cat([avail, fok], 1)
            errs = torch.cat([errs, torch.where(torch.isfinite(ferr), ferr, torch.full_like(ferr, 1e3))], 1)
            lag_all = torch.cat([lag_all, flag.to(lag_all.dtype)], 1)
        Q = vals.shape[1]
        own = (torch.tensor(channels, device=sample_id.device)[sample_id] if channels is not None
               else torch.full_like(sample_id, C))
        cells = S * own  # (L,)
        cover = avail.float().sum((2, 3)) / cells.to(values.dtype)[:, None]  # (L, Q): fraction of the sample's cells
        # prominence: the lag's error against the median error over all lags of the patch (a real period dips)
        med = torch.nanmedian(torch.where(torch.isfinite(rmse), rmse, torch.full_like(rmse, float("nan"))), 1).values
        med = torch.where(torch.isfinite(med), med, torch.ones_like(med))[grid.group]  # (L,)
        prom = torch.log((errs + _EPS) / (med[:, None] + _EPS))
        kind = torch.zeros(L, Q, 2, dtype=values.dtype, device=values.device)
        kind[:, 0, 0] = 1
        kind[:, k + 1:2 * k + 1, 1] = 1  # the smoothed candidates are neither: their lag feature tells them apart
        feats = torch.cat([torch.log(errs + _EPS)[..., None], torch.log1p(lag_all)[..., None],
                           (lead[:, None] / lag_all.clamp(min=1)).clamp(max=4)[..., None], cover[..., None], kind,
                           torch.log1p(lead)[:, None, None].expand(L, Q, 1), prom[..., None]], -1)
        feats = torch.where(avail.any(2).any(2)[..., None], feats, 0)
    return LagParts(vals, avail, feats.to(values.dtype), lags)


__all__ = ["LAG_ERRORS", "LAG_FEATURES", "LagParts", "SMOOTH_WINDOWS", "best_lags", "copy_at", "lag_parts",
           "lead_steps", "level_errors", "smooth_parts"]
