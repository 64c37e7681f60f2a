"""The per-dataset readers behind the registry (`registry.py`): where the offline copies live and how
each dataset's files become a `GraphStructure` or an `STSeries`.

The data directory (`data_dir()`) is `$UNIST_DATA_DIR`, else `<repo root>/../shared/data`, else
`../shared/data` relative to the working directory. Each folder's SOURCE.md documents the keys,
units and timestamps that the readers below rely on.

Most datasets added on 2026-12-02 are already in the unist npz layout with their own extra keys; they
share one reader (`_series_npz`), driven by a `_NpzInfo` row each: frequency, units, which key holds
node ids / channel names / coordinates. Their timestamps become datetime64[m] (a month stamp is the
first of the month, a year stamp 1 January) and `meta["freq"]` names the calendar step ("h", "D",
"W", "M", "Y"); months and years get a nominal `interval_minutes` (`MONTH_MINUTES`, `YEAR_MINUTES`).

Which reader serves which name, the dataset specs and the graph cache are in `registry.py`; the
readers here are internal to unist.data (use `load_series` / `load_graph`).
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from .graph import GraphStructure, adjacency_to_edges
from .series import DataError, STSeries
from .video import VIDEO_SUFFIXES

if TYPE_CHECKING:  # annotations only (the registry imports this module)
    from .registry import DatasetSpec

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


GraphLoader = Callable[[str], GraphStructure]
"""`registry.load_graph`, handed to the series readers of graph datasets so their values sit on the registry's
cached graph (the registry imports this module for its tables of readers, so it passes the loader in)."""


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
def _on_graph(values: np.ndarray, g: GraphStructure, spec: DatasetSpec, timestamps=None, meta=None,
              channels: list[str] | None = None) -> STSeries:
    v = values.astype(np.float32)
    return STSeries(values=v, mask=~np.isnan(v), layout="graph", coords=g.coords, edge_index=g.edge_index,
                    edge_weight=g.edge_weight, timestamps=timestamps, interval_minutes=spec.interval_minutes,
                    domain=spec.domain, name=spec.name, channels=channels,
                    meta={"node_ids": g.node_ids, "coords_kind": g.coords_kind, **(meta or {})})


def _on_grid(values: np.ndarray, spec: DatasetSpec, timestamps, channels, coords=None, meta=None) -> STSeries:
    v = values.astype(np.float32)
    return STSeries(values=v, mask=~np.isnan(v), layout="grid", coords=coords, timestamps=timestamps,
                    interval_minutes=spec.interval_minutes, domain=spec.domain, name=spec.name, channels=channels,
                    meta=meta or {})


def _series_metr_la(spec: DatasetSpec, graph: GraphLoader) -> STSeries:
    z = _npz("metr_la_week", "metr_la_week.npz")
    return _on_graph(z["data"], graph("metr_la_week"), spec, z["timestamps"],
                     {"units": "mph", "timestamps_inferred": True})


def _series_montevideo(spec: DatasetSpec, graph: GraphLoader) -> STSeries:
    z = _npz("montevideo_bus", "montevideo_bus.npz")
    # SOURCE.md: 744 hourly steps = October 2020 (31 days), so the series starts 2020-10-01T00:00.
    ts = np.datetime64("2020-10-01T00:00") + np.arange(z["data"].shape[0]) * np.timedelta64(60, "m")
    return _on_graph(z["data"], graph("montevideo_bus"), spec, ts,
                     {"units": "passengers/hour", "timestamps_inferred": True})


def _series_chickenpox(spec: DatasetSpec, graph: GraphLoader) -> STSeries:
    z = _npz("chickenpox_hungary", "chickenpox_hungary.npz")  # no exact start date in SOURCE.md: no timestamps
    return _on_graph(z["data"], graph("chickenpox_hungary"), spec, None, {"units": "standardized cases"})


def _series_bike(spec: DatasetSpec) -> STSeries:
    z = _npz(spec.folder, f"{spec.name}.npz")
    return _on_grid(z["data"], spec, z["timestamps_inferred"], ["inflow", "outflow"],
                    meta={"units": "bikes/step", "timestamps_inferred": True})


def _series_era5(spec: DatasetSpec) -> STSeries:
    z = _npz("era5_t2m_uk", "era5_t2m_uk_2019_03.npz")
    coords = np.stack(np.meshgrid(z["lat"], z["lon"], indexing="ij"), -1)            # (H, W, 2) lat, lon
    return _on_grid(z["data"][..., None], spec, z["timestamps"], ["t2m"], coords, {"units": "K", "coords_kind": "lat_lon"})


# ---------------------------------------------------------------------------------- npz datasets (2026-12-02)
MONTH_MINUTES = 43830.0      # nominal month: 30.4375 days
YEAR_MINUTES = 525960.0      # nominal year: 365.25 days
FREQS = ("h", "D", "W", "M", "Y")
_UG = "µg/m³"


@dataclass(frozen=True)
class _NpzInfo:
    """How to read one plain-npz dataset (see its SOURCE.md).

    freq: calendar step; units: one unit, or one per channel; channels: the file key holding channel
    names, or the names themselves; ids: key of node ids (graphs; None = 0..N-1); coords: "lat_lon"
    (lat/lon keys), "lat2d" (lat2d/lon2d keys, grids), another key holding (N, 2) relative (x, y),
    or None; extra: keys copied into meta as they are."""

    freq: str
    units: str | tuple[str, ...]
    channels: str | tuple[str, ...]
    ids: str | None = None
    coords: str | None = None
    extra: tuple[str, ...] = ()


_NPZ: dict[str, _NpzInfo] = {
    "beijing_air_12site": _NpzInfo("h", (_UG,) * 6 + ("°C", "hPa", "°C", "mm", "m/s", "deg"), "channel_names",
                                   "station_names"),
    "india_city_aq_daily": _NpzInfo("D", (_UG,) * 6 + ("mg/m³",) + (_UG,) * 5 + ("index",), "channel_names",
                                    "city_names"),
    "us_climdiv_precip": _NpzInfo("M", "inches/month", ("precip",), "division_ids", "lat_lon", ("division_names",)),
    "de_pm10_rural": _NpzInfo("D", _UG, ("PM10",), "station_ids", "lat_lon"),
    "flu_bybw": _NpzInfo("W", "cases/week", ("influenza",), "district_ids", "centroid_xy_map_units",
                         ("population_fraction",)),
    "paris_bikehire_daily": _NpzInfo("D", "dock activity/day", ("activity",), "station_ids", "lat_lon",
                                     ("station_names",)),
    "london_bikehire_daily": _NpzInfo("D", "dock activity/day", ("activity",), "station_ids", "lat_lon"),
    "england_covid_mobility": _NpzInfo("D", "cases/day", ("covid_cases",)),
    "us_state_income_annual": _NpzInfo("Y", "USD per capita (current)", ("income",), "state_names", "lat_lon",
                                       ("state_fips",)),
    "us_gridmet_precip_5day": _NpzInfo("D", "mm/day", ("precip",), coords="lat_lon"),
    "us_stageiv_precip_hourly": _NpzInfo("h", "mm/h", ("precip",), coords="lat2d"),
    "us_bcsd_obs_1999_monthly": _NpzInfo("M", ("mm/month", "°C"), "channel_names", coords="lat_lon"),
}


def _npz_keys(folder: str, name: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Only `keys` (those present) of an npz: the members are decompressed one by one."""
    with np.load(_file(folder, name), allow_pickle=False) as z:
        return {k: z[k] for k in keys if k in z.files}


def minute_timestamps(ts: np.ndarray, freq: str) -> tuple[np.ndarray, bool]:
    """datetime64 stamps of any unit as datetime64[m], and whether they were moved. Month data
    ("M") is put on the first of each month and year data ("Y") on 1 January, whatever day the file
    gives (e.g. month-end dates); hours and days convert exactly."""
    if freq not in FREQS:
        raise DataError(f"freq {freq!r} is unknown: use one of {FREQS}")
    if not np.issubdtype(ts.dtype, np.datetime64):
        raise DataError(f"timestamps must be datetime64, got {ts.dtype}")
    snapped = ts.astype(f"datetime64[{freq}]") if freq in ("M", "Y") else ts
    out = snapped.astype("datetime64[m]")
    return out, bool((out != ts.astype("datetime64[m]")).any())


def select_channels(names: Sequence[str], channels, default: Sequence[str] | None, dataset: str) -> list[int]:
    """Indices of the requested channels: None -> `default` (or all), "all" -> all, a name or a list of
    names (exact, else case-insensitive) -> those, in the order given."""
    names = [str(n) for n in names]
    if channels is None:
        channels = list(default) if default is not None else names
    elif isinstance(channels, str):
        channels = names if channels == "all" else [channels]
    try:
        wanted = [str(c) for c in channels]
    except TypeError:
        raise DataError(f"{dataset}: channels must be a list of channel names or 'all', got {channels!r}") from None
    if not wanted:
        raise DataError(f"{dataset}: channels is empty; pick some of {names} or 'all'")
    folded = {n.casefold(): i for i, n in enumerate(names)}
    idx, unknown = [], []
    for c in wanted:
        i = names.index(c) if c in names else folded.get(c.casefold())
        (unknown.append(c) if i is None else idx.append(i))
    if unknown:
        raise DataError(f"{dataset}: unknown channel(s) {unknown}; known channels: {names} (or channels='all')")
    if len(set(idx)) != len(idx):
        raise DataError(f"{dataset}: channels {wanted} names a channel twice; list each once")
    return idx


def _npz_coords(z: dict[str, np.ndarray], info: _NpzInfo, layout: str) -> tuple[np.ndarray | None, str | None]:
    """(coords, coords_kind) as STSeries wants them: graph [N, 2], grid [H, W, 2], (lat, lon) or (y, x)."""
    if info.coords is None:
        return None, None
    if info.coords == "lat2d":
        return np.stack([z["lat2d"], z["lon2d"]], -1).astype(np.float64), "lat_lon"
    if info.coords == "lat_lon":
        lat, lon = z["lat"].astype(np.float64), z["lon"].astype(np.float64)
        if layout == "grid":
            return np.stack(np.meshgrid(lat, lon, indexing="ij"), -1), "lat_lon"
        return np.stack([lat, lon], 1), "lat_lon"
    return z[info.coords][:, ::-1].astype(np.float64), "map_units"   # relative (x, y) stored (y, x) like lat, lon


def _graph_npz(name: str) -> GraphStructure:
    """The graph of a plain-npz dataset: its edge_index (none for point sets), coords (else a spectral layout)."""
    info = _NPZ[name]
    keys = ["edge_index", "edge_weight", "lat", "lon", *([info.ids] if info.ids else []),
            *([info.coords] if info.coords and info.coords != "lat_lon" else [])]
    z = _npz_keys(name, f"{name}.npz", keys if info.ids else [*keys, "data"])
    n = len(z[info.ids]) if info.ids else int(z["data"].shape[1])
    ei = z.get("edge_index", np.zeros((2, 0), np.int64))
    coords, kind = _npz_coords(z, info, "graph")
    return GraphStructure.build(n, ei, z.get("edge_weight"), coords, z.get(info.ids) if info.ids else None, name,
                                kind or "lat_lon")


def _series_npz(spec: DatasetSpec, graph: GraphLoader, channels=None) -> STSeries:
    """A plain-npz dataset as an STSeries (options: channels = a name, a list of names, or "all")."""
    info = _NPZ[spec.name]
    z = _npz(spec.folder, f"{spec.name}.npz")
    names = [str(c) for c in z[info.channels]] if isinstance(info.channels, str) else list(info.channels)
    idx = select_channels(names, channels, spec.default_channels, spec.name)
    units = [info.units] * len(names) if isinstance(info.units, str) else list(info.units)
    picked_units = [units[i] for i in idx]
    meta: dict = {"freq": info.freq, "units": picked_units[0] if len(set(picked_units)) == 1 else
                  dict(zip([names[i] for i in idx], picked_units)), **{k: z[k] for k in info.extra}}
    ts = None
    if "timestamps" in z:
        ts, moved = minute_timestamps(z["timestamps"], info.freq)
        if moved:
            meta["source_timestamps"] = z["timestamps"]      # e.g. month-end dates, put on the 1st of the month
    values = z["data"][..., idx]
    ch = [names[i] for i in idx]
    if spec.kind == "grid":
        coords, kind = _npz_coords(z, info, "grid")
        return _on_grid(values, spec, ts, ch, coords, {**meta, **({"coords_kind": kind} if kind else {})})
    if "edge_index" not in z and info.coords is None:           # a point set: no edges, no geometry
        v = values.astype(np.float32)
        node_ids = z[info.ids] if info.ids else np.arange(v.shape[1])
        return STSeries(values=v, mask=~np.isnan(v), layout="graph", edge_index=np.zeros((2, 0), np.int64),
                        timestamps=ts, interval_minutes=spec.interval_minutes, domain=spec.domain, name=spec.name,
                        channels=ch, meta={"node_ids": node_ids, **meta})
    return _on_graph(values, graph(spec.name), spec, ts, meta, ch)


def _video_path(stem: str, folders: Sequence[str] = ("videos",)) -> Path:
    """The clip `stem.<video suffix>` in the first of `folders` (under the data dir) that holds one."""
    for name in folders:
        folder = data_dir() / name
        hits = sorted(p for p in folder.glob(f"{stem}.*") if p.suffix.lower() in VIDEO_SUFFIXES) \
            if folder.is_dir() else []
        if hits:
            return hits[0]
    raise DataError(f"no video {stem!r} under {', '.join(str(data_dir() / f) for f in folders)} (suffixes "
                    f"{VIDEO_SUFFIXES}); set UNIST_DATA_DIR to the folder holding {'/, '.join(folders)}/")
