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
The in-context forecasting prior lives in `prior.py`; the helpers both share in `synthetic_common.py`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.signal import lfilter

from .graph import GraphStructure
from .series import DataError, STSeries
from .synthetic_common import _clock, _Corpus, _int, _missing, _noise, _observed, _standardize, random_geometric_graph

KINDS = ("grid", "graph", "video")


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
