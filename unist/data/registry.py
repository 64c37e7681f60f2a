"""Registered real datasets: the catalogue of names (`DATASETS`, `DatasetSpec`) and the lookup that turns
a name into an `STSeries` (`load_registered`, behind `unist.data.load_series`) or a `GraphStructure`
(`load_graph`, cached per data directory).

Names are matched case-insensitively, with '-' for '_' and a few aliases (`canonical_name`); an unknown
name gets close matches in its error (`unknown_name_error`). Every graph dataset, with or without a time
series, has a `GraphStructure`. The readers of the offline copies under `UNIST_DATA_DIR` (where they are,
file layouts, units, timestamps, the plain-npz family of 2026-12-02) are in `readers.py`.
"""
from __future__ import annotations

import copy
import difflib
import functools
from dataclasses import dataclass
from typing import Callable

from .graph import GraphStructure
from .readers import (_NPZ, _PEMS_NODES, MONTH_MINUTES, YEAR_MINUTES, _file, _graph_chickenpox, _graph_metr_la,
                      _graph_montevideo, _graph_npz, _graph_pems, _graph_pems_bay, _series_bike, _series_chickenpox,
                      _series_era5, _series_metr_la, _series_montevideo, _series_npz, _video_path, data_dir)
from .series import DataError, STSeries
from .trajectory import load_trajectory_grid
from .video import read_video


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: str                      # "graph" | "grid" | "video" | "graph structure"
    domain: str
    interval_minutes: float | None
    folder: str
    description: str
    default_channels: tuple[str, ...] | None = None   # loaded when `channels` is not given (None = all)

    @property
    def has_series(self) -> bool:
        return self.kind != "graph structure"

    @property
    def has_graph(self) -> bool:
        return self.kind.startswith("graph")


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
    # added 2026-12-02 (plain npz, read by readers._series_npz; see readers._NPZ)
    DatasetSpec("beijing_air_12site", "graph", "air", 60, "beijing_air_12site",
                "Beijing air quality, 12 stations (no coords), 6 pollutants + 6 weather, hourly 2013-03..2017-02",
                ("PM2.5", "PM10", "SO2", "NO2", "CO", "O3")),
    DatasetSpec("india_city_aq_daily", "graph", "air", 1440, "india_city_aq_daily",
                "India city air quality, 26 cities (no coords), 12 pollutants + AQI, daily 2015..2020-07",
                ("PM2.5", "PM10", "NO", "NO2", "CO", "SO2", "O3", "AQI")),
    DatasetSpec("us_climdiv_precip", "graph", "precip", MONTH_MINUTES, "us_climdiv_precip",
                "US climate-division precipitation (inches), 344 divisions, contiguity, monthly 1895..2019-03"),
    DatasetSpec("de_pm10_rural", "graph", "air", 1440, "de_pm10_rural",
                "Germany rural PM10 (µg/m³), 70 stations (no edges), daily 1998..2009"),
    DatasetSpec("flu_bybw", "graph", "epidemic", 7 * 1440, "flu_bybw",
                "influenza counts, 140 districts of Bavaria + Baden-Württemberg, adjacency, weekly 2001..2008"),
    DatasetSpec("paris_bikehire_daily", "graph", "bike", 1440, "paris_bikehire_daily",
                "Paris Vélib' dock activity, 80 quarters (no edges), daily 2020"),
    DatasetSpec("london_bikehire_daily", "graph", "bike", 1440, "london_bikehire_daily",
                "London Santander Cycles dock activity, 84 localities (no edges), daily 2020-01..10"),
    DatasetSpec("england_covid_mobility", "graph", "epidemic", 1440, "england_covid_mobility",
                "England COVID-19 daily cases, 129 NUTS3 regions, static mobility graph, 61 days spring 2020"),
    DatasetSpec("us_state_income_annual", "graph", "economy", YEAR_MINUTES, "us_state_income_annual",
                "US per-capita personal income, 48 states, contiguity, yearly 1929..2009"),
    DatasetSpec("us_gridmet_precip_5day", "grid", "precip", 1440, "us_gridmet_precip_5day",
                "gridMET precipitation (mm), 211x470 grid at 4 km, SE US, 5 days 2018-09"),
    DatasetSpec("us_stageiv_precip_hourly", "grid", "precip", 60, "us_stageiv_precip_hourly",
                "Stage IV radar+gauge precipitation (mm/h), 118x87 curvilinear grid, 23 h 2018-09-13/14"),
    DatasetSpec("us_bcsd_obs_1999_monthly", "grid", "climate", MONTH_MINUTES, "us_bcsd_obs_1999_monthly",
                "BCSD monthly precipitation + temperature, 33x81 grid at 1/8 deg, SE US, 1999"),
    *[DatasetSpec(k, "video", "video", None, "videos_more", d) for k, d in [
        ("cockatoo", "white cockatoo, hand-held, 1280x720, 20 fps"),
        ("realshort", "indoor desk scene, 320x240, 30 fps"),
        ("imageio_test", "person waving (file test.webm), 640x480, 30 fps")]],
]
DATASETS: dict[str, DatasetSpec] = {s.name: s for s in _SPECS}
ALIASES = {"pems_bay": "pems_bay_graph"}
_VIDEO_STEMS = {"imageio_test": "test"}          # registered video name -> file stem, where they differ
_VIDEO_FOLDERS = tuple(dict.fromkeys(s.folder for s in _SPECS if s.kind == "video"))   # searched by video:<stem>

_SERIES: dict[str, Callable[[DatasetSpec], STSeries]] = {
    # graph series get `load_graph` (defined below; looked up when called) to put their values on the cached graph
    "metr_la_week": lambda spec: _series_metr_la(spec, load_graph),
    "montevideo_bus": lambda spec: _series_montevideo(spec, load_graph),
    "chickenpox_hungary": lambda spec: _series_chickenpox(spec, load_graph), "nyc_bike1": _series_bike, "nyc_bike2": _series_bike, "era5_t2m_uk": _series_era5,
}
_GRAPHS: dict[str, Callable[[], GraphStructure]] = {
    "metr_la_week": _graph_metr_la, "montevideo_bus": _graph_montevideo, "chickenpox_hungary": _graph_chickenpox,
    "pems_bay_graph": _graph_pems_bay, **{k: (lambda k=k: _graph_pems(k)) for k in _PEMS_NODES},
    **{k: (lambda k=k: _graph_npz(k)) for k in _NPZ if DATASETS[k].kind == "graph"},
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
                     ".npz (unist npz format) or a video file, or 'video:<stem>' for a clip under UNIST_DATA_DIR/"
                     f"{' or '.join(_VIDEO_FOLDERS)}")


def _no_options(name: str, options: dict) -> None:
    if options:
        raise DataError(f"dataset {name!r} takes no options, got {sorted(options)}")


def load_registered(name: str, **options) -> STSeries:
    """Load a registered dataset by name. Options: videos take `VideoOptions`, geolife_sample
    `TrajectoryGridOptions`, the datasets of 2026-12-02 `channels` (a name, a list of names, or "all";
    default `DatasetSpec.default_channels`, else all)."""
    key = canonical_name(name)
    if key is None:
        raise unknown_name_error(name)
    if key.startswith("video:"):
        return read_video(_video_path(key.split(":", 1)[1], _VIDEO_FOLDERS), **options)
    if DATASETS[key].kind == "video":
        return read_video(_video_path(_VIDEO_STEMS.get(key, key), (DATASETS[key].folder,)), **options)
    spec = DATASETS[key]
    if not spec.has_series:
        raise DataError(f"dataset {key!r} has no time series here (graph structure only): use "
                        f"unist.data.load_graph({key!r}), e.g. with synthetic_graph_signal(load_graph({key!r}), T, seed) "
                        "for a synthetic series on that graph")
    if key == "geolife_sample":
        return load_trajectory_grid(_file(spec.folder, "demodata_geolife.csv"), key, **options)
    if key in _NPZ:
        if set(options) - {"channels"}:
            raise DataError(f"dataset {key!r} takes only the option 'channels', got {sorted(options)}")
        return _series_npz(spec, load_graph, **options)
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
