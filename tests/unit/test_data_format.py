"""The unist npz format (round trip, bring-your-own-data) and every bad-input error of the loaders."""
from __future__ import annotations

import numpy as np
import pytest

import unist.data as D
from unist.data import DataError, STSeries


def _graph_series(t=12, n=5, c=2) -> STSeries:
    rng = np.random.default_rng(0)
    v = rng.normal(size=(t, n, c)).astype(np.float32)
    m = rng.random(v.shape) > 0.2
    return STSeries(values=v, mask=m, layout="graph", coords=rng.normal(size=(n, 2)),
                    edge_index=np.array([[0, 1, 2, 3], [1, 2, 3, 4]]), edge_weight=np.arange(4, dtype=np.float32),
                    timestamps=np.datetime64("2024-01-01T00:00") + np.arange(t) * np.timedelta64(15, "m"),
                    interval_minutes=15.0, domain="traffic", name="toy", channels=["flow", "speed"])


def _assert_same(a: STSeries, b: STSeries) -> None:
    np.testing.assert_array_equal(a.values, b.values)                         # NaN == NaN here
    np.testing.assert_array_equal(a.mask, b.mask)
    for f in ("layout", "interval_minutes", "domain", "name", "channels"):
        assert getattr(a, f) == getattr(b, f), f
    for f in ("coords", "edge_index", "edge_weight", "timestamps"):
        x, y = getattr(a, f), getattr(b, f)
        assert (x is None and y is None) or np.array_equal(x, y), f


def test_round_trip_graph_and_grid(tmp_path):
    g = _graph_series()
    _assert_same(g, D.load_series(D.save_npz(g, tmp_path / "g.npz")))
    grid = STSeries(values=np.ones((4, 3, 2, 1), np.float32), mask=np.ones((4, 3, 2, 1), bool), layout="grid",
                    coords=np.zeros((3, 2, 2)))
    back = D.load_series(D.save_npz(grid, tmp_path / "grid.npz"))
    _assert_same(grid, back)
    assert back.name == "unnamed" and back.timestamps is None


def test_bring_your_own_data_minimal(tmp_path):
    """Only `data` is required; NaN marks missing; lat/lon and edges are optional."""
    data = np.arange(24, dtype=np.float64).reshape(4, 3, 2)
    data[1, 2, 0] = np.nan
    np.savez(tmp_path / "mine.npz", data=data, lat=np.array([1.0, 2, 3]), lon=np.array([4.0, 5, 6]),
             edge_index=np.array([[0, 1], [1, 2]]), interval_minutes=5)
    s = D.load_series(tmp_path / "mine.npz")
    assert s.layout == "graph" and s.values.shape == (4, 3, 2) and s.interval_minutes == 5.0
    assert not s.mask[1, 2, 0] and s.mask.sum() == 23 and s.name == "mine"
    np.testing.assert_array_equal(s.coords, [[1, 4], [2, 5], [3, 6]])
    np.savez(tmp_path / "grid.npz", data=np.zeros((2, 3, 4, 1)), lat=np.array([3.0, 2, 1]), lon=np.arange(4.0),
             mask=np.ones((2, 3, 4, 1), bool))
    grid = D.load_series(tmp_path / "grid.npz")
    assert grid.layout == "grid" and grid.coords.shape == (3, 4, 2) and grid.coords[2, 3].tolist() == [1.0, 3.0]


@pytest.mark.parametrize("arrays, match", [
    (dict(values=np.zeros((2, 3, 1))), "no 'data' array"),
    (dict(data=np.zeros((2, 3))), "rank 2"),
    (dict(data=np.zeros((2, 3, 1)), layout=np.array("grid")), "rank 3 .* layout 'grid' needs rank 4"),
    (dict(data=np.array([[[1.0]], [[np.inf]]])), "inf values"),
    (dict(data=np.zeros((2, 3, 1)), mask=np.ones((2, 3), bool)), "'mask' shape"),
    (dict(data=np.zeros((2, 3, 1)), edge_index=np.array([[0, 1], [1, 3]])), "outside \\[0, 3\\)"),
    (dict(data=np.zeros((2, 0, 1))), "empty graph"),
    (dict(data=np.zeros((2, 3, 1)), layout=np.array("ring")), "layout 'ring' is unknown"),
    (dict(data=np.array(["a", "b"])), "must be numeric"),
    (dict(data=np.zeros((2, 3, 1)), lat=np.zeros(2), lon=np.zeros(3)), "lat/lon must be"),
])
def test_bad_npz_is_refused_with_a_reason(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=match):
        D.load_series(tmp_path / "bad.npz")


def test_pickled_and_corrupt_npz(tmp_path):
    np.savez(tmp_path / "pickled.npz", data=np.zeros((2, 3, 1)), extra=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="pickled"):
        D.load_series(tmp_path / "pickled.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="cannot read"):
        D.load_series(tmp_path / "junk.npz")


def test_bad_sources(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="Did you mean 'metr_la_week'"):
        D.load_series("metr-la")
    with pytest.raises(DataError, match="Known datasets: .*nyc_bike1"):
        D.load_series("zzz")
    with pytest.raises(DataError, match="does not exist.*UNIST_DATA_DIR"):
        D.load_series(tmp_path / "absent.npz")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="unsupported file type '.csv'"):
        D.load_series(tmp_path / "x.csv")
    with pytest.raises(DataError, match="not a graph"):
        D.load_graph("nyc_bike1")
    with pytest.raises(DataError, match="takes no options"):
        D.load_series("nyc_bike1", fps=3)
    monkeypatch.setenv("UNIST_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="UNIST_DATA_DIR"):
        D.load_series("metr_la_week")
    with pytest.raises(DataError, match="UNIST_DATA_DIR"):
        D.load_series("video:mmaction2_test")


def test_corrupt_and_bad_video(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(DataError, match="cannot decode video .*decord.*pyav"):
        D.load_series(bad)
    with pytest.raises(DataError, match="does not exist"):
        D.load_series(tmp_path / "absent.avi")
    with pytest.raises(DataError, match="backend"):
        D.read_video(bad, backend="opencv")
    with pytest.raises(DataError, match="valid options"):
        D.read_video(bad, speed=2)
    with pytest.raises(DataError, match="start < stop"):
        D.read_video(bad, start=2.0, stop=1.0)


def test_graph_structure_validation():
    with pytest.raises(DataError, match="empty"):
        D.GraphStructure.build(0, np.zeros((2, 0), np.int64))
    with pytest.raises(DataError, match="outside"):
        D.GraphStructure.build(3, np.array([[0], [5]]))
    with pytest.raises(DataError, match="edge_weight"):
        D.GraphStructure.build(3, np.array([[0], [1]]), np.ones(2))
    g = D.GraphStructure.from_series(_graph_series())
    assert g.num_nodes == 5 and g.num_edges == 4


def _stamps(minutes: list[int]) -> np.ndarray:
    return np.datetime64("2024-01-01T00:00") + np.array(minutes) * np.timedelta64(1, "m")


@pytest.mark.parametrize("ts, match", [
    (_stamps([0, 60, 120, 60, 240]), r"timestamps\[3\] = 2024-01-01T01:00 is before timestamps\[2\]"),
    (_stamps([0, 60, 60, 180, 240]), r"timestamps\[2\] = 2024-01-01T01:00 repeats timestamps\[1\]"),
    (np.datetime64("2024-01-01T00:00:00") + np.array([0, 20, 40, 60, 80]) * np.timedelta64(1, "s"),
     r"timestamps\[1\] .* repeats timestamps\[0\] .*minute precision"),
    (np.array(["2024-01-01T00:00", "NaT", "2024-01-01T02:00", "2024-01-01T03:00", "2024-01-01T04:00"],
              dtype="datetime64[m]"), r"timestamps\[1\] is NaT"),
])
def test_timestamps_out_of_order_are_refused_naming_the_index(tmp_path, ts, match):
    np.savez(tmp_path / "bad.npz", data=np.zeros((5, 3, 1)), timestamps=ts)
    with pytest.raises(DataError, match=match):
        D.load_series(tmp_path / "bad.npz")
    with pytest.raises(DataError, match="strictly increasing|NaT"):
        STSeries(values=np.zeros((5, 3, 1), np.float32), mask=np.ones((5, 3, 1), bool), layout="graph", timestamps=ts)


def test_npz_mask_must_be_bool_or_exactly_zero_one(tmp_path):
    data = np.arange(12, dtype=np.float32).reshape(4, 3, 1)
    mask = np.ones((4, 3, 1), np.uint8)
    mask[1, 2, 0] = 0
    np.savez(tmp_path / "ok.npz", data=data, mask=mask)
    s = D.load_series(tmp_path / "ok.npz")
    assert s.mask.sum() == 11 and not s.mask[1, 2, 0]
    mask[2, 0, 0] = 255
    np.savez(tmp_path / "bad.npz", data=data, mask=mask)
    with pytest.raises(DataError, match=r"only 0 \(missing\) and 1 \(observed\), but mask\[2, 0, 0\] = 255"):
        D.load_series(tmp_path / "bad.npz")
    np.savez(tmp_path / "float.npz", data=data, mask=np.full((4, 3, 1), 0.5))
    with pytest.raises(DataError, match="'mask' must be bool .* got float64"):
        D.load_series(tmp_path / "float.npz")


def test_data_cli_refuses_bad_flags_and_sources(tmp_path, capsys):
    from unist.data.__main__ import main

    for argv in (["info", "x.mp4", "--max-frames", "0"], ["info", "x.mp4", "--size", "0x4"],
                 ["info", "x.mp4", "--fps", "nan"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
    np.savez(tmp_path / "bad.npz", data=np.zeros((3, 2, 1)), timestamps=_stamps([0, 0, 1]))
    capsys.readouterr()
    assert main(["info", str(tmp_path / "bad.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "repeats" in err and err.count("\n") == 1
