"""The four-candidate classical ensemble (`unist.evaluation.ensemble`), a baseline of the zero-shot evaluation:
persistence reads only seen values of earlier kept tokens, the seasonal candidates need a clock that tiles the
day, the backtest features read only the context, and `ClassicalEnsemble` forecasts a steady series exactly
and a clean daily cycle as the same hours one day earlier."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from unist.data.series import STSeries
from unist.evaluation.ensemble import (CANDIDATES, GATE_FEATURES, LOG_ERRORS, ClassicalEnsemble, anchor_parts,
                                       gate_init)
from unist.forecast import extend_future
from unist.model import get_config
from unist.model.norm import location_stats, normalise
from unist.patching import UniversalPatcher

PATCH = get_config("unist_tiny").patch  # the ensemble patches as the model it is compared with
PATCHER = UniversalPatcher(PATCH)
TAU = PATCH.time_patch


def _graph_window(T=12, N=5, C=2, seed=0):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(T, N, C)).astype(np.float32).cumsum(0) + 10.0
    return STSeries(values=v, mask=np.ones_like(v, bool), layout="graph",
                    coords=rng.uniform(size=(N, 2)), name="toy")


def _persistence_forecast(w: STSeries, horizon: int) -> np.ndarray:
    """The persistence candidate alone (`anchor_parts(..., gated=False).persist`) as a forecast in data units."""
    b = PATCHER.patchify([extend_future(w, -(-horizon // TAU) * TAU)])
    keep = b.t_index < w.num_steps // TAU
    values = torch.where(b.mask, b.values, torch.zeros_like(b.values))
    parts = anchor_parts(values, b.mask & keep[:, None, None], keep, b.sample_id, b.space_index, b.t_index, TAU,
                         gated=False)
    assert parts.smooth.abs().sum() == 0 and parts.seasonal.abs().sum() == 0 and parts.features is None
    return PATCHER.unpatchify(parts.persist.numpy(), b)[0][w.num_steps:w.num_steps + horizon]


def test_persistence_forecasts_the_last_value_on_graphs_and_grids():
    w = _graph_window()
    pred = _persistence_forecast(w, 6)  # (6, N, C)
    np.testing.assert_allclose(pred, np.broadcast_to(w.values[-1], pred.shape), rtol=1e-6)
    v = np.arange(8 * 5 * 7, dtype=np.float32).reshape(8, 5, 7, 1)
    grid = STSeries(values=v, mask=np.ones_like(v, bool), layout="grid")  # 5 x 7 cells: partial patches at the edges
    np.testing.assert_allclose(_persistence_forecast(grid, 4), np.broadcast_to(v[-1], (4, 5, 7, 1)), rtol=1e-6)


def test_ensemble_forecasts_a_steady_series_exactly():
    # every candidate agrees on a series that is constant per location
    v = np.broadcast_to(np.arange(5, dtype=np.float32).reshape(1, 5, 1) * 3 + 1, (16, 5, 1)).copy()
    w = STSeries(values=v, mask=np.ones_like(v, bool), layout="graph", coords=np.random.default_rng(0).uniform(size=(5, 2)))
    np.testing.assert_allclose(ClassicalEnsemble(PATCH).forecast_batch([w], 8)[0], v[:8], rtol=1e-4, atol=1e-3)


def test_persistence_uses_only_seen_values_of_earlier_kept_tokens():
    # one sample, one spatial patch, 3 time tokens; tau=2, P=1, C=1
    vals = torch.tensor([[1., 2.], [3., 4.], [5., 6.]]).view(3, 2, 1)
    seen = torch.ones_like(vals, dtype=torch.bool)
    seen[0, 1, 0] = False  # last step of token 0 unseen -> its last seen value is 1
    keep = torch.tensor([True, False, False])
    z = torch.zeros(3, dtype=torch.long)
    a = anchor_parts(vals, seen, keep, z, z, torch.arange(3), tau=2, gated=False).persist
    assert a[0].abs().sum() == 0  # kept tokens: no anchor
    assert torch.equal(a[1].flatten(), torch.tensor([1., 1.])) and torch.equal(a[2].flatten(), torch.tensor([1., 1.]))
    poisoned = vals.clone()
    poisoned[1:] = 1e6  # hidden tokens' own values never enter the anchor
    assert torch.equal(anchor_parts(poisoned, seen, keep, z, z, torch.arange(3), tau=2, gated=False).persist, a)


# ----------------------------------------------------------------------------- seasonal anchor
def _hourly_graph(T=48, N=3, C=1, seed=1, gap_at=None, interval=60, noise=1.0):
    rng = np.random.default_rng(seed)
    hours = np.arange(T)
    walk = noise * rng.normal(size=(T, N, C)).cumsum(0)
    v = (10 * np.sin(2 * np.pi * hours / 24)[:, None, None] + 3 * np.arange(N).reshape(1, N, 1) + walk).astype(np.float32)
    minutes = hours * interval
    if gap_at is not None:
        minutes = np.where(hours >= gap_at, minutes + 60, minutes)  # one missing hour in the record
    ts = np.datetime64("2024-03-04T00:00", "m") + minutes.astype("timedelta64[m]")
    return STSeries(values=v, mask=np.ones_like(v, bool), layout="graph", coords=rng.uniform(size=(N, 2)),
                    timestamps=ts, interval_minutes=float(interval), name="hourly")


def test_ensemble_follows_the_day_when_the_context_repeats_daily():
    # a noise-free daily cycle: seasonal naive has zero in-context backtest error, so the candidate weights
    # (error^-4, Bates-Granger style) put everything on it and the forecast is the same hours one day earlier
    w = _hourly_graph(noise=0.0)
    pred = ClassicalEnsemble(PATCH).forecast_batch([w], 8)[0]  # (8, N, 1)
    np.testing.assert_allclose(pred, w.values[24:32], rtol=1e-3, atol=2e-2)
    assert np.abs(pred - w.values[-1]).max() > 1.0  # far from persistence


def _parts(w, n_keep):
    b = PATCHER.patchify([w])
    keep = b.t_index < n_keep
    seen = b.mask & keep[:, None, None]
    args = (b.sample_id, b.space_index, b.t_index, TAU, b.time_feats, b.has_time, b.cu_seqlens)
    return b, keep, seen, args, anchor_parts(b.values, seen, keep, *args)


def test_seasonal_candidates_need_a_clock_that_tiles_the_day():
    _, keep, _, _, parts = _parts(_hourly_graph(), 12)
    assert parts.available[~keep, 2:].all()  # a day of clean hourly context: seasonal and level available
    for w in (_hourly_graph(gap_at=30), _hourly_graph(interval=1440)):  # a gap breaks the clock; daily data has no day
        _, keep, _, _, parts = _parts(w, 12)
        assert not parts.available[:, 2:].any() and parts.seasonal.abs().sum() == 0 and parts.level.abs().sum() == 0
        assert parts.available[~keep, :2].all()


def test_anchor_parts_read_only_seen_values():
    b, keep, seen, args, a = _parts(_hourly_graph(T=56), 12)
    assert a.seasonal[~keep].abs().sum() > 0 and a.level[~keep].abs().sum() > 0 and a.smooth[~keep].abs().sum() > 0
    poisoned = torch.where(keep[:, None, None], b.values, torch.full_like(b.values, 1e6))
    p = anchor_parts(poisoned, seen, keep, *args)
    for x, y in ((a.persist, p.persist), (a.smooth, p.smooth), (a.seasonal, p.seasonal), (a.level, p.level),
                 (a.features, p.features), (a.available, p.available)):
        assert torch.equal(x, y)


# ----------------------------------------------------------------------------- the weighting rule
def test_gate_features_backtest_the_context():
    cfg = get_config("unist_tiny")
    hours = np.arange(72)
    periodic = np.repeat(np.sin(2 * np.pi * hours / 24)[:, None, None], 2, axis=1).astype(np.float32)  # repeats daily
    walk = np.random.default_rng(0).normal(size=(72, 2, 1)).cumsum(0).astype(np.float32) * 0.05  # no daily cycle
    ts = np.datetime64("2024-03-04T00:00", "m") + (hours * 60).astype("timedelta64[m]")
    gaps = []
    for v in (periodic, walk):
        s = STSeries(values=v, mask=np.ones_like(v, bool), layout="graph", coords=np.array([[0., 0.], [1., 1.]]),
                     timestamps=ts, interval_minutes=60.0, name="g")
        b = PATCHER.patchify([s])
        keep = b.t_index < 14
        seen = b.mask & keep[:, None, None]
        mean, std = location_stats(b.values, seen, b.sample_id, b.space_index, 1, TAU, floor=cfg.norm_floor)
        z = normalise(b.values, b.mask, mean, std, cfg.norm_clip)
        parts = anchor_parts(z, seen, keep, b.sample_id, b.space_index, b.t_index, TAU,
                             b.time_feats, b.has_time, b.cu_seqlens)
        f = parts.features[~keep]
        assert torch.equal(f[:, 0], torch.log1p(4.0 * (b.t_index[~keep] - 13).float()))  # lead in steps
        assert (f[:, 2] == 1).all() and (f[:, 3] == 1).all()  # a day earlier (and its level) is visible
        gaps.append((f[:, 6] - f[:, 4]).mean().item())  # log e_S - log e_P
        assert parts.features[keep].abs().sum() == 0
    assert gaps[0] < -2 and gaps[1] > 0  # yesterday beats the last reading only for the periodic series


def test_gate_init_weights_each_candidate_by_its_backtest_error_to_the_minus_beta():
    w, bias = torch.randn(CANDIDATES, GATE_FEATURES), torch.randn(CANDIDATES)
    gate_init(w, bias)
    assert bias.abs().sum() == 0
    log_err = torch.log(torch.tensor([0.2, 0.1, 0.4, 0.8]))
    feats = torch.zeros(1, GATE_FEATURES)
    feats[0, LOG_ERRORS] = log_err
    feats[0, :4] = torch.tensor([1.5, 0.25, 1.0, 1.0])  # lead and availability columns carry no weight
    weights = torch.softmax(torch.nn.functional.linear(feats, w, bias), -1)[0]
    expect = torch.exp(-4 * log_err) / torch.exp(-4 * log_err).sum()  # error^-4, normalised
    torch.testing.assert_close(weights, expect)
    assert weights.argmax() == 1  # the smallest backtest error gets the most weight


def test_unavailable_candidates_get_no_weight():
    b, keep, seen, args, parts = _parts(_hourly_graph(gap_at=30), 12)  # a gap in the clock: no seasonal candidates
    w = parts.weights(torch.zeros(b.num_tokens, CANDIDATES))
    hidden = ~keep
    assert (w[hidden][:, 2:] == 0).all() and torch.allclose(w[hidden][:, :2].sum(1), torch.ones(int(hidden.sum())))
    torch.testing.assert_close(parts.combine(w), parts.persist + 0.5 * parts.smooth)  # equal logits: P and M halve


def test_ensemble_gives_point_forecasts_only():
    with pytest.raises(ValueError, match="point forecasts only"):
        ClassicalEnsemble(PATCH).forecast_batch([_graph_window()], 4, num_samples=2)
