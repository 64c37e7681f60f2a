"""unist.evaluation without a model: metrics against hand-computed values and closed forms, the baselines on
toy series where their answer is known exactly, and the protocol table."""
from __future__ import annotations

import math

import numpy as np
import pytest

from unist.data import STSeries
from unist.evaluation.baselines import HistoricalAverage, RidgeAR, last_value, seasonal_naive
from unist.evaluation.metrics import crps_gaussian, crps_samples, point_metrics, probabilistic_metrics, psnr
from unist.evaluation.protocols import GENERIC, protocol_for


def _arr(x):
    return np.asarray(x, np.float32).reshape(1, 2, 2, 1)  # [B=1, H=2, N=2, C=1]


def test_point_metrics_hand_computed_missing_and_zero_targets():
    target = _arr([[10, 0], [4, 99]])
    pred = _arr([[12, 3], [5, -7]])
    mask = _arr([[1, 1], [1, 0]]).astype(bool)           # the 99 is missing
    m = point_metrics(pred, target, mask, mape_min=0.0)
    # step 1: errors 2, 3; step 2: error 1 (the missing point is excluded)
    assert m["mae"]["per_step"] == pytest.approx([2.5, 1.0])
    assert m["mae"]["avg"] == pytest.approx(2.0)
    assert m["rmse"]["per_step"] == pytest.approx([math.sqrt(6.5), 1.0])
    assert m["rmse"]["avg"] == pytest.approx(math.sqrt(14 / 3))          # pooled, not the mean of per-step RMSEs
    # MAPE: the zero target is excluded -> 2/10 at step 1, 1/4 at step 2
    assert m["mape"]["per_step"] == pytest.approx([20.0, 25.0])
    assert m["mape"]["avg"] == pytest.approx(22.5)
    assert np.isfinite(m["mape"]["avg"])
    # a threshold drops small targets from MAPE only; mape_min=None drops MAPE
    assert point_metrics(pred, target, mask, mape_min=5.0)["mape"]["per_step"] == pytest.approx([20.0, None])
    assert "mape" not in point_metrics(pred, target, mask, mape_min=None)
    with pytest.raises(ValueError, match="same shape"):
        point_metrics(pred[:, :1], target, mask)


def test_psnr_per_frame():
    target = np.zeros((2, 1, 4, 4, 1), np.float32)
    pred = target + 0.1                                  # MSE 0.01 -> 20 dB
    pred[1] = 0.0                                        # a perfect frame counts as 100 dB, not inf
    m = psnr(pred, target, np.ones_like(target, bool))
    assert m["per_step"][0] == pytest.approx(60.0)


def test_crps_estimator_matches_gaussian_closed_form():
    rng = np.random.default_rng(0)
    mu, sigma = 1.0, 2.0
    y = np.array([-3.0, 0.0, 1.0, 2.5, 7.0])
    draws = rng.normal(mu, sigma, size=(40000, y.size))
    np.testing.assert_allclose(crps_samples(draws, y), crps_gaussian(mu, sigma, y), rtol=0.02)
    # the sorted form equals the O(m^2) definition E|X-y| - 1/2 E|X-X'| exactly
    x = rng.normal(size=(7, 3))
    yy = rng.normal(size=3)
    brute = np.abs(x - yy).mean(0) - 0.5 * np.abs(x[:, None] - x[None]).mean((0, 1))
    np.testing.assert_allclose(crps_samples(x, yy), brute, rtol=1e-12)
    # one draw: CRPS is the absolute error
    assert crps_samples(np.array([[2.0]]), np.array([5.0]))[0] == pytest.approx(3.0)


def test_probabilistic_metrics_calibrated_coverage():
    rng = np.random.default_rng(1)
    target = rng.normal(size=(50, 3, 8, 1))
    samples = rng.normal(size=(200, 50, 3, 8, 1))
    m = probabilistic_metrics(samples, target, np.ones_like(target, bool))
    assert m["coverage_80"]["avg"] == pytest.approx(0.8, abs=0.05)
    assert m["coverage_50"]["avg"] == pytest.approx(0.5, abs=0.06)
    assert m["crps"]["avg"] == pytest.approx(float(crps_gaussian(0, 1, target).mean()), rel=0.05)


def test_last_value_exact_on_constant_and_skips_missing():
    ctx = np.full((2, 6, 3, 1), 7.5, np.float32)
    mask = np.ones_like(ctx, bool)
    assert (last_value(ctx, mask, 4) == 7.5).all()
    ctx[0, :, 1, 0] = np.arange(6)
    mask[0, 4:, 1, 0] = False                             # last two steps missing -> the value at t=3
    pred = last_value(np.where(mask, ctx, np.nan), mask, 2)
    assert (pred[0, :, 1, 0] == 3).all()
    mask[1, :, 2, 0] = False                              # never observed -> NaN, not a made-up value
    assert np.isnan(last_value(ctx, mask, 2)[1, :, 2, 0]).all()


def test_seasonal_naive_exact_on_periodic_series_even_beyond_one_season():
    season, horizon = 5, 7                                # horizon longer than the season
    t = np.arange(60)
    hist = (np.sin(2 * np.pi * t / season)[:, None, None] * np.array([1.0, 2.0])[None, :, None]).astype(np.float32)
    origins = np.array([20, 33, 41])
    truth = hist[origins[:, None] + np.arange(horizon)]
    fallback = np.full_like(truth, np.nan)
    pred, fb = seasonal_naive(hist, np.ones_like(hist, bool), origins, horizon, season, fallback)
    np.testing.assert_allclose(pred, truth, atol=1e-6)
    assert fb == 0.0
    # only the past is read: an origin near the start falls back where t - season < 0
    pred, fb = seasonal_naive(hist, np.ones_like(hist, bool), np.array([2]), horizon, season, np.zeros((1, 7, 2, 1)))
    assert fb > 0 and (pred[0, :3] == 0).all()


def _periodic_series(steps=240, season=24, seed=0) -> STSeries:
    rng = np.random.default_rng(seed)
    base = 10 + 5 * np.sin(2 * np.pi * np.arange(steps) / season)
    v = (base[:, None, None] * rng.uniform(0.5, 1.5, size=(1, 3, 1))).astype(np.float32)
    ts = np.datetime64("2024-01-01T00:00") + np.arange(steps) * np.timedelta64(60, "m")
    return STSeries(v, np.ones_like(v, bool), "graph", timestamps=ts, interval_minutes=60.0, domain="toy")


def test_historical_average_exact_on_periodic_series():
    s = _periodic_series()
    ha = HistoricalAverage(24).fit(s, 144)                # fitted on the first 144 steps only
    origins = np.array([150, 190])
    pred = ha.predict(s, origins, 12)
    np.testing.assert_allclose(pred, s.values[origins[:, None] + np.arange(12)], rtol=1e-5)


def test_ridge_recovers_a_linear_ar_process():
    rng = np.random.default_rng(0)
    t, n = 600, 20
    y = np.zeros((t, n))
    for i in range(2, t):                                  # AR(2): y_t = 0.6 y_{t-1} - 0.3 y_{t-2} + 2 + noise
        y[i] = 0.6 * y[i - 1] - 0.3 * y[i - 2] + 2 + rng.normal(size=n)
    v = y[..., None].astype(np.float32)
    model = RidgeAR(context=4, horizon=1, alpha=1e-6).fit(v[:500], np.ones_like(v[:500], bool))
    ctx = np.stack([v[i:i + 4] for i in range(500, 590)])  # (B, 4, n, 1) unseen windows
    pred = model.predict(ctx, np.ones_like(ctx, bool))[:, 0, :, 0]
    truth = 0.6 * ctx[:, 3, :, 0] - 0.3 * ctx[:, 2, :, 0] + 2
    assert np.abs(pred - truth).max() < 0.25                # noise std is 1: the map itself is recovered
    xm, xs, w, ym = model.weights[0]
    np.testing.assert_allclose((w[:, 0] / xs), [0, 0, -0.3, 0.6], atol=0.06)


def test_protocols_follow_the_table():
    def series(layout, domain, dt, shape=(50, 4, 1)):
        v = np.zeros(shape if layout == "graph" else (50, 4, 4, 3 if layout == "video" else 1), np.float32)
        return STSeries(v, np.ones_like(v, bool), layout, interval_minutes=dt, domain=domain)

    assert protocol_for(series("graph", "traffic", 5.0)).name == "traffic-5min"
    p = protocol_for(series("graph", "traffic", 5.0))
    assert (p.context, p.horizon, p.season, p.zero_is_missing, p.steps_shown) == (576, 12, 288, True, (3, 6, 12))
    assert protocol_for(series("grid", "bike", 60.0)).name == "grid-hourly"
    assert protocol_for(series("grid", "bike", 30.0)).season == 48
    assert protocol_for(series("grid", "weather", 60.0)).horizon == 24
    assert protocol_for(series("graph", "epidemic", 7 * 1440.0)).season == 52
    assert protocol_for(series("video", "video", 1 / 1500)).video
    odd = protocol_for(series("graph", "power", 10.0), context=6, horizon=3)
    assert (odd.name, odd.context, odd.horizon, odd.season) == (GENERIC.name, 6, 3, 144)
    assert protocol_for(series("graph", "power", 10.0)).context == 288  # two seasons by default
