"""The statsforecast peers (unist/evaluation/peers.py): fitted on each window's context alone, accurate on a
seasonal series, SeasonalNaive = a lag-s copy of the context, NaN contexts filled or fallen back, seeded
location subsets shared by every peer and scored on their own locations, CRPS from the interval quantiles,
and a clear note (no crash) without statsforecast."""
from __future__ import annotations

import argparse
import sys

import numpy as np
import pytest
from scipy.stats import norm

from conftest import require_data
from model_testing import single_thread, tiny_model  # noqa: F401  (fixture)
from unist.evaluation import EvalConfig, EvalError, run
from unist.evaluation.baselines import run_peers
from unist.evaluation.checkpoints import Checkpoint
from unist.evaluation.cli import add_peer_flags, peer_settings
from unist.evaluation.metrics import crps_gaussian, crps_samples, probabilistic_metrics
from unist.evaluation.peers import (INSTALL_NOTE, LEVELS, default_max_series, fill_context, peer_forecasts,
                                    quantile_probabilities, subset_locations)
from unist.forecast import Forecaster

pytest.importorskip("statsforecast")
S = 12


def seasonal_windows(b: int = 2, tc: int = 48, h: int = 6, n: int = 3, c: int = 2, noise: float = 0.05, seed: int = 0):
    """[B, Tc, N, C] contexts and [B, H, N, C] targets of 10 + 3 sin(2 pi t / S) + noise, windows 5 steps apart."""
    rng = np.random.default_rng(seed)
    t = np.arange(5 * b + tc + h)
    clean = 10 + 3 * np.sin(2 * np.pi * t / S)
    ctx, tgt = np.empty((b, tc, n, c), np.float32), np.empty((b, h, n, c), np.float32)
    for i in range(b):
        v = clean[5 * i:5 * i + tc + h, None, None] + rng.normal(0, noise, (tc + h, n, c))
        ctx[i], tgt[i] = v[:tc], v[tc:]
    return ctx, np.ones(ctx.shape, bool), tgt


def test_seasonal_series_close_to_truth_and_seasonal_naive_is_a_lag_copy():
    ctx, mask, tgt = seasonal_windows()
    res = peer_forecasts(ctx, mask, 6, S, models=("auto_ets", "seasonal_naive"))
    for name in ("auto_ets", "seasonal_naive"):
        r = res[name]
        assert r["pred"].shape == tgt.shape and r["samples"].shape == (21,) + tgt.shape
        assert np.abs(r["pred"] - tgt).mean() < 0.15, name          # amplitude 3, noise 0.05
        assert r["fitted"] == ctx.size // 48 and r["failed"] == r["fallback"] == 0
        assert r["label"].endswith("(statsforecast, context only)") and r["locations"] is None
    h = np.arange(6)
    lag_copy = ctx[:, 48 - S + h % S]                                # y(T + h) = y(T - S + h mod S)
    np.testing.assert_allclose(res["seasonal_naive"]["pred"], lag_copy, rtol=1e-6)


def test_nan_contexts_are_filled_or_fall_back():
    np.testing.assert_allclose(fill_context(np.array([np.nan, 2, np.nan, 6, np.nan]),
                                            np.array([0, 1, 0, 1, 0], bool)), [2, 2, 4, 6, 6])
    ctx, mask, _ = seasonal_windows(b=1, n=3, c=1)
    mask[0, 10:14, 0, 0] = False                                    # a gap inside the context: interpolated
    mask[0, :, 1, 0] = False
    mask[0, 30, 1, 0] = True                                        # one observed value: its last value
    mask[0, :, 2, 0] = False                                        # nothing observed: NaN
    ctx = np.where(mask, ctx, np.nan).astype(np.float32)
    r = peer_forecasts(ctx, mask, 6, S, models=("seasonal_naive",))["seasonal_naive"]
    assert r["fitted"] == 1 and r["fallback"] == 2 and "1 of 3 series had missing" in r["notes"]
    assert np.isfinite(r["pred"][0, :, 0, 0]).all() and np.isfinite(r["samples"][:, 0, :, 0, 0]).all()
    np.testing.assert_array_equal(r["pred"][0, :, 1, 0], ctx[0, 30, 1, 0])
    assert np.isnan(r["pred"][0, :, 2, 0]).all()


def test_short_context_runs_non_seasonal_and_failures_fall_back():
    ctx, mask, _ = seasonal_windows(b=2, tc=5, n=2, c=1)
    res = peer_forecasts(ctx, mask, 3, S)                           # 2 * 12 > 5: no seasonal model, no MSTL
    assert "skipped" in res["mstl"] and "2 x 12 = 24 context steps" in res["mstl"]["skipped"]
    assert res["seasonal_naive"]["season_length"] == 1 and "non-seasonal" in res["auto_ets"]["notes"]
    ets = res["auto_ets"]                                           # 5 points are too few for ETS's parameters
    assert ets["failed"] == 4 and ets["fitted"] == 0
    np.testing.assert_array_equal(ets["pred"], np.repeat(ctx[:, -1:], 3, axis=1))


def test_location_subset_is_seeded_and_shared_by_every_peer():
    ctx, mask, _ = seasonal_windows(b=2, n=10, c=1)
    a = peer_forecasts(ctx, mask, 6, S, models=("seasonal_naive", "auto_theta"), max_series=8, seed=3)
    b = peer_forecasts(ctx, mask, 6, S, models=("seasonal_naive",), max_series=8, seed=3)
    locs = a["seasonal_naive"]["locations"]
    assert len(locs) == 4 and np.array_equal(locs, a["auto_theta"]["locations"])
    np.testing.assert_array_equal(locs, b["seasonal_naive"]["locations"])
    np.testing.assert_array_equal(locs, subset_locations(2, 10, 1, 8, seed=3))
    assert not np.array_equal(locs, subset_locations(2, 10, 1, 8, seed=4))
    pred = a["auto_theta"]["pred"]
    assert np.isfinite(pred[:, :, locs]).all() and np.isnan(np.delete(pred, locs, axis=2)).all()
    assert subset_locations(2, 10, 1, None) is None and len(subset_locations(50, 10, 6, 10)) == 1  # >= 1 location
    assert default_max_series(48) > default_max_series(192) > default_max_series(512) > 0


def test_interval_quantiles_give_crps_and_exact_coverage():
    probs = quantile_probabilities(LEVELS)                          # 0.025, 0.05, 0.10, ..., 0.90, 0.95, 0.975
    assert len(probs) == 21 and np.isclose(probs[0], 0.025) and np.isclose(probs[10], 0.5)
    y = np.random.default_rng(0).normal(size=20000)
    pseudo = norm.ppf(probs)[:, None] * np.ones((1, y.size))        # the quantiles of N(0, 1) as 21 "draws"
    assert abs(crps_samples(pseudo, y).mean() / crps_gaussian(0.0, 1.0, y).mean() - 1) < 0.005
    np.testing.assert_allclose(np.quantile(pseudo[:, 0], [0.1, 0.25, 0.75, 0.9]), norm.ppf([0.1, 0.25, 0.75, 0.9]))
    ctx, mask, tgt = seasonal_windows(noise=0.3)
    for name, r in peer_forecasts(ctx, mask, 6, S, models=("auto_theta", "mstl")).items():
        m = probabilistic_metrics(r["samples"], tgt, np.isfinite(r["pred"]))
        assert np.isfinite(m["crps"]["avg"]) and min(m["crps"]["per_step"]) >= 0, name
        assert 0 < m["coverage_80"]["avg"] <= 1
    with pytest.raises(EvalError, match="between 0 and 100"):
        quantile_probabilities((80, 100))


def test_without_statsforecast_a_note_not_a_crash(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "statsforecast", None)         # `import statsforecast...` -> ImportError
    monkeypatch.setitem(sys.modules, "statsforecast.models", None)
    cfg = EvalConfig("random:unist_tiny", ("x",))
    assert cfg.peers is False and cfg.peers_note == INSTALL_NOTE and "unist[eval]" in INSTALL_NOTE
    assert "pip install statsforecast" in capsys.readouterr().err
    assert EvalConfig("random:unist_tiny", ("x",), peers=False).peers_note is None
    ctx, mask, _ = seasonal_windows()
    with pytest.raises(EvalError, match="pip install statsforecast"):
        peer_forecasts(ctx, mask, 6, S)
    assert run_peers(None, 6, S) == {} and "pip install statsforecast" in capsys.readouterr().err


def test_settings_and_flags():
    with pytest.raises(EvalError, match="peer_max_series"):
        EvalConfig("random:unist_tiny", ("x",), peer_max_series=0)
    ap = argparse.ArgumentParser()
    add_peer_flags(ap)
    assert peer_settings(ap.parse_args([])) == {"peers": True, "peer_max_series": None}
    assert peer_settings(ap.parse_args(["--no-peers", "--peer-max-series", "40"])) == {"peers": False,
                                                                                       "peer_max_series": 40}
    with pytest.raises(SystemExit):
        ap.parse_args(["--peer-max-series", "0"])


def test_run_reports_peers_on_their_own_locations(single_thread):
    require_data("chickenpox_hungary")
    ckpt = Checkpoint(Forecaster(tiny_model()), "test", "tiny", random_init=True, training_datasets=[])
    cfg = EvalConfig("test", ("chickenpox_hungary",), context=16, horizon=2, max_windows=2, temporal_locations=0,
                     peer_max_series=10)                              # 2 windows x 1 channel: 5 of 20 locations
    results, runs = run(cfg, ckpt)
    models = results["results"][0]["models"]
    assert {"peer_auto_ets", "peer_auto_theta", "peer_seasonal_naive"} <= set(models)
    assert "peer_mstl" not in models and "MSTL" in models["peer_auto_ets"]["peers_skipped"]["mstl"]
    for name in ("peer_auto_ets", "peer_auto_theta", "peer_seasonal_naive"):
        m = models[name]
        assert len(m["locations"]) == 5 and m["uses_target_data"] is False and m["kind"] == "baseline"
        assert m["points_scored"] > 0 and "reference_unist_same_locations" in m
        assert np.isfinite(m["metrics"]["mae"]["avg"]) and m["metrics"]["crps"]["avg"] >= 0
    assert models["unist"]["points_scored"] == results["results"][0]["windows"]["points_scored"]
    assert results["settings"]["peers"] is True and results["settings"]["peer_max_series"] == 10
