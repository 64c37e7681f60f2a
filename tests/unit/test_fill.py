"""The lag copy's fill candidates (`fill.py`: interpolation in time, cross-section mean): brute force, never
offered for the future (forecasts unchanged bit for bit, nothing hidden leaks), and what they do for imputation."""
import numpy as np
import pytest
import torch
from model_testing import assert_nothing_hidden_leaks

from unist.data import STSeries
from unist.forecast import Forecaster
from unist.model import create_model
from unist.model.lags import lag_parts
from unist.model.fill import cross_parts
from unist.model.steps import StepGrid, interpolate, interpolation_errors
from unist.patching import PatcherConfig, UniversalPatcher


def _series(T=96, N=6, seed=0, missing=0.0, period=12):
    rng = np.random.default_rng(seed)
    t = np.arange(T)
    v = (np.sin(2 * np.pi * t / period)[:, None] + 0.02 * t[:, None] + rng.standard_normal(N)
         + 0.05 * rng.standard_normal((T, N))).astype(np.float32)[..., None]
    mask = rng.random(v.shape) >= missing
    return STSeries(values=np.where(mask, v, np.nan).astype(np.float32), mask=mask, layout="graph",
                    coords=rng.random((N, 2)), name="ramp")


def test_interpolate_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 23, 2, 2, generator=g)
    m = torch.rand(3, 23, 2, 2, generator=g) > 0.4
    x = torch.where(m, x, 0.0)
    y, ok, gap = interpolate(StepGrid(x, m, torch.zeros(1, dtype=torch.long), 4))
    for gi in range(3):
        for p in range(2):
            for c in range(2):
                seen = [t for t in range(23) if m[gi, t, p, c]]
                for t in range(23):
                    before, after = [u for u in seen if u < t], [u for u in seen if u > t]
                    if not (before and after):
                        assert not ok[gi, t, p, c]
                        continue
                    a, b = before[-1], after[0]  # a seen step is interpolated from its neighbours, not itself
                    want = x[gi, a, p, c] + (x[gi, b, p, c] - x[gi, a, p, c]) * (t - a) / (b - a)
                    assert ok[gi, t, p, c] and gap[gi, t, p, c] == b - a
                    assert float(y[gi, t, p, c]) == pytest.approx(float(want), abs=1e-5)
    # the backtest: interpolating each seen step with both neighbours seen from them
    xs, ms = x[0, :, 0, 0], m[0, :, 0, 0]
    errs = [float(xs[t] - 0.5 * (xs[t - 1] + xs[t + 1])) for t in range(1, 22) if ms[t - 1] and ms[t] and ms[t + 1]]
    one = interpolation_errors(StepGrid(x[:1, :, :1, :1], m[:1, :, :1, :1], None, 4))
    assert float(one[0]) == pytest.approx(float(np.sqrt(np.mean(np.square(errs)))), rel=1e-5)
    assert torch.isinf(interpolation_errors(StepGrid(x[:1], torch.zeros_like(m[:1]), None, 4))).all()


def test_cross_section_mean_matches_brute_force():
    g = torch.Generator().manual_seed(1)
    L, tau, P, C = 5, 4, 3, 2
    values = torch.randn(L, tau * P, C, generator=g)
    seen = torch.rand(L, tau * P, C, generator=g) > 0.3
    group = torch.tensor([0, 1, 0, 1, 2])
    v, ok, rmse = cross_parts(values, seen, tau, group, 3)
    x, m = values.view(L, tau, P, C), seen.view(L, tau, P, C)
    errs = {0: [], 1: [], 2: []}
    for i in range(L):
        for j in range(tau):
            for p in range(P):
                for c in range(C):
                    others = [float(x[i, j, q, c]) for q in range(P) if q != p and m[i, j, q, c]]
                    s = j * P + p
                    assert bool(ok[i, s, c]) == bool(others)
                    if others:
                        assert float(v[i, s, c]) == pytest.approx(np.mean(others), abs=1e-5)
                        if m[i, j, p, c]:
                            errs[int(group[i])].append(float(x[i, j, p, c]) - np.mean(others))
    for gi, e in errs.items():
        want = np.sqrt(np.mean(np.square(e))) if e else np.inf
        assert float(rmse[group == gi][0]) == pytest.approx(want, rel=1e-5)


def _parts(values, seen, keep, tb, fill):
    return lag_parts(values, seen, keep, tb.sample_id, tb.space_index, tb.t_index, 4, 1, k=4, smooth=True,
                     fill=fill)


def test_never_offered_for_the_future_and_nothing_hidden_leaks():
    tb = UniversalPatcher(PatcherConfig(time_patch=4)).patchify([_series(missing=0.1)])
    values = torch.where(tb.mask, tb.values, torch.zeros_like(tb.values))
    keep = tb.t_index < 18  # the last 6 time tokens hidden: a forecast
    keep[(tb.t_index == 9) & (tb.space_index == 0)] = False  # and one hidden token between visible ones
    seen = tb.mask & keep[:, None, None]
    plain, parts = _parts(values, seen, keep, tb, False), _parts(values, seen, keep, tb, True)
    q = plain.values.shape[1]
    assert parts.values.shape[1] == q + 2
    assert torch.equal(parts.values[:, :q], plain.values) and torch.equal(parts.features[:, :q], plain.features)
    assert not parts.available[tb.t_index >= 18, q:].any()  # nothing seen after or beside the future
    gap_token = (tb.t_index == 9) & (tb.space_index == 0)
    assert parts.available[gap_token, q].any()  # the hidden token between visible ones is interpolated
    assert not parts.available[gap_token, q + 1].any()  # and has no seen cell beside it
    assert parts.available[keep, q + 1].any()  # visible tokens with holes (10 % missing) have neighbours
    assert_nothing_hidden_leaks(lambda v: _parts(v, seen, keep, tb, True), values, seen, parts)


def test_forecasts_are_bit_identical_with_and_without_it():
    torch.manual_seed(0)
    model = create_model("unist_tiny", lag_fill=False)
    window = _series(T=64, missing=0.1)
    fc = Forecaster(model)
    a = fc.forecast(window, horizon=8)
    model.config.lag_fill = True
    b = fc.forecast(window, horizon=8)
    assert np.array_equal(a, b)


def test_untrained_model_imputes_by_interpolation_where_it_backtests_best():
    """A smooth series with scattered holes: an untrained model (its scorer starts at the backtest rule) fills
    them about as well as linear interpolation with the fill candidates, and far worse without them."""
    torch.manual_seed(0)
    full = _series(T=96, missing=0.0)
    rng = np.random.default_rng(1)
    hide = rng.random(full.mask.shape) < 0.2
    holed = STSeries(values=np.where(hide, np.nan, full.values).astype(np.float32), mask=~hide, layout="graph",
                     coords=full.coords, name="holes")
    model = create_model("unist_tiny", lag_fill=True)
    fc = Forecaster(model)
    err = lambda s: float(np.abs(s.values - full.values)[hide].mean())  # noqa: E731
    with_it = err(fc.impute(holed))
    model.config.lag_fill = False
    without = err(fc.impute(holed))
    v = holed.values[:, :, 0]
    t = np.arange(v.shape[0])
    linear = np.stack([np.interp(t, t[~np.isnan(v[:, n])], v[~np.isnan(v[:, n]), n]) for n in range(v.shape[1])], 1)
    lin = float(np.abs(linear[..., None] - full.values)[hide].mean())
    assert with_it < 0.5 * without, (with_it, without)
    assert with_it < 1.1 * lin, (with_it, lin)


def test_untrained_model_fills_an_outage_from_the_neighbours():
    """Nodes that move together (one signal plus a per-node offset) and an outage of one node for 24 steps: the
    cross-section candidate fills it from the other nodes of its patch, far better than interpolating across
    the gap, which an untrained model without the fill candidates cannot even do."""
    rng = np.random.default_rng(0)
    T, N = 96, 6
    common = np.cumsum(rng.standard_normal(T)).astype(np.float32)
    v = (common[:, None] + rng.standard_normal(N)[None] * 3 + 0.05 * rng.standard_normal((T, N)))[..., None]
    mask = np.ones(v.shape, bool)
    mask[40:64, 2] = False
    holed = STSeries(values=np.where(mask, v, np.nan).astype(np.float32), mask=mask, layout="graph",
                     coords=rng.random((N, 2)), name="outage")
    torch.manual_seed(0)
    model = create_model("unist_tiny", lag_fill=True)
    fc = Forecaster(model)
    err = lambda s: float(np.abs(s.values - v)[~mask].mean())  # noqa: E731
    with_it = err(fc.impute(holed))
    model.config.lag_fill = False
    without = err(fc.impute(holed))
    linear = np.interp(np.arange(T), np.flatnonzero(mask[:, 2, 0]), v[mask[:, 2, 0], 2, 0])
    lin = float(np.abs(linear - v[:, 2, 0])[~mask[:, 2, 0]].mean())
    assert with_it < 0.5 * lin and with_it < 0.5 * without, (with_it, lin, without)
