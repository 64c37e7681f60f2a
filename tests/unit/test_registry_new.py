"""The datasets registered on 2026-12-02 (plain npz under UNIST_DATA_DIR, see each SOURCE.md): every name
loads with the README's shape, step and missing rate, channel selection and its errors, calendar
timestamps (months on the 1st, years on 1 January), graphs, the videos_more clips, and patchify."""
from __future__ import annotations

import functools

import numpy as np
import pytest
from conftest import require_data

import unist.data as D
from unist.data import DataError
from unist.data.readers import MONTH_MINUTES, YEAR_MINUTES, minute_timestamps, select_channels
from unist.patching import PatcherConfig, UniversalPatcher

# name -> layout, shape with the default channels, C with "all", interval, freq, README missing rate
# (all channels), first timestamp (None = no timestamps), edges (graph), coords_kind (None = no coords)
NEW = {
    "beijing_air_12site": ("graph", (35064, 12, 6), 12, 60, "h", 0.015, "2013-03-01T00:00", 0, None),
    "india_city_aq_daily": ("graph", (2009, 26, 8), 13, 1440, "D", 0.558, "2015-01-01T00:00", 0, None),
    "us_climdiv_precip": ("graph", (1491, 344, 1), 1, MONTH_MINUTES, "M", 0.0, "1895-01-01T00:00", 1768, "lat_lon"),
    "de_pm10_rural": ("graph", (4383, 70, 1), 1, 1440, "D", 0.51, "1998-01-01T00:00", 0, "lat_lon"),
    "flu_bybw": ("graph", (416, 140, 1), 1, 10080, "W", 0.0, "2001-01-01T00:00", 672, "map_units"),
    "paris_bikehire_daily": ("graph", (366, 80, 1), 1, 1440, "D", 0.0, "2020-01-01T00:00", 0, "lat_lon"),
    "london_bikehire_daily": ("graph", (292, 84, 1), 1, 1440, "D", 0.0, "2020-01-01T00:00", 0, "lat_lon"),
    "england_covid_mobility": ("graph", (61, 129, 1), 1, 1440, "D", 0.0, None, 2347, "spectral"),
    "us_state_income_annual": ("graph", (81, 48, 1), 1, YEAR_MINUTES, "Y", 0.0, "1929-01-01T00:00", 214, "lat_lon"),
    "us_gridmet_precip_5day": ("grid", (5, 211, 470, 1), 1, 1440, "D", 0.178, "2018-09-12T00:00", None, "lat_lon"),
    "us_stageiv_precip_hourly": ("grid", (23, 118, 87, 1), 1, 60, "h", 0.0, "2018-09-13T19:00", None, "lat_lon"),
    "us_bcsd_obs_1999_monthly": ("grid", (12, 33, 81, 2), 2, MONTH_MINUTES, "M", 0.22, "1999-01-01T00:00", None,
                                 "lat_lon"),
}
CLIPS = {"cockatoo": (720, 1280, 20), "realshort": (240, 320, 30), "imageio_test": (480, 640, 30)}


@functools.lru_cache(maxsize=None)
def _load(name: str, channels: str | None = None) -> D.STSeries:
    require_data(name)
    return D.load_series(name) if channels is None else D.load_series(name, channels=channels)


@pytest.mark.parametrize("name", list(NEW))
def test_new_dataset_loads_as_documented(name):
    layout, shape, c_all, interval, freq, missing, first, edges, coords_kind = NEW[name]
    s = _load(name)
    assert (s.layout, s.values.shape, s.interval_minutes, s.meta["freq"], s.name) == (layout, shape, interval, freq, name)
    assert s.values.dtype == np.float32 and (s.mask == ~np.isnan(s.values)).all()
    assert s.channels is not None and len(s.channels) == shape[-1] and s.meta["units"]
    assert s.domain == D.DATASETS[name].domain and s.domain.islower() and " " not in s.domain
    full = _load(name, "all")
    assert full.num_channels == c_all and full.missing_rate == pytest.approx(missing, abs=0.006)
    if first is None:
        assert s.timestamps is None
    else:
        assert s.timestamps.dtype == np.dtype("datetime64[m]") and s.timestamps[0] == np.datetime64(first)
        assert (np.diff(s.timestamps) > np.timedelta64(0, "m")).all()
        if freq in ("h", "D", "W"):                                            # fixed steps: exact
            assert (np.diff(s.timestamps) == np.timedelta64(int(interval), "m")).all()
    if coords_kind is None:
        assert s.coords is None
    else:
        assert s.coords.shape == (*shape[1:-1], 2) and np.isfinite(s.coords).all()
        assert s.meta["coords_kind"] == coords_kind
    if layout == "graph":
        assert s.edge_index.shape == (2, edges)


@pytest.mark.parametrize("name", [n for n, e in NEW.items() if e[0] == "graph"])
def test_load_graph_of_new_graph_datasets(name):
    _, shape, *_, edges, coords_kind = NEW[name]
    require_data(name)
    g = D.load_graph(name)
    assert (g.num_nodes, g.num_edges, len(g.node_ids)) == (shape[1], edges, shape[1])
    assert g.coords_kind == (coords_kind or "spectral") and np.isfinite(g.coords).all()
    s = _load(name)
    assert (s.meta["node_ids"] == g.node_ids).all()


@pytest.mark.parametrize("name", list(NEW))
def test_new_dataset_patchifies_with_the_default_config(name):
    s = _load(name)
    batch = UniversalPatcher(PatcherConfig()).patchify([s])
    assert batch.num_tokens > 0 and batch.num_samples == 1


def test_point_sets_without_coordinates_are_edgeless_graphs():
    for name in ("beijing_air_12site", "india_city_aq_daily"):
        s = _load(name)
        assert s.coords is None and s.edge_index.shape == (2, 0) and s.meta["node_ids"].dtype.kind == "U"
    assert _load("beijing_air_12site").meta["node_ids"][0] == "Aotizhongxin"


def test_default_channels_and_selection():
    b = _load("beijing_air_12site")
    assert b.channels == ["PM2.5", "PM10", "SO2", "NO2", "CO", "O3"] and b.meta["units"] == "µg/m³"
    assert list(D.DATASETS["beijing_air_12site"].default_channels) == b.channels
    india = _load("india_city_aq_daily")
    assert india.channels == ["PM2.5", "PM10", "NO", "NO2", "CO", "SO2", "O3", "AQI"]
    assert india.meta["units"]["CO"] == "mg/m³" and india.meta["units"]["AQI"] == "index"
    full = _load("india_city_aq_daily", "all")
    pick = D.load_series("india_city_aq_daily", channels=["aqi", "PM2.5"])   # case-insensitive, order kept
    assert pick.channels == ["AQI", "PM2.5"]
    np.testing.assert_array_equal(pick.values[..., 1], full.values[..., full.channels.index("PM2.5")])
    one = D.load_series("us_bcsd_obs_1999_monthly", channels="tas_C")
    assert one.channels == ["tas_C"] and one.meta["units"] == "°C"
    assert all(D.DATASETS[n].default_channels is None for n in ("metr_la_week", "flu_bybw", "nyc_bike1"))


@pytest.mark.parametrize("channels, match", [
    (["PM25"], r"unknown channel\(s\) \['PM25'\]; known channels: \['PM2.5', 'PM10'.*'AQI'\]"),
    ([], "channels is empty"),
    (["NO2", "no2"], "names a channel twice"),
    (3, "must be a list of channel names or 'all'"),
])
def test_channel_errors_are_clear(channels, match):
    require_data("india_city_aq_daily")
    with pytest.raises(DataError, match=match):
        D.load_series("india_city_aq_daily", channels=channels)


def test_other_options_are_refused():
    require_data("flu_bybw")
    with pytest.raises(DataError, match="takes only the option 'channels'"):
        D.load_series("flu_bybw", fps=2)


def test_calendar_timestamps():
    months = _load("us_climdiv_precip").timestamps
    assert (months.astype("datetime64[D]") == months.astype("datetime64[M]").astype("datetime64[D]")).all()
    assert months[-1] == np.datetime64("2019-03-01T00:00")
    years = _load("us_state_income_annual").timestamps
    assert years[-1] == np.datetime64("2009-01-01T00:00")
    bcsd = _load("us_bcsd_obs_1999_monthly")                                # month-end dates in the file
    assert bcsd.timestamps[1] == np.datetime64("1999-02-01T00:00")
    assert bcsd.meta["source_timestamps"][1] == np.datetime64("1999-02-28")
    assert "source_timestamps" not in _load("us_climdiv_precip").meta     # already month stamps: not moved


def test_minute_timestamps_and_select_channels_without_data():
    ts, moved = minute_timestamps(np.array(["2020-01-31", "2020-02-29"], "datetime64[D]"), "M")
    assert moved and ts.tolist() == np.array(["2020-01-01T00:00", "2020-02-01T00:00"], "datetime64[m]").tolist()
    ts, moved = minute_timestamps(np.array(["2020-01-01T05"], "datetime64[h]"), "h")
    assert not moved and ts[0] == np.datetime64("2020-01-01T05:00")
    with pytest.raises(DataError, match="freq 'Q' is unknown"):
        minute_timestamps(ts, "Q")
    assert select_channels(["a", "b", "c"], None, ("c", "a"), "x") == [2, 0]
    assert select_channels(["a", "b"], "all", ("a",), "x") == [0, 1]


def test_england_uses_the_static_mobility_graph():
    root = require_data("england_covid_mobility")
    with np.load(root / "england_covid_mobility" / "england_covid_mobility.npz") as z:
        static = z["edge_index"]
    np.testing.assert_array_equal(D.load_graph("england_covid_mobility").edge_index, static)


@pytest.mark.parametrize("name", list(CLIPS))
def test_videos_more_clips(name):
    require_data("videos_more")
    h, w, fps = CLIPS[name]
    s = D.load_series(name, max_frames=2)
    assert s.layout == "video" and s.values.shape == (2, h, w, 3) and round(s.meta["source_fps"]) == fps
    assert D.DATASETS[name].folder == "videos_more"


def test_video_prefix_searches_videos_more_too():
    require_data("videos_more")
    assert D.load_series("video:test", max_frames=1).values.shape == (1, 480, 640, 3)
    with pytest.raises(DataError, match="videos_more"):
        D.load_series("video:no_such_clip")


@pytest.mark.parametrize("name", ["cockatoo", "realshort"])
def test_videos_more_decord_and_pyav_agree(name):
    require_data("videos_more")
    opts = dict(start=0.5, fps=5, max_frames=3)
    a = D.load_series(name, backend="decord", **opts)
    b = D.load_series(name, backend="pyav", **opts)
    np.testing.assert_array_equal(a.values, b.values)
