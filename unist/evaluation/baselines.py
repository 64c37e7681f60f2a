"""Classical baselines, scored on the same windows as the model (arrays [B, H, *spatial, C]).

  last_value          repeat the last observed context value of each location (persistence)
  seasonal_naive      y(t) = y(t - k * season) for the smallest k that lands before the forecast origin;
                      reads the observed past of the series itself (legit at test time: no fitting, no
                      training statistic), so a season longer than the context still works
  HistoricalAverage   mean per time-of-day slot (per season phase), location and channel, FITTED ON THE
                      TARGET'S TRAINING SPLIT (uses target data)
  RidgeAR             ridge regression context -> horizon, weights shared by all locations (one set per
                      channel), FITTED ON THE TARGET'S TRAINING SPLIT (uses target data)
  peer_*              statsforecast's AutoETS, AutoTheta, SeasonalNaive, MSTL fitted on each window's context
                      alone, with CRPS from their prediction intervals (`unist.evaluation.peers`, optional:
                      needs statsforecast; a seeded subset of locations when there are too many series)

A baseline that cannot predict a point returns NaN there (the runner reports it and scores every
model on the points all of them predicted); seasonal_naive falls back to last_value where its
seasonal source is missing or before the start of the series and reports the fraction.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from unist.data import DataError, STSeries

from .peers import default_max_series, peer_forecasts, peers_unavailable
from .windows import EvalWindows


def last_value(context: np.ndarray, context_mask: np.ndarray, horizon: int) -> np.ndarray:
    """[B, Tc, *sp, C] -> [B, horizon, *sp, C]: the last observed value per location (NaN if none)."""
    t = np.arange(context.shape[1]).reshape((1, -1) + (1,) * (context.ndim - 2))
    last = np.where(context_mask, t, -1).max(axis=1)                      # (B, *sp, C) index of last observation
    value = np.take_along_axis(context, np.maximum(last, 0)[:, None], axis=1)[:, 0]
    value = np.where(last >= 0, value, np.nan)
    return np.repeat(value[:, None], horizon, axis=1).astype(np.float32)


def seasonal_naive(history: np.ndarray, history_mask: np.ndarray, origins: np.ndarray, horizon: int,
                   season: int, fallback: np.ndarray) -> tuple[np.ndarray, float]:
    """Forecast step h (0-based) after origin o as history[o + h - season * (h // season + 1)].

    history: the full series [T, *sp, C]; origins (B,) absolute index of the first forecast step (only
    history before it is read); fallback [B, H, *sp, C] (e.g. last_value) where the seasonal value is
    unavailable. Returns (prediction, fraction of points that used the fallback)."""
    h = np.arange(horizon)
    src = origins[:, None] + h[None] - season * (h[None] // season + 1)  # (B, H), always < origin
    ok_src = src >= 0
    idx = np.clip(src, 0, None)
    vals, ok = history[idx], history_mask[idx] & ok_src.reshape(ok_src.shape + (1,) * (history.ndim - 1))
    pred = np.where(ok, vals, fallback).astype(np.float32)
    return pred, float(1.0 - ok.mean())


def season_phase(series: STSeries, season: int) -> np.ndarray:
    """(T,) phase of every step in the seasonal cycle: from the clock when timestamps and the interval are
    known (robust to gaps), else the step index."""
    if series.timestamps is not None and series.interval_minutes:
        minutes = series.timestamps.astype("datetime64[m]").astype(np.int64)
        return np.round(minutes / series.interval_minutes).astype(np.int64) % season
    return np.arange(series.num_steps) % season


@dataclass
class HistoricalAverage:
    """Mean of the training split per (season phase, location, channel); phases never observed fall back to
    the location's overall training mean."""

    season: int
    table: np.ndarray | None = None   # (season, *sp, C)

    def fit(self, series: STSeries, num_train: int) -> "HistoricalAverage":
        """Fit on the first `num_train` steps of `series` (its training split)."""
        phase = season_phase(series, self.season)[:num_train]
        v, m = series.values[:num_train], series.mask[:num_train]
        x = np.where(m, v, 0.0).astype(np.float64)
        shape = (self.season,) + v.shape[1:]
        total, count = np.zeros(shape), np.zeros(shape)
        np.add.at(total, phase, x)
        np.add.at(count, phase, m)
        overall = x.sum(0) / np.maximum(m.sum(0), 1)
        overall = np.where(m.sum(0) > 0, overall, np.nan)
        self.table = np.where(count > 0, total / np.maximum(count, 1), overall).astype(np.float32)
        return self

    def predict(self, series: STSeries, origins: np.ndarray, horizon: int) -> np.ndarray:
        if self.table is None:
            raise DataError("HistoricalAverage is not fitted: call fit(series, num_train) first")
        phase = season_phase(series, self.season)
        return self.table[phase[origins[:, None] + np.arange(horizon)[None]]]  # (B, H, *sp, C)


@dataclass
class RidgeAR:
    """Linear map from the last `context` values of one location and channel to its next `horizon` values,
    shared by every location (one weight set per channel), fitted by ridge regression on standardized
    lags: (X'X + alpha * n * I) W = X'Y. Missing lags at prediction time take the training lag mean."""

    context: int
    horizon: int
    alpha: float = 1e-3
    max_samples: int = 200_000
    seed: int = 0
    weights: list[tuple[np.ndarray, ...]] | None = None  # per channel: (x_mean, x_std, W, y_mean)

    def fit(self, values: np.ndarray, mask: np.ndarray) -> "RidgeAR":
        """values/mask: the training split [T, *sp, C]; uses windows with every lag and target observed."""
        length = self.context + self.horizon
        if values.shape[0] < length:
            raise DataError(f"RidgeAR needs a training split of at least context + horizon = {length} steps, got "
                            f"{values.shape[0]}")
        rng = np.random.default_rng(self.seed)
        self.weights = []
        for c in range(values.shape[-1]):
            v = np.where(mask[..., c], values[..., c], np.nan).reshape(values.shape[0], -1)  # (T, N)
            win = np.lib.stride_tricks.sliding_window_view(v, length, axis=0)              # (T-L+1, N, L) view
            rows = win.shape[0] * win.shape[1]
            pick = rng.choice(rows, self.max_samples, replace=False) if rows > self.max_samples else np.arange(rows)
            data = win.reshape(rows, length)[pick].astype(np.float64)
            data = data[np.isfinite(data).all(1)]
            if len(data) < self.context + 1:
                raise DataError(f"RidgeAR: only {len(data)} fully observed training windows for channel {c}; "
                                "the training split is too short or too sparse")
            x, y = data[:, :self.context], data[:, self.context:]
            xm, xs, ym = x.mean(0), np.maximum(x.std(0), 1e-8), y.mean(0)
            xz = (x - xm) / xs
            gram = xz.T @ xz + self.alpha * len(xz) * np.eye(self.context)
            w = scipy.linalg.solve(gram, xz.T @ (y - ym), assume_a="pos")           # (context, horizon)
            self.weights.append((xm, xs, w, ym))
        return self

    def predict(self, context: np.ndarray, context_mask: np.ndarray) -> np.ndarray:
        """[B, context, *sp, C] -> [B, horizon, *sp, C]."""
        if self.weights is None:
            raise DataError("RidgeAR is not fitted: call fit(train_values, train_mask) first")
        if context.shape[1] != self.context:
            raise DataError(f"RidgeAR was fitted for {self.context} context steps, got {context.shape[1]}")
        out = np.empty((context.shape[0], self.horizon) + context.shape[2:], np.float32)
        for c, (xm, xs, w, ym) in enumerate(self.weights):
            x = np.moveaxis(context[..., c], 1, -1)                                 # (B, *sp, context)
            ok = np.moveaxis(context_mask[..., c], 1, -1)
            xz = np.where(ok, (x - xm) / xs, 0.0)
            out[..., c] = np.moveaxis(xz @ w + ym, -1, 1)
        return out


def run_baselines(windows: EvalWindows, horizon: int, season: int | None, ridge_alpha: float = 1e-3,
                  peers: bool = False, peer_max_series: int | None = None, seed: int = 0) -> dict[str, dict]:
    """Every applicable baseline on `windows`: name -> {"pred", "uses_target_data", "label", "notes", "seconds"}
    (seconds include fitting). With `peers`, also the statsforecast peers ("peer_auto_ets", ...: + "samples"
    and "locations", the fitted subset or None), fitting at most `peer_max_series` series (None: as many as
    take ~2 minutes at this context length, `peers.default_max_series`); without statsforecast they are
    skipped with a note on stderr."""
    ctx, cmask = windows.context, windows.context_mask
    s, n_train = windows.series, windows.train.num_steps
    out = {}

    def add(name: str, label: str, uses_target_data: bool, notes: str, fn) -> None:
        """Run `fn` (-> prediction, or (prediction, extra fields)) and record it, timed."""
        t0 = time.perf_counter()
        pred = fn()
        pred, extra = pred if isinstance(pred, tuple) else (pred, {})
        out[name] = {"pred": pred, "label": label, "uses_target_data": uses_target_data, "notes": notes,
                     "seconds": time.perf_counter() - t0, **extra}

    add("last_value", "last value", False, "repeats the last observed context value",
        lambda: last_value(ctx, cmask, horizon))
    if season:
        def seasonal():
            pred, fb = seasonal_naive(s.values, s.mask, windows.origins, horizon, season, out["last_value"]["pred"])
            return pred, {"fallback_fraction": fb}

        add("seasonal_naive", f"seasonal naive (s={season})", False,
            f"value one season ({season} steps) earlier, read from the series' observed past before each window "
            "(last value where that is missing: fallback_fraction)", seasonal)
        add("historical_average", "historical average [target train]", True,
            f"mean per phase of a {season}-step season, fitted on the target's training split",
            lambda: HistoricalAverage(season).fit(s, n_train).predict(s, windows.origins, horizon))
    add("ridge", "ridge AR [target train]", True,
        "ridge regression context -> horizon, weights shared over locations, fitted on the target's training split",
        lambda: RidgeAR(ctx.shape[1], horizon, alpha=ridge_alpha).fit(windows.train.values, windows.train.mask)
        .predict(ctx, cmask))
    if peers:
        out.update(run_peers(windows, horizon, season, peer_max_series, seed))
    return out


def run_peers(windows: EvalWindows, horizon: int, season: int | None, max_series: int | None = None,
              seed: int = 0) -> dict[str, dict]:
    """The statsforecast peers as run_baselines entries ({} with a note on stderr without statsforecast);
    a model that could not run is named in the others' "peers_skipped"."""
    missing = peers_unavailable()
    if missing:
        print(f"note: {missing}", file=sys.stderr)
        return {}
    limit = default_max_series(windows.context.shape[1]) if max_series is None else max_series
    res = peer_forecasts(windows.context, windows.context_mask, horizon, season, max_series=limit, seed=seed)
    skipped = {name: r["skipped"] for name, r in res.items() if "skipped" in r}
    return {f"peer_{name}": {**r, "uses_target_data": False, "max_series": limit,
                             **({"peers_skipped": skipped} if skipped else {})}
            for name, r in res.items() if "skipped" not in r}


__all__ = ["HistoricalAverage", "RidgeAR", "last_value", "run_baselines", "run_peers", "season_phase",
           "seasonal_naive"]
