"""UniST as a forecaster over a set of test windows: batched, plus a temporal-only variant.

`unist_forecast` sends the context windows through `Forecaster.forecast_batch` in chunks of at most
`batch_size` windows and `MAX_CELLS` values (one packed pass each). On CPU this amortises the
per-call overhead: 1.2-1.5x with one thread, far more with two threads on a busy machine (OpenMP
synchronisation per op dominates small calls); the cell budget keeps big grids (ERA5: 78k values
per window) out of the memory-bound regime, where 32 windows per pass were 2x slower per window
than 8. The model normalises every context window by itself (instance normalisation with the
context's own observed mean/std), so nothing from the target's training split is read.

`rule_forecast` is the ablation "what does the network add?": the lag copy's candidates weighted by
their in-context backtest alone (policy correction="none": no head residual, no decoder weighting).
`network_forecast` is the ablation "what does the self-check do?": the network's correction of the
rule trusted as trained, everywhere (policy correction="full"). `ensemble_forecast` is the baseline
"the hand-built four-candidate ensemble" (`ensemble.py`).

`temporal_forecast` is the ablation "does space help?": every location is forecast on its own, as a
one-node graph (graph data) or a 1x1 grid (grid data), so the model sees only that location's past.
It costs ~n_space times more tokens, so it runs on a seeded sample of locations; the other
locations are NaN and the runner scores it on that sample only (next to the full model on the same
locations).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from unist.data import STSeries
from unist.forecast import Forecaster

from .ensemble import ClassicalEnsemble
from .errors import EvalError
from .windows import EvalWindows


MAX_CELLS = 1 << 19  # values (steps x locations x channels, horizon included) per forward pass


def _chunks(windows: list[STSeries], horizon: int, size: int, max_cells: int = MAX_CELLS):
    """Consecutive groups of at most `size` windows and `max_cells` values (a group has >= 1 window)."""
    group, cells = [], 0
    for w in windows:
        c = (w.num_steps + horizon) * w.num_nodes * w.num_channels
        if group and (len(group) == size or cells + c > max_cells):
            yield group
            group, cells = [], 0
        group.append(w)
        cells += c
    if group:
        yield group


def forecast_windows(model: Forecaster | ClassicalEnsemble, windows: list[STSeries], horizon: int, batch_size: int,
                     num_samples: int = 0) -> np.ndarray:
    """Stacked forecasts of `windows`: [B, H, *sp, C], or [m, B, H, *sp, C] with num_samples = m > 0, under the
    forecaster's own policy. A window without any observed value has nothing to forecast from: it is not sent
    to the model and its forecast is NaN, so one outage does not stop the evaluation (the runner counts such
    windows as skipped)."""
    if batch_size < 1:
        raise EvalError(f"batch_size must be >= 1, got {batch_size}")
    usable = [i for i, w in enumerate(windows) if w.mask.any()]
    preds = [f for chunk in _chunks([windows[i] for i in usable], horizon, batch_size)
             for f in model.forecast_batch(chunk, horizon, num_samples)]
    lead = (num_samples, horizon) if num_samples else (horizon,)
    out = [np.full(lead + w.values.shape[1:], np.nan, np.float32) for w in windows]
    for i, f in zip(usable, preds):
        out[i] = f
    stacked = np.stack(out).astype(np.float32)
    return np.moveaxis(stacked, 1, 0) if num_samples else stacked


def unist_forecast(model: Forecaster, windows: EvalWindows, horizon: int, batch_size: int = 32,
                   num_samples: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """(point [B, H, *sp, C], samples [m, B, H, *sp, C] or None) on every test window."""
    point = forecast_windows(model, windows.contexts, horizon, batch_size)
    samples = forecast_windows(model, windows.contexts, horizon, batch_size, num_samples) if num_samples else None
    return point, samples


def rule_forecast(model: Forecaster, windows: EvalWindows, horizon: int, batch_size: int = 32) -> np.ndarray:
    """[B, H, *sp, C] from the lag copy's backtest rule alone (policy correction="none")."""
    return forecast_windows(model.with_policy(correction="none"), windows.contexts, horizon, batch_size)


def network_forecast(model: Forecaster, windows: EvalWindows, horizon: int, batch_size: int = 32) -> np.ndarray:
    """[B, H, *sp, C] with the network's correction trusted as trained (policy correction="full")."""
    return forecast_windows(model.with_policy(correction="full"), windows.contexts, horizon, batch_size)


def has_self_check(model: Forecaster) -> bool:
    """Whether `model` scales its network's correction by an in-context backtest (policy "checked")."""
    return model.policy.correction == "checked"


def has_lag_copy(model: Forecaster) -> bool:
    """Whether `model` forecasts with the lag copy (`UniSTConfig.lag_candidates` > 0)."""
    return model.model.lag_scorer is not None


def ensemble_forecast(patch, windows: EvalWindows, horizon: int, batch_size: int = 32) -> np.ndarray:
    """[B, H, *sp, C] of the four-candidate classical ensemble with the model's patching (`ensemble.py`)."""
    return forecast_windows(ClassicalEnsemble(patch), windows.contexts, horizon, batch_size)


def location_series(window: STSeries, index: int) -> STSeries:
    """Location `index` (flat spatial index) of `window` alone: a 1-node graph or a 1x1 grid, no edges."""
    if window.layout == "graph":
        sl = (slice(None), slice(index, index + 1))
        coords = None if window.coords is None else window.coords[index:index + 1]
    else:
        r, c = divmod(index, window.spatial_shape[1])
        sl = (slice(None), slice(r, r + 1), slice(c, c + 1))
        coords = None if window.coords is None else window.coords[r:r + 1, c:c + 1]
    return replace(window, values=window.values[sl], mask=window.mask[sl], coords=coords, edge_index=None,
                   edge_weight=None, meta=dict(window.meta))


def sample_locations(num_locations: int, max_locations: int, seed: int = 0) -> np.ndarray:
    """Sorted flat indices of at most `max_locations` locations (all of them when there are few enough)."""
    if num_locations <= max_locations:
        return np.arange(num_locations)
    return np.sort(np.random.default_rng(seed).choice(num_locations, max_locations, replace=False))


# One-location samples have a handful of tokens each; with ~100 per pass the CPU attention (SDPA) takes its
# single block-diagonal call instead of one call per sample, ~5x faster than 512 per pass (measured).
TEMPORAL_BATCH = 96


def temporal_forecast(model, windows: EvalWindows, horizon: int, locations: np.ndarray,
                      batch_size: int = TEMPORAL_BATCH) -> np.ndarray:
    """[B, H, *sp, C] forecasts from each location's own past (NaN outside `locations`)."""
    singles = [location_series(w, int(i)) for w in windows.contexts for i in locations]  # window-major
    flat = forecast_windows(model, singles, horizon, batch_size)                        # (B * n, H, 1[, 1], C)
    b, n = windows.num_windows, len(locations)
    flat = flat.reshape(b, n, horizon, -1)                                               # (B, n, H, C)
    shape = windows.target.shape
    out = np.full((b, horizon, int(np.prod(shape[2:-1])), shape[-1]), np.nan, np.float32)
    out[:, :, locations] = flat.transpose(0, 2, 1, 3)
    return out.reshape(shape)


__all__ = ["ensemble_forecast", "forecast_windows", "has_lag_copy", "has_self_check", "location_series",
           "network_forecast", "rule_forecast", "sample_locations", "temporal_forecast", "unist_forecast"]
