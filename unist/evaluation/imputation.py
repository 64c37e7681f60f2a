"""Zero-shot imputation: `UniST.impute` against classical fillers, scored on artificially hidden points.

Windows of `window` steps are cut from one split (the last 20 % for "test", `split_series`). In each,
observed values are hidden in two seeded scenarios:
  points  a random `point_rate` of the observed values, scattered (random missingness);
  block   one contiguous span of ~25 % of the window at ~25 % of the locations, every channel (sensor outages).
Every method sees only the window with those values removed (mask False, NaN: `STSeries` drops the values
themselves, so no method can read them) and is scored with MAE / RMSE on the hidden points:
  unist         model.impute(window) (zero-shot: the window alone, normalised by the model itself)
  linear_time   linear interpolation in time per location and channel (ends: nearest observation)
  spatial_mean  mean over the locations observed at that step and channel
  knn_mean      mean of the k=5 nearest locations observed at that step (needs coordinates; grids without
                coordinates use their row / column index; plain Euclidean distance on the coordinates)
  locf          last observation carried forward (before the first one: the next one)
Fallbacks, so every method fills every point: no observation at a location -> spatial mean; no location
observed at a step -> the location's window mean -> the window's channel mean -> the window's mean.
Under the data type's `zero_is_missing` (traffic speed) an observed 0 is a sensor failure: neither shown nor scored.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from unist.data import DataError, STSeries, split_series

from .errors import EvalError
from .metrics import point_metrics
from .protocols import protocol_for

BLOCK_TIME = 0.25       # a block spans this fraction of the window ...
BLOCK_LOCATIONS = 0.25  # ... at this fraction of the locations
KNN = 5
MIN_WINDOW, MAX_WINDOW = 16, 288
DAY_MINUTES = 1440.0
SCENARIOS = ("points", "block")


def default_window(series: STSeries) -> int:
    """Two days for sub-daily data, else the data type's forecast context; at most 288 and at least 16 steps."""
    dt = series.interval_minutes if series.layout != "video" else None
    steps = round(2 * DAY_MINUTES / dt) if dt and dt < DAY_MINUTES else protocol_for(series).context
    return int(min(MAX_WINDOW, max(MIN_WINDOW, steps)))


# ------------------------------------------------------------------------------------------- hiding
def hide_points(observed: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """A random `rate` of the True cells of `observed` (at least one when there is one), as a bool mask."""
    idx = np.flatnonzero(observed)
    hidden = np.zeros(observed.size, bool)
    if idx.size:
        hidden[rng.choice(idx, max(1, round(rate * idx.size)), replace=False)] = True
    return hidden.reshape(observed.shape)


def hide_block(observed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random span of ~BLOCK_TIME of the steps at ~BLOCK_LOCATIONS of the locations (all channels), where
    observed. `observed` is [T, N, C]."""
    t, n = observed.shape[:2]
    span, locs = max(1, round(BLOCK_TIME * t)), max(1, round(BLOCK_LOCATIONS * n))
    start = int(rng.integers(0, t - span + 1))
    hidden = np.zeros_like(observed)
    hidden[start:start + span, rng.choice(n, locs, replace=False)] = True
    return hidden & observed


# ------------------------------------------------------------------------------------------- baselines
# All take values [T, N, C] (NaN where missing) and mask [T, N, C] and return a filled float32 [T, N, C].
def spatial_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over the observed locations per step and channel; else the location's, the channel's, the window's mean."""
    v = np.where(mask, values, 0.0).astype(np.float64)

    def mean(axis) -> np.ndarray:
        n = mask.sum(axis, keepdims=True)
        return np.where(n > 0, v.sum(axis, keepdims=True) / np.maximum(n, 1), np.nan)

    out = np.broadcast_to(mean(1), values.shape)
    for fallback in (mean(0), mean((0, 1)), mean((0, 1, 2))):
        out = np.where(np.isnan(out), fallback, out)
    return out.astype(np.float32)


def _neighbours_in_time(values: np.ndarray, mask: np.ndarray):
    """(previous, next) observed value and step per cell (NaN / -1 / T where there is none)."""
    t = values.shape[0]
    steps = np.arange(t).reshape((t,) + (1,) * (values.ndim - 1))
    prev = np.maximum.accumulate(np.where(mask, steps, -1), axis=0)
    nxt = np.flip(np.minimum.accumulate(np.flip(np.where(mask, steps, t), 0), axis=0), 0)
    take = lambda i: np.take_along_axis(values, np.clip(i, 0, t - 1), axis=0)  # noqa: E731
    return (np.where(prev >= 0, take(prev), np.nan), prev, np.where(nxt < t, take(nxt), np.nan), nxt,
            np.broadcast_to(steps, values.shape))


def linear_time(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Linear interpolation in time per location and channel; ends: the nearest observation; none: spatial mean."""
    vp, ip, vn, inx, t = _neighbours_in_time(values, mask)
    frac = (t - ip) / np.maximum(inx - ip, 1)
    out = np.where(np.isnan(vp), vn, np.where(np.isnan(vn), vp, vp + (vn - vp) * frac))
    return np.where(np.isnan(out), spatial_mean(values, mask), out).astype(np.float32)


def locf(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Last observation carried forward; before the first, the next observation; none: spatial mean."""
    vp, _, vn, _, _ = _neighbours_in_time(values, mask)
    out = np.where(np.isnan(vp), vn, vp)
    return np.where(np.isnan(out), spatial_mean(values, mask), out).astype(np.float32)


def location_points(series: STSeries) -> np.ndarray | None:
    """[N, 2] positions for the k-NN mean: the coordinates, a grid's row / column index, None for a bare graph."""
    if series.coords is not None:
        return series.coords.reshape(-1, 2)
    if series.layout == "graph":
        return None
    h, w = series.spatial_shape
    return np.stack(np.meshgrid(np.arange(h), np.arange(w), indexing="ij"), -1).reshape(-1, 2).astype(np.float64)


def knn_candidates(points: np.ndarray, k: int = KNN) -> np.ndarray:
    """[N, K] the nearest locations of each one, nearest first (itself included; K = min(N, 8 k) so that k
    observed ones are usually among them)."""
    return cKDTree(points).query(points, k=min(len(points), 8 * k))[1].reshape(len(points), -1)


def knn_mean(values: np.ndarray, mask: np.ndarray, candidates: np.ndarray, k: int = KNN) -> np.ndarray:
    """Mean of the k nearest locations observed at that step and channel (among `candidates`); else spatial mean."""
    t, n, c = values.shape
    out = np.empty(values.shape, np.float64)
    chunk = max(1, 4_000_000 // candidates.size // c)  # steps per pass, to bound memory on large grids
    for lo in range(0, t, chunk):
        m = mask[lo:lo + chunk][:, candidates]                         # (t', N, K, C)
        use = m & (np.cumsum(m, axis=2) <= k)
        v = np.where(use, values[lo:lo + chunk][:, candidates], 0.0)
        cnt = use.sum(2)
        out[lo:lo + chunk] = np.where(cnt > 0, v.sum(2) / np.maximum(cnt, 1), np.nan)
    return np.where(np.isnan(out), spatial_mean(values, mask), out).astype(np.float32)


# ------------------------------------------------------------------------------------------- one window
def impute_all(model, window: STSeries, hidden: np.ndarray, candidates: np.ndarray | None = None,
               seconds: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """Every method's filled window (shape of window.values) with the `hidden` cells removed from its input.

    The visible window is a new `STSeries` with mask & ~hidden, whose validation replaces every unobserved
    value by NaN, so no method can read a hidden value. `seconds` (if given) accumulates each method's time."""
    if hidden.shape != window.mask.shape:
        raise EvalError(f"hidden mask {hidden.shape} must have the window's shape {window.mask.shape}")
    visible = replace(window, mask=window.mask & ~hidden, meta=dict(window.meta))
    t, c = visible.num_steps, visible.num_channels
    v, m = visible.values.reshape(t, -1, c), visible.mask.reshape(t, -1, c)
    methods = {"unist": lambda: model.impute(visible).values.reshape(t, -1, c),
               "linear_time": lambda: linear_time(v, m), "spatial_mean": lambda: spatial_mean(v, m),
               "knn_mean": lambda: knn_mean(v, m, candidates), "locf": lambda: locf(v, m)}
    if candidates is None:
        del methods["knn_mean"]
    out = {}
    for name, fn in methods.items():
        t0 = time.perf_counter()
        out[name] = np.asarray(fn(), np.float32).reshape(window.values.shape)
        if seconds is not None:
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t0
    return out


def window_starts(first: int, steps: int, window: int, max_windows: int) -> np.ndarray:
    """Up to `max_windows` evenly spaced starts of `window`-step windows inside [first, first + steps)."""
    available = steps - window + 1
    return first + np.unique(np.linspace(0, available - 1, min(max_windows, available)).round().astype(int))


def evaluate_imputation(model, series: STSeries, *, split: str = "test", window: int | None = None,
                        max_windows: int = 16, point_rate: float = 0.2, block: bool = True,
                        seed: int = 0) -> dict[str, Any]:
    """Score `model.impute` and the baselines on the hidden points of windows of `series`' `split`.

    Returns {"dataset", "split", "window", "windows": {count, available, starts, skipped}, "settings",
    "scenarios": {name: {"observed", "hidden", "scored", "methods": {method: {mae, rmse, seconds,
    unpredicted}}}}}. Windows may overlap when the split holds fewer than `max_windows` of them."""
    if series.layout == "video":
        raise EvalError(f"series {series.name!r} is a video: imputation is evaluated on grids and graphs only")
    if split not in ("test", "val"):
        raise EvalError(f"split={split!r}: use 'test' (the last 20 %, reporting) or 'val' (60-80 %, model selection)")
    if not 0.0 < point_rate < 1.0:
        raise EvalError(f"point_rate={point_rate}: give a fraction of the observed values in (0, 1), e.g. 0.2")
    if max_windows < 1:
        raise EvalError(f"max_windows={max_windows}: give at least 1")
    part = split_series(series)[split]
    size = min(default_window(series), part.num_steps) if window is None else window
    if size < 2 or size > part.num_steps:
        raise DataError(f"series {series.name!r}: window {size} does not fit its {split} split of {part.num_steps} "
                        f"steps; give --window between 2 and {part.num_steps}")
    limit = getattr(getattr(model, "config", None), "max_channels", None)
    if limit is not None and series.num_channels > limit:
        raise EvalError(f"series {series.name!r} has {series.num_channels} channels, the model takes at most {limit}: "
                        f"evaluate a subset, e.g. save data[..., :{limit}] with unist.data.save_npz")
    zero_missing = protocol_for(series).zero_is_missing
    points = location_points(series)
    candidates = None if points is None else knn_candidates(points)
    first = int(part.meta["split_start"])
    starts = window_starts(first, part.num_steps, size, max_windows)
    names = list(SCENARIOS if block else SCENARIOS[:1])
    preds = {s: [] for s in names}
    truth, hid, seconds, used = [], {s: [] for s in names}, {s: {} for s in names}, []
    for i, start in enumerate(starts):
        win = series.slice_time(int(start), int(start) + size)
        if zero_missing:
            win = replace(win, mask=win.mask & (win.values != 0), meta=dict(win.meta))
        if not win.mask.any():
            continue
        used.append(int(start))
        truth.append(win.values)
        obs = win.mask.reshape(size, -1, series.num_channels)
        for j, scen in enumerate(names):
            rng = np.random.default_rng([seed, i, j])
            h = hide_points(obs, point_rate, rng) if scen == "points" else hide_block(obs, rng)
            if not (obs & ~h).any():
                h = np.zeros_like(h)  # nothing would be left to impute from
            hid[scen].append(h.reshape(win.mask.shape))
            preds[scen].append(impute_all(model, win, hid[scen][-1], candidates, seconds[scen]))
    if not used:
        raise DataError(f"series {series.name!r}: no {split} window of {size} steps has an observed value")
    y = np.stack(truth)
    scenarios = {s: _score(y, np.stack(hid[s]), preds[s], seconds[s]) for s in names}
    return {"dataset": {"name": series.name, "layout": series.layout, "domain": series.domain,
                        "shape": list(series.values.shape), "interval_minutes": series.interval_minutes},
            "split": {"name": split, "start": first, "steps": part.num_steps}, "window": size,
            "windows": {"count": len(used), "available": part.num_steps - size + 1, "starts": used,
                        "skipped": len(starts) - len(used)},
            "settings": {"point_rate": point_rate, "block": block, "block_time": BLOCK_TIME,
                         "block_locations": BLOCK_LOCATIONS, "knn": KNN if candidates is not None else None,
                         "zero_is_missing": zero_missing, "seed": seed, "max_windows": max_windows},
            "scenarios": scenarios}


def _score(y: np.ndarray, hidden: np.ndarray, preds: list[dict[str, np.ndarray]],
           seconds: dict[str, float]) -> dict[str, Any]:
    """MAE / RMSE of every method on the hidden points that all of them filled with a finite value."""
    stack = {name: np.stack([p[name] for p in preds]) for name in preds[0]}
    scored = hidden.copy()
    for pred in stack.values():
        scored &= np.isfinite(pred)
    methods = {}
    for name, pred in stack.items():
        metrics = point_metrics(pred, y, scored, mape_min=None)
        methods[name] = {"mae": metrics["mae"]["avg"], "rmse": metrics["rmse"]["avg"],
                         "seconds": round(seconds[name], 3), "unpredicted": int((hidden & ~np.isfinite(pred)).sum())}
    return {"hidden": int(hidden.sum()), "scored": int(scored.sum()), "methods": methods}


def markdown(results: dict[str, Any]) -> str:
    """One table per scenario (rows = datasets, columns = methods, MAE (RMSE)) and one of seconds."""
    ck = results["checkpoint"]
    done = [r for r in results["results"] if "scenarios" in r]
    lines = [f"# unist imputation: {ck['source']}" + (" (RANDOM INIT)" if ck["random_init"] else ""), ""]
    methods = list(dict.fromkeys(m for r in done for s in r["scenarios"].values() for m in s["methods"]))
    fmt = lambda x: "-" if x is None else f"{x:.4g}"  # noqa: E731
    for scen in SCENARIOS:
        rows = [r for r in done if scen in r["scenarios"]]
        if not rows:
            continue
        lines += [f"## {scen}: MAE (RMSE) on the hidden points", "",
                  "| dataset | windows x steps | scored | " + " | ".join(methods) + " |",
                  "|---" * (len(methods) + 3) + "|"]
        for r in rows:
            s = r["scenarios"][scen]
            cells = [f"{fmt(s['methods'][m]['mae'])} ({fmt(s['methods'][m]['rmse'])})" if m in s["methods"] else "n/a"
                     for m in methods]
            flag = " CONTAMINATED" if r.get("contaminated") else ""
            lines.append(f"| {r['source']}{flag} | {r['windows']['count']} x {r['window']} | {s['scored']} | "
                         + " | ".join(cells) + " |")
        lines.append("")
    if done:
        lines += ["## seconds (all scenarios)", "", "| dataset | " + " | ".join(methods) + " |",
                  "|---" * (len(methods) + 1) + "|"]
        for r in done:
            secs = [sum(s["methods"].get(m, {}).get("seconds", 0.0) for s in r["scenarios"].values()) for m in methods]
            lines.append(f"| {r['source']} | " + " | ".join(f"{x:.2f}" for x in secs) + " |")
        lines.append("")
    lines += [f"- {r['source']}: skipped ({r['skipped']})" for r in results["results"] if "skipped" in r]
    return "\n".join(lines) + "\n"


__all__ = ["SCENARIOS", "default_window", "evaluate_imputation", "hide_block", "hide_points", "impute_all",
           "knn_candidates", "knn_mean", "linear_time", "location_points", "locf", "markdown", "spatial_mean",
           "window_starts"]
