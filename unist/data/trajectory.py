"""Trajectories (irregular GPS points) -> a grid `STSeries` of point counts per cell per time bin.

The model sees grids, graphs and video, so trajectories are harmonised into the grid layout:
the bounding box is cut into `grid_size` cells (row 0 = north), time into `bin_minutes` bins, and
each value is the number of GPS points in that cell and bin (one channel, "points").

Only the time a tracker was recording says anything: a bin is *observed* when it overlaps the
[first, last] point time of at least one trajectory (an empty cell there is a true 0); other bins
are unknown. `gaps="drop"` keeps only the observed bins (timestamps then jump between recording
sessions and `sliding_windows` skips windows that straddle a jump); `gaps="mask"` keeps the full
regular time axis and marks the unobserved bins missing.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .series import DataError, STSeries


@dataclass
class TrajectoryGridOptions:
    bin_minutes: float = 10.0
    grid_size: tuple[int, int] = (16, 16)                                 # (H rows, W cols)
    bbox: tuple[float, float, float, float] | None = None                # (lat_min, lat_max, lon_min, lon_max)
    gaps: str = "drop"                                                    # "drop" | "mask"

    def __post_init__(self) -> None:
        if self.bin_minutes <= 0:
            raise DataError(f"bin_minutes must be > 0, got {self.bin_minutes}")
        if isinstance(self.grid_size, int):
            self.grid_size = (self.grid_size, self.grid_size)
        self.grid_size = (int(self.grid_size[0]), int(self.grid_size[1]))
        if min(self.grid_size) < 1:
            raise DataError(f"grid_size must be >= 1 per side, got {self.grid_size}")
        if self.gaps not in ("drop", "mask"):
            raise DataError(f"gaps must be 'drop' or 'mask', got {self.gaps!r}")
        if self.bbox is not None and not (self.bbox[0] < self.bbox[1] and self.bbox[2] < self.bbox[3]):
            raise DataError(f"bbox must be (lat_min, lat_max, lon_min, lon_max) with min < max, got {self.bbox}")


def read_geolife_csv(path: Path) -> dict[str, np.ndarray]:
    """The movingpandas GeoLife sample: `;`-separated X (lon), Y (lat), trajectory_id, t (UTC)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter=";"))
    if not rows:
        raise DataError(f"{path} has no rows")
    try:
        return {"lon": np.array([float(r["X"]) for r in rows]), "lat": np.array([float(r["Y"]) for r in rows]),
                "track": np.array([int(r["trajectory_id"]) for r in rows]),
                "time": np.array([r["t"][:19].replace(" ", "T") for r in rows], dtype="datetime64[s]")}
    except (KeyError, ValueError) as e:
        raise DataError(f"{path}: expected columns X;Y;trajectory_id;t (UTC 'YYYY-MM-DD hh:mm:ss'), failed with {e}") from e


def points_to_grid(lat: np.ndarray, lon: np.ndarray, time: np.ndarray, track: np.ndarray,
                   opts: TrajectoryGridOptions, name: str = "trajectories") -> STSeries:
    """Count points per (time bin, cell); see the module docstring for what is observed."""
    h, w = opts.grid_size
    lat0, lat1, lon0, lon1 = opts.bbox or (lat.min(), lat.max(), lon.min(), lon.max())
    lat_span, lon_span = max(lat1 - lat0, 1e-9), max(lon1 - lon0, 1e-9)
    inside = (lat >= lat0) & (lat <= lat1) & (lon >= lon0) & (lon <= lon1)
    row = np.clip(((lat1 - lat) / lat_span * h).astype(np.int64), 0, h - 1)      # row 0 = north
    col = np.clip(((lon - lon0) / lon_span * w).astype(np.int64), 0, w - 1)
    minutes = time.astype("datetime64[s]").astype(np.int64) / 60.0
    tbin = np.floor(minutes / opts.bin_minutes).astype(np.int64)
    active = np.unique(np.concatenate([np.arange(tbin[track == k].min(), tbin[track == k].max() + 1)
                                       for k in np.unique(track)]))            # bins some tracker recorded
    if opts.gaps == "drop":
        axis, observed = active, np.ones(len(active), bool)
    else:
        axis = np.arange(active[0], active[-1] + 1)
        observed = np.isin(axis, active)
    step = np.searchsorted(axis, tbin)
    counts = np.zeros((len(axis), h, w), np.float32)
    np.add.at(counts, (step[inside], row[inside], col[inside]), 1.0)
    values = counts[..., None]                                                   # (T, H, W, 1)
    mask = np.broadcast_to(observed[:, None, None, None], values.shape).copy()
    lat_c = lat1 - (np.arange(h) + 0.5) * lat_span / h
    lon_c = lon0 + (np.arange(w) + 0.5) * lon_span / w
    coords = np.stack(np.meshgrid(lat_c, lon_c, indexing="ij"), -1)              # (H, W, 2) lat, lon
    stamps = np.round(axis * opts.bin_minutes * 60).astype("timedelta64[s]") + np.datetime64(0, "s")
    return STSeries(values=values, mask=mask, layout="grid", coords=coords, timestamps=stamps,
                    interval_minutes=float(opts.bin_minutes), domain="mobility", name=name, channels=["points"],
                    meta={"coords_kind": "lat_lon", "points_outside_bbox": int((~inside).sum()), "gaps": opts.gaps,
                          "bbox": (float(lat0), float(lat1), float(lon0), float(lon1))})


def load_trajectory_grid(path: Path, name: str = "geolife_sample", **options) -> STSeries:
    try:
        opts = TrajectoryGridOptions(**options)
    except TypeError as e:
        raise DataError(f"bad trajectory option ({e}); valid options: bin_minutes, grid_size, bbox, gaps") from e
    p = read_geolife_csv(path)
    return points_to_grid(p["lat"], p["lon"], p["time"], p["track"], opts, name)
