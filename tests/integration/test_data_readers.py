"""Readers for every real dataset under UNIST_DATA_DIR (fail in CI when the data is missing), the
video decoders (decord == PyAV on the real clips) and the `python -m unist.data` command line."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, require_data

import unist.data as D
from unist.data import DataError

# name -> (folder, layout, shape, interval minutes, first timestamp or None, domain, edges)
SERIES = {
    "metr_la_week": ("metr_la_week", "graph", (2016, 207, 1), 5, "2012-03-01T00:00", "traffic", 1722),
    "montevideo_bus": ("montevideo_bus", "graph", (744, 675, 1), 60, "2020-10-01T00:00", "bus", 690),
    "chickenpox_hungary": ("chickenpox_hungary", "graph", (521, 20, 1), 7 * 1440, None, "epidemic", 102),
    "nyc_bike1": ("nyc_bike1", "grid", (1369, 16, 8, 2), 60, "2014-08-04T23:00", "bike", None),
    "nyc_bike2": ("nyc_bike2", "grid", (968, 10, 20, 2), 30, "2016-08-09T20:00", "bike", None),
    "era5_t2m_uk": ("era5_t2m_uk", "grid", (744, 33, 49, 1), 60, "2019-03-01T00:00", "weather", None),
}
GRAPHS = {"metr_la_week": (207, 1722, "lat_lon"), "montevideo_bus": (675, 690, "projected_m"),
          "chickenpox_hungary": (20, 102, "spectral"), "pems_bay_graph": (325, 2694, "lat_lon"),
          "pems03": (358, 547, "spectral"), "pems04": (307, 340, "spectral"), "pems07": (883, 866, "spectral"),
          "pems08": (170, 295, "spectral")}
VIDEOS = {"mmaction2_demo": (256, 340, 28), "mmaction2_test": (240, 320, 25),
          "flipping_a_pancake": (240, 426, 30), "bigbuckbunny": (720, 1280, 25)}


def _check_common(s: D.STSeries) -> None:
    assert s.values.dtype == np.float32 and s.mask.dtype == bool
    assert np.isfinite(s.values[s.mask]).all() and np.isnan(s.values[~s.mask]).all()
    if s.timestamps is not None:
        assert (np.diff(s.timestamps) > np.timedelta64(0, "m")).all()


@pytest.mark.parametrize("name", list(SERIES))
def test_registered_series(name):
    folder, layout, shape, interval, first, domain, edges = SERIES[name]
    require_data(folder)
    s = D.load_series(name)
    _check_common(s)
    assert (s.layout, s.values.shape, s.interval_minutes, s.domain, s.name) == (layout, shape, interval, domain, name)
    assert s.mask.all()                                                       # these copies have no gaps
    if first is None:
        assert s.timestamps is None
    else:
        assert s.timestamps[0] == np.datetime64(first)
        assert (np.diff(s.timestamps) == np.timedelta64(interval, "m")).all()
    if layout == "graph":
        assert s.edge_index.shape == (2, edges) and s.coords.shape == (shape[1], 2)
    else:
        assert s.channels is not None and len(s.channels) == shape[-1]


def test_real_coordinates_and_units():
    require_data("metr_la_week", "era5_t2m_uk", "montevideo_bus")
    m = D.load_series("metr_la_week")
    assert np.all((m.coords[:, 0] > 33.5) & (m.coords[:, 0] < 34.5) & (m.coords[:, 1] > -119) & (m.coords[:, 1] < -117.5))
    assert 1.0 <= m.values.min() and m.values.max() <= 70.0                   # mph
    assert np.all(m.edge_weight > 0) and np.all(m.edge_weight <= 1)          # DCRNN kernel weights
    e = D.load_series("era5_t2m_uk")
    assert e.coords[0, 0].tolist() == [58.0, -10.0] and e.coords[-1, -1].tolist() == [50.0, 2.0]
    assert 265 < e.values.min() and e.values.max() < 292                    # Kelvin
    bus = D.load_series("montevideo_bus")
    assert bus.values.max() == 101 and bus.coords[:, 1].min() > 6.1e6       # raw counts, UTM northing


def test_geolife_harmonised_to_grid():
    require_data("geolife_sample")
    s = D.load_series("geolife_sample")
    _check_common(s)
    assert s.layout == "grid" and s.values.shape[1:] == (16, 16, 1) and s.interval_minutes == 10
    assert s.values.sum() == 5908 and s.meta["points_outside_bbox"] == 0     # every GPS point counted once
    assert s.coords.shape == (16, 16, 2) and 39.8 < s.coords[..., 0].min() and s.coords[..., 1].max() < 116.6
    assert s.coords[0, 0, 0] > s.coords[-1, 0, 0]                            # row 0 = north
    masked = D.load_series("geolife_sample", bin_minutes=60, grid_size=8, gaps="mask")
    assert masked.values.shape[1:] == (8, 8, 1) and np.nansum(masked.values) == 5908
    assert 0.9 < masked.missing_rate < 1.0                                   # 5 sessions over 200 days
    assert (np.diff(masked.timestamps) == np.timedelta64(60, "m")).all()
    # windows never straddle the jumps between recording sessions
    for w in D.sliding_windows(s, context=6, horizon=2):
        assert (np.diff(w.timestamps) == np.timedelta64(10, "m")).all()


@pytest.mark.parametrize("name", list(GRAPHS))
def test_load_graph(name):
    n, e, kind = GRAPHS[name]
    require_data(D.DATASETS[name].folder)
    g = D.load_graph(name)
    assert (g.num_nodes, g.num_edges, g.coords_kind, len(g.node_ids)) == (n, e, kind, n)
    assert g.edge_index.min() >= 0 and g.edge_index.max() < n and np.isfinite(g.coords).all()
    if not D.DATASETS[name].has_series:
        with pytest.raises(DataError, match="no time series.*load_graph"):
            D.load_series(name)


def test_pems03_sensor_ids_renumbered():
    root = require_data("pems_graphs")
    g = D.load_graph("pems03")
    ids = np.loadtxt(root / "pems_graphs" / "PEMS03.txt", dtype=np.int64)
    raw = np.loadtxt(root / "pems_graphs" / "PEMS03.csv", delimiter=",", skiprows=1)
    assert (g.node_ids == ids).all()
    assert (ids[g.edge_index] == raw[:, :2].T.astype(np.int64)).all()       # mapping back gives the file's ids


def test_pems_bay_coordinates_follow_sensor_ids():
    root = require_data("pems_bay_graph")
    g = D.load_graph("pems_bay")
    loc = np.loadtxt(root / "pems_bay_graph" / "graph_sensor_locations_bay.csv", delimiter=",")
    by_id = {str(int(r[0])): r[1:] for r in loc}
    assert np.allclose(g.coords, [by_id[i] for i in g.node_ids])


@pytest.mark.parametrize("name", list(VIDEOS))
def test_video_clip(name):
    require_data("videos")
    h, w, fps = VIDEOS[name]
    s = D.load_series(name, max_frames=3)
    _check_common(s)
    assert s.values.shape == (3, h, w, 3) and s.layout == "video" and s.domain == "video"
    assert 0.0 <= s.values.min() and s.values.max() <= 1.0
    assert s.meta["source_fps"] == fps and s.interval_minutes == pytest.approx(1 / (fps * 60))


@pytest.mark.parametrize("name", list(VIDEOS))
def test_decord_and_pyav_give_the_same_frames(name):
    require_data("videos")
    opts = dict(start=1.0, fps=5, max_frames=3)
    a = D.load_series(f"video:{name}", backend="decord", **opts)
    b = D.load_series(f"video:{name}", backend="pyav", **opts)
    assert a.meta["backend"] == "decord" and b.meta["backend"] == "pyav"
    np.testing.assert_array_equal(a.values, b.values)


def test_video_options():
    require_data("videos")
    path = D.data_dir() / "videos" / "mmaction2_test.avi"
    full = D.load_series(path, max_frames=10)
    half = D.load_series(path, fps=12.5, max_frames=5)                       # every 2nd frame of a 25 fps clip
    np.testing.assert_array_equal(half.values, full.values[::2])
    later = D.load_series(path, start=0.2, stop=0.4)                         # frames 5..9
    np.testing.assert_array_equal(later.values, full.values[5:10])
    small = D.load_series(path, size=(24, 32), grayscale=True, max_frames=2)
    assert small.values.shape == (2, 24, 32, 1) and small.channels == ["gray"]
    short = D.load_series(path, size=48, max_frames=1)                       # short side 48, aspect 4:3 kept
    assert short.values.shape == (1, 48, 64, 3)
    assert abs(float(short.values.mean()) - float(full.values[:1].mean())) < 0.01   # antialiased, no bias


def test_cli_info_and_list(capsys):
    require_data("chickenpox_hungary")
    env = {**os.environ, "UNIST_DATA_DIR": str(D.data_dir())}
    out = subprocess.run([sys.executable, "-m", "unist.data", "info", "chickenpox_hungary"], capture_output=True,
                         text=True, env=env, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "graph" in out.stdout and "(521, 20, 1)" in out.stdout and "20 / 102" in out.stdout
    assert "10080 min" in out.stdout and "missing rate" in out.stdout
    from unist.data.__main__ import main

    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in D.list_datasets())
    assert main(["info", "metr_la"]) == 2 and "did you mean 'metr_la_week'" in capsys.readouterr().err.lower()
