"""The dense step grid of a packed batch and the in-context errors computed on it (the lag copy's backtests).

`step_grid` scatters the tokens of every (sample, spatial patch) group into a dense step series; the error
functions are FFT cross-correlations over it, summed over slots and channels in the frequency domain
(`lag_errors`: the in-context RMSE of "x[s] = x[s - l]" for every lag at once; `smooth_errors`: the same for a
causal moving mean), run sample by sample over each sample's own steps and channels (`sample_*`), since the dense
grid is mostly padding; `interpolate` / `interpolation_errors` serve the fill candidates (`fill.py`). Used by
`lags.py`.

The backtests that weight the candidates measure either error (`UniSTConfig.lag_error`): "mae", the mean |error|
(`pair_mae`, computed directly at the few lags and leads the candidates need: the field scores MAE, and on skewed
or intermittent series the RMSE rewards mean-like candidates an MAE-scored forecast should not pick), or "rmse"
(the FFT functions above, every lag at once). The periods themselves are always picked on the FFT errors of
every lag.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch


@dataclass
class StepGrid:
    """A packed batch as dense step series per (sample, spatial patch) group.

    x, m (G, T, P, C): normalised values and seen mask at step s = t_index * tau + dt of group g;
    group (L,) each token's group; T = (max t_index + 1) * tau."""

    x: torch.Tensor
    m: torch.Tensor
    group: torch.Tensor
    tau: int
    # per sample: (first group, last group + 1, its steps, its channels); a packed batch pads every sample to the
    # batch's longest steps and most channels, and the backtests run over each sample's own
    spans: tuple[tuple[int, int, int, int], ...] = ()

    def part(self, g0: int, g1: int, steps: int, channels: int | None = None) -> "StepGrid":
        """Groups g0..g1-1, their first `steps` steps and `channels` channels (one sample, without the batch's
        padding)."""
        return StepGrid(self.x[g0:g1, :steps, :, :channels], self.m[g0:g1, :steps, :, :channels], self.group,
                        self.tau)


def step_grid(values: torch.Tensor, seen: torch.Tensor, sample_id: torch.Tensor, space_index: torch.Tensor,
              t_index: torch.Tensor, tau: int, num_samples: int,
              counts: tuple[list[int], list[int]] | None = None, channels: list[int] | None = None) -> StepGrid:
    """Scatter the tokens (L, S, C) (time-major slots, S = tau * P) into `StepGrid` (one group per sample and
    spatial patch, numbered compactly). counts: the batch's exact per-sample (spatial, time) patch counts
    (`TokenBatch.patch_counts` of a patchified batch) when the caller has them: no host sync. channels: each
    sample's own channel count (default: all C), so its backtests skip the channels packing pads it with."""
    L, S, C = values.shape
    P = S // tau
    n_space = torch.zeros(num_samples, dtype=torch.long, device=values.device).scatter_reduce(
        0, sample_id, space_index + 1, "amax")  # (B,) spatial patches per sample
    n_time = torch.zeros(num_samples, dtype=torch.long, device=values.device).scatter_reduce(
        0, sample_id, t_index + 1, "amax")  # (B,) time patches per sample
    offset = torch.cumsum(n_space, 0) - n_space
    group = offset[sample_id] + space_index  # (L,)
    sizes = list(counts) if counts is not None else torch.stack([n_space, n_time]).tolist()  # else one host sync
    ends = list(itertools.accumulate(sizes[0]))
    chans = channels if channels is not None else [C] * len(sizes[0])
    spans = tuple((a - b, a, t * tau, c) for a, b, t, c in zip(ends, sizes[0], sizes[1], chans) if b)
    G, T = ends[-1], max(sizes[1])
    x = values.new_zeros(G, T, S, C)
    m = torch.zeros(G, T, S, C, dtype=torch.bool, device=values.device)
    x[group, t_index] = torch.where(seen, values, 0)
    m[group, t_index] = seen
    return StepGrid(x.view(G, T * tau, P, C), m.view(G, T * tau, P, C), group, tau, spans)


def spectrum(u: torch.Tensor, n: int) -> torch.Tensor:
    """rfft over the steps (dim 1) of a (G, T, ...) tensor, zero-padded to n -> (G, ..., n // 2 + 1): time moved
    last, so the transform runs over contiguous memory."""
    return torch.fft.rfft(u.movedim(1, -1), n=n, dim=-1)


def summed(spec: torch.Tensor, n: int, max_lag: int) -> torch.Tensor:
    """Cross-correlations from a cross-spectrum (G, ..., n // 2 + 1) of `spectrum`s, summed over its middle (slot,
    channel) dims -> (G, max_lag + 1): R(l) = sum_s u[s + l] v[s] from spectrum(u) * spectrum(v).conj().

    The inverse transform is linear, so summing the columns before it gives the summed cross-correlations with one
    inverse transform per group instead of one per column (P * C of them)."""
    return torch.fft.irfft(spec.flatten(1, -2).sum(1), n=n, dim=-1)[:, :max_lag + 1]


def lag_errors(grid: StepGrid, max_lag: int, cycles: float = 1.5) -> tuple[torch.Tensor, torch.Tensor]:
    """In-context RMSE of the lag-l copy for every group and l = 0..max_lag -> (rmse (G, max_lag + 1), valid).

    A lag is valid when it has seen pairs over at least max(tau, (cycles - 1) * l) steps, i.e. when the context
    holds it `cycles` times (a lag as long as the context has one or two pairs: its error says nothing, and the
    lowest of many such errors is luck); l = 0 is never valid. cycles = 2 is the rule of seasonal models (a
    season needs two cycles in the data); releases up to unist-tiny-5 used 1.5."""
    x, m = grid.x.float(), grid.m.float()
    G, T = x.shape[:2]
    n = 1 << (2 * T - 1).bit_length()
    fa, fb, fm = spectrum(x * m, n), spectrum(x * x * m, n), spectrum(m, n)  # 3 transforms, not 8
    # R(m x^2, m) + R(m, m x^2) - 2 R(m x, m x): the first two are conjugate spectra, so their sum is 2 Re(.)
    sse = summed(2 * (fb * fm.conj()).real - 2 * (fa * fa.conj()).real, n, max_lag).clamp(min=0)  # (G, l)
    pairs = summed((fm * fm.conj()).real, n, max_lag).round()
    per_step = (m.sum((2, 3)).sum(1) / (m.flatten(2).any(2).sum(1)).clamp(min=1)).clamp(min=1)  # (G,) cells/step
    lags = torch.arange(max_lag + 1, device=x.device, dtype=x.dtype)
    need = torch.maximum(torch.full_like(lags, grid.tau), lags * (cycles - 1))
    valid = (pairs / per_step[:, None] >= need) & (lags >= 1)
    rmse = (sse / pairs.clamp(min=1)).sqrt()
    return torch.where(valid, rmse, torch.full_like(rmse, float("inf"))).float(), valid


def differences(grid: StepGrid) -> StepGrid:
    """The first differences x[s] - x[s - 1] (seen where both steps are) as a `StepGrid` with the same spans."""
    x = torch.cat([torch.zeros_like(grid.x[:, :1]), grid.x[:, 1:] - grid.x[:, :-1]], 1)
    m = torch.cat([torch.zeros_like(grid.m[:, :1]), grid.m[:, 1:] & grid.m[:, :-1]], 1)
    return StepGrid(torch.where(m, x, 0), m, grid.group, grid.tau, grid.spans)


def sample_lag_errors(grid: StepGrid, max_lag: int, cycles: float = 1.5) -> torch.Tensor:
    """`lag_errors` sample by sample (each over its own steps, not the batch's longest) -> rmse (G, max_lag + 1)."""
    out = grid.x.new_full((grid.x.shape[0], max_lag + 1), float("inf"))
    for g0, g1, steps, c in grid.spans:
        if steps > 1:
            rmse, _ = lag_errors(grid.part(g0, g1, steps, c), min(max_lag, steps - 1), cycles)
            out[g0:g1, :rmse.shape[1]] = rmse
    return out


def moving_mean(grid: StepGrid, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal mean of the seen values over steps s - w + 1 .. s -> (y, has) (G, T, P, C); has: at least
    ceil(w / 2) of those w steps seen (a mean of one stray reading is not a level)."""
    x, m = grid.x.float(), grid.m.float()
    zero = torch.zeros_like(x[:, :1])
    cs = torch.cat([zero, torch.cumsum(x * m, 1)], 1)  # (G, T + 1, P, C)
    cm = torch.cat([zero, torch.cumsum(m, 1)], 1)
    T = x.shape[1]
    lo = (torch.arange(1, T + 1, device=x.device) - w).clamp(min=0)
    tot, cnt = cs[:, 1:] - cs[:, lo], cm[:, 1:] - cm[:, lo]
    has = cnt >= (w + 1) // 2
    return torch.where(has, tot / cnt.clamp(min=1), 0), has


def sample_moving_mean(grid: StepGrid, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`moving_mean` sample by sample, over each sample's own groups and steps: the dense grid is mostly padding
    (4-25 % filled on tiny's training batches), which the causal means need not run over. Steps past a sample's
    end read (0, False); nothing reads them."""
    y, has = torch.zeros_like(grid.x, dtype=torch.float32), torch.zeros_like(grid.m)
    for g0, g1, steps, c in grid.spans:
        y[g0:g1, :steps, :, :c], has[g0:g1, :steps, :, :c] = moving_mean(grid.part(g0, g1, steps, c), w)
    return y, has


def smooth_errors(grid: StepGrid, w: int, max_lead: int, mean: tuple[torch.Tensor, torch.Tensor] | None = None
                  ) -> torch.Tensor:
    """In-context RMSE of "x[s] = mean of the w seen steps up to s - d" for d = 0..max_lead -> (G, max_lead + 1)
    (inf where fewer than tau pairs). With w = 1 it is `lag_errors` of the values (persistence at lead d).
    mean: `moving_mean(grid, w)` when the caller has it already."""
    x, m = grid.x.float(), grid.m.float()
    y, my = mean if mean is not None else moving_mean(grid, w)
    my = my.float()
    G, T = x.shape[:2]
    n = 1 << (2 * T - 1).bit_length()
    f_xxm, f_my, f_m = spectrum(x * x * m, n), spectrum(my, n), spectrum(m, n)  # 6 transforms, not 8
    f_yymy, f_xm, f_ymy = spectrum(y * y * my, n), spectrum(x * m, n), spectrum(y * my, n)
    sse = summed(f_xxm * f_my.conj() + f_m * f_yymy.conj() - 2 * f_xm * f_ymy.conj(), n, max_lead).clamp(min=0)
    pairs = summed(f_m * f_my.conj(), n, max_lead).round()
    per_step = (m.sum((2, 3)).sum(1) / (m.flatten(2).any(2).sum(1)).clamp(min=1)).clamp(min=1)
    valid = pairs / per_step[:, None] >= grid.tau
    rmse = (sse / pairs.clamp(min=1)).sqrt()
    return torch.where(valid, rmse, torch.full_like(rmse, float("inf")))


def interpolate(grid: StepGrid) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Linear interpolation in time between the nearest seen steps before and after each step, column by column
    (the field's first imputation baseline) -> values, available (G, T, P, C) and the gap next - prev (G, T, P, C).

    Only seen cells enter; a step with no seen step on one side (the future of a forecast) has none. A seen step
    is interpolated from its neighbours, not itself."""
    x, m = grid.x, grid.m
    G, T = x.shape[:2]
    pos = torch.arange(T, device=x.device).view(1, T, *([1] * (x.dim() - 2)))
    at = torch.where(m, pos, -1)
    prev = torch.cat([torch.full_like(at[:, :1], -1), at.cummax(1).values[:, :-1]], 1)  # last seen step < s
    after = torch.where(m, pos, T).flip(1).cummin(1).values.flip(1)
    nxt = torch.cat([after[:, 1:], torch.full_like(after[:, :1], T)], 1)  # first seen step > s
    ok = (prev >= 0) & (nxt < T)
    lo, hi = prev.clamp(0, T - 1), nxt.clamp(0, T - 1)
    a, b = x.gather(1, lo), x.gather(1, hi)
    gap = (hi - lo).clamp(min=1)
    y = a + (b - a) * (pos - lo).to(x.dtype) / gap.to(x.dtype)
    return torch.where(ok, y, 0.0), ok, torch.where(ok, gap, 0)


def mean_error(e: torch.Tensor, n: torch.Tensor, error: str) -> torch.Tensor:
    """Errors e summed over dims 1.. -> their RMSE ("rmse") or MAE ("mae") over n (G,) entries; inf where n = 0."""
    tot = (e.abs() if error == "mae" else e.square()).flatten(1).sum(1)
    val = tot / n.clamp(min=1)
    val = val if error == "mae" else val.sqrt()
    return torch.where(n > 0, val, torch.full_like(val, float("inf")))


def interpolation_errors(grid: StepGrid, error: str = "rmse") -> torch.Tensor:
    """In-context RMSE (or MAE: `error`) of interpolating a seen step from its two seen neighbours,
    (x[s - 1] + x[s + 1]) / 2, per group -> (G,) (inf where no step has both neighbours seen)."""
    x, m = grid.x.float(), grid.m
    both = m[:, 1:-1] & m[:, :-2] & m[:, 2:]
    e = torch.where(both, x[:, 1:-1] - 0.5 * (x[:, :-2] + x[:, 2:]), 0.0)
    return mean_error(e, both.flatten(1).sum(1), error)


def pair_mae(x: torch.Tensor, m: torch.Tensor, y: torch.Tensor, my: torch.Tensor, lags: torch.Tensor,
             min_steps: torch.Tensor, chunk: int = 1 << 22) -> torch.Tensor:
    """In-context mean |x[s] - y[s - l]| over the steps where both are seen, at each group's own lags: x, m, y, my
    (G, T, P, C), lags (G, K) (< 0: none), min_steps (G, K): the steps of seen pairs a lag needs to count (per
    step: seen cells / cells seen per step, as in `lag_errors`) -> (G, K), inf where invalid.

    y = x gives the lag copy's error (`lag_errors` with MAE at K lags instead of RMSE at all); y = a causal mean
    the smoothed level's at lead l. Runs in column chunks of about `chunk` elements of (G, K, T, P, C)."""
    G, T, P, C = x.shape
    K = lags.shape[1]
    x, y = x.float(), y.float()
    per_step = (m.sum((2, 3)).sum(1) / (m.flatten(2).any(2).sum(1)).clamp(min=1)).clamp(min=1).float()  # (G,)
    s = torch.arange(T, device=x.device)
    yf, mf = y.reshape(G * T, P, C), my.reshape(G * T, P, C)
    out = []
    step = max(1, chunk // max(1, G * T * P * C))
    for k0 in range(0, K, step):
        lag = lags[:, k0:k0 + step]  # (G, k)
        src = s[None, None] - lag[:, :, None]  # (G, k, T)
        ok = (src >= 0) & (lag[:, :, None] >= 0)
        flat = (torch.arange(G, device=x.device)[:, None, None] * T + src.clamp(0, T - 1)).reshape(-1)
        k = lag.shape[1]
        past = yf.index_select(0, flat).view(G, k, T, P, C)
        both = mf.index_select(0, flat).view(G, k, T, P, C) & ok[..., None, None] & m[:, None]
        e = torch.where(both, (x[:, None] - past).abs(), 0).sum((2, 3, 4))
        n = both.sum((2, 3, 4)).float()
        valid = (n / per_step[:, None] >= min_steps[:, k0:k0 + step]) & (lag >= 0)
        out.append(torch.where(valid, e / n.clamp(min=1), float("inf")))
    return torch.cat(out, 1) if out else x.new_zeros(G, 0)


def shared_mae(x: torch.Tensor, m: torch.Tensor, y: torch.Tensor, my: torch.Tensor, lags: list[int],
               min_steps: list[float]) -> torch.Tensor:
    """`pair_mae` where every group has the same lags (D,) (>= 0): one slice per lag instead of a gather -> (G, D)."""
    G, T = x.shape[:2]
    x, y = x.float(), y.float()
    per_step = (m.sum((2, 3)).sum(1) / (m.flatten(2).any(2).sum(1)).clamp(min=1)).clamp(min=1).float()  # (G,)
    out = x.new_full((G, len(lags)), float("inf"))
    cols = [j for j, lag in enumerate(lags) if lag < T]
    if not cols:
        return out
    es, ns = [], []
    for j in cols:  # per lead only the big reductions; the (G,) bookkeeping runs once for all leads below
        lag = lags[j]
        both = m[:, lag:] & my[:, :T - lag]
        es.append(torch.where(both, (x[:, lag:] - y[:, :T - lag]).abs(), 0).sum((1, 2, 3)))
        ns.append(both.sum((1, 2, 3)))
    e, n = torch.stack(es, 1), torch.stack(ns, 1).float()  # (G, D')
    need = torch.tensor([min_steps[j] for j in cols], device=x.device)
    out[:, cols] = torch.where(n / per_step[:, None] >= need, e / n.clamp(min=1), float("inf"))
    return out


def lead_mae(grid: StepGrid, leads: list[int]) -> torch.Tensor:
    """`lag_mae` at the same lags (D,) for every group (the leads of `lags.lead_steps`) -> (G, D), sample by
    sample; slices instead of gathers."""
    need = [max(float(grid.tau), d / 2) for d in leads]
    out = grid.x.new_full((grid.x.shape[0], len(leads)), float("inf"), dtype=torch.float32)
    for g0, g1, steps, c in grid.spans or ((0, grid.x.shape[0], grid.x.shape[1], grid.x.shape[3]),):
        if steps > 1:
            p = grid.part(g0, g1, steps, c)
            out[g0:g1] = shared_mae(p.x, p.m, p.x, p.m, leads, need)
    return out


def lag_mae(grid: StepGrid, lags: torch.Tensor) -> torch.Tensor:
    """In-context MAE of the lag-l copy "x[s] = x[s - l]" at each group's lags (G, K) (0: none) -> (G, K), inf where
    invalid (`lag_errors`' rule: seen pairs over at least max(tau, l / 2) steps), sample by sample over each
    sample's own steps and channels."""
    need = torch.maximum(torch.full_like(lags, grid.tau, dtype=torch.float32), lags.float() / 2)
    out = grid.x.new_full(lags.shape, float("inf"), dtype=torch.float32)
    for g0, g1, steps, c in grid.spans or ((0, grid.x.shape[0], grid.x.shape[1], grid.x.shape[3]),):
        if steps > 1:
            p = grid.part(g0, g1, steps, c)
            out[g0:g1] = pair_mae(p.x, p.m, p.x, p.m, torch.where(lags[g0:g1] > 0, lags[g0:g1], -1), need[g0:g1])
    return out


def sample_smooth_mae(grid: StepGrid, leads: list[int], mean: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """In-context MAE of "x[s] = the causal mean up to s - d" at leads d (D,) -> (G, D), inf where fewer than tau
    steps of pairs (`smooth_errors`' rule); mean: `sample_moving_mean`. Sample by sample."""
    G, D = grid.x.shape[0], len(leads)
    out = grid.x.new_full((G, D), float("inf"), dtype=torch.float32)
    y, has = mean
    for g0, g1, steps, c in grid.spans or ((0, G, grid.x.shape[1], grid.x.shape[3]),):
        if steps > 1:
            p = grid.part(g0, g1, steps, c)
            out[g0:g1] = shared_mae(p.x, p.m, y[g0:g1, :steps, :, :c], has[g0:g1, :steps, :, :c], leads,
                                    [float(grid.tau)] * D)
    return out


def sample_smooth_errors(grid: StepGrid, w: int, max_lead: int, mean: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """`smooth_errors` sample by sample -> (G, max_lead + 1); mean: `sample_moving_mean(grid, w)` (each sample's own
    causal moving mean over its first `steps` steps)."""
    out = grid.x.new_full((grid.x.shape[0], max_lead + 1), float("inf")).float()
    y, has = mean
    for g0, g1, steps, c in grid.spans:
        if steps > 1:
            part = (y[g0:g1, :steps, :, :c], has[g0:g1, :steps, :, :c])
            e = smooth_errors(grid.part(g0, g1, steps, c), w, min(max_lead, steps - 1), part)
            out[g0:g1, :e.shape[1]] = e
    return out


__all__ = ["StepGrid", "differences", "interpolate", "interpolation_errors", "lag_errors", "lag_mae", "mean_error",
           "lead_mae", "moving_mean", "pair_mae", "sample_lag_errors", "sample_moving_mean", "sample_smooth_errors",
           "sample_smooth_mae", "shared_mae", "smooth_errors", "spectrum", "step_grid", "summed"]
