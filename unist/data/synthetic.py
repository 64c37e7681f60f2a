"""A seeded synthetic spatio-temporal corpus, generated on the fly (the default pretraining data).

Three kinds, each with random size, length, sampling interval and dynamics, so that one corpus
covers many regimes:
  grid  - advection-diffusion of two latent fields, solved exactly per step in Fourier space:
          u_k(t+1) = exp(-i k.v - D|k|^2 - gamma) u_k(t) + S_k g(t), with Gaussian-random-field
          initial state and source S (power spectrum (|k|^2 + k0^2)^(-alpha/2)) and a forcing g(t)
          with daily and weekly cycles on the real clock, plus trend and sensor noise.
  graph - the same idea on a random geometric graph: a damped diffusion x(t+1) = (1-b) x(t) +
          b P x(t) + s g(t) over the row-normalised adjacency P, node-specific periodic sources,
          sensor noise, and missing values (scattered points and whole-node outage blocks).
  video - textured shapes (striped/checkered discs and boxes) bouncing over a drifting textured
          background, RGB or grayscale, values in [0, 1].
Channels are random mixtures of the latent fields. Sample i of a corpus depends only on
(seed, i): `np.random.default_rng([seed, i])`.

The in-context forecasting prior (`make_prior(rng, PriorConfig())`, `PriorCorpus(seed).sample(i)`,
domain "synthetic_prior"), in the spirit of KernelSynth / ForecastPFN / TimesFM synthetic data, teaches a
model to read the dynamics from the values in its context rather than from clock features:
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
            (precipitation-like); missing points and blocks as above.
  clock   - timestamps with probability 0.5 (interval 5 min .. 1 week); given a clock, 40% of draws
            use its daily / weekly periods in its phase, the rest random periods no clock feature
            explains; without timestamps interval_minutes is None. meta records the periods, whether
            each is a clock period, the profile shapes, the component names, the spatial mode,
            length scale, lag kind and output kind (JSON-able), so diagnostics can stratify by them.
One T=1024, N=64, C=2 draw takes ~5 ms on one core (numpy BLAS single-threaded: set
OPENBLAS_NUM_THREADS=1 in data-loader workers; contended BLAS threads make it several times slower).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.signal import lfilter
from scipy.spatial import cKDTree

from .graph import GraphStructure
from .series import DataError, STSeries

KINDS = ("grid", "graph", "video")
_EPOCH = np.datetime64("2010-01-04T00:00", "m")          # a Monday


@dataclass
class SyntheticConfig:
    """Ranges (inclusive) from which every sample draws its own settings."""

    grid_side: tuple[int, int] = (8, 40)
    graph_nodes: tuple[int, int] = (1, 400)
    video_side: tuple[int, int] = (16, 64)
    steps: tuple[int, int] = (24, 256)
    video_steps: tuple[int, int] = (24, 128)
    max_channels: int = 3
    intervals_minutes: tuple[float, ...] = (5, 10, 15, 30, 60, 180, 1440)
    video_fps: tuple[float, ...] = (8, 12, 15, 24, 25, 30)
    p_timestamps: float = 0.85                            # else timestamps=None (time unknown)
    p_missing: float = 0.5                                # chance that a grid/graph sample has missing values
    max_missing_rate: float = 0.05                        # scattered missing points
    max_missing_blocks: int = 4                           # outage blocks (nodes/rectangles x time spans)


_NOISE_BANK: np.ndarray | None = None


def _noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float32 noise of `shape`: a random slice of a fixed 2M-value bank (drawing fresh
    normals dominated the cost of a sample), or fresh draws when the shape is larger than the bank.
    Deterministic in `rng`. The result may be a read-only view: do not write to it."""
    global _NOISE_BANK
    if _NOISE_BANK is None:
        _NOISE_BANK = np.random.default_rng(20240917).standard_normal(1 << 21, dtype=np.float32)
        _NOISE_BANK.flags.writeable = False
    n = int(np.prod(shape))
    if n > _NOISE_BANK.size:
        return rng.standard_normal(shape, dtype=np.float32)
    start = int(rng.integers(0, _NOISE_BANK.size - n + 1))
    return _NOISE_BANK[start:start + n].reshape(shape)


def _int(rng: np.random.Generator, lo_hi: tuple[int, int], log: bool = False) -> int:
    lo, hi = lo_hi
    if log:
        return int(np.clip(np.round(np.exp(rng.uniform(np.log(lo), np.log(hi + 1)) - 0.5)), lo, hi))
    return int(rng.integers(lo, hi + 1))


def _clock(rng: np.random.Generator, steps: int, interval: float, cfg: SyntheticConfig):
    """(timestamps or None, minutes since the epoch (T,)): a random start within ten years."""
    start = _EPOCH + np.timedelta64(int(rng.integers(0, 3650 * 1440 // interval)) * int(interval), "m")
    minutes = (start - _EPOCH).astype(np.int64) + np.arange(steps) * interval
    stamps = start + (np.arange(steps) * interval).astype("timedelta64[m]")
    return (stamps if rng.random() < cfg.p_timestamps else None), minutes.astype(np.float64)


def _forcing(rng: np.random.Generator, minutes: np.ndarray, k: int) -> np.ndarray:
    """(T, k) periodic drivers on the real clock: daily (+ half-daily harmonic) and weekly cycles with
    random phases and amplitudes, plus a slow random trend."""
    day = 2 * np.pi * minutes[:, None] / 1440.0
    week = day / 7.0
    a = rng.uniform(0, 1, (3, k))
    ph = rng.uniform(0, 2 * np.pi, (3, k))
    g = a[0] * np.sin(day + ph[0]) + 0.5 * a[1] * np.sin(2 * day + ph[1]) + a[2] * np.sin(week + ph[2])
    t = np.linspace(0, 1, len(minutes))[:, None]
    return (g + rng.normal(0, 0.5, k) * t).astype(np.float32)


def _freqs(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Angular wave numbers (qy, qx), each (h, w//2 + 1), of a real 2-D FFT."""
    return np.meshgrid(2 * np.pi * np.fft.fftfreq(h), 2 * np.pi * np.fft.rfftfreq(w), indexing="ij")


def _grf(rng: np.random.Generator, h: int, w: int, k: int, alpha: float, scale: float) -> np.ndarray:
    """(k, h, w//2+1) complex64 rfft2 coefficients of Gaussian random fields with power spectrum
    (|q|^2 + q0^2)^(-alpha/2), q0 = 2 pi / scale."""
    qy, qx = _freqs(h, w)
    amp = ((qx**2 + qy**2 + (2 * np.pi / scale) ** 2) ** (-alpha / 4)).astype(np.float32)
    return np.fft.rfft2(rng.standard_normal((k, h, w), dtype=np.float32)) * amp


def _standardize(x: np.ndarray, axis=None) -> np.ndarray:
    return (x - x.mean(axis=axis, keepdims=True)) / (x.std(axis=axis, keepdims=True) + 1e-6)


def _channels(rng: np.random.Generator, latent: np.ndarray, c: int) -> np.ndarray:
    """latent (T, ..., k) standardised -> (T, ..., c): random mixtures at random levels and scales,
    plus sensor noise."""
    mix = rng.normal(0, 1, (latent.shape[-1], c)).astype(np.float32)
    mix[0] = np.abs(mix[0]) + 0.5                                               # every channel follows field 0
    mix /= np.sqrt((mix**2).sum(0))
    x = latent[..., 0:1] * mix[0]                                               # (T, ..., c)
    for j in range(1, latent.shape[-1]):
        x += latent[..., j:j + 1] * mix[j]
    noise = rng.uniform(0.0, 0.3) if rng.random() < 0.7 else 0.0
    if noise:
        x += noise * _noise(rng, x.shape)
    return x * rng.lognormal(0, 1, c).astype(np.float32) + rng.normal(0, 5, c).astype(np.float32)


def _num_channels(rng: np.random.Generator, cfg: SyntheticConfig) -> tuple[int, int]:
    """(channels, latent fields): one latent field for one channel, else two."""
    c = int(rng.integers(1, cfg.max_channels + 1))
    return c, min(c, 2)


def _missing(rng: np.random.Generator, shape: tuple[int, ...], cfg: SyntheticConfig) -> np.ndarray:
    """bool mask (False = missing): scattered points and blocks over a space box x a time span."""
    mask = np.ones(shape, bool)
    if rng.random() >= cfg.p_missing:
        return mask
    mask &= rng.random(shape, dtype=np.float32) >= rng.uniform(0, cfg.max_missing_rate)
    t, space = shape[0], shape[1:-1]
    for _ in range(int(rng.integers(0, cfg.max_missing_blocks + 1))):
        t0 = int(rng.integers(0, t))
        span = slice(t0, t0 + int(rng.integers(1, max(2, t // 4))))
        corner = [int(rng.integers(0, s)) for s in space]
        extent = [slice(c, c + int(rng.integers(1, max(2, s // 3)))) for c, s in zip(corner, space)]
        mask[(span, *extent)] = False
    return mask


def _observed(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """values with NaN where missing (the STSeries convention), without a second validation pass."""
    return values if mask.all() else np.where(mask, values, np.float32(np.nan))


# ---------------------------------------------------------------------------------- grid
def make_grid(rng: np.random.Generator, cfg: SyntheticConfig) -> STSeries:
    h, w = _int(rng, cfg.grid_side), _int(rng, cfg.grid_side)
    t = _int(rng, cfg.steps)
    c, k = _num_channels(rng, cfg)
    interval = float(rng.choice(cfg.intervals_minutes))
    stamps, minutes = _clock(rng, t, interval, cfg)
    alpha, scale = rng.uniform(2.0, 4.5), rng.uniform(2.0, max(h, w))
    u = _grf(rng, h, w, k, alpha, scale)                                        # (k, h, w/2+1) initial state
    src = _grf(rng, h, w, k, alpha, scale)                                      # (k, h, w/2+1) periodic sources
    qy, qx = _freqs(h, w)
    speed, angle = rng.uniform(0, 0.6), rng.uniform(0, 2 * np.pi)
    vx, vy = speed * np.cos(angle), speed * np.sin(angle)                       # cells / step
    diff, damp = rng.uniform(0, 0.3), rng.uniform(0.01, 0.2)
    prop = np.exp(-1j * (qx * vx + qy * vy) - diff * (qx**2 + qy**2) - damp).astype(np.complex64)
    g = _forcing(rng, minutes, k)[:, :, None, None]                              # (t, k, 1, 1)
    out = np.empty((t, *u.shape), np.complex64)
    for i in range(t):                                                          # exact per-step solution
        u = prop * u + src * g[i]
        out[i] = u
    latent = np.moveaxis(np.fft.irfft2(out, s=(h, w)), 1, -1)                   # (t, h, w, k)
    values = _channels(rng, _standardize(latent, axis=(0, 1, 2)), c)
    mask = _missing(rng, values.shape, cfg)
    return STSeries(values=_observed(values, mask), mask=mask, layout="grid", timestamps=stamps,
                    interval_minutes=interval, domain="synthetic",
                    meta={"kind": "grid", "velocity": (vx, vy), "diffusion": diff, "alpha": alpha})


# ---------------------------------------------------------------------------------- graph
def _graph_dynamics(rng: np.random.Generator, n: int, edge_index: np.ndarray, edge_weight: np.ndarray | None,
                    minutes: np.ndarray, k: int) -> np.ndarray:
    """(T, n, k) standardised latent node signals.

    Each node runs an AR(1) process driven by its own periodic source; the result is spread over
    the graph one hop per step, y(t) = sum_j beta^j P^j z(t - j) with P the row-normalised
    adjacency, so that a disturbance diffuses to the neighbours with a delay (a discrete
    space-time diffusion kernel)."""
    t = len(minutes)
    w = np.ones(edge_index.shape[1]) if edge_weight is None else np.abs(np.asarray(edge_weight, np.float64))
    a = sp.coo_matrix((w, (edge_index[0], edge_index[1])), shape=(n, n)).tocsr()
    a = a + a.T
    deg = np.asarray(a.sum(1)).ravel()
    p = (sp.diags(np.where(deg > 0, 1.0 / np.maximum(deg, 1e-12), 0.0)) @ a).astype(np.float32).tocsr()
    rho = rng.uniform(0.3, 0.98)
    src = rng.standard_normal((n, 1, k)) * rng.lognormal(0, 0.5, (n, 1, 1))     # node source strengths
    drive = src * _forcing(rng, minutes, k)[None] + rng.uniform(0.1, 1.0) * _noise(rng, (n, t, k))
    z = lfilter([1.0], [1.0, -rho], drive, axis=1).astype(np.float32)           # (n, t, k) AR(1) per node
    beta, hops = rng.uniform(0.3, 0.9), int(rng.integers(1, 8))
    y, hz = z.copy(), z.reshape(n, t * k)
    for j in range(1, min(hops, t - 1) + 1):
        hz = p @ hz                                                             # one more hop
        y[:, j:] += beta**j * hz.reshape(n, t, k)[:, : t - j]                   # ... and one more step of delay
    return _standardize(y.transpose(1, 0, 2), axis=(0, 1))                      # (t, n, k)


def _graph_series(rng, cfg, n, edge_index, edge_weight, coords, t, interval, name, meta) -> STSeries:
    stamps, minutes = _clock(rng, t, interval, cfg)
    c, k = _num_channels(rng, cfg)
    values = _channels(rng, _graph_dynamics(rng, n, edge_index, edge_weight, minutes, k), c)
    mask = _missing(rng, values.shape, cfg)
    return STSeries(values=_observed(values, mask), mask=mask, layout="graph", coords=coords, edge_index=edge_index,
                    edge_weight=edge_weight, timestamps=stamps, interval_minutes=interval, domain="synthetic",
                    name=name, meta=meta)


def random_geometric_graph(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n points in the unit square joined within a radius giving mean degree ~3..10:
    (coords (n, 2), edge_index int64 (2, 2M) both directions, Gaussian-kernel weights (2M,))."""
    pos = rng.random((n, 2))
    radius = np.sqrt(rng.uniform(3, 10) / (np.pi * max(n, 1)))
    pairs = cKDTree(pos).query_pairs(radius, output_type="ndarray")              # (M, 2)
    d2 = ((pos[pairs[:, 0]] - pos[pairs[:, 1]]) ** 2).sum(1)
    ei = np.concatenate([pairs.T, pairs.T[::-1]], 1).astype(np.int64)
    ew = np.exp(-np.tile(d2, 2) / radius**2).astype(np.float32)
    return pos, ei, ew


def make_graph(rng: np.random.Generator, cfg: SyntheticConfig) -> STSeries:
    n = _int(rng, cfg.graph_nodes, log=True)
    pos, ei, ew = random_geometric_graph(rng, n)
    t, interval = _int(rng, cfg.steps), float(rng.choice(cfg.intervals_minutes))
    return _graph_series(rng, cfg, n, ei, ew, pos, t, interval, "synthetic_graph",
                         {"kind": "graph", "coords_kind": "synthetic_xy"})


def synthetic_graph_signal(graph: GraphStructure, steps: int, seed: int = 0, interval_minutes: float = 5.0,
                           config: SyntheticConfig | None = None) -> STSeries:
    """A synthetic series on a real graph structure (e.g. `load_graph("pems07")`), deterministic in seed."""
    if steps < 1:
        raise DataError(f"steps must be >= 1, got {steps}")
    rng = np.random.default_rng([seed, graph.num_nodes, steps])
    return _graph_series(rng, config or SyntheticConfig(), graph.num_nodes, graph.edge_index, graph.edge_weight,
                         graph.coords, steps, float(interval_minutes), f"synthetic_on_{graph.name}",
                         {"kind": "graph", "graph": graph.name, "coords_kind": graph.coords_kind,
                          "node_ids": graph.node_ids})


# ---------------------------------------------------------------------------------- video
def _bounce(p0: np.ndarray, v: np.ndarray, t: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(T, k) positions moving at v and reflecting off [lo, hi] (a triangle wave)."""
    span = np.maximum(hi - lo, 1e-6)
    x = np.mod(p0 - lo + v * t[:, None], 2 * span)
    return lo + span - np.abs(x - span)


def _sprite(rng: np.random.Generator, r: int, c: int) -> tuple[np.ndarray, np.ndarray]:
    """A textured disc or box of radius r: (colours (2r+1, 2r+1, c), alpha (2r+1, 2r+1) bool)."""
    d = np.arange(-r, r + 1, dtype=np.float32)
    dy, dx = d[:, None], d[None, :]
    alpha = (dy**2 + dx**2 <= r * r + 0.5) if rng.random() < 0.5 else np.ones((2 * r + 1, 2 * r + 1), bool)
    theta, freq = rng.uniform(0, np.pi), rng.uniform(0.3, 1.5)
    u, v = dx * np.cos(theta) + dy * np.sin(theta), dy * np.cos(theta) - dx * np.sin(theta)
    pattern = np.sin(freq * u) * (np.sin(freq * v) if rng.random() < 0.5 else 1.0)   # stripes or checks
    colors = rng.random((2, c)).astype(np.float32)
    return colors[0] + (colors[1] - colors[0]) * (0.5 + 0.5 * pattern[..., None]), alpha


def make_video(rng: np.random.Generator, cfg: SyntheticConfig) -> STSeries:
    h, w = _int(rng, cfg.video_side), _int(rng, cfg.video_side)
    t = _int(rng, cfg.video_steps)
    c = 3 if rng.random() < 0.8 else 1
    fps = float(rng.choice(cfg.video_fps))
    frame = np.arange(t, dtype=np.float64)
    # background: a smooth texture, tiled 2x2 so that a slow camera pan is a plain slice
    bg = np.fft.irfft2(_grf(rng, h, w, c, rng.uniform(2, 4), rng.uniform(3, max(h, w))), s=(h, w))
    bg = np.tile(0.5 + 0.15 * _standardize(bg, axis=(1, 2)).transpose(1, 2, 0), (2, 2, 1))   # (2h, 2w, c)
    pan = np.mod(np.round(rng.uniform(-0.5, 0.5, 2) * frame[:, None]), [h, w]).astype(int)    # (t, 2)
    video = np.empty((t, h, w, c), np.float32)
    for i, (oy, ox) in enumerate(pan):
        video[i] = bg[oy:oy + h, ox:ox + w]
    k = int(rng.integers(1, 5))
    radius = rng.integers(2, max(3, min(h, w) // 4) + 1, k)
    lo, hi = radius.astype(np.float64), np.array([h, w])[:, None] - 1.0 - radius            # (k,), (2, k)
    cy = np.round(_bounce(rng.uniform(lo, hi[0]), rng.uniform(-1.5, 1.5, k), frame, lo, hi[0])).astype(int)
    cx = np.round(_bounce(rng.uniform(lo, hi[1]), rng.uniform(-1.5, 1.5, k), frame, lo, hi[1])).astype(int)
    for j in range(k):                                                          # painter's order
        r = int(radius[j])
        tex, alpha = _sprite(rng, r, c)
        ay, ax = np.nonzero(alpha)                                              # (m,) sprite pixels
        rows = cy[:, j, None] - r + ay                                          # (t, m)
        cols = cx[:, j, None] - r + ax
        video[np.arange(t)[:, None], rows, cols] = tex[ay, ax]                  # paste in every frame
    if rng.random() < 0.5:                                                      # sensor noise
        video += rng.uniform(0, 0.03) * _noise(rng, video.shape)
    np.clip(video, 0, 1, out=video)
    return STSeries(values=video, mask=np.ones(video.shape, bool), layout="video",
                    interval_minutes=1.0 / (fps * 60.0), domain="synthetic",
                    channels=["r", "g", "b"] if c == 3 else ["gray"], meta={"kind": "video", "fps": fps, "shapes": k})


_MAKERS = {"grid": make_grid, "graph": make_graph, "video": make_video}


# ---------------------------------------------------------------------------------- corpus
class _Corpus:
    """Sequence access shared by the corpora: `corpus[i]` is `sample(i)`, `len` (endless: TypeError), iteration."""

    length: int | None

    def sample(self, index: int) -> STSeries:
        raise TypeError(f"{type(self).__name__} must define sample(index): _Corpus is only the sequence access "
                        "shared by SyntheticCorpus and the prior's corpus")

    def __getitem__(self, index: int) -> STSeries:
        return self.sample(index)

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError("this corpus is endless (length=None): iterate it or call sample(i)")
        return self.length

    def __iter__(self) -> Iterator[STSeries]:
        i = 0
        while self.length is None or i < self.length:
            yield self.sample(i)
            i += 1


@dataclass
class SyntheticCorpus(_Corpus):
    """`sample(i)` is deterministic in (seed, i); iteration yields sample(0), sample(1), ... (endless
    when `length` is None). `weights` (one per kind) sets how often each kind is drawn."""

    seed: int = 0
    kinds: tuple[str, ...] = KINDS
    config: SyntheticConfig = field(default_factory=SyntheticConfig)
    length: int | None = None
    weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        bad = [k for k in self.kinds if k not in _MAKERS]
        if bad or not self.kinds:
            raise DataError(f"unknown synthetic kinds {bad or '(none given)'}: choose from {KINDS}")
        if self.weights is not None and (len(self.weights) != len(self.kinds) or min(self.weights) < 0 or sum(self.weights) <= 0):
            raise DataError(f"weights must be {len(self.kinds)} non-negative numbers with a positive sum, got {self.weights}")

    def sample(self, index: int) -> STSeries:
        if index < 0 or (self.length is not None and index >= self.length):
            raise IndexError(f"sample {index} outside [0, {self.length})")
        rng = np.random.default_rng([self.seed, index])
        p = None if self.weights is None else np.asarray(self.weights, np.float64) / sum(self.weights)
        kind = self.kinds[int(rng.choice(len(self.kinds), p=p))]
        s = _MAKERS[kind](rng, self.config)
        s.name = f"synthetic_{kind}_{self.seed}_{index}"
        s.meta.update(seed=self.seed, index=index)
        return s


# ---------------------------------------------------------------------------------- in-context prior
PRIOR_SPATIAL = ("independent", "kernel", "lowrank", "shared")
PROFILE_SHAPES = ("fourier", "bumps", "sawtooth", "pulse", "smooth")


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


def _loguniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(np.exp(rng.uniform(np.log(lo_hi[0]), np.log(lo_hi[1]))))


def _pick(rng: np.random.Generator, names: tuple[str, ...], weights: tuple[float, ...]) -> str:
    w = np.asarray(weights, np.float64)
    return names[int(rng.choice(len(names), p=w / w.sum()))]


def _prior_space(rng: np.random.Generator, cfg: PriorConfig):
    """(layout, positions (N, 2) in the unit square, grid shape or None, edge_index, edge_weight)."""
    if rng.random() < cfg.p_graph:
        pos, ei, ew = random_geometric_graph(rng, _int(rng, cfg.graph_nodes, log=True))
        return "graph", pos, None, ei, ew
    h, w = _int(rng, cfg.grid_side), _int(rng, cfg.grid_side)
    iy, ix = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    pos = (np.stack([iy.ravel(), ix.ravel()], 1) + 0.5) / max(h, w)            # row-major cell centres
    return "grid", pos, (h, w), None, None


def _periods(rng: np.random.Generator, cfg: PriorConfig, t: int, interval: float, clocked: bool):
    """(periods, aligned): integer periods in steps, and whether each is a clock period (daily/weekly,
    phase tied to the timestamps). Without alignment the periods are random: no clock feature explains them."""
    if rng.random() >= cfg.p_seasonal:
        return [], []
    n, cap = _int(rng, cfg.num_periods), max(3, t // cfg.min_cycles)
    periods: list[int] = []
    if clocked and rng.random() < cfg.p_clock_periods:
        steps = [m / interval for m in (1440, 10080)]
        periods = [int(p) for p in steps if p == int(p) and 3 <= p <= cap][:n]
    aligned = [True] * len(periods)
    for _ in range(4 * n):
        if len(periods) >= n:
            break
        p = int(rng.choice(cfg.calendar_periods)) if rng.random() < cfg.p_calendar else \
            _int(rng, cfg.period_range, log=True)
        if p > cap:
            p = _int(rng, (min(cfg.period_range[0], cap), cap), log=True)
        if p not in periods:
            periods.append(p)
            aligned.append(False)
    return periods, aligned


def _profile(rng: np.random.Generator, p: int, rows: int, cfg: PriorConfig) -> tuple[np.ndarray, str]:
    """(rows, p) one period of a non-sinusoidal shape per latent row (zero mean, unit std), and its name.

    fourier: 1-6 random harmonics (fundamental always present); bumps: 1-3 peaks (rush hours);
    sawtooth: a ramp and a drop; pulse: on/off; smooth: low-passed random values."""
    shape = _pick(rng, PROFILE_SHAPES, cfg.shape_weights)
    ph = np.arange(p, dtype=np.float32) / p
    if shape == "fourier":
        h = np.arange(1, max(1, min(int(rng.integers(1, 7)), p // 2)) + 1)
        amp = rng.uniform(0, 1, (rows, len(h))) * h ** -rng.uniform(0, 1.5)
        amp[:, 0] = rng.uniform(0.5, 1.0, rows)
        phase = rng.uniform(0, 2 * np.pi, (rows, len(h)))
        ang = 2 * np.pi * h[:, None] * ph[None, :]
        prof = (amp * np.cos(phase)) @ np.cos(ang) - (amp * np.sin(phase)) @ np.sin(ang)
    elif shape == "bumps":
        m = int(rng.integers(1, 4))
        centre, height = rng.random((rows, m, 1)), rng.uniform(0.3, 1.0, (rows, m, 1))
        width = np.maximum(rng.uniform(0.01, 0.12, (rows, m, 1)), 0.6 / p)
        d = np.abs((ph - centre + 0.5) % 1.0 - 0.5)
        prof = (height * np.exp(-0.5 * (d / width) ** 2)).sum(1) * rng.choice([-1.0, 1.0])
    elif shape == "sawtooth":
        prof = ((ph + rng.random((rows, 1))) % 1.0) ** rng.uniform(0.5, 3.0) * rng.choice([-1.0, 1.0])
    elif shape == "pulse":
        on = rng.integers(1, p, (rows, 1))
        prof = ((np.arange(p) - rng.integers(0, p, (rows, 1))) % p < on).astype(np.float32)
    else:
        spec = np.fft.rfft(rng.standard_normal((rows, p)), axis=1)
        spec *= np.exp(-(np.arange(spec.shape[1]) / rng.uniform(1.0, p / 4 + 1.0)) ** 2)
        spec[:, 0] = 0
        spec[:, 1] += 0.5 * p * np.exp(1j * rng.uniform(0, 2 * np.pi, rows))     # keep the fundamental
        prof = np.fft.irfft(spec, n=p, axis=1)
    return _standardize(np.asarray(prof, np.float32), axis=1), shape


def _tile(prof: np.ndarray, start: np.ndarray, length: int) -> np.ndarray:
    """(rows, length): row r repeats prof[r] from phase start[r]."""
    rows, p = prof.shape
    rolled = prof[np.arange(rows)[:, None], (np.arange(p)[None, :] + start[:, None]) % p]
    return np.tile(rolled, (1, length // p + 1))[:, :length]


def _ar_noise(rng: np.random.Generator, rows: int, length: int) -> tuple[np.ndarray, str]:
    """(rows, length) unit-variance white, AR(1) or AR(2) noise (random stationary coefficients)."""
    e = _noise(rng, (rows, length))
    kind = _pick(rng, ("white", "ar1", "ar2"), (0.25, 0.4, 0.35))
    if kind == "white":
        return e, kind
    if kind == "ar1":
        a = [1.0, -rng.uniform(-0.5, 0.97)]
    elif rng.random() < 0.5:                                                    # two real roots
        r1, r2 = rng.uniform(-0.9, 0.95, 2)
        a = [1.0, -(r1 + r2), r1 * r2]
    else:                                                                       # complex roots: quasi-cycles
        r, th = rng.uniform(0.5, 0.97), rng.uniform(0.1, np.pi)
        a = [1.0, -2 * r * np.cos(th), r * r]
    y = lfilter(np.ones(1, np.float32), np.asarray(a, np.float32), e, axis=1)
    return y / (y.std() + 1e-6), kind


def _level(rng: np.random.Generator, rows: int, tau: np.ndarray, cfg: PriorConfig, comps: list[str]) -> np.ndarray | None:
    """(rows, length) trend + random walk + level shifts (each with its chance), or None."""
    base = None

    def add(x: np.ndarray) -> None:
        nonlocal base
        base = x if base is None else base + x

    if rng.random() < cfg.p_trend:
        kind = _pick(rng, ("linear", "damped", "piecewise"), (0.4, 0.25, 0.35))
        slope = (rng.normal() + 0.5 * rng.standard_normal((rows, 1))) * _loguniform(rng, (0.3, 3.0))
        if kind == "linear":
            add((slope * tau).astype(np.float32))
        elif kind == "damped":
            add((slope * (1 - np.exp(-tau / rng.uniform(0.05, 0.5)))).astype(np.float32))
        else:
            x = slope * tau
            for cp in np.sort(rng.uniform(0.05, 0.95, int(rng.integers(1, 5)))):
                x = x + slope * rng.normal(0, 1.5, (rows, 1)) * np.maximum(tau - cp, 0)
            add(x.astype(np.float32))
        comps.append(f"trend_{kind}")
    length = len(tau)
    if rng.random() < cfg.p_random_walk:
        add(np.cumsum(_noise(rng, (rows, length)), axis=1) * np.float32(_loguniform(rng, (0.3, 3.0)) / np.sqrt(length)))
        comps.append("random_walk")
    if rng.random() < cfg.p_level_shift:
        k = int(rng.integers(1, 4))
        at, jump = rng.uniform(0.05, 0.95, (k, rows, 1)), rng.normal(0, _loguniform(rng, (0.3, 2.0)), (k, rows, 1))
        add((jump * (tau >= at)).sum(0).astype(np.float32))
        comps.append("level_shift")
    return base


def _latents(rng: np.random.Generator, cfg: PriorConfig, rows: int, length: int, periods: list[int],
             aligned: list[bool], step0: int, comps: list[str]) -> tuple[np.ndarray, list[str]]:
    """(rows, length) standardised latent series (a random sum / product of components) and the profile
    shape of each period. Time index i is step step0 + i of the clock (aligned periods use that phase)."""
    tau = np.linspace(0, 1, length, dtype=np.float32)
    season, shapes = None, []
    if periods:
        parts = []
        for p, al in zip(periods, aligned):
            prof, shape = _profile(rng, p, rows, cfg)
            start = (step0 + rng.integers(-(p // 48), p // 48 + 1, rows)) % p if al else rng.integers(0, p, rows)
            parts.append(_tile(prof, start, length))
            shapes.append(shape)
        amps = rng.lognormal(0, 0.5, len(parts)).astype(np.float32)
        if len(parts) > 1 and rng.random() < cfg.p_seasonal_product:               # e.g. daily x weekly
            mod = parts[1] / (np.abs(parts[1]).max() + 1e-6)
            season = amps[0] * parts[0] * (1 + np.float32(rng.uniform(0.3, 0.9)) * mod)
            parts, amps = parts[2:], amps[2:]
            comps.append("seasonal_product")
        for a, part in zip(amps, parts):
            season = a * part if season is None else season + a * part
        comps.append("seasonal")
        if rng.random() < cfg.p_amplitude_drift:
            wob = rng.uniform(0.1, 0.5) * np.sin(2 * np.pi * rng.uniform(0.2, 1.5) * tau + rng.uniform(0, 2 * np.pi, (rows, 1)))
            season = season * np.exp(wob + rng.uniform(-1, 1) * (tau - 0.5)).astype(np.float32)
            comps.append("amplitude_drift")
    base = _level(rng, rows, tau, cfg, comps)
    if season is not None and base is not None and rng.random() < cfg.p_multiplicative:
        level = np.exp(np.float32(rng.uniform(0.2, 0.7)) * _standardize(base, axis=1))
        x = level * (1 + np.float32(rng.uniform(0.3, 0.9)) * season / (np.abs(season).max() + 1e-6))
        comps.append("multiplicative")
    else:
        x = season if base is None else base if season is None else base + season
    if x is None or rng.random() < cfg.p_noise:
        noise, kind = _ar_noise(rng, rows, length)
        comps.append(f"noise_{kind}")
        if x is not None and rng.random() < cfg.p_heteroscedastic:                 # scale tied to phase or level
            by = "phase" if season is not None and rng.random() < 0.5 else "level"
            ref = season if by == "phase" else x
            lo, hi = ref.min(axis=1, keepdims=True), ref.max(axis=1, keepdims=True)
            noise = noise * (0.2 + 1.6 * (ref - lo) / (hi - lo + 1e-6))
            comps.append(f"hetero_{by}")
        noise = noise * np.float32(_loguniform(rng, cfg.noise_scale))
        x = noise if x is None else x + noise
    return _standardize(x, axis=1), shapes


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
