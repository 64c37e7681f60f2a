"""Building blocks shared by the two seeded synthetic generators: the classic corpus (`synthetic.py`)
and the in-context forecasting prior (`prior.py`).

Kept in one place so that both draw their sizes, clocks, noise and missing values the same way:
  _noise                  standard normal noise sliced from a fixed bank (deterministic in the rng)
  _int, _loguniform, _pick  random integers (optionally log-uniform), log-uniform floats, weighted choices
  _clock                  a random start time -> (timestamps or None, minutes since the epoch)
  _missing, _observed     the missing-value mask (scattered points + outage blocks) and NaN-filled values
  random_geometric_graph  the random spatial graph both generators place their nodes on
  _Corpus                 the sequence access (`corpus[i]`, `len`, iteration) of both corpora
The underscored names are internal to unist.data.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
from scipy.spatial import cKDTree

from .series import STSeries

if TYPE_CHECKING:  # annotations only: both configs carry p_timestamps and the missing-value settings
    from .prior import PriorConfig
    from .synthetic import SyntheticConfig

_EPOCH = np.datetime64("2010-01-04T00:00", "m")          # a Monday
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


def _clock(rng: np.random.Generator, steps: int, interval: float, cfg: SyntheticConfig | PriorConfig):
    """(timestamps or None, minutes since the epoch (T,)): a random start within ten years."""
    start = _EPOCH + np.timedelta64(int(rng.integers(0, 3650 * 1440 // interval)) * int(interval), "m")
    minutes = (start - _EPOCH).astype(np.int64) + np.arange(steps) * interval
    stamps = start + (np.arange(steps) * interval).astype("timedelta64[m]")
    return (stamps if rng.random() < cfg.p_timestamps else None), minutes.astype(np.float64)


def _standardize(x: np.ndarray, axis=None) -> np.ndarray:
    return (x - x.mean(axis=axis, keepdims=True)) / (x.std(axis=axis, keepdims=True) + 1e-6)


def _missing(rng: np.random.Generator, shape: tuple[int, ...], cfg: SyntheticConfig | PriorConfig) -> np.ndarray:
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


def _loguniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(np.exp(rng.uniform(np.log(lo_hi[0]), np.log(lo_hi[1]))))


def _pick(rng: np.random.Generator, names: tuple[str, ...], weights: tuple[float, ...]) -> str:
    w = np.asarray(weights, np.float64)
    return names[int(rng.choice(len(names), p=w / w.sum()))]


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
