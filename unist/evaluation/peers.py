"""statsforecast's classical forecasters as peers: AutoETS, AutoTheta, SeasonalNaive and MSTL, fitted on
each test window's CONTEXT ONLY, one series per (window, location, channel).

Zero-shot fair: like the model, a peer sees nothing but the window's own context (no training split, no
statistic of the target), so `uses_target_data` is False. Each model is called through its own
`forecast(y, h, level=...)` (measured as fast as `StatsForecast(...).forecast` on a DataFrame, without
the pandas round trip, and it lets one failing series fall back instead of stopping the run).

Missing context values (statsforecast takes no NaN) are filled by linear interpolation inside the
context, the ends by the nearest observed value; a series with fewer than 2 observed values gets its
last observed value (NaN with none), counted as `fallback`. A model that raises on a series (e.g.
AutoETS on a context too short for its parameters) gives that series its last observed value too,
counted as `failed`. Seasons: with `season` None or 2 * season > context length the seasonal models run
non-seasonal (season_length=1) and MSTL is skipped.

Probabilistic forecasts: the models' central prediction intervals at `levels` give symmetric quantiles;
the quantiles at probabilities 0.025, 0.05, 0.10, ..., 0.90, 0.95, 0.975 (the default levels plus the
mean as median) are stacked as 21 pseudo-samples [m, B, H, *sp, C], which the runner's
`probabilistic_metrics` scores like draws: its CRPS is within 0.4 % of the exact CRPS of a Gaussian
forecast, and its 50 % / 80 % coverage reads exactly the 25/75 % and 10/90 % quantiles (np.quantile's
linear interpolation lands on sample 2, 5, 15, 18 of 21).

Cost (measured on the shared, busy 2-core CPU, one process, real hourly data beijing_air_12site, s=24,
horizon 12, all four models): about 84 ms per series at context 48, 270 ms at 192, 670 ms at 512, AutoETS
being ~85 % of it (`SECONDS_PER_SERIES`); `default_max_series` turns that into the number of series one
dataset's peers fit in about two minutes (~1400 at context 48, ~450 at 192, ~180 at 512), and `max_series`
fits a seeded random subset of locations when there are more. n_jobs=2 did not pay on the loaded machine.
"""
from __future__ import annotations

import time
import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from .errors import EvalError

PEER_MODELS = ("auto_ets", "auto_theta", "seasonal_naive", "mstl")
NAMES = {"auto_ets": "AutoETS", "auto_theta": "AutoTheta", "seasonal_naive": "SeasonalNaive", "mstl": "MSTL"}
LEVELS = (10, 20, 30, 40, 50, 60, 70, 80, 90, 95)
INSTALL_NOTE = "statsforecast is not installed, so the statsforecast peers were skipped: pip install statsforecast " \
               "(or unist[eval])"
# Measured seconds per series of each model: (intercept, per context step), a straight line through
# contexts 48, 192 and 512 (module docstring: one process, beijing_air_12site, s=24, horizon 12).
SECONDS_PER_SERIES = {"auto_ets": (0.0145, 1.146e-3), "auto_theta": (0.003, 7.1e-5), "seasonal_naive": (8.5e-4, 0.0),
                      "mstl": (0.0047, 4.7e-5)}
BUDGET_SECONDS = 120.0


def peers_unavailable() -> str | None:
    """None when statsforecast imports, else the note saying how to install it."""
    try:
        import statsforecast.models  # noqa: F401
    except ImportError:
        return INSTALL_NOTE
    return None


def default_max_series(context_len: int, models: tuple[str, ...] = PEER_MODELS, n_jobs: int = 1,
                       budget_s: float = BUDGET_SECONDS) -> int:
    """How many series `models` fit in `budget_s` seconds at this context length (measured costs, so ~2
    minutes per dataset on the 2-core CPU they were measured on; non-seasonal fits are cheaper)."""
    cost = sum(a + b * context_len for a, b in (SECONDS_PER_SERIES[m] for m in models))
    return max(1, int(budget_s * n_jobs / max(cost, 1e-6)))


def quantile_probabilities(levels: tuple[float, ...]) -> np.ndarray:
    """Sorted probabilities of the quantiles the central intervals at `levels` (percent) give, plus 0.5."""
    bad = [lv for lv in levels if not 0 < lv < 100]
    if bad:
        raise EvalError(f"prediction-interval levels {bad}: give percentages strictly between 0 and 100")
    lv = np.asarray(sorted(set(levels)), np.float64) / 100.0
    return np.unique(np.concatenate([(1 - lv) / 2, [0.5], (1 + lv) / 2]))


def fill_context(y: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """1-D series with missing points filled: linear interpolation between observed neighbours, the
    nearest observed value before the first / after the last observation (needs >= 1 observed)."""
    t = np.flatnonzero(ok)
    return np.interp(np.arange(len(y)), t, y[t]).astype(np.float64)


def _make_model(name: str, season: int):
    """The statsforecast model `name` at `season_length` (1 = non-seasonal)."""
    from statsforecast.models import MSTL, AutoETS, AutoTheta, SeasonalNaive
    return {"auto_ets": AutoETS, "auto_theta": AutoTheta, "seasonal_naive": SeasonalNaive,
            "mstl": MSTL}[name](season_length=season)


def _fit_series(name: str, season: int, ys: np.ndarray, horizon: int, levels: tuple[float, ...]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit `name` on every row of `ys` (S, Tc) -> (quantiles (S, m, H), failed (S,), no_interval (S,)).
    A series the model raises on (or forecasts non-finite) is marked failed and left NaN; non-finite
    interval ends are replaced by the mean (zero spread) and marked no_interval."""
    model, lv = _make_model(name, season), sorted(set(levels))
    probs = quantile_probabilities(tuple(levels))
    out = np.full((len(ys), len(probs), horizon), np.nan, np.float32)
    failed, no_interval = np.zeros(len(ys), bool), np.zeros(len(ys), bool)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for i, y in enumerate(ys):
            try:
                r = model.forecast(y, horizon, level=lv)
            except Exception:  # noqa: BLE001  (any model error: this series falls back, the run goes on)
                failed[i] = True
                continue
            mean = np.asarray(r["mean"], np.float64)
            if not np.isfinite(mean).all():
                failed[i] = True
                continue
            q = np.stack([r[f"lo-{v}"] for v in lv[::-1]] + [mean] + [r[f"hi-{v}"] for v in lv]).astype(np.float64)
            bad = ~np.isfinite(q)
            no_interval[i] = bad.any()
            out[i] = np.where(bad, mean, q)
    return out, failed, no_interval


def _fit_all(name: str, season: int, ys: np.ndarray, horizon: int, levels: tuple[float, ...], n_jobs: int):
    """`_fit_series` over `ys`, in `n_jobs` processes (contiguous chunks) when n_jobs > 1."""
    if n_jobs <= 1 or len(ys) < 2 * n_jobs:
        return _fit_series(name, season, ys, horizon, levels)
    chunks = np.array_split(ys, n_jobs)
    with ProcessPoolExecutor(n_jobs) as pool:
        parts = list(pool.map(_fit_series, [name] * n_jobs, [season] * n_jobs, chunks, [horizon] * n_jobs,
                              [levels] * n_jobs))
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))


def subset_locations(num_windows: int, num_locations: int, num_channels: int, max_series: int | None,
                     seed: int = 0) -> np.ndarray | None:
    """Sorted flat location indices to fit when B * N * C > max_series (at least one location), else None."""
    if max_series is None or num_windows * num_locations * num_channels <= max_series:
        return None
    k = min(num_locations, max(1, max_series // (num_windows * num_channels)))
    return np.sort(np.random.default_rng(seed).choice(num_locations, k, replace=False))


def peer_forecasts(context: np.ndarray, context_mask: np.ndarray, horizon: int, season: int | None,
                   models: tuple[str, ...] = PEER_MODELS, max_series: int | None = None, seed: int = 0,
                   levels: tuple[float, ...] = LEVELS, n_jobs: int = 1) -> dict[str, dict]:
    """Every model of `models` fitted on each (window, location, channel) context series alone.

    context/context_mask: [B, Tc, *sp, C] (NaN / False = missing). max_series: fit at most this many series
    (None = all) by taking a seeded random subset of locations, the same for every model; the others stay
    NaN and `locations` lists the fitted ones. Returns name -> {"pred" [B, H, *sp, C] (the mean forecast),
    "samples" [m, B, H, *sp, C] (interval quantiles, module docstring), "quantiles" (their probabilities),
    "label", "locations", "seconds", "seconds_per_series", "fitted", "failed", "fallback", "no_interval",
    "season_length", "notes"}; a model that cannot run here (MSTL without two seasons of context) is
    {"skipped": reason}."""
    missing = peers_unavailable()
    if missing:
        raise EvalError(missing)
    unknown = [m for m in models if m not in NAMES]
    if unknown:
        raise EvalError(f"unknown peer model(s) {unknown}: choose from {list(PEER_MODELS)}")
    if context.shape != context_mask.shape or context.ndim < 3:
        raise EvalError(f"context {context.shape} and context_mask {context_mask.shape} must both be "
                        "[B, Tc, *spatial, C]")
    if horizon < 1:
        raise EvalError(f"horizon={horizon}: give at least 1 step")
    b, tc, sp, c = context.shape[0], context.shape[1], context.shape[2:-1], context.shape[-1]
    n = int(np.prod(sp))
    locs = subset_locations(b, n, c, max_series, seed)
    keep = np.arange(n) if locs is None else locs
    x = np.moveaxis(context.reshape(b, tc, n, c), 1, -1)[:, keep]           # (B, k, C, Tc)
    ok = np.moveaxis(context_mask.reshape(b, tc, n, c), 1, -1)[:, keep] & np.isfinite(x)
    x, ok = x.reshape(-1, tc), ok.reshape(-1, tc)
    count = ok.sum(1)
    fit = count >= 2
    ys = np.stack([fill_context(x[i], ok[i]) for i in np.flatnonzero(fit)]) if fit.any() else np.zeros((0, tc))
    last_idx = np.where(ok, np.arange(tc), -1).max(1)
    last = np.where(last_idx >= 0, x[np.arange(len(x)), np.maximum(last_idx, 0)], np.nan)   # (S,)

    seasonal = season is not None and season > 1 and 2 * season <= tc
    why = ("no season for this data type" if not season or season <= 1 else
           f"season {season} needs 2 x {season} = {2 * season} context steps, the context has {tc}")
    filled = int((fit & (count < tc)).sum())
    common = (f"fitted on each test window's context alone ({tc} steps), per location and channel; "
              f"{filled} of {len(x)} series had missing context values, filled by linear interpolation "
              "(ends: nearest observed value)")
    if locs is not None:
        common += (f"; a seeded random subset of {len(locs)}/{n} locations ({len(x)} series, max_series="
                   f"{max_series}), scored on those locations")
    probs = quantile_probabilities(tuple(levels))
    out: dict[str, dict] = {}
    for name in models:
        if name == "mstl" and not seasonal:
            out[name] = {"skipped": f"MSTL needs a seasonal decomposition: {why}"}
            continue
        s_len = season if seasonal else 1
        t0 = time.perf_counter()
        q, failed, no_int = _fit_all(name, s_len, ys, horizon, tuple(levels), n_jobs)
        full = np.repeat(last[:, None, None], len(probs), 1).repeat(horizon, 2).astype(np.float32)  # (S, m, H)
        full[np.flatnonzero(fit)] = np.where(failed[:, None, None], full[fit], q)
        samples = np.full((len(probs), b, horizon, n, c), np.nan, np.float32)
        samples[:, :, :, keep] = np.moveaxis(full.reshape(b, len(keep), c, len(probs), horizon), (3, 4), (0, 2))
        samples = samples.reshape((len(probs), b, horizon) + sp + (c,))
        seconds = time.perf_counter() - t0
        notes = common
        if not seasonal and name != "seasonal_naive":
            notes += f"; non-seasonal (season_length=1): {why}"
        elif not seasonal:
            notes += f"; season_length=1 (the naive last value): {why}"
        if seasonal and name == "auto_ets" and season > 24:
            notes += f"; statsforecast's ETS fits seasons of at most 24 steps, so s={season} ran non-seasonal"
        n_fail, n_fb = int(failed.sum()), int((~fit).sum())
        if n_fail or n_fb:
            notes += (f"; last observed value where the model failed ({n_fail}) or fewer than 2 context values "
                      f"were observed ({n_fb}, NaN where none)")
        out[name] = {"pred": samples[int(np.searchsorted(probs, 0.5))], "samples": samples,
                     "quantiles": probs.round(4).tolist(), "label": f"{NAMES[name]} (statsforecast, context only)",
                     "locations": locs, "seconds": seconds, "fitted": int(len(ys) - n_fail), "failed": n_fail,
                     "fallback": n_fb, "no_interval": int(no_int.sum()), "season_length": s_len,
                     "seconds_per_series": seconds / max(len(ys), 1), "notes": notes}
    return out


__all__ = ["BUDGET_SECONDS", "INSTALL_NOTE", "LEVELS", "PEER_MODELS", "SECONDS_PER_SERIES", "default_max_series",
           "fill_context", "peer_forecasts", "peers_unavailable", "quantile_probabilities", "subset_locations"]
