"""The dense step grid of a packed batch and the in-context errors computed on it (the lag copy's backtests).

`step_grid` scatters the tokens of every (sample, spatial patch) group into a dense step series; the error
functions are FFT cross-correlations over it (`lag_errors`: the in-context RMSE of "x[s] = x[s - l]" for every
lag at once; `smooth_errors`: the same for a causal moving mean), run sample by sample over each sample's own
steps (`sample_*`), since the dense grid is mostly padding. Used by `lags.py`.
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
    spans: tuple[tuple[int, int, int], ...] = ()  # per sample: (first group, last group + 1, its steps)

    def part(self, g0: int, g1: int, steps: int) -> "StepGrid":
        """Groups g0..g1-1 and their first `steps` steps (one sample, without the batch's time padding)."""
        return StepGrid(self.x[g0:g1, :steps], self.m[g0:g1, :steps], self.group, self.tau)


def step_grid(values: torch.Tensor, seen: torch.Tensor, sample_id: torch.Tensor, space_index: torch.Tensor,
              t_index: torch.Tensor, tau: int, num_samples: int,
              counts: tuple[list[int], list[int]] | None = None) -> StepGrid:
    """Scatter the tokens (L, S, C) (time-major slots, S = tau * P) into `StepGrid` (one group per sample and
    spatial patch, numbered compactly). counts: the batch's exact per-sample (spatial, time) patch counts
    (`TokenBatch.patch_counts` of a patchified batch) when the caller has them: no host sync."""
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
    spans = tuple((a - b, a, t * tau) for a, b, t in zip(ends, sizes[0], sizes[1]) if b)
    G, T = ends[-1], max(sizes[1])
    x = values.new_zeros(G, T, S, C)
    m = torch.zeros(G, T, S, C, dtype=torch.bool, device=values.device)
    x[group, t_index] = torch.where(seen, values, torch.zeros_like(values))
    m[group, t_index] = seen
    return StepGrid(x.view(G, T * tau, P, C), m.view(G, T * tau, P, C), group, tau, spans)


def xcorr(fu: torch.Tensor, fv: torch.Tensor, n: int, max_lag: int) -> torch.Tensor:
    """R(l) = sum_s u[s + l] v[s] for l = 0..max_lag over dim 1, from the spectra fu, fv = `spectrum(u / v, n)` of
    (G, T, ...) tensors -> (G, max_lag + 1, ...). Callers transform each distinct input once."""
    return torch.fft.irfft(fu * fv.conj(), n=n, dim=1)[:, :max_lag + 1]


def spectrum(u: torch.Tensor, n: int) -> torch.Tensor:
    return torch.fft.rfft(u, n=n, dim=1)


def lag_errors(grid: StepGrid, max_lag: int) -> tuple[torch.Tensor, torch.Tensor]:
    """In-context RMSE of the lag-l copy for every group and l = 0..max_lag -> (rmse (G, max_lag + 1), valid).

    A lag is valid when it has seen pairs over at least max(tau, l / 2) steps (a lag as long as the
    context has one or two pairs: its error says nothing); l = 0 is never valid."""
    x, m = grid.x.float(), grid.m.float()
    G, T = x.shape[:2]
    n = 1 << (2 * T - 1).bit_length()
    fa, fb, fm = spectrum(x * m, n), spectrum(x * x * m, n), spectrum(m, n)  # 3 transforms, not 8
    sse = xcorr(fb, fm, n, max_lag) + xcorr(fm, fb, n, max_lag) - 2 * xcorr(fa, fa, n, max_lag)  # (G, l, P, C)
    pairs = xcorr(fm, fm, n, max_lag)
    sse, pairs = sse.clamp(min=0).sum((2, 3)), pairs.sum((2, 3)).round()  # (G, l)
    per_step = (m.sum((2, 3)).sum(1) / (m.flatten(2).any(2).sum(1)).clamp(min=1)).clamp(min=1)  # (G,) cells/step
    lags = torch.arange(max_lag + 1, device=x.device, dtype=x.dtype)
    need = torch.maximum(torch.full_like(lags, grid.tau), lags / 2)
    valid = (pairs / per_step[:, None] >= need) & (lags >= 1)
    rmse = (sse / pairs.clamp(min=1)).sqrt()
    return torch.where(valid, rmse, torch.full_like(rmse, float("inf"))).float(), valid


def differences(grid: StepGrid) -> StepGrid:
    """The first differences x[s] - x[s - 1] (seen where both steps are) as a `StepGrid` with the same spans."""
    x = torch.cat([torch.zeros_like(grid.x[:, :1]), grid.x[:, 1:] - grid.x[:, :-1]], 1)
    m = torch.cat([torch.zeros_like(grid.m[:, :1]), grid.m[:, 1:] & grid.m[:, :-1]], 1)
    return StepGrid(torch.where(m, x, torch.zeros_like(x)), m, grid.group, grid.tau, grid.spans)


def sample_lag_errors(grid: StepGrid, max_lag: int) -> torch.Tensor:
    """`lag_errors` sample by sample (each over its own steps, not the batch's longest) -> rmse (G, max_lag + 1)."""
    out = grid.x.new_full((grid.x.shape[0], max_lag + 1), float("inf"))
    for g0, g1, steps in grid.spans:
        if steps > 1:
            rmse, _ = lag_errors(grid.part(g0, g1, steps), min(max_lag, steps - 1))
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
    return torch.where(has, tot / cnt.clamp(min=1), torch.zeros_like(tot)), has


def sample_moving_mean(grid: StepGrid, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`moving_mean` sample by sample, over each sample's own groups and steps: the dense grid is mostly padding
    (4-25 % filled on tiny's training batches), which the causal means need not run over. Steps past a sample's
    end read (0, False); nothing reads them."""
    y, has = torch.zeros_like(grid.x, dtype=torch.float32), torch.zeros_like(grid.m)
    for g0, g1, steps in grid.spans:
        y[g0:g1, :steps], has[g0:g1, :steps] = moving_mean(grid.part(g0, g1, steps), w)
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
    sse = xcorr(f_xxm, f_my, n, max_lead) + xcorr(f_m, f_yymy, n, max_lead) - 2 * xcorr(f_xm, f_ymy, n, max_lead)
    pairs = xcorr(f_m, f_my, n, max_lead)
    sse, pairs = sse.clamp(min=0).sum((2, 3)), pairs.sum((2, 3)).round()
    per_step = (m.sum((2, 3)).sum(1) / (m.flatten(2).any(2).sum(1)).clamp(min=1)).clamp(min=1)
    valid = pairs / per_step[:, None] >= grid.tau
    rmse = (sse / pairs.clamp(min=1)).sqrt()
    return torch.where(valid, rmse, torch.full_like(rmse, float("inf")))


def sample_smooth_errors(grid: StepGrid, w: int, max_lead: int, mean: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """`smooth_errors` sample by sample -> (G, max_lead + 1); mean: `sample_moving_mean(grid, w)` (each sample's own
    causal moving mean over its first `steps` steps)."""
    out = grid.x.new_full((grid.x.shape[0], max_lead + 1), float("inf")).float()
    y, has = mean
    for g0, g1, steps in grid.spans:
        if steps > 1:
            part = (y[g0:g1, :steps], has[g0:g1, :steps])
            e = smooth_errors(grid.part(g0, g1, steps), w, min(max_lead, steps - 1), part)
            out[g0:g1, :e.shape[1]] = e
    return out


__all__ = ["StepGrid", "differences", "lag_errors", "moving_mean", "sample_lag_errors", "sample_moving_mean",
           "sample_smooth_errors", "smooth_errors", "spectrum", "step_grid", "xcorr"]
