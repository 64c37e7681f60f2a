"""The lag copy (`unist.model.lags`): FFT lag errors against brute force, period finding from values alone,
no leak of hidden values, slot-by-slot renormalisation, and the untrained model's forecast."""
import numpy as np
import pytest
import torch

from unist.data import STSeries
from unist.model.lags import SMOOTH_WINDOWS, LagParts, best_lags, copy_at, lag_parts
from unist.model.steps import lag_errors, moving_mean, smooth_errors, step_grid
from unist.forecast import Forecaster
from unist.model import create_model
from unist.objectives import Pretrainer
from unist.patching import PatcherConfig, UniversalPatcher


def _series(T=160, N=7, period=13, noise=0.05, seed=0, missing=0.0):
    rng = np.random.default_rng(seed)
    t = np.arange(T)
    v = np.sin(2 * np.pi * t / period)[:, None] + noise * rng.standard_normal((T, N)) + rng.standard_normal(N)
    v = v.astype(np.float32)[..., None]
    mask = rng.random(v.shape) >= missing
    return STSeries(values=np.where(mask, v, np.nan).astype(np.float32), mask=mask, layout="graph",
                    coords=rng.random((N, 2)), name="sine")


def _tokens(series_list, tau=4):
    tb = UniversalPatcher(PatcherConfig(time_patch=tau)).patchify(series_list)
    values = torch.where(tb.mask, tb.values, torch.zeros_like(tb.values))
    return tb, values


def test_lag_errors_match_brute_force():
    tb, values = _tokens([_series(T=64, missing=0.2), _series(T=40, N=20, seed=1, missing=0.1)])
    grid = step_grid(values, tb.mask, tb.sample_id, tb.space_index, tb.t_index, 4, tb.num_samples)
    rmse, valid = lag_errors(grid, 30)
    x, m = grid.x.double().numpy(), grid.m.numpy()
    for g in range(x.shape[0]):
        for lag in (1, 5, 13, 26):
            a, b = x[g, lag:], x[g, :-lag]
            ok = m[g, lag:] & m[g, :-lag]
            if not ok.any():
                continue
            want = np.sqrt(((a - b) ** 2)[ok].mean())
            if valid[g, lag]:
                assert rmse[g, lag].item() == pytest.approx(want, rel=1e-4, abs=1e-5)
    assert not valid[:, 0].any()


def test_best_lag_is_the_period_without_timestamps():
    tb, values = _tokens([_series(T=200, period=13)])
    grid = step_grid(values, tb.mask, tb.sample_id, tb.space_index, tb.t_index, 4, tb.num_samples)
    rmse, _ = lag_errors(grid, 100)
    lag, err, ok = best_lags(rmse, 3)
    assert ok.all()
    assert (lag[:, 0] % 13 == 0).all(), lag  # the best local minimum is a multiple of the period
    assert set(lag[0].tolist()) <= {13, 26, 39, 52, 65, 78, 91}


def test_copy_at_reads_lag_steps_earlier():
    tb, values = _tokens([_series(T=48)])
    grid = step_grid(values, tb.mask, tb.sample_id, tb.space_index, tb.t_index, 4, tb.num_samples)
    lags = torch.full((tb.num_tokens, 2), 5)
    lags[:, 1] = 9
    vals, seen = copy_at(grid, tb.t_index, lags)
    i = int(torch.nonzero(tb.t_index == 6)[0])  # steps 24..27 of group 0
    g = int(grid.group[i])
    want = grid.x[g, 24 - 9:28 - 9].reshape(-1, *grid.x.shape[3:])
    torch.testing.assert_close(vals[i, 1], want)
    assert torch.equal(seen[i, 1], grid.m[g, 24 - 9:28 - 9].reshape(-1, *grid.m.shape[3:])) and seen[i].any()
    first = int(torch.nonzero(tb.t_index == 0)[0])
    assert not seen[first].any()  # nothing 5 or 9 steps before the first token


def test_smooth_errors_match_brute_force_and_persistence():
    tb, values = _tokens([_series(T=64, missing=0.2), _series(T=40, N=20, seed=1, missing=0.1)])
    grid = step_grid(values, tb.mask, tb.sample_id, tb.space_index, tb.t_index, 4, tb.num_samples)
    x, m = grid.x.double().numpy(), grid.m.numpy()
    for w in (1, 4, 16):
        y, has = moving_mean(grid, w)
        err = smooth_errors(grid, w, 12)
        for g in range(x.shape[0]):
            for s in (w + 3, 30):  # the causal mean of the seen values over steps s - w + 1 .. s
                seen = m[g, max(0, s - w + 1):s + 1]
                if has[g, s].all():
                    want = (x[g, max(0, s - w + 1):s + 1] * seen).sum(0) / seen.sum(0)
                    np.testing.assert_allclose(y[g, s].numpy(), want, rtol=1e-5, atol=1e-5)
            for d in (1, 3, 8):
                a, b = x[g, d:], y[g, :-d].double().numpy()
                ok = m[g, d:] & has[g, :-d].numpy()
                if np.isfinite(err[g, d].item()):
                    assert err[g, d].item() == pytest.approx(np.sqrt(((a - b) ** 2)[ok].mean()), rel=1e-4, abs=1e-5)
    rmse, valid = lag_errors(grid, 12)
    one = smooth_errors(grid, 1, 12)
    both = valid & torch.isfinite(one)
    torch.testing.assert_close(one[both], rmse[both], rtol=1e-4, atol=1e-5)  # w = 1 is persistence at lead d


def test_smoothed_candidates_are_the_mean_of_the_last_steps():
    s = _series(T=96, period=12, noise=0.5)
    tb, values = _tokens([s])
    keep = tb.t_index < 18
    seen = tb.mask & keep[:, None, None]
    plain = lag_parts(values, seen, keep, tb.sample_id, tb.space_index, tb.t_index, 4, 1, k=4)
    parts = lag_parts(values, seen, keep, tb.sample_id, tb.space_index, tb.t_index, 4, 1, k=4, smooth=True)
    q = plain.values.shape[1]
    assert parts.values.shape[1] == q + len(SMOOTH_WINDOWS) and parts.features.shape[1] == q + len(SMOOTH_WINDOWS)
    torch.testing.assert_close(parts.values[:, :q], plain.values)
    i = int(torch.nonzero((tb.t_index == 20) & (tb.space_index == 0))[0])  # a future token of patch 0
    ctx = (tb.t_index < 18) & (tb.space_index == tb.space_index[i])
    steps = values[ctx].view(18, 4, -1, values.shape[-1]).reshape(72, -1, values.shape[-1])  # (steps, P, C)
    for j, w in enumerate(SMOOTH_WINDOWS):
        want = steps[-w * 4:].mean(0)  # fully observed: the mean of the last w * tau steps
        torch.testing.assert_close(parts.values[i, q + j].view(4, -1, values.shape[-1])[0], want)
    assert torch.equal(parts.available[i, q:], parts.available[i, :1].expand_as(parts.available[i, q:]))  # as P
    assert parts.available[i, q:].any()


@pytest.mark.parametrize("smooth", [False, True])
def test_hidden_values_do_not_leak(smooth):
    s = _series(T=96, period=12)
    tb, values = _tokens([s])
    keep = tb.t_index < 18  # last 6 time tokens hidden (a forecast)
    seen = tb.mask & keep[:, None, None]
    a = lag_parts(values, seen, keep, tb.sample_id, tb.space_index, tb.t_index, 4, 1, k=4, smooth=smooth)
    poisoned = torch.where(keep[:, None, None], values, torch.full_like(values, 1e6))
    b = lag_parts(poisoned, seen, keep, tb.sample_id, tb.space_index, tb.t_index, 4, 1, k=4, smooth=smooth)
    torch.testing.assert_close(a.values, b.values)
    torch.testing.assert_close(a.features, b.features)
    assert torch.equal(a.available, b.available)


def test_combine_renormalises_over_available_slots():
    L, Q, S, C = 2, 3, 4, 1
    values = torch.arange(L * Q * S * C, dtype=torch.float32).view(L, Q, S, C)
    avail = torch.ones(L, Q, S, C, dtype=torch.bool)
    avail[0, 1, :2] = False
    avail[1] = False
    parts = LagParts(values, avail, torch.zeros(L, Q, 8), torch.zeros(L, 2, dtype=torch.long))
    logits = torch.zeros(L, Q)
    out = parts.combine(logits)
    torch.testing.assert_close(out[0, 0], (values[0, 0, 0] + values[0, 2, 0]) / 2)
    torch.testing.assert_close(out[0, 3], values[0, :, 3].mean(0))
    assert (out[1] == 0).all()  # nothing available: the location mean (0 in normalised units)


def test_untrained_model_forecasts_the_period_from_values():
    """An untrained model with the lag copy reads a 13-step cycle (no clock) from the context."""
    model = create_model("unist_tiny")
    s = _series(T=300, period=13, noise=0.05)
    ctx = s.slice_time(0, 276)
    pred = Forecaster(model).forecast(ctx, 24)
    truth = s.values[276:300]
    last = np.repeat(s.values[275:276], 24, 0)
    mae, mae_last = np.abs(pred - truth).mean(), np.abs(last - truth).mean()
    assert mae < 0.3 * mae_last, (mae, mae_last)


def test_training_step_backpropagates_into_the_scorer():
    model = create_model("unist_tiny")
    tb = model.patcher.patchify([_series(T=96), _series(T=64, N=30, seed=3)])
    out = Pretrainer(model)(tb)
    out["loss"].backward()
    grads = [p.grad for p in model.lag_scorer.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_the_clock_day_joins_the_lags_found_in_the_values():
    rng = np.random.default_rng(1)
    T, N = 120, 5
    v = (rng.standard_normal((T, N)).cumsum(0) * 0.3).astype(np.float32)[..., None]  # a random walk: no period
    ts = np.datetime64("2024-01-01T00:00") + np.arange(T) * np.timedelta64(60, "m")
    s = STSeries(values=v, mask=np.ones_like(v, bool), layout="graph", coords=rng.random((N, 2)), timestamps=ts,
                 interval_minutes=60.0, name="walk")
    model = create_model("unist_tiny")
    tb = model.patcher.patchify([s])
    keep = tb.t_index < 24
    parts = model.copy_candidates(model.prepare(tb), tb.mask & keep[:, None, None], keep)
    assert parts.lags.shape[1] == model.config.lag_candidates + 1
    assert (parts.lags == 24).any(1).all()  # the clock's day is a candidate of every token


def test_an_untrained_network_predicts_the_backtest_rule():
    """The head's output layer and the scorer's decoder MLP start at zero: the untrained prediction is the lag
    copy weighted by its in-context backtest alone (`lag_copy(copy)`, h=None), whatever the decoder says."""
    model = create_model("unist_tiny").eval()
    tb = model.patcher.patchify([_series(T=96), _series(T=64, N=30, seed=3)])
    keep = tb.t_index < 12
    with torch.no_grad():
        out = model(tb, keep)
        rule = model.lag_copy(out.copy)
        torch.testing.assert_close(out.lagged, model.lag_copy(out.copy, out.h))
        torch.testing.assert_close(out.pred, rule)
        for p in model.lag_scorer.mlp.parameters():
            p.add_(0.1 * torch.randn_like(p))
        moved = model(tb, keep)
    assert (moved.lagged - rule).abs().max() > 1e-3  # the decoder now has a say in the weights ...
    torch.testing.assert_close(model.lag_copy(moved.copy), rule)  # ... and the rule is still its own
