"""The lag copy's exponential-smoothing candidates (`ets.py`, `UniSTConfig.lag_ets`): the recursion against a
brute-force loop, its in-context MAE, where they are offered (a period found; never from hidden cells) and what an
untrained model forecasts with them on a seasonal series whose level wanders."""
import numpy as np
import pytest
import torch
from model_testing import assert_nothing_hidden_leaks

from unist.data import STSeries
from unist.errors import ConfigError
from unist.forecast import Forecaster
from unist.model import UniSTConfig, create_model
from unist.model.ets import ETS_PARAMS, _ahead, ets_mae, ets_states
from unist.model.lags import lag_parts
from unist.model.steps import StepGrid
from unist.patching import PatcherConfig, UniversalPatcher


def _brute(x, m, season, alpha, gamma):
    """ETS(A,N,A) in error-correction form over one column, as the module docstring writes it."""
    T = len(x)
    start = max(season, 1)
    first = [t for t in range(start) if m[t]]
    l = np.mean([x[t] for t in first]) if first else 0.0
    prof = [(x[t] - l if (m[t] and season) else 0.0) for t in range(start)] + [0.0] * (T - start)
    level = [l] * T
    for t in range(start, T):
        st = prof[t - season] if season else 0.0
        if m[t]:
            e = x[t] - l - st
            l, prof[t] = l + alpha * e, st + gamma * e
        else:
            prof[t] = st
        level[t] = l
    return np.array(level), np.array(prof)


def test_recursion_matches_brute_force_with_missing_steps():
    g = torch.Generator().manual_seed(0)
    T, P, C = 40, 2, 2
    x = torch.randn(3, T, P, C, generator=g)
    m = torch.rand(3, T, P, C, generator=g) > 0.25
    x = torch.where(m, x, 0.0)
    season = torch.tensor([7, 0, 12])
    level, prof, start = ets_states(StepGrid(x, m, torch.zeros(1, dtype=torch.long), 4), season)
    assert start.tolist() == [7, 1, 12]
    for gi in range(3):
        for e, (a, gm) in enumerate(ETS_PARAMS):
            for p in range(P):
                for c in range(C):
                    lv, pr = _brute(x[gi, :, p, c].tolist(), m[gi, :, p, c].tolist(), int(season[gi]), a, gm)
                    np.testing.assert_allclose(level[gi, e, :, p, c].numpy(), lv, atol=1e-5)
                    if season[gi]:
                        np.testing.assert_allclose(prof[gi, e, :, p, c].numpy(), pr, atol=1e-5)


def test_forecasts_a_seasonal_series_with_a_wandering_level_and_backtests_it():
    T, s = 84, 7
    t = np.arange(T)
    rng = np.random.default_rng(0)
    x = 3 * np.sin(2 * np.pi * t / s) + np.cumsum(0.2 * rng.standard_normal(T))
    X = torch.tensor(x, dtype=torch.float32).view(1, T, 1, 1)
    grid = StepGrid(X[:, :70], torch.ones(1, 70, 1, 1, dtype=torch.bool), torch.zeros(1, dtype=torch.long), 1)
    season = torch.tensor([s])
    states = ets_states(grid, season)
    pred = _ahead(states[0], states[1], season, torch.tensor([0]), torch.tensor([[69] * 14]),
                  torch.arange(1, 15)[None])
    err_ets = np.abs(pred[0, 1, :, 0, 0].numpy() - x[70:84]).mean()  # the fast one (alpha 0.5)
    err_last = np.abs(x[69] - x[70:84]).mean()
    err_sn = np.abs(np.concatenate([x[63:70], x[63:70]]) - x[70:84]).mean()
    assert err_ets < 0.6 * err_last and err_ets < err_sn
    mae = ets_mae(grid, season, states, [1, 4])  # (G, E, D)
    assert mae.shape == (1, len(ETS_PARAMS), 2) and torch.isfinite(mae).all()
    assert float(mae[0, 1, 0]) < float(mae[0, 1, 1])  # one step ahead is easier than four
    # without enough origins two cycles in, no backtest: the rule then gives the candidates no weight
    short = StepGrid(X[:, :15], torch.ones(1, 15, 1, 1, dtype=torch.bool), None, 1)
    assert torch.isinf(ets_mae(short, season, ets_states(short, season), [1, 4])[0, :, 1]).all()


def _series(T=96, N=4, period=12, seasonal=True):
    rng = np.random.default_rng(0)
    t = np.arange(T)
    base = np.sin(2 * np.pi * t / period)[:, None] if seasonal else 0 * t[:, None]
    v = (3 * base + np.cumsum(0.1 * rng.standard_normal((T, N)), 0)).astype(np.float32)[..., None]
    return STSeries(values=v, mask=np.ones(v.shape, bool), layout="graph", coords=rng.random((N, 2)), name="s")


def _parts(values, seen, keep, tb, ets):
    return lag_parts(values, seen, keep, tb.sample_id, tb.space_index, tb.t_index, 4, 1, k=4, smooth=True,
                     error="mae", dip=0.8, cycles=2.0, edge_dip=False, ets=ets)


def test_offered_after_the_smoothed_levels_only_with_a_period_and_nothing_hidden_leaks():
    for seasonal in (True, False):
        tb = UniversalPatcher(PatcherConfig(time_patch=4)).patchify([_series(seasonal=seasonal)])
        values = torch.where(tb.mask, tb.values, torch.zeros_like(tb.values))
        keep = tb.t_index < 20  # the last 4 time tokens hidden: a forecast
        seen = tb.mask & keep[:, None, None]
        plain, parts = _parts(values, seen, keep, tb, False), _parts(values, seen, keep, tb, True)
        q, E = plain.values.shape[1], len(ETS_PARAMS)
        assert parts.values.shape[1] == q + E
        assert torch.equal(parts.values[:, :q], plain.values) and torch.equal(parts.features[:, :q], plain.features)
        future = tb.t_index >= 20
        # a 12-step cycle is found in the values; a random walk has no period, so no candidate (its smoothed level
        # is what the smoothed candidates offer)
        for e in range(E):  # where seasonal: on every cell last value has (the patch's padding slots have none)
            want = parts.available[future, 0] if seasonal else torch.zeros_like(parts.available[future, 0])
            assert torch.equal(parts.available[future, q + e], want)
        assert bool(parts.available[:, q:].any()) is seasonal
        assert_nothing_hidden_leaks(lambda v: _parts(v, seen, keep, tb, True), values, seen, parts)


def test_untrained_model_forecasts_no_worse_with_them_on_a_seasonal_wandering_series():
    torch.manual_seed(0)
    full = _series(T=120, N=6)
    ctx = STSeries(values=full.values[:96], mask=full.mask[:96], layout="graph", coords=full.coords, name="s")
    model = create_model("unist_tiny", lag_ets=False)
    fc = Forecaster(model)
    err = lambda f: float(np.abs(f - full.values[96:108]).mean())  # noqa: E731
    without = err(fc.forecast(ctx, horizon=12))
    model.config.lag_ets = True
    with_them = err(fc.forecast(ctx, horizon=12))
    assert with_them <= without * 1.02


def test_config_refuses_them_without_mae_backtests():
    assert UniSTConfig().lag_ets is False  # every release up to unist-tiny-6 was trained without them
    with pytest.raises(ConfigError, match="lag_ets=True needs lag_error='mae'"):
        UniSTConfig(lag_ets=True, lag_error="rmse").validate()
    with pytest.raises(ConfigError, match="lag_ets=1 must be a bool"):
        UniSTConfig(lag_ets=1).validate()
