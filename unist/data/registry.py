"""Registered real datasets: names -> readers for the offline copies under `UNIST_DATA_DIR`.

The data directory is `$UNIST_DATA_DIR`, else `<repo root>/../shared/data`, else
`../shared/data` relative to the working directory. Each folder's SOURCE.md documents the keys,
units and timestamps that the readers below rely on. Graph datasets (with or without a series)
also give their `GraphStructure` through `load_graph`.
"""
from __future__ import annotations

import copy
import csv
import difflib
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .graph import GraphStructure, adjacency_to_edges
from .series import DataError, STSeries
from .trajectory import load_trajectory_grid
from .video import VIDEO_SUFFIXES, read_video

_REPO_ROOT = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """Where the real datasets live (see the module docstring)."""
    env = os.environ.get("UNIST_DATA_DIR")
    if env:
        return Path(env)
    for cand in (_REPO_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"):
        if cand.is_dir():
            return cand
    return _REPO_ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: str                      # "graph" | "grid" | "video" | "graph structure"
    domain: str
    interval_minutes: float | None
    folder: str
    description: str

    @property
    def has_series(self) -> bool:
        return self.kind != "graph structure"

    @property
    def has_graph(self) -> bool:
        return self.kind.startswith("graph")


def _file(folder: str, name: str) -> Path:
    path = data_dir() / folder / name
    if not path.is_file():
        raise DataError(f"data file {path} is missing: point UNIST_DATA_DIR at the folder that holds {folder}/ "
                        f"(now {data_dir()})")
    return path


def _npz(folder: str, name: str) -> dict[str, np.ndarray]:
    with np.load(_file(folder, name), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _csv_rows(folder: str, name: str, skip_header: bool) -> list[list[str]]:
    with open(_file(folder, name), newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    return rows[1:] if skip_header else rows


# ---------------------------------------------------------------------------------- graphs
def _graph_metr_la() -> GraphStructure:
    z = _npz("metr_la_week", "metr_la_week.npz")
    rows = _csv_rows("metr_la_week", "graph_sensor_locations.csv", skip_header=True)   # index,sensor_id,lat,lon
    if [r[1] for r in rows] != z["sensor_ids"].tolist():
        raise DataError("metr_la_week: graph_sensor_locations.csv is not in the order of sensor_ids")
    ei, ew = adjacency_to_edges(z["adj_mx"])
    coords = np.array([[float(r[2]), float(r[3])] for r in rows])
    return GraphStructure.build(len(rows), ei, ew, coords, z["sensor_ids"], "metr_la_week", "lat_lon")


def _graph_pems_bay() -> GraphStructure:
    z = _npz("pems_bay_graph", "pems_bay_adj.npz")
    rows = _csv_rows("pems_bay_graph", "graph_sensor_locations_bay.csv", skip_header=False)  # id,lat,lon
    loc = {r[0]: (float(r[1]), float(r[2])) for r in rows}
    ids = z["sensor_ids"].tolist()
    if set(ids) - set(loc):
        raise DataError(f"pems_bay_graph: no location for sensors {sorted(set(ids) - set(loc))[:5]}")
    ei, ew = adjacency_to_edges(z["adj_mx"])
    return GraphStructure.build(len(ids), ei, ew, np.array([loc[i] for i in ids]), z["sensor_ids"], "pems_bay_graph")


_PEMS_NODES = {"pems03": 358, "pems04": 307, "pems07": 883, "pems08": 170}


def _graph_pems(name: str) -> GraphStructure:
    n = _PEMS_NODES[name]
    rows = _csv_rows("pems_graphs", f"{name.upper()}.csv", skip_header=True)           # from,to,cost
    src = np.array([int(r[0]) for r in rows])
    dst = np.array([int(r[1]) for r in rows])
    cost = np.array([float(r[2]) for r in rows], np.float32)
    if name == "pems03":  # raw PeMS station ids; PEMS03.txt lists them in node order
        ids = np.array([int(r[0]) for r in _csv_rows("pems_graphs", "PEMS03.txt", skip_header=False)])
        index = {sid: i for i, sid in enumerate(ids.tolist())}
        try:
            src, dst = np.array([index[s] for s in src]), np.array([index[d] for d in dst])
        except KeyError as e:
            raise DataError(f"pems03: station {e} of PEMS03.csv is not listed in PEMS03.txt") from None
    else:
        ids = np.arange(n)
    if len(ids) != n or max(src.max(), dst.max()) >= n:
        raise DataError(f"{name}: expected {n} nodes with ids 0..{n - 1}, found ids up to {max(src.max(), dst.max())}")
    return GraphStructure.build(n, np.stack([src, dst]), cost, None, ids, name)


def _graph_montevideo() -> GraphStructure:
    z = _npz("montevideo_bus", "montevideo_bus.npz")
    coords = np.stack([z["coord_x"], z["coord_y"]], 1).astype(np.float64)              # projected metres
    return GraphStructure.build(len(coords), z["edge_index"], z["edge_weight"], coords, z["bus_stop_ids"],
                                "montevideo_bus", "projected_m")


def _graph_chickenpox() -> GraphStructure:
    z = _npz("chickenpox_hungary", "chickenpox_hungary.npz")
    return GraphStructure.build(z["data"].shape[1], z["edge_index"], None, None, z["county_names"], "chickenpox_hungary")


# ---------------------------------------------------------------------------------- series
def _on_graph(values: np.ndarray, g: GraphStructure, spec: DatasetSpec, timestamps=None, meta=None) -> STSeries:
    v = values.astype(np.float32)
    return STSeries(values=v, mask=~np.isnan(v), layout="graph", coords=g.coords, edge_index=g.edge_index,
                    edge_weight=g.edge_weight, timestamps=timestamps, interval_minutes=spec.interval_minutes,
                    domain=spec.domain, name=spec.name,
                    meta={"node_ids": g.node_ids, "coords_kind": g.coords_kind, **(meta or {})})


def _on_grid(values: np.ndarray, spec: DatasetSpec, timestamps, channels, coords=None, meta=None) -> STSeries:
    v = values.astype(np.float32)
    return STSeries(values=v, mask=~np.isnan(v), layout="grid", coords=coords, timestamps=timestamps,
                    interval_minutes=spec.interval_minutes, domain=spec.domain, name=spec.name, channels=channels,
                    meta=meta or {})


def _series_metr_la(spec: DatasetSpec) -> STSeries:
    z = _npz("metr_la_week", "metr_la_week.npz")
    return _on_graph(z["data"], load_graph("metr_la_week"), spec, z["timestamps"], {"units": "mph", "timestamps_inferred": True})


def _series_montevideo(spec: DatasetSpec) -> STSeries:
    z = _npz("montevideo_bus", "montevideo_bus.npz")
    # SOURCE.md: 744 hourly steps = October 2020 (31 days), so the series starts 2020-10-01T00:00.
    ts = np.datetime64("2020-10-01T00:00") + np.arange(z["data"].shape[0]) * np.timedelta64(60, "m")
    return _on_graph(z["data"], load_graph("montevideo_bus"), spec, ts, {"units": "passengers/hour", "timestamps_inferred": True})


def _series_chickenpox(spec: DatasetSpec) -> STSeries:
    z = _npz("chickenpox_hungary", "chickenpox_hungary.npz")  # no exact start date in SOURCE.md: no timestamps
    return _on_graph(z["data"], load_graph("chickenpox_hungary"), spec, None, {"units": "standardized cases"})


def _series_bike(spec: DatasetSpec) -> STSeries:
    z = _npz(spec.folder, f"{spec.name}.npz")
    return _on_grid(z["data"], spec, z["timestamps_inferred"], ["inflow", "outflow"],
                    meta={"units": "bikes/step", "timestamps_inferred": True})


def _series_era5(spec: DatasetSpec) -> STSeries:
    z = _npz("era5_t2m_uk", "era5_t2m_uk_2019_03.npz")
    coords = np.stack(np.meshgrid(z["lat"], z["lon"], indexing="ij"), -1)            # (H, W, 2) lat, lon
    return _on_grid(z["data"][..., None], spec, z["timestamps"], ["t2m"], coords, {"units": "K", "coords_kind": "lat_lon"})


def _video_path(stem: str) -> Path:
    folder = data_dir() / "videos"
    hits = sorted(p for p in folder.glob(f"{stem}.*") if p.suffix.lower() in VIDEO_SUFFIXES) if folder.is_dir() else []
    if not hits:
        raise DataError(f"no video {stem!r} under {folder} (suffixes {VIDEO_SUFFIXES}); set UNIST_DATA_DIR to the "
                        "folder holding videos/")
    return hits[0]


_SPECS = [
    DatasetSpec("metr_la_week", "graph", "traffic", 5, "metr_la_week", "METR-LA first week, 207 sensors, speed (mph)"),
    DatasetSpec("montevideo_bus", "graph", "bus", 60, "montevideo_bus", "Montevideo bus-stop passenger inflow, Oct 2020"),
    DatasetSpec("chickenpox_hungary", "graph", "epidemic", 7 * 1440, "chickenpox_hungary",
                "weekly chickenpox cases (standardized), 20 Hungarian counties"),
    DatasetSpec("nyc_bike1", "grid", "bike", 60, "nyc_bike1", "NYC bike in/out flow, 16x8 grid (ST-ResNet BikeNYC)"),
    DatasetSpec("nyc_bike2", "grid", "bike", 30, "nyc_bike2", "NYC bike in/out flow, 10x20 grid (STDN)"),
    DatasetSpec("era5_t2m_uk", "grid", "weather", 60, "era5_t2m_uk", "ERA5 2 m temperature (K), UK, March 2019"),
    DatasetSpec("geolife_sample", "grid", "mobility", None, "geolife_sample",
                "GeoLife GPS points -> counts per cell per time bin"),
    DatasetSpec("pems_bay_graph", "graph structure", "traffic", None, "pems_bay_graph", "PEMS-BAY sensor graph, 325 nodes"),
    *[DatasetSpec(k, "graph structure", "traffic", None, "pems_graphs", f"{k.upper()} sensor graph, {n} nodes")
      for k, n in _PEMS_NODES.items()],
    *[DatasetSpec(k, "video", "video", None, "videos", d) for k, d in [
        ("mmaction2_demo", "arm wrestling, 340x256, 28 fps"), ("mmaction2_test", "eye make-up, 320x240, 25 fps"),
        ("flipping_a_pancake", "pancake flip, 426x240, 30 fps"), ("bigbuckbunny", "Big Buck Bunny, 1280x720, 25 fps")]],
]
DATASETS: dict[str, DatasetSpec] = {s.name: s for s in _SPECS}
ALIASES = {"pems_bay": "pems_bay_graph"}

_SERIES: dict[str, Callable[[DatasetSpec], STSeries]] = {
    "metr_la_week": _series_metr_la, "montevideo_bus": _series_montevideo, "chickenpox_hungary": _series_chickenpox,
    "nyc_bike1": _series_bike, "nyc_bike2": _series_bike, "era5_t2m_uk": _series_era5,
}
_GRAPHS: dict[str, Callable[[], GraphStructure]] = {
    "metr_la_week": _graph_metr_la, "montevideo_bus": _graph_montevideo, "chickenpox_hungary": _graph_chickenpox,
    "pems_bay_graph": _graph_pems_bay, **{k: (lambda k=k: _graph_pems(k)) for k in _PEMS_NODES},
}


def list_datasets(kind: str | None = None) -> list[str]:
    """Registered dataset names (optionally only one kind: graph, grid, video, 'graph structure')."""
    return [n for n, s in DATASETS.items() if kind is None or s.kind == kind]


def canonical_name(name: str) -> str | None:
    """The registered name for `name` (case, '-' and aliases tolerated) or None."""
    key = name.strip().lower().replace("-", "_")
    if key.startswith("video:"):
        return key
    key = ALIASES.get(key, key)
    return key if key in DATASETS else None


def unknown_name_error(name: str) -> DataError:
    close = difflib.get_close_matches(name.lower(), list(DATASETS) + list(ALIASES), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return DataError(f"unknown dataset {name!r}.{hint} Known datasets: {', '.join(DATASETS)}; or pass a path to a "
                     ".npz (unist npz format) or a video file, or 'video:<stem>' for a clip under UNIST_DATA_DIR/videos")


def _no_options(name: str, options: dict) -> None:
    if options:
        raise DataError(f"dataset {name!r} takes no options, got {sorted(options)}")


def load_registered(name: str, **options) -> STSeries:
    """Load a registered dataset by name (options: video and geolife_sample only)."""
    key = canonical_name(name)
    if key is None:
        raise unknown_name_error(name)
    if key.startswith("video:") or DATASETS[key].kind == "video":
        stem = key.split(":", 1)[1] if key.startswith("video:") else key
        return read_video(_video_path(stem), **options)
    spec = DATASETS[key]
    if not spec.has_series:
        raise DataError(f"dataset {key!r} has no time series here (graph structure only): use "
                        f"unist.data.load_graph({key!r}), e.g. with synthetic_graph_signal(load_graph({key!r}), T, seed) "
                        "for a synthetic series on that graph")
    if key == "geolife_sample":
        return load_trajectory_grid(_file(spec.folder, "demodata_geolife.csv"), key, **options)
    _no_options(key, options)
    return _SERIES[key](spec)


def load_graph(name: str) -> GraphStructure:
    """The `GraphStructure` of a registered graph dataset (with or without a time series)."""
    key = canonical_name(name)
    if key is None:
        raise unknown_name_error(name)
    if key not in _GRAPHS:
        raise DataError(f"dataset {key!r} is a {DATASETS[key].kind if key in DATASETS else 'video'}, not a graph; "
                        f"graph datasets: {', '.join(_GRAPHS)}")
    return copy.deepcopy(_cached_graph(key, str(data_dir())))


@functools.lru_cache(maxsize=32)
def _cached_graph(key: str, root: str) -> GraphStructure:
    """Graphs are read once per data dir (the spectral layout of a large graph takes a moment)."""
    return _GRAPHS[key]()
