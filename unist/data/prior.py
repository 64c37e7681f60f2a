"""The in-context forecasting prior: seeded synthetic series whose dynamics must be read from the context.

The prior (`make_prior(rng, PriorConfig())`, `PriorCorpus(seed).sample(i)`, domain "synthetic_prior"), in
the spirit of KernelSynth / ForecastPFN / TimesFM synthetic data, teaches a model to read the dynamics from
the values in its context rather than from clock features:
  space   - a random geometric graph (1-64 nodes, 60%) or a 2x2..8x8 grid. Locations mix K latent
            series: independent (one each), kernel (one per location, weights exp(-d/l), l log-uniform
            0.03..3: from nearly independent to strongly correlated), lowrank (2-6 latents at random
            points) or shared (one); then per-location lags (none, a travelling wave along a random
            direction, or random; up to 24 steps), amplitudes, offsets and sensor noise.
  latents - a random sum / product of components: 1-3 seasonal periods (integers log-uniform 3..200
            or calendar values 24, 168, 7, 12, 52, 48, 96, 288; at most T/2) with non-sinusoidal
            profiles (1-6 Fourier harmonics, rush-hour bumps, sawtooth, pulse, smoothed random), a
            product of two periods, slowly drifting amplitudes; linear / damped / piecewise-linear
            trends, random-walk levels, level shifts, multiplicative seasonality (scales with level);
            white / AR(1) / AR(2) noise, heteroscedastic by seasonal phase or level.
  output  - real values at random scales and offsets, Poisson / negative-binomial counts of a
            positive (smooth or intermittent, many zeros) intensity, or values clipped at zero
            (precipitation-like); missing points and blocks as in the classic corpus (`synthetic.py`).
  clock   - timestamps with probability 0.5 (interval 5 min .. 1 week); given a clock, 40% of draws
            use its daily / weekly periods in its phase, the rest random periods no clock feature
            explains; without timestamps interval_minutes is None. meta records the periods, whether
            each is a clock period, the profile shapes, the component names, the spatial mode,
            length scale, lag kind and output kind (JSON-able), so diagnostics can stratify by them.
One T=1024, N=64, C=2 draw takes ~5 ms on one core (numpy BLAS single-threaded: set
OPENBLAS_NUM_THREADS=1 in data-loader workers; contended BLAS threads make it several times slower).

This module holds the configuration (`PriorConfig`), the spatial part (layout, mixing of the latents over
locations, lags), the output transforms (real values, counts, clipped) and the assembly (`make_prior`,
`PriorCorpus`). The latent time series (periods, profiles, trends, noise) are built in `prior_latents.py`;
the helpers shared with the classic corpus (`synthetic.py`: sizes, clock, noise bank, missing values,
random graphs) are in `synthetic_common.py`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.signal import lfilter

from .prior_latents import PROFILE_SHAPES, _latents, _periods
from .series import DataError, STSeries
from .synthetic_common import (_clock, _Corpus, _int, _loguniform, _missing, _noise, _observed, _pick,
                               random_geometric_graph)

PRIOR_SPATIAL = ("independent", "kernel", "lowrank", "shared")


@dataclass
class PriorConfig:
    """Ranges (inclusive) and probabilities from which every prior sample draws its own composition.

    Size: `steps` T; `p_graph` graph (else grid) layout; `graph_nodes` N (log-uniform) or `grid_side`
    H, W; `channels` C. Clock: `p_timestamps` that a sample has timestamps (interval from
    `intervals_minutes`), and given a clock, `p_clock_periods` that its periods are the clock's daily /
    weekly ones with the clock's phase. Seasonality (`p_seasonal`): `num_periods` periods, each from
    `calendar_periods` (chance `p_calendar`) or log-uniform in `period_range`, kept <= T / `min_cycles`;
    profile shapes weighted by `shape_weights` (order `PROFILE_SHAPES`); `p_seasonal_product` (first two
    periods multiplied), `p_amplitude_drift`. Level: `p_trend`, `p_random_walk`, `p_level_shift`,
    `p_multiplicative` (seasonality scales with the level). Noise: `p_noise` AR/white with std
    log-uniform in `noise_scale`, `p_heteroscedastic`, `p_location_noise` (per-location sensor noise).
    Space: `spatial_weights` over `PRIOR_SPATIAL`, kernel `length_scale` (log-uniform, unit-square
    units), `p_lag` and `max_lag` (location lags, steps). Output: `p_counts` (of which `p_negbin`
    negative binomial, else Poisson), `p_nonneg` (clipped at zero), then missing values like
    `SyntheticConfig`."""

    steps: tuple[int, int] = (256, 1024)
    p_graph: float = 0.6
    graph_nodes: tuple[int, int] = (1, 64)
    grid_side: tuple[int, int] = (2, 8)
    channels: tuple[int, int] = (1, 3)
    intervals_minutes: tuple[float, ...] = (5, 10, 15, 30, 60, 180, 1440, 10080)
    p_timestamps: float = 0.5
    p_clock_periods: float = 0.4
    p_seasonal: float = 0.9
    num_periods: tuple[int, int] = (1, 3)
    period_range: tuple[int, int] = (3, 200)
    calendar_periods: tuple[int, ...] = (24, 168, 7, 12, 52, 48, 96, 288)
    p_calendar: float = 0.35
    min_cycles: int = 2
    shape_weights: tuple[float, ...] = (0.4, 0.2, 0.1, 0.1, 0.2)
    p_seasonal_product: float = 0.25
    p_amplitude_drift: float = 0.3
    p_trend: float = 0.5
    p_random_walk: float = 0.25
    p_level_shift: float = 0.2
    p_multiplicative: float = 0.2
    p_noise: float = 0.9
    noise_scale: tuple[float, float] = (0.05, 1.5)
    p_heteroscedastic: float = 0.3
    p_location_noise: float = 0.7
    spatial_weights: tuple[float, ...] = (0.2, 0.45, 0.2, 0.15)
    length_scale: tuple[float, float] = (0.03, 3.0)
    p_lag: float = 0.6
    max_lag: int = 24
    p_counts: float = 0.15
    p_negbin: float = 0.5
    p_nonneg: float = 0.1
    p_missing: float = 0.3
    max_missing_rate: float = 0.05
    max_missing_blocks: int = 4

    def __post_init__(self) -> None:
        for name in ("steps", "graph_nodes", "grid_side", "channels", "num_periods", "period_range",
                     "noise_scale", "length_scale"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise DataError(f"PriorConfig.{name} must be (lo, hi) with 0 < lo <= hi, got {(lo, hi)}")
        for name, value in vars(self).items():
            if name.startswith("p_") and not 0 <= value <= 1:
                raise DataError(f"PriorConfig.{name} is a probability: give a number in [0, 1], got {value}")
        if self.steps[0] < 8 or self.period_range[0] < 2 or self.min_cycles < 1 or self.max_lag < 0:
            raise DataError(f"PriorConfig needs steps >= 8, periods >= 2, min_cycles >= 1, max_lag >= 0; got "
                            f"steps={self.steps}, period_range={self.period_range}, min_cycles={self.min_cycles}, "
                            f"max_lag={self.max_lag}")
        for name, n in (("shape_weights", len(PROFILE_SHAPES)), ("spatial_weights", len(PRIOR_SPATIAL))):
            w = getattr(self, name)
            if len(w) != n or min(w) < 0 or sum(w) <= 0:
                raise DataError(f"PriorConfig.{name} must be {n} non-negative weights with a positive sum, got {w}")
        if not self.intervals_minutes or min(self.intervals_minutes) <= 0 or not self.calendar_periods:
            raise DataError("PriorConfig.intervals_minutes and calendar_periods must be non-empty and positive")


def _prior_space(rng: np.random.Generator, cfg: PriorConfig):
    """(layout, positions (N, 2) in the unit square, grid shape or None, edge_index, edge_weight)."""
    if rng.random() < cfg.p_graph:
        pos, ei, ew = random_geometric_graph(rng, _int(rng, cfg.graph_nodes, log=True))
        return "graph", pos, None, ei, ew
    h, w = _int(rng, cfg.grid_side), _int(rng, cfg.grid_side)
    iy, ix = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    pos = (np.stack([iy.ravel(), ix.ravel()], 1) + 0.5) / max(h, w)            # row-major cell centres
    return "grid", pos, (h, w), None, None


def _spatial(rng: np.random.Generator, cfg: PriorConfig, pos: np.ndarray) -> tuple[str, int, np.ndarray | None, float]:
    """(mode, latents K, mixing weights (K, N) with unit-norm columns or None for identity, length scale).

    independent: one latent per location; kernel: one latent per location, mixed by exp(-d/l);
    lowrank: 2-6 latents at random points, mixed by exp(-d/l); shared: one latent for all."""
    n = len(pos)
    mode = "independent" if n == 1 else _pick(rng, PRIOR_SPATIAL, cfg.spatial_weights)
    if mode == "independent":
        return mode, n, None, 0.0
    if mode == "shared":
        return mode, 1, np.ones((1, n), np.float32), float("inf")
    ls = _loguniform(rng, cfg.length_scale)
    src = pos if mode == "kernel" else rng.random((int(rng.integers(2, 7)), 2))
    w = np.exp(-np.sqrt(((src[:, None] - pos[None]) ** 2).sum(-1)) / ls)
    return mode, len(src), (w / np.sqrt((w**2).sum(0, keepdims=True))).astype(np.float32), ls


def _lags(rng: np.random.Generator, cfg: PriorConfig, pos: np.ndarray, t: int, mode: str) -> tuple[np.ndarray, str]:
    """(lag per location in steps, kind): none, a travelling wave (lag ~ position along a direction) or random."""
    n = len(pos)
    top = min(cfg.max_lag, t // 4)
    if mode == "independent" or top < 1 or rng.random() >= cfg.p_lag:
        return np.zeros(n, np.int64), "none"
    max_lag = int(rng.integers(1, top + 1))
    if rng.random() < 0.65:
        th = rng.uniform(0, 2 * np.pi)
        proj = pos @ np.array([np.cos(th), np.sin(th)])
        return np.round((proj - proj.min()) / (np.ptp(proj) + 1e-9) * max_lag).astype(np.int64), "wave"
    return rng.integers(0, max_lag + 1, n), "random"


def _output(rng: np.random.Generator, cfg: PriorConfig, x: np.ndarray, comps: list[str]) -> tuple[np.ndarray, str]:
    """x (C, N, T) roughly unit scale -> real values at random scales and offsets, counts, or clipped >= 0."""
    c, n = x.shape[:2]
    u = rng.random()
    if u < cfg.p_counts:
        z = np.minimum(x, 6.0)
        if rng.random() < 0.5:                                                  # smooth positive intensity
            lam = np.exp(np.float32(rng.uniform(0.3, 1.2)) * z)
        else:                                                                   # intermittent: many zeros
            lam = np.maximum(z - np.float32(rng.uniform(-0.5, 1.5)), 0) ** np.float32(rng.uniform(1, 2))
        lam = lam * (_loguniform(rng, (0.05, 50.0)) * rng.lognormal(0, 0.5, (c, n, 1))).astype(np.float32)
        kind = "counts_poisson"
        if rng.random() < cfg.p_negbin:
            r = _loguniform(rng, (0.5, 10.0))
            lam = lam * rng.gamma(r, 1.0 / r, x.shape).astype(np.float32)
            kind = "counts_negbin"
        comps.append(kind)
        return rng.poisson(np.minimum(lam, 1e6)).astype(np.float32), "counts"
    if u < cfg.p_counts + cfg.p_nonneg:                                         # precipitation-like
        comps.append("nonneg_clip")
        y = np.maximum(x - np.float32(rng.uniform(0, 1.5)), 0) ** np.float32(rng.uniform(1, 2))
        return y * rng.lognormal(0, 1, (c, n, 1)).astype(np.float32), "nonneg"
    scale = rng.lognormal(0, 1, (c, n, 1))
    offset = rng.normal(0, 1, (c, 1, 1)) * rng.lognormal(1, 1) + rng.normal(0, 0.5, (c, n, 1))
    return x * scale.astype(np.float32) + offset.astype(np.float32), "real"


def make_prior(rng: np.random.Generator, cfg: PriorConfig | None = None) -> STSeries:
    """One draw of the in-context forecasting prior (see the module docstring): a graph or grid series
    whose dynamics are a random composition of components, readable from the values alone."""
    cfg = cfg or PriorConfig()
    layout, pos, grid, ei, ew = _prior_space(rng, cfg)
    n, t = len(pos), _int(rng, cfg.steps)
    c = _int(rng, cfg.channels)
    f = min(c, 2)                                                               # latent fields per location
    interval = float(rng.choice(cfg.intervals_minutes))
    stamps, minutes = _clock(rng, t, interval, cfg)
    comps: list[str] = []
    mode, k, w, ls = _spatial(rng, cfg, pos)
    lag, lag_kind = _lags(rng, cfg, pos, t, mode)
    pad = int(lag.max())
    periods, aligned = _periods(rng, cfg, t, interval, stamps is not None)
    latent, shapes = _latents(rng, cfg, f * k, t + pad, periods, aligned, int(minutes[0] // interval) - pad, comps)
    latent = latent.reshape(f, k, t + pad)
    mixed = latent if w is None else np.stack([w.T @ latent[j] for j in range(f)])  # (f, n, t + pad)
    if pad:                                                                         # location n lags by lag[n]
        mixed = np.stack([mixed[:, i, pad - lag[i]:pad - lag[i] + t] for i in range(n)], 1)   # (f, n, t)
    mix = rng.normal(0, 1, (f, c)).astype(np.float32)
    mix[0] = np.abs(mix[0]) + 0.5                                                   # every channel follows field 0
    mix /= np.sqrt((mix**2).sum(0))
    x = mix[0][:, None, None] * mixed[0]                                            # (c, n, t), no BLAS
    for j in range(1, f):
        x += mix[j][:, None, None] * mixed[j]
    if rng.random() < cfg.p_location_noise:
        e = _noise(rng, x.shape)
        if rng.random() < 0.5:
            e = lfilter(np.ones(1, np.float32), np.array([1, -rng.uniform(0, 0.9)], np.float32), e, axis=-1)
        x = x + np.float32(_loguniform(rng, (0.01, 0.5))) * e
        comps.append("location_noise")
    values, output = _output(rng, cfg, x, comps)
    values = np.ascontiguousarray(values.transpose(2, 1, 0), np.float32)           # (t, n, c)
    if grid is not None:
        values = values.reshape(t, *grid, c)
    mask = _missing(rng, values.shape, cfg)
    if not mask.all():
        comps.append("missing")
    meta = {"kind": "prior", "periods": [int(p) for p in periods], "clock_periods": [bool(a) for a in aligned],
            "period_shapes": shapes, "components": comps, "spatial": mode, "latents": int(k),
            "length_scale": float(min(ls, 1e9)), "lag": lag_kind, "max_lag": pad, "output": output}
    if layout == "graph":
        meta["coords_kind"] = "synthetic_xy"
    return STSeries(values=_observed(values, mask), mask=mask, layout=layout, coords=pos if layout == "graph" else None,
                    edge_index=ei, edge_weight=ew, timestamps=stamps,
                    interval_minutes=interval if stamps is not None else None, domain="synthetic_prior",
                    name="synthetic_prior", meta=meta)


@dataclass
class PriorCorpus(_Corpus):
    """The prior as a corpus: `sample(i)` is deterministic in (seed, i) (`np.random.default_rng([seed, i])`,
    as in `SyntheticCorpus`); iteration yields sample(0), sample(1), ... (endless when `length` is None)."""

    seed: int = 0
    config: PriorConfig = field(default_factory=PriorConfig)
    length: int | None = None

    def sample(self, index: int) -> STSeries:
        if index < 0 or (self.length is not None and index >= self.length):
            raise IndexError(f"sample {index} outside [0, {self.length})")
        s = make_prior(np.random.default_rng([self.seed, index]), self.config)
        s.name = f"synthetic_prior_{self.seed}_{index}"
        s.meta.update(seed=self.seed, index=index)
        return s
