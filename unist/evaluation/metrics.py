"""Forecast metrics on [B, H, *spatial, C] arrays, per horizon step and averaged, over a boolean mask.

Point metrics: MAE, RMSE, MAPE (only where |y| > mape_min, so zero targets never divide), and for
video PSNR per frame. Probabilistic: CRPS from samples (the standard energy-form estimator, the
same formula as `properscoring.crps_ensemble`, which is not installed here and is a one-liner on
sorted samples) and the empirical coverage of central prediction intervals.

Averaging: "avg" pools every scored point of every step (RMSE = sqrt of the pooled mean squared
error, not the mean of per-step RMSEs); "per_step" pools over windows, locations and channels of one
horizon step. A step with no scored point reports None.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr

Metric = dict[str, object]  # {"per_step": [float | None] * H, "avg": float | None}


def _check(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> None:
    if pred.shape != target.shape or mask.shape != target.shape:
        raise ValueError(f"prediction {pred.shape}, target {target.shape} and mask {mask.shape} must have the same "
                         "shape [B, H, *spatial, C]")
    if target.ndim < 3:
        raise ValueError(f"arrays must be [B, H, *spatial, C], got {target.ndim} dims")


def _reduce(err: np.ndarray, mask: np.ndarray, post=lambda m: m) -> Metric:
    """Mean of `err` over `mask` per horizon step (axis 1) and pooled; `post` maps each mean (e.g. sqrt)."""
    axes = (0,) + tuple(range(2, err.ndim))
    e = np.where(mask, err, 0.0).astype(np.float64)
    n_step, s_step = mask.sum(axes), e.sum(axes)                         # (H,)
    per_step = [float(post(s / n)) if n else None for s, n in zip(s_step, n_step)]
    n = int(n_step.sum())
    return {"per_step": per_step, "avg": float(post(s_step.sum() / n)) if n else None}


def point_metrics(pred: np.ndarray, target: np.ndarray, mask: np.ndarray,
                  mape_min: float | None = 0.0) -> dict[str, Metric]:
    """MAE, RMSE and (unless mape_min is None) MAPE in % over `mask`; MAPE also needs |y| > mape_min."""
    _check(pred, target, mask)
    y = np.where(mask, target, 0.0).astype(np.float64)
    err = np.where(mask, pred, 0.0).astype(np.float64) - y
    out = {"mae": _reduce(np.abs(err), mask), "rmse": _reduce(err ** 2, mask, math.sqrt)}
    if mape_min is not None:
        ok = mask & (np.abs(y) > mape_min)
        out["mape"] = _reduce(100.0 * np.abs(err) / np.where(ok, np.abs(y), 1.0), ok)
    return out


def psnr(pred: np.ndarray, target: np.ndarray, mask: np.ndarray, max_value: float = 1.0) -> Metric:
    """Peak signal-to-noise ratio per frame, 10 log10(max^2 / MSE_frame), averaged over frames (the video
    prediction convention); a frame equal to its target counts as 100 dB instead of infinity."""
    _check(pred, target, mask)
    axes = tuple(range(2, target.ndim))
    err = np.where(mask, pred.astype(np.float64) - np.where(mask, target, 0.0), 0.0) ** 2
    n = mask.sum(axes)                                                  # (B, H) scored pixels per frame
    mse = err.sum(axes) / np.maximum(n, 1)
    db = np.where(mse > 0, 10 * np.log10(max_value ** 2 / np.maximum(mse, 1e-300)), 100.0)
    return _reduce(db, n > 0)


def crps_samples(samples: np.ndarray, y: np.ndarray) -> np.ndarray:
    """CRPS of the empirical distribution of `samples` (axis 0, m draws) at `y`, elementwise.

    CRPS = E|X - y| - 1/2 E|X - X'| with both expectations over the m draws (the plug-in estimator of
    Gneiting & Raftery 2007, = properscoring.crps_ensemble). E|X - X'| uses the sorted draws:
    (2 / m^2) sum_i (2i - m - 1) x_(i), O(m log m) instead of O(m^2).
    """
    x = np.asarray(samples, np.float64)
    if x.shape[1:] != np.shape(y) or x.shape[0] < 1:
        raise ValueError(f"samples must be [m, *y.shape] with m >= 1, got {x.shape} for y {np.shape(y)}")
    m = x.shape[0]
    abs_err = np.abs(x - y).mean(0)
    xs = np.sort(x, axis=0)
    w = (2 * np.arange(1, m + 1) - m - 1).reshape((m,) + (1,) * (x.ndim - 1))
    spread = 2.0 * (w * xs).sum(0) / m ** 2
    return abs_err - 0.5 * spread


def crps_gaussian(mu, sigma, y) -> np.ndarray:
    """Closed-form CRPS of N(mu, sigma^2) at y (Gneiting et al. 2005): the reference for `crps_samples`."""
    z = (np.asarray(y, np.float64) - mu) / sigma
    pdf = np.exp(-0.5 * z ** 2) / math.sqrt(2 * math.pi)
    return sigma * (z * (2 * ndtr(z) - 1) + 2 * pdf - 1 / math.sqrt(math.pi))


def probabilistic_metrics(samples: np.ndarray, target: np.ndarray, mask: np.ndarray,
                          levels: tuple[float, ...] = (0.5, 0.8)) -> dict[str, Metric]:
    """CRPS and the coverage of central intervals (e.g. 0.8: between the 10% and 90% sample quantiles).

    samples: [m, B, H, *spatial, C]; target/mask: [B, H, *spatial, C]. Coverage is a fraction in [0, 1]
    (well calibrated: close to the level)."""
    if samples.ndim != target.ndim + 1:
        raise ValueError(f"samples must be [m, B, H, *spatial, C], got {samples.shape} for target {target.shape}")
    _check(samples[0], target, mask)
    y = np.where(mask, target, 0.0)
    out = {"crps": _reduce(crps_samples(np.where(mask, samples, 0.0), y), mask)}
    for level in levels:
        lo, hi = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2], axis=0)
        inside = ((y >= lo) & (y <= hi)).astype(np.float64)
        out[f"coverage_{round(level * 100)}"] = _reduce(inside, mask)
    return out


__all__ = ["crps_gaussian", "crps_samples", "point_metrics", "probabilistic_metrics", "psnr"]
