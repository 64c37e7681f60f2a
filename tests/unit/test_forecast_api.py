"""The forecasting API's inputs and releases (`unist.forecast`): numpy arrays and pandas long frames forecast
exactly as the equivalent STSeries, a frame comes back as a frame of the next timestamps (with quantile columns
for draws), bad frames are DataErrors naming the problem, and `save_pretrained` / `from_pretrained` round-trip
the weights and the forecasting policy."""
from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from model_testing import single_thread, tiny_model  # noqa: F401

import unist
from unist.data import DataError, STSeries
from unist.errors import ConfigError
from unist.forecast import Forecaster, ForecastPolicy
from unist.model import UniST, create_model

pytestmark = pytest.mark.usefixtures("single_thread")
HOUR = np.timedelta64(60, "m")


def _learned(model: UniST, seed: int = 0) -> UniST:
    """`model` with every weight moved a little: the network, not only the lag copy's rule, shapes its forecasts."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    return model


@pytest.fixture(scope="module")
def fc():
    return Forecaster(_learned(tiny_model()))


def _values(*shape, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(shape[0], dtype=np.float32).reshape(-1, *[1] * (len(shape) - 1))
    return (np.sin(2 * np.pi * t / 6) + 0.3 * rng.standard_normal(shape) + 5).astype(np.float32)


# ----------------------------------------------------------------------------- numpy arrays
def test_a_1d_array_is_one_series(fc):
    v = _values(16)
    v[3] = np.nan  # NaN = missing
    series = STSeries(values=v[:, None, None], mask=np.isfinite(v)[:, None, None], layout="graph")
    expect = fc.forecast(series, 4)
    got = fc.forecast(v, 4)
    assert got.shape == (4, 1, 1) and np.isfinite(got).all()
    np.testing.assert_array_equal(got, expect)


def test_a_2d_array_is_n_series(fc):
    v = _values(16, 5)
    series = STSeries(values=v[..., None], mask=np.ones((16, 5, 1), bool), layout="graph")
    got = fc.forecast(v, 6)
    assert got.shape == (6, 5, 1)
    np.testing.assert_array_equal(got, fc.forecast(series, 6))


def test_a_4d_array_is_a_grid(fc):
    v = _values(12, 4, 5, 2)
    v[2, 1, 1, 0] = np.nan
    series = STSeries(values=v, mask=np.isfinite(v), layout="grid")
    got = fc.forecast(v, 4)
    assert got.shape == (4, 4, 5, 2)
    np.testing.assert_array_equal(got, fc.forecast(series, 4))
    torch.manual_seed(0)
    draws = fc.forecast(v, 4, num_samples=3)
    torch.manual_seed(0)
    np.testing.assert_array_equal(draws, fc.forecast(series, 4, num_samples=3))
    assert draws.shape == (3, 4, 4, 5, 2)


def test_bad_arrays_are_data_errors(fc):
    with pytest.raises(DataError, match=r"array input of shape \(2, 2, 2, 2, 2\)"):
        fc.forecast(np.zeros((2, 2, 2, 2, 2), np.float32), 2)
    bad = _values(8, 3)
    bad[1, 1] = np.inf
    with pytest.raises(DataError, match="inf value.*NaN"):
        fc.forecast(bad, 2)
    with pytest.raises(TypeError, match="STSeries, a numpy array or a pandas long frame"):
        fc.forecast([1.0, 2.0, 3.0], 2)


# ----------------------------------------------------------------------------- pandas long frames
def _frame(T=24, ids=("a", "b", "c"), start="2024-03-04T00:00", seed=0):
    v = _values(T, len(ids), seed=seed)
    ds = np.datetime64(start, "m") + np.arange(T) * HOUR
    rows = [(uid, pd.Timestamp(ds[t]), float(v[t, i])) for i, uid in enumerate(ids) for t in range(T)]
    df = pd.DataFrame(rows, columns=["unique_id", "ds", "y"])
    series = STSeries(values=v[..., None], mask=np.ones((T, len(ids), 1), bool), layout="graph", name="frame",
                      timestamps=ds, interval_minutes=60.0)
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True), series  # row order must not matter


def test_a_frame_forecasts_as_the_equivalent_series(fc):
    df, series = _frame()
    out = fc.forecast(df, 5)
    assert list(out.columns) == ["unique_id", "ds", "unist"] and len(out) == 3 * 5
    expect = fc.forecast(series, 5)  # [5, 3, 1], nodes in unique_id order
    for i, uid in enumerate(("a", "b", "c")):
        rows = out[out["unique_id"] == uid]
        assert pd.api.types.is_datetime64_any_dtype(out["ds"])
        want_ds = pd.to_datetime(np.datetime64("2024-03-04T00:00", "m") + np.arange(24, 29) * HOUR)
        np.testing.assert_array_equal(rows["ds"].to_numpy(), want_ds.to_numpy())  # the next 5 hours
        np.testing.assert_array_equal(rows["unist"].to_numpy(), expect[:, i, 0])


def test_a_frame_with_draws_has_quantile_columns(fc):
    df, series = _frame(seed=1)
    torch.manual_seed(0)
    out = fc.forecast(df, 4, num_samples=8)
    assert list(out.columns) == ["unique_id", "ds", "unist", "unist-q0.1", "unist-q0.5", "unist-q0.9"]
    q = out[["unist-q0.1", "unist-q0.5", "unist-q0.9"]].to_numpy()
    assert np.isfinite(q).all() and (np.diff(q, axis=1) >= 0).all() and (q[:, 2] > q[:, 0]).any()
    np.testing.assert_array_equal(out[out["unique_id"] == "b"]["unist"].to_numpy(), fc.forecast(series, 4)[:, 1, 0])
    torch.manual_seed(0)
    draws = fc.forecast(series, 4, num_samples=8)  # [8, 4, 3, 1]
    np.testing.assert_allclose(out[out["unique_id"] == "c"]["unist-q0.1"].to_numpy(),
                               np.quantile(draws[:, :, 2, 0], 0.1, axis=0), rtol=1e-6)
    wide = fc.forecast(df, 4, num_samples=8, quantiles=(0.05, 0.95))
    assert list(wide.columns)[3:] == ["unist-q0.05", "unist-q0.95"]


def test_a_frame_with_integer_steps_counts_on(fc):
    df, _ = _frame(T=12, ids=(7,))
    df["ds"] = df["ds"].rank(method="dense").astype(int) - 1  # 0..11
    out = fc.forecast(df, 3)
    assert out["ds"].tolist() == [12, 13, 14] and out["unique_id"].tolist() == [7, 7, 7]


def test_bad_frames_are_data_errors_naming_the_problem(fc):
    df, _ = _frame(T=12)
    with pytest.raises(DataError, match=r"lacks columns \['y'\]"):
        fc.forecast(df.rename(columns={"y": "value"}), 2)
    with pytest.raises(DataError, match=r"duplicate \(unique_id, ds\) rows"):
        fc.forecast(pd.concat([df, df.iloc[:1]]), 2)
    with pytest.raises(DataError, match="no rows"):
        fc.forecast(df.iloc[:0], 2)


# ----------------------------------------------------------------------------- releases
def test_save_and_load_round_trip_weights_and_policy(tmp_path):
    model = _learned(create_model("unist_tiny"), seed=3)  # a registered size: the release names its architecture
    path = model.save_pretrained(tmp_path / "release", forecast_policy=ForecastPolicy("checked").to_dict())
    net = UniST.from_pretrained(path)
    assert isinstance(net, UniST) and not net.training
    want, got = model.state_dict(), net.state_dict()
    assert list(got) == list(want) and all(torch.equal(got[k], want[k]) for k in want)

    loaded = unist.from_pretrained(path)
    assert isinstance(loaded, Forecaster) and loaded.policy.correction == "checked"
    window = STSeries(values=_values(20, 6)[..., None], mask=np.ones((20, 6, 1), bool), layout="graph", name="w")
    expect = Forecaster(model, ForecastPolicy("checked")).forecast(window, 4)
    np.testing.assert_array_equal(loaded.forecast(window, 4), expect)
    chosen = Forecaster.from_pretrained(path, policy=ForecastPolicy("none"))  # a caller's policy wins
    assert chosen.policy.correction == "none"

    plain = create_model("unist_tiny").save_pretrained(tmp_path / "plain")  # no policy saved: the network as trained
    assert unist.from_pretrained(plain).policy == ForecastPolicy()


def test_push_to_hub_uploads_the_release_folder_and_its_card(tmp_path, monkeypatch):
    """push_to_hub = save_pretrained + upload (the card as README.md, what the hub shows); with huggingface_hub
    absent it is a ConfigError saying what to install. The hub itself is not reachable here: a fake HfApi."""
    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, exist_ok):
            calls.append(("create", repo_id, exist_ok))

        def upload_folder(self, repo_id, folder_path):
            calls.append(("folder", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))
            return "https://hub/commit/1"

        def upload_file(self, path_or_fileobj, path_in_repo, repo_id):
            calls.append(("file", Path(path_or_fileobj).name, path_in_repo))
            return "https://hub/commit/2"

    model = create_model("unist_tiny")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # not installed
    with pytest.raises(ConfigError, match="pip install huggingface_hub"):
        model.push_to_hub("me/unist", tmp_path / "a")
    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(HfApi=FakeApi))
    card = lambda config, data, where: f"# {config['model_name']}\n"  # noqa: E731
    url = model.push_to_hub("me/unist", tmp_path / "b", token="t", card=card)
    assert url == "https://hub/commit/2"
    assert calls[:2] == [("init", "t"), ("create", "me/unist", True)]
    assert calls[2] == ("folder", "me/unist", ["MODEL_CARD.md", "config.json", "model.safetensors",
                                               "normalization.json", "training_data.json"])
    assert calls[3] == ("file", "MODEL_CARD.md", "README.md")
