"""`STSeries`: the one record type for a spatio-temporal series (grid, graph or video).

Every reader (registered datasets, the unist npz format, video files, the synthetic corpus)
returns an `STSeries`; preprocessing, the patcher and the model consume it. Missing values are
carried by `mask` (False = missing) and are stored as NaN in `values`, so that code that forgets
the mask fails loudly instead of silently training on zeros.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

Layout = Literal["grid", "graph", "video"]
LAYOUTS: tuple[str, ...] = ("grid", "graph", "video")


class DataError(ValueError):
    """Bad input data: the message names the problem and how to fix it."""


def check_edges(num_nodes: int, edge_index, edge_weight=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Validated (edge_index int64 [2, E], edge_weight float32 [E] or None) for a graph of num_nodes."""
    ei = np.asarray(edge_index)
    if ei.ndim != 2 or ei.shape[0] != 2:
        raise DataError(f"edge_index must have shape [2, E], got {ei.shape}")
    if not np.issubdtype(ei.dtype, np.integer):
        raise DataError(f"edge_index must be integer, got {ei.dtype}")
    if ei.size and (ei.min() < 0 or ei.max() >= num_nodes):
        raise DataError(f"edge_index refers to nodes outside [0, {num_nodes}) (min {ei.min()}, max "
                        f"{ei.max()}): renumber nodes 0..N-1")
    ew = None
    if edge_weight is not None:
        ew = np.asarray(edge_weight, dtype=np.float32)
        if ew.shape != (ei.shape[1],):
            raise DataError(f"edge_weight must have shape [E={ei.shape[1]}], got {ew.shape}")
    return ei.astype(np.int64), ew


def check_timestamps(timestamps, num_steps: int, name: str = "series") -> np.ndarray:
    """Validated datetime64[m] [T] timestamps: the right length, no NaT, strictly increasing.

    Order is checked at the given precision and again at minutes (the stored precision), so two
    steps within one minute are caught too; the error names the first offending index."""
    ts = np.asarray(timestamps)
    if ts.shape != (num_steps,):
        raise DataError(f"timestamps must have shape [T={num_steps}], got {ts.shape}")
    if not np.issubdtype(ts.dtype, np.datetime64):
        raise DataError(f"timestamps must be datetime64, got {ts.dtype}")
    nat = np.isnat(ts)
    if nat.any():
        raise DataError(f"series {name!r}: timestamps[{int(np.argmax(nat))}] is NaT ({int(nat.sum())} NaT in all); "
                        "give every step a time (or drop the timestamps)")
    for stamps, unit in ((ts, "the given precision"), (ts.astype("datetime64[m]"), "minute precision")):
        bad = np.flatnonzero(np.diff(stamps) <= np.timedelta64(0))
        if bad.size:
            i = int(bad[0]) + 1
            what = "repeats" if stamps[i] == stamps[i - 1] else "is before"
            raise DataError(f"series {name!r}: timestamps must be strictly increasing, but timestamps[{i}] = "
                            f"{stamps[i]} {what} timestamps[{i - 1}] = {stamps[i - 1]} (at {unit}; {bad.size} such "
                            "step(s)); sort the steps by time and drop duplicates, e.g. order = np.argsort(ts, "
                            "kind='stable') and keep np.unique(ts, return_index=True)[1]")
    return ts.astype("datetime64[m]")


@dataclass
class STSeries:
    """A spatio-temporal series.

    values:   float32 [T, H, W, C] (grid, video) or [T, N, C] (graph); NaN where missing.
    mask:     bool, same shape as `values`; False = missing.
    layout:   "grid" | "graph" | "video".
    coords:   graph: float [N, 2] node coordinates (lat, lon / x, y) or None;
              grid/video: float [H, W, 2] cell-centre coordinates or None (implicit regular grid).
    edge_index / edge_weight: graph only, int64 [2, E] / float32 [E] or None.
    timestamps: datetime64[m] [T] or None.  interval_minutes: sampling step, or None if unknown.
    domain:   a short domain tag ("traffic", "bike", "weather", "epidemic", "bus", "video", "synthetic").
    name:     dataset or file name.  channels: channel names (len C) or None.
    """

    values: np.ndarray
    mask: np.ndarray
    layout: str
    coords: np.ndarray | None = None
    edge_index: np.ndarray | None = None
    edge_weight: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    interval_minutes: float | None = None
    domain: str = "unknown"
    name: str = "unnamed"
    channels: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ shape helpers
    @property
    def num_steps(self) -> int:
        return int(self.values.shape[0])

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.values.shape[1:-1])

    @property
    def num_channels(self) -> int:
        return int(self.values.shape[-1])

    @property
    def num_nodes(self) -> int:
        """Number of spatial locations (N for graphs, H*W for grids and video)."""
        return int(np.prod(self.spatial_shape))

    @property
    def missing_rate(self) -> float:
        return float(1.0 - self.mask.mean()) if self.mask.size else 0.0

    def slice_time(self, start: int, stop: int) -> "STSeries":
        """The steps [start, stop) as a new series (shares graph structure and coordinates)."""
        ts = None if self.timestamps is None else self.timestamps[start:stop]
        return replace(self, values=self.values[start:stop], mask=self.mask[start:stop], timestamps=ts,
                       meta=dict(self.meta))

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        v, m = self.values, self.mask
        if self.layout not in LAYOUTS:
            raise DataError(f"layout {self.layout!r} is unknown: use one of {LAYOUTS}")
        if not isinstance(v, np.ndarray) or not isinstance(m, np.ndarray):
            raise DataError("values and mask must be numpy arrays (convert tensors with .numpy())")
        want_rank = 3 if self.layout == "graph" else 4
        if v.ndim != want_rank:
            dims = "[T, N, C]" if self.layout == "graph" else "[T, H, W, C]"
            raise DataError(f"{self.layout} values must have rank {want_rank} {dims}, got shape {v.shape}")
        if m.shape != v.shape:
            raise DataError(f"mask shape {m.shape} does not match values shape {v.shape}: give one mask "
                            "entry per value (False = missing)")
        if m.dtype != np.bool_:
            raise DataError(f"mask must be bool (False = missing), got {m.dtype}")
        if v.shape[0] < 1:
            raise DataError(f"series {self.name!r} has no time steps")
        if any(s < 1 for s in v.shape[1:]):
            what = "empty graph (0 nodes)" if self.layout == "graph" else "empty spatial extent"
            raise DataError(f"series {self.name!r}: {what} in shape {v.shape}; give at least one location "
                            "and one channel")
        if v.dtype != np.float32:
            self.values = v = v.astype(np.float32)
        obs = v[m]
        if obs.size and not np.isfinite(obs).all():
            bad = int((~np.isfinite(obs)).sum())
            raise DataError(f"series {self.name!r}: {bad} observed values are NaN/inf; mark them missing "
                            "in `mask` (or NaN in the npz `data`) or clean them")
        if (~m).any():
            self.values = v = np.where(m, v, np.float32(np.nan)).astype(np.float32)
        if self.layout == "graph":
            n = v.shape[1]
            if self.coords is not None:
                self.coords = np.asarray(self.coords, dtype=np.float64)
                if self.coords.shape != (n, 2) or not np.isfinite(self.coords).all():
                    raise DataError(f"graph coords must be finite [N={n}, 2], got {self.coords.shape}")
            if self.edge_index is not None:
                self.edge_index, self.edge_weight = check_edges(n, self.edge_index, self.edge_weight)
        else:
            if self.edge_index is not None:
                raise DataError(f"edge_index given for a {self.layout} series: only graphs have edges")
            if self.coords is not None:
                self.coords = np.asarray(self.coords, dtype=np.float64)
                if self.coords.shape != (v.shape[1], v.shape[2], 2):
                    raise DataError(f"{self.layout} coords must be [H, W, 2], got {self.coords.shape}")
        if self.timestamps is not None:
            self.timestamps = check_timestamps(self.timestamps, v.shape[0], self.name)
        if self.channels is not None and len(self.channels) != v.shape[-1]:
            raise DataError(f"{len(self.channels)} channel names for {v.shape[-1]} channels")
