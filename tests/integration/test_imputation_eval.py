"""The imputation evaluation: baselines exact where they should be, hidden points invisible to every method,
counts that add up, and the CLI (outputs, exit code 2 on refused input, the contamination rule)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import require_data
from tests.model_testing import single_thread  # noqa: F401  (fixture)
from unist.data import STSeries, save_npz
from unist.evaluation.checkpoints import load_checkpoint
from unist.evaluation.errors import EvalError
from unist.evaluation.imputation import (default_window, evaluate_imputation, hide_block, hide_points, impute_all,
                                         knn_candidates, linear_time, location_points, locf, spatial_mean)

from eval.imputation import main as cli_main

BASELINES = ("linear_time", "spatial_mean", "knn_mean", "locf")


@pytest.fixture(scope="module")
def model():
    return load_checkpoint("random:unist_tiny").model


def graph(values: np.ndarray, seed: int = 0, missing: float = 0.0) -> STSeries:
    """A graph series [T, N, C] with random coordinates, hourly, a `missing` fraction unobserved."""
    rng = np.random.default_rng(seed)
    t, n, _ = values.shape
    ts = np.datetime64("2024-01-01T00:00") + np.arange(t) * np.timedelta64(60, "m")
    return STSeries(values=values.astype(np.float32), mask=rng.random(values.shape) >= missing, layout="graph",
                    coords=rng.random((n, 2)), timestamps=ts, interval_minutes=60.0, domain="test", name="g")


def test_linear_interpolation_exact_on_linear_in_time():
    t, n, c = 40, 6, 2
    rng = np.random.default_rng(1)
    v = rng.normal(size=(1, n, c)) + rng.normal(size=(1, n, c)) * np.arange(t)[:, None, None]
    mask = np.ones(v.shape, bool)
    mask[1:-1] = rng.random((t - 2, n, c)) > 0.5   # hide interior points only (ends: nearest, not a line)
    filled = linear_time(np.where(mask, v, np.nan), mask)
    np.testing.assert_allclose(filled, v, atol=1e-4)


def test_spatially_constant_field_is_exact_for_spatial_methods(model):
    t, n = 120, 12
    field = np.sin(np.arange(t) / 3.0)[:, None, None] * np.ones((t, n, 1)) + 5.0
    res = evaluate_imputation(model, graph(field, missing=0.1), window=24, max_windows=3)
    for scen in ("points", "block"):
        methods = res["scenarios"][scen]["methods"]
        assert methods["spatial_mean"]["mae"] < 1e-5 and methods["knn_mean"]["mae"] < 1e-5, (scen, methods)
        assert np.isfinite(methods["unist"]["mae"])


def test_constant_in_time_is_exact_for_time_methods(model):
    t, n = 100, 10
    field = np.random.default_rng(2).normal(size=(1, n, 2)) * np.ones((t, n, 2))
    res = evaluate_imputation(model, graph(field), window=20, max_windows=2)
    for scen in ("points", "block"):
        m = res["scenarios"][scen]["methods"]
        assert m["linear_time"]["mae"] < 1e-5 and m["locf"]["mae"] < 1e-5
        assert m["spatial_mean"]["mae"] > 0.1  # the field does vary in space


def test_fallbacks_fill_everything():
    v = np.full((6, 3, 1), np.nan)
    mask = np.zeros(v.shape, bool)
    v[2, 0, 0], mask[2, 0, 0] = 4.0, True      # one observation in the whole window
    for fn in (linear_time, locf, spatial_mean):
        np.testing.assert_allclose(fn(v, mask), 4.0)


def test_hidden_points_are_invisible(model):
    s = graph(np.random.default_rng(3).normal(size=(32, 9, 1)), missing=0.1)
    rng = np.random.default_rng(0)
    obs = s.mask
    candidates = knn_candidates(location_points(s))
    for hidden in (hide_points(obs, 0.3, rng), hide_block(obs, rng)):
        clean = impute_all(model, s, hidden, candidates)
        poisoned = s.values.copy()
        poisoned[hidden] = 1e6
        dirty = impute_all(model, STSeries(**{**s.__dict__, "values": poisoned}), hidden, candidates)
        assert set(clean) == {"unist", *BASELINES}
        for name in clean:
            np.testing.assert_array_equal(clean[name], dirty[name], err_msg=name)
            assert np.isfinite(clean[name]).all(), name


def test_counts_add_up_and_seeded(model):
    s = graph(np.random.default_rng(4).normal(size=(100, 8, 1)), missing=0.2)
    res = evaluate_imputation(model, s, window=16, max_windows=4, point_rate=0.25, seed=7)
    starts = res["windows"]["starts"]
    observed = sum(int(s.mask[a:a + 16].sum()) for a in starts)
    pts, blk = res["scenarios"]["points"], res["scenarios"]["block"]
    assert res["windows"]["count"] == 4 and res["window"] == 16
    assert abs(pts["hidden"] - 0.25 * observed) <= 4  # one rounding per window
    assert pts["scored"] == pts["hidden"] and blk["scored"] == blk["hidden"] > 0
    assert blk["hidden"] <= 4 * 4 * 2                  # 4 windows x 4-step span x 2 of 8 locations
    assert all(m["unpredicted"] == 0 for m in pts["methods"].values())
    assert starts[0] >= res["split"]["start"] and starts[-1] + 16 <= res["split"]["start"] + res["split"]["steps"]
    again = evaluate_imputation(model, s, window=16, max_windows=4, point_rate=0.25, seed=7, block=False)
    assert list(again["scenarios"]) == ["points"]
    for name, m in again["scenarios"]["points"]["methods"].items():  # same hidden points with or without blocks
        assert (m["mae"], m["rmse"]) == (pts["methods"][name]["mae"], pts["methods"][name]["rmse"]), name


def test_bad_settings_refused(model):
    s = graph(np.zeros((30, 4, 1)))
    with pytest.raises(EvalError, match="point_rate"):
        evaluate_imputation(model, s, point_rate=1.0)
    with pytest.raises(ValueError, match="--window"):
        evaluate_imputation(model, s, window=100)
    assert default_window(s) == 48  # two days of hours
    assert evaluate_imputation(model, s, max_windows=1)["window"] == 6  # capped by the 6-step test split
    five_min = STSeries(values=np.zeros((30, 4, 1), np.float32), mask=np.ones((30, 4, 1), bool), layout="graph",
                        interval_minutes=5.0)
    assert default_window(five_min) == 288  # two days (576 steps) capped at 288


def test_cli_writes_tables_and_refuses_bad_input(tmp_path, capsys, single_thread):  # noqa: F811
    npz = tmp_path / "toy.npz"
    save_npz(graph(np.random.default_rng(5).normal(size=(80, 10, 1)) + 3.0), npz)
    out = tmp_path / "res" / "results.json"
    assert cli_main(["--checkpoint", "random:unist_tiny", "--dataset", str(npz), "--window", "16",
                     "--max-windows", "2", "--out", str(out)]) == 0
    res = json.loads(out.read_text())["results"][0]
    assert set(res["scenarios"]) == {"points", "block"} and res["contaminated"] is False
    md = (out.parent / "results.md").read_text()
    assert "## points" in md and "## block" in md and "linear_time" in md
    assert cli_main(["--checkpoint", "random:unist_tiny", "--dataset", "no_such_dataset",
                     "--out", str(out)]) == 2
    assert "no_such_dataset" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli_main(["--checkpoint", "random:unist_tiny", "--dataset", str(npz), "--point-rate", "0"])
    assert e.value.code == 2


def test_cli_contamination_rule(tmp_path, capsys):
    require_data("chickenpox_hungary")
    out = tmp_path / "r.json"
    args = ["--checkpoint", "unist-tiny-3", "--dataset", "chickenpox_hungary", "--max-windows", "1",
            "--no-block", "--out", str(out)]
    assert cli_main(args) == 2
    assert "--allow-contaminated" in capsys.readouterr().err
    assert cli_main(args + ["--allow-contaminated"]) == 0
    assert json.loads(out.read_text())["results"][0]["contaminated"] is True


def test_cli_fill_switch_changes_only_unist(tmp_path):
    """--fill on/off switches the lag copy's fill candidates for a release trained without them (unist-tiny-3):
    its imputation changes (and improves on a real graph), the baselines do not."""
    require_data("metr_la_week")
    mae = {}
    for fill in ("off", "on"):
        out = tmp_path / fill / "r.json"
        assert cli_main(["--checkpoint", "unist-tiny-3", "--dataset", "metr_la_week", "--split", "val",
                         "--max-windows", "1", "--no-block", "--fill", fill, "--out", str(out)]) == 0
        methods = json.loads(out.read_text())["results"][0]["scenarios"]["points"]["methods"]
        mae[fill] = {k: v["mae"] for k, v in methods.items()}
    assert mae["on"]["unist"] < 0.7 * mae["off"]["unist"], mae
    assert {k: v for k, v in mae["on"].items() if k != "unist"} == {k: v for k, v in mae["off"].items() if k != "unist"}


def test_cli_residual_and_correction_switches_change_only_unist(tmp_path):
    """--residual true/false fills with or without the patch head's residual (ForecastPolicy.residual), --correction
    none with the rule alone: unist's imputation changes, the baselines do not, and the release's own policy is what
    the default gives."""
    require_data("metr_la_week")
    mae = {}
    for flags in (("--residual", "true"), ("--residual", "false"), ("--residual", "release"), ("--correction", "none")):
        out = tmp_path / flags[1] / flags[0][2:] / "r.json"
        assert cli_main(["--checkpoint", "unist-tiny-6", "--dataset", "metr_la_week", "--split", "val",
                         "--max-windows", "1", "--no-block", *flags, "--out", str(out)]) == 0
        methods = json.loads(out.read_text())["results"][0]["scenarios"]["points"]["methods"]
        mae[flags[1]] = {k: v["mae"] for k, v in methods.items()}
    assert len({mae[k]["unist"] for k in ("true", "false", "none")}) == 3
    assert mae["release"] == mae["false"]  # unist-tiny-6 ships residual=false
    assert {k: v for k, v in mae["none"].items() if k != "unist"} == \
        {k: v for k, v in mae["false"].items() if k != "unist"}
    assert {k: v for k, v in mae["true"].items() if k != "unist"} == \
        {k: v for k, v in mae["false"].items() if k != "unist"}
