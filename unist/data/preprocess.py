"""Preprocessing for `STSeries`: chronological splits, train-only normalisation, sliding windows,
calendar features and a spectral layout for graphs without coordinates.

Leakage is the main risk in forecasting pipelines, so the rules are enforced, not just documented:
splits are contiguous blocks in time order (train, then val, then test) and tagged in
`meta["split"]`, and `Normalizer.fit` refuses a series tagged "val" or "test".
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from scipy.sparse import csgraph
from scipy.sparse.linalg import eigsh

from .series import DataError, STSeries, check_edges

SPLIT_NAMES = ("train", "val", "test")
_DENSE_MAX = 64     # components up to this size use a dense eigensolver (multithreaded LAPACK thrashes on
                    # busy machines; sparse shift-invert is faster beyond this size)


# ---------------------------------------------------------------------------------- splits
def split_series(series: STSeries, ratios: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> dict[str, STSeries]:
    """Cut `series` into contiguous train / val / test blocks, in time order.

    Boundaries are round(T * cumulative ratio); every split gets at least one step. Each part is
    tagged `meta["split"]` and `meta["split_start"]` (its first step in the full series).
    """
    r = np.asarray(ratios, dtype=np.float64)
    if r.shape != (3,) or (r <= 0).any() or not np.isclose(r.sum(), 1.0):
        raise DataError(f"split ratios must be three positive numbers summing to 1, got {ratios}")
    t = series.num_steps
    if t < 3:
        raise DataError(f"series {series.name!r} has {t} steps: a train/val/test split needs at least 3")
    b1 = int(np.clip(round(t * r[0]), 1, t - 2))
    b2 = int(np.clip(round(t * (r[0] + r[1])), b1 + 1, t - 1))
    out = {}
    for name, (lo, hi) in zip(SPLIT_NAMES, [(0, b1), (b1, b2), (b2, t)]):
        part = series.slice_time(lo, hi)
        part.meta.update(split=name, split_start=lo)
        out[name] = part
    return out


# ---------------------------------------------------------------------------------- normalisation
@dataclass
class Normalizer:
    """Per-channel z-scoring, fitted on the training split only; NaN (missing) values are ignored.

    std is floored at `min_std` so that constant channels do not blow up.
    """

    mean: np.ndarray | None = None   # (C,) float64
    std: np.ndarray | None = None    # (C,) float64
    min_std: float = 1e-3

    def fit(self, train: STSeries) -> "Normalizer":
        split = train.meta.get("split")
        if split is not None and split != "train":
            raise DataError(f"Normalizer.fit got the {split!r} split: fit on split_series(...)['train'] only, "
                            "so that no statistic leaks from validation or test data")
        c = train.num_channels
        v = train.values.reshape(-1, c).astype(np.float64)    # (T*space, C)
        m = train.mask.reshape(-1, c)
        count = m.sum(0)
        if (count == 0).any():
            raise DataError(f"channels {np.flatnonzero(count == 0).tolist()} of {train.name!r} have no observed "
                            "value in the training split: cannot normalise them")
        v = np.where(m, v, 0.0)
        mean = v.sum(0) / count
        var = (np.where(m, v - mean, 0.0) ** 2).sum(0) / count
        self.mean, self.std = mean, np.maximum(np.sqrt(var), self.min_std)
        return self

    def _check(self, c: int) -> None:
        if self.mean is None or self.std is None:
            raise DataError("Normalizer is not fitted: call fit(train_split) or from_state_dict(...) first")
        if c != self.mean.shape[0]:
            raise DataError(f"Normalizer was fitted on {self.mean.shape[0]} channels but got {c}")

    def transform(self, x: STSeries | np.ndarray) -> STSeries | np.ndarray:
        """(x - mean) / std per channel (last axis); keeps NaN where missing."""
        return self._apply(x, lambda a: (a - self.mean) / self.std)

    def inverse_transform(self, x: STSeries | np.ndarray) -> STSeries | np.ndarray:
        """x * std + mean per channel (last axis): back to data units."""
        return self._apply(x, lambda a: a * self.std + self.mean)

    def _apply(self, x, fn):
        if isinstance(x, STSeries):
            self._check(x.num_channels)
            return replace(x, values=fn(x.values).astype(np.float32), mask=x.mask.copy(), meta=dict(x.meta))
        a = np.asarray(x)
        self._check(a.shape[-1])
        return fn(a).astype(a.dtype if np.issubdtype(a.dtype, np.floating) else np.float32)

    def state_dict(self) -> dict:
        self._check(0 if self.mean is None else self.mean.shape[0])
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "min_std": self.min_std}

    @classmethod
    def from_state_dict(cls, state: dict) -> "Normalizer":
        try:
            return cls(mean=np.asarray(state["mean"], np.float64), std=np.asarray(state["std"], np.float64),
                       min_std=float(state.get("min_std", 1e-3)))
        except KeyError as e:
            raise DataError(f"Normalizer state is missing key {e}: pass the dict from Normalizer.state_dict()") from e


# ---------------------------------------------------------------------------------- windows
def num_windows(num_steps: int, length: int, stride: int = 1) -> int:
    """How many windows of `length` steps fit in `num_steps` with step `stride` (regular series)."""
    return 0 if num_steps < length else (num_steps - length) // stride + 1


def _gap_free(series: STSeries) -> np.ndarray | None:
    """(T-1,) bool: step t -> t+1 is one regular interval; None when timestamps or interval are unknown.

    "Regular" is within 10 % of the interval: calendar steps have a nominal interval (a month is 28-31
    days against 30.44, a year 365 or 366 days), while a real gap is at least two intervals."""
    if series.timestamps is None or not series.interval_minutes:
        return None
    step = np.diff(series.timestamps.astype("datetime64[s]").astype(np.int64)) / 60.0
    return np.abs(step - series.interval_minutes) <= 0.1 * series.interval_minutes


def sliding_windows(series: STSeries, context: int, horizon: int = 0, stride: int = 1) -> Iterator[STSeries]:
    """Yield windows of `context + horizon` steps as `STSeries`, starting every `stride` steps.

    A window carries `meta["window_start"]`, `meta["context"]`, `meta["horizon"]`; cut it into
    input and target with `split_context_target`. Windows that straddle a gap in the timestamps
    (e.g. between the recording sessions of `geolife_sample`) are skipped.
    """
    if context < 1 or horizon < 0 or stride < 1:
        raise DataError(f"need context >= 1, horizon >= 0, stride >= 1; got {context}, {horizon}, {stride}")
    length = context + horizon
    regular = _gap_free(series)
    bad = None if regular is None else np.concatenate([[0], np.cumsum(~regular)])  # gaps before step t
    for start in range(0, series.num_steps - length + 1, stride):
        if bad is not None and bad[start + length - 1] != bad[start]:
            continue
        w = series.slice_time(start, start + length)
        w.meta.update(window_start=start, context=context, horizon=horizon)
        yield w


def split_context_target(window: STSeries) -> tuple[STSeries, STSeries]:
    """(context, target) halves of a window made by `sliding_windows` with horizon > 0."""
    c, h = window.meta.get("context"), window.meta.get("horizon")
    if c is None or not h:
        raise DataError("window has no horizon: make it with sliding_windows(series, context, horizon>0)")
    return window.slice_time(0, c), window.slice_time(c, c + h)


# ---------------------------------------------------------------------------------- calendar
def time_features(timestamps: np.ndarray) -> np.ndarray:
    """(T, 4) float32: sin/cos of the time of day and sin/cos of the (continuous) day of week.

    Day of week runs Monday 00:00 = 0 to Sunday 24:00 = 1 (1970-01-01 was a Thursday).
    """
    ts = np.asarray(timestamps)
    if ts.ndim != 1 or not np.issubdtype(ts.dtype, np.datetime64):
        raise DataError(f"timestamps must be a 1-D datetime64 array, got {ts.dtype} {ts.shape}")
    minutes = ts.astype("datetime64[s]").astype(np.int64) / 60.0
    day = np.mod(minutes, 1440.0) / 1440.0
    week = np.mod(minutes / 1440.0 + 3.0, 7.0) / 7.0
    ang = 2 * np.pi * np.stack([day, week], 1)                                    # (T, 2)
    return np.stack([np.sin(ang[:, 0]), np.cos(ang[:, 0]), np.sin(ang[:, 1]), np.cos(ang[:, 1])], 1).astype(np.float32)


# ---------------------------------------------------------------------------------- spectral layout
def _component_layout(adj: sp.csr_matrix) -> np.ndarray:
    """(n, 2) in [0, 1]^2: random-walk Laplacian eigenvectors 2 and 3 of one connected component."""
    n = adj.shape[0]
    if n == 1:
        return np.full((1, 2), 0.5)
    lap = csgraph.laplacian(adj, normed=True)
    k = min(3, n)
    if n <= _DENSE_MAX:
        _, vec = scipy.linalg.eigh(lap.toarray(), subset_by_index=[0, k - 1])
    else:  # shift-invert just below 0 with a fixed start vector: deterministic, O(E) memory
        val, vec = eigsh(lap.tocsc(), k=k, sigma=-1e-3, v0=np.ones(n))
        vec = vec[:, np.argsort(val)]
    deg = np.asarray(adj.sum(1)).ravel()
    vec = vec[:, 1:] / np.sqrt(deg)[:, None]                                       # random-walk eigenvectors
    if vec.shape[1] == 1:
        vec = np.concatenate([vec, np.zeros((n, 1))], 1)
    # sign: the lowest-index entry that is clearly non-zero is positive (robust to round-off, unlike
    # "largest entry", which ties on symmetric graphs such as paths)
    big = np.abs(vec) > 1e-6 * np.abs(vec).max(0, keepdims=True).clip(1e-300)
    first = np.argmax(big, 0)                                                      # (2,)
    vec = vec * np.where(vec[first, [0, 1]] < 0, -1.0, 1.0)
    lo, span = vec.min(0), np.ptp(vec, 0)
    return np.where(span > 1e-12, (vec - lo) / np.where(span > 1e-12, span, 1.0), 0.5)


def spectral_layout(num_nodes: int, edge_index: np.ndarray | None, edge_weight: np.ndarray | None = None) -> np.ndarray:
    """(N, 2) float64 node positions in [0, 1]^2 from the graph Laplacian, deterministic.

    Edges are symmetrised (|weight|, self-loops ignored). Each connected component is laid out
    on its own (eigenvectors 2 and 3, the sign fixed so that the first clearly non-zero entry
    is positive) and placed in its own cell of a near-square grid of cells, largest component
    first (ties: smallest node id). Isolated nodes sit at their cell's centre.
    """
    if num_nodes < 1:
        raise DataError("spectral_layout needs at least one node")
    ei, ew = check_edges(num_nodes, np.zeros((2, 0), np.int64) if edge_index is None else edge_index, edge_weight)
    w = np.ones(ei.shape[1]) if ew is None else np.abs(ew.astype(np.float64))
    keep = (ei[0] != ei[1]) & (w > 0)
    a = sp.coo_matrix((w[keep], (ei[0, keep], ei[1, keep])), shape=(num_nodes, num_nodes)).tocsr()
    a = (a + a.T).tocsr()
    ncomp, label = csgraph.connected_components(a, directed=False)
    comps = [np.flatnonzero(label == c) for c in range(ncomp)]
    comps.sort(key=lambda nodes: (-len(nodes), nodes[0]))
    cols = int(np.ceil(np.sqrt(ncomp)))
    rows = int(np.ceil(ncomp / cols))
    pos = np.empty((num_nodes, 2))
    for j, nodes in enumerate(comps):
        local = _component_layout(a[nodes][:, nodes])
        cell = np.array([j // cols, j % cols], dtype=np.float64)
        # 10 % margin inside each cell keeps components apart
        pos[nodes] = (cell + 0.1 + 0.8 * local) / np.array([rows, cols], dtype=np.float64)
    return pos
