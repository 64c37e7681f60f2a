"""The lag copy's MAE backtests (`UniSTConfig.lag_error="mae"`): brute force, why they exist (on intermittent counts
the RMSE picks the mean-like candidate an MAE-scored forecast should not), no leak, the config switch."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from unist.data import STSeries
from unist.errors import ConfigError
from unist.model import UniSTConfig
from unist.model.lags import best_lags, lag_parts, lead_steps, level_errors
from unist.model.steps import StepGrid, lag_errors, lag_mae, lead_mae, moving_mean, sample_smooth_mae, smooth_errors
from unist.patching import PatcherConfig, UniversalPatcher

REPO = Path(__file__).resolve().parents[2]


def _grid(seed=0):
    g = torch.Generator().manual_seed(seed)
    G, T, P, C = 3, 40, 2, 2
    x = torch.randn(G, T, P, C, generator=g)
    m = torch.rand(G, T, P, C, generator=g) > 0.3
    m[2, 30:] = False  # sample 2 is shorter and has one channel: the padding must not count
    m[2, :, :, 1] = False
    x = torch.where(m, x, 0)
    return StepGrid(x, m, torch.zeros(1, dtype=torch.long), 4, ((0, 2, 40, 2), (2, 3, 30, 1)))


def _brute_lag(x, m, lag, tau):
    if lag == 0:
        return float("inf")
    both = m[lag:] & m[:-lag]
    per_step = m.sum() / m.flatten(1).any(1).sum()
    n = both.sum()
    if n / per_step < max(tau, lag / 2):
        return float("inf")
    return float((x[lag:] - x[:-lag]).abs()[both].sum() / n)


def test_lag_mae_matches_brute_force_per_sample():
    grid = _grid()
    lags = torch.tensor([[1, 5, 0], [4, 12, 39], [7, 2, 20]])
    got = lag_mae(grid, lags)
    for g, (steps, c) in enumerate([(40, 2), (40, 2), (30, 1)]):
        x, m = grid.x[g, :steps, :, :c], grid.m[g, :steps, :, :c]
        for k in range(3):
            want = _brute_lag(x, m, int(lags[g, k]), 4)
            assert want == pytest.approx(float(got[g, k]), rel=1e-5), (g, k)
    assert torch.isinf(got[0, 2]) and torch.isinf(got[1, 2])  # lag 0: none; lag 39: two pairs say nothing


def test_smooth_and_level_mae_match_brute_force():
    grid = _grid(1)
    sub = StepGrid(grid.x[:2], grid.m[:2], grid.group, 4)
    y, has = moving_mean(sub, 4)
    leads = lead_steps(9, 4)
    assert leads == [1, 4, 8]  # a token is a whole number of tokens ahead of its last-value token
    got = sample_smooth_mae(sub, leads, (y, has))
    for g in range(2):
        for j, d in enumerate(leads):
            both = sub.m[g, d:] & has[g, :40 - d]
            want = (sub.x[g, d:] - y[g, :40 - d]).abs()[both].mean()
            assert float(want) == pytest.approx(float(got[g, j]), rel=1e-5)
    lags = torch.tensor([[6], [10]])
    lvl = level_errors(sub, lags, 9, error="mae")  # (G, K, leads)
    for g in range(2):
        lag = int(lags[g, 0])
        yd = sub.x[g, lag:] - sub.x[g, :-lag]
        my = sub.m[g, lag:] & sub.m[g, :-lag]
        for j, d in enumerate(leads):
            want = _brute_lag(torch.cat([torch.zeros_like(yd[:lag]), yd]), torch.cat([torch.zeros_like(my[:lag]), my]),
                              d, 4)
            assert want == pytest.approx(float(lvl[g, 0, j]), rel=1e-5)


def test_on_intermittent_counts_mae_prefers_last_value_where_rmse_prefers_the_mean():
    """The reason for lag_error="mae": bursty counts (zeros, then a few steps of Poisson counts, like outbreaks). The
    smoothed level has the lower RMSE (it spreads the bursts over the zeros), last value the lower MAE (it is 0
    where the series is 0), and MAE is what the forecast is scored on."""
    rng = np.random.default_rng(0)
    on, state = np.zeros(400, bool), False
    for t in range(400):  # off -> on with p 0.05, on -> off with p 0.25
        state = rng.random() < 0.05 if not state else rng.random() > 0.25
        on[t] = state
    x = torch.from_numpy(on * rng.poisson(6, 400)).float().view(1, 400, 1, 1)
    grid = StepGrid(x, torch.ones_like(x, dtype=torch.bool), torch.zeros(1, dtype=torch.long), 4)
    w = 16
    rmse_p = lag_errors(grid, 4)[0][0, 4]
    rmse_s = smooth_errors(grid, w, 4)[0, 4]
    mae_p = lag_mae(grid, torch.tensor([[4]]))[0, 0]
    mae_s = sample_smooth_mae(grid, [4], moving_mean(grid, w))[0, 0]
    assert rmse_s < rmse_p and mae_p < mae_s


def _tokens(T=96, N=5, seed=0):
    rng = np.random.default_rng(seed)
    v = ((rng.random((T, N)) < 0.2) * rng.poisson(5, (T, N))).astype(np.float32)[..., None]
    s = STSeries(values=v, mask=np.ones_like(v, bool), layout="graph", coords=rng.random((N, 2)), name="counts")
    tb = UniversalPatcher(PatcherConfig(time_patch=4)).patchify([s])
    return tb, torch.where(tb.mask, tb.values, torch.zeros_like(tb.values))


def test_mae_backtests_read_no_hidden_value_and_change_only_the_errors():
    tb, values = _tokens()
    keep = tb.t_index < 18
    seen = tb.mask & keep[:, None, None]
    seen[::3, 1] = False  # holes in visible tokens: the fill candidates take part too
    args = (keep, tb.sample_id, tb.space_index, tb.t_index, 4, 1)
    a = lag_parts(values, seen, *args, k=4, smooth=True, fill=True, error="mae")
    poisoned = torch.where(seen, values, torch.full_like(values, 1e6))
    b = lag_parts(poisoned, seen, *args, k=4, smooth=True, fill=True, error="mae")
    torch.testing.assert_close(a.values, b.values)
    torch.testing.assert_close(a.features, b.features)
    r = lag_parts(values, seen, *args, k=4, smooth=True, fill=True, error="rmse")
    assert torch.equal(a.values, r.values) and torch.equal(a.available, r.available) and torch.equal(a.lags, r.lags)
    assert not torch.allclose(a.features[..., 0], r.features[..., 0])  # the log error feature is MAE's now
    torch.testing.assert_close(a.features[..., 1:7], r.features[..., 1:7])  # lag, lead, coverage, kinds unchanged


def test_lag_error_setting():
    assert UniSTConfig().lag_error == "mae"
    with pytest.raises(ConfigError, match="lag_error='median' unknown"):
        UniSTConfig(lag_error="median").validate()
    for name in ("unist-tiny-2", "unist-tiny-3", "unist-tiny-4"):  # trained with RMSE backtests: they keep them
        cfg = json.loads((REPO / "checkpoints" / name / "config.json").read_text())
        assert cfg["model_config"]["lag_error"] == "rmse" and cfg["model_config"]["lag_dip"] == 1.0, name
    with pytest.raises(ValueError, match="error='l2' unknown"):
        tb, values = _tokens()
        keep = tb.t_index < 18
        lag_parts(values, tb.mask, keep, tb.sample_id, tb.space_index, tb.t_index, 4, 1, k=2, error="l2")


def test_a_period_must_dip_below_the_median_lag_error():
    """best_lags' depth: the ripples of a noise curve are dips too, a real period dips far below the rest."""
    g = torch.Generator().manual_seed(0)
    noise = 1 + 0.03 * torch.rand(2, 60, generator=g)  # two error curves of a series without a period
    noise[1, 13] = 0.4  # ... and one with a period of 13
    lag, _, ok = best_lags(noise, 3, min_lag=2)
    assert ok.all()  # any dip counts: three noise lags each
    lag, err, ok = best_lags(noise, 3, min_lag=2, depth=0.8)
    assert not ok[0].any() and ok[1].tolist() == [True, False, False] and int(lag[1, 0]) == 13
    assert torch.isinf(err[0]).all()
    with pytest.raises(ConfigError, match="lag_dip=1.5 must be in"):
        UniSTConfig(lag_dip=1.5).validate()


def test_lead_mae_slices_give_what_the_gather_gives():
    grid = _grid(2)
    leads = lead_steps(13, 4)  # [1, 4, 8, 12]
    want = lag_mae(grid, torch.tensor(leads)[None].expand(grid.x.shape[0], -1))
    torch.testing.assert_close(lead_mae(grid, leads), want)
