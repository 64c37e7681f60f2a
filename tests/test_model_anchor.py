"""Persistence anchor and robust normalisation: the untrained model forecasts last value exactly,
the anchor never reads hidden values, and a flat context cannot blow up the loss."""
from __future__ import annotations

import numpy as np
import torch

from unist.data.series import STSeries
from unist.model import create_model
from unist.model.anchor import persistence_anchor


def _graph_window(T=12, N=5, C=2, seed=0):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(T, N, C)).astype(np.float32).cumsum(0) + 10.0
    return STSeries(values=v, mask=np.ones_like(v, bool), layout="graph",
                    coords=rng.uniform(size=(N, 2)), name="toy")


def test_untrained_model_forecasts_last_value_without_gates():
    model = create_model("unist_tiny", lag_candidates=0, self_check=True, gated_anchor=False)
    w = _graph_window()
    pred = model.forecast(w, horizon=6)  # (6, N, C)
    expect = np.broadcast_to(w.values[-1], pred.shape)
    np.testing.assert_allclose(pred, expect, rtol=1e-4, atol=1e-4)
    grid = STSeries(values=np.arange(8 * 5 * 7 * 1, dtype=np.float32).reshape(8, 5, 7, 1), mask=np.ones((8, 5, 7, 1), bool),
                    layout="grid")
    np.testing.assert_allclose(model.forecast(grid, 4), np.broadcast_to(grid.values[-1], (4, 5, 7, 1)), rtol=1e-4, atol=1e-3)


def test_untrained_gated_model_forecasts_a_steady_series_exactly():
    model = create_model("unist_tiny", lag_candidates=0, self_check=True)  # every candidate agrees on a series that is constant per location
    v = np.broadcast_to(np.arange(5, dtype=np.float32).reshape(1, 5, 1) * 3 + 1, (16, 5, 1)).copy()
    w = STSeries(values=v, mask=np.ones_like(v, bool), layout="graph", coords=np.random.default_rng(0).uniform(size=(5, 2)))
    np.testing.assert_allclose(model.forecast(w, 8), v[:8], rtol=1e-4, atol=1e-3)


def test_anchor_uses_only_seen_values_of_earlier_kept_tokens():
    # one sample, one spatial patch, 3 time tokens; tau=2, P=1, C=1
    vals = torch.tensor([[1., 2.], [3., 4.], [5., 6.]]).view(3, 2, 1)
    seen = torch.ones_like(vals, dtype=torch.bool)
    seen[0, 1, 0] = False  # last step of token 0 unseen -> its last seen value is 1
    keep = torch.tensor([True, False, False])
    z = torch.zeros(3, dtype=torch.long)
    a = persistence_anchor(vals, seen, keep, z, z, torch.arange(3), tau=2)
    assert a[0].abs().sum() == 0  # kept tokens: no anchor
    assert torch.equal(a[1].flatten(), torch.tensor([1., 1.])) and torch.equal(a[2].flatten(), torch.tensor([1., 1.]))
    poisoned = vals.clone()
    poisoned[1:] = 1e6  # hidden tokens' own values never enter the anchor
    assert torch.equal(persistence_anchor(poisoned, seen, keep, z, z, torch.arange(3), tau=2), a)


def test_flat_context_does_not_blow_up_the_loss():
    model = create_model("unist_tiny", lag_candidates=0, self_check=True, masking={"strategies": ("temporal",), "ratio": 0.5})
    v = np.zeros((16, 8, 8, 1), np.float32)
    v[8:] = 50.0  # zero night-time flow, then a burst
    s = STSeries(values=v, mask=np.ones_like(v, bool), layout="grid", name="burst")
    out = model(model.patcher.patchify([s]))
    assert torch.isfinite(out["loss"]) and out["masked"] < 20 and out["diffusion"] < 500


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


def test_untrained_model_follows_the_day_when_the_context_repeats_daily():
    # a noise-free daily cycle: seasonal naive has zero in-context backtest error, so the candidate weights
    # (error^-4, Bates-Granger style) put everything on it and the forecast is the same hours one day earlier
    model = create_model("unist_tiny", lag_candidates=0, self_check=True)
    w = _hourly_graph(noise=0.0)
    pred = model.forecast(w, horizon=8)  # (8, N, 1)
    np.testing.assert_allclose(pred, w.values[24:32], rtol=1e-3, atol=2e-2)
    assert np.abs(pred - w.values[-1]).max() > 1.0  # far from persistence


def _parts(model, w, n_keep):
    from unist.model.anchor import anchor_parts
    b = model.patcher.patchify([w])
    keep = b.t_index < n_keep
    seen = b.mask & keep[:, None, None]
    args = (b.sample_id, b.space_index, b.t_index, 4, b.time_feats, b.has_time, b.cu_seqlens)
    return b, keep, seen, args, anchor_parts(b.values, seen, keep, *args)


def test_seasonal_candidates_need_a_clock_that_tiles_the_day():
    model = create_model("unist_tiny", lag_candidates=0, self_check=True)
    _, keep, _, _, parts = _parts(model, _hourly_graph(), 12)
    assert parts.available[~keep, 2:].all()  # a day of clean hourly context: seasonal and level available
    for w in (_hourly_graph(gap_at=30), _hourly_graph(interval=1440)):  # a gap breaks the clock; daily data has no day
        _, keep, _, _, parts = _parts(model, w, 12)
        assert not parts.available[:, 2:].any() and parts.seasonal.abs().sum() == 0 and parts.level.abs().sum() == 0
        assert parts.available[~keep, :2].all()


def test_anchor_parts_read_only_seen_values():
    from unist.model.anchor import anchor_parts
    model = create_model("unist_tiny", lag_candidates=0, self_check=True)
    b, keep, seen, args, a = _parts(model, _hourly_graph(T=56), 12)
    assert a.seasonal[~keep].abs().sum() > 0 and a.level[~keep].abs().sum() > 0 and a.smooth[~keep].abs().sum() > 0
    poisoned = torch.where(keep[:, None, None], b.values, torch.full_like(b.values, 1e6))
    p = anchor_parts(poisoned, seen, keep, *args)
    for x, y in ((a.persist, p.persist), (a.smooth, p.smooth), (a.seasonal, p.seasonal), (a.level, p.level),
                 (a.features, p.features), (a.available, p.available)):
        assert torch.equal(x, y)


# ----------------------------------------------------------------------------- per-location normalisation
def test_location_stats_are_per_cell_and_floored():
    from unist.model.losses import instance_stats, location_stats
    model = create_model("unist_tiny", lag_candidates=0, self_check=True)
    rng = np.random.default_rng(0)
    v = rng.normal(size=(8, 4, 4, 1)).astype(np.float32) * np.arange(1, 17, dtype=np.float32).reshape(1, 4, 4, 1)
    v[:, 0, 0] = 3.0  # a flat cell
    s = STSeries(values=v, mask=np.ones_like(v, bool), layout="grid", name="cells")
    b = model.patcher.patchify([s])
    mean, std = location_stats(b.values, b.mask, b.sample_id, b.space_index, 1, 4, floor=0.1)
    m_cells = model.patcher.unpatchify(mean.numpy(), b)[0]  # back to [T, H, W, C]
    s_cells = model.patcher.unpatchify(std.numpy(), b)[0]
    np.testing.assert_allclose(m_cells, np.broadcast_to(v.mean(0), v.shape), rtol=1e-5, atol=1e-5)
    sample_std = float(instance_stats(b.values, b.mask, b.sample_id, 1)[1])
    want = np.maximum(v.std(0), 0.1 * sample_std)
    np.testing.assert_allclose(s_cells, np.broadcast_to(want, v.shape), rtol=1e-4)
    assert np.allclose(s_cells[:, 0, 0], 0.1 * sample_std)


def test_configs_saved_before_the_gated_anchor_keep_their_behaviour():
    from unist.model import UniSTConfig
    d = UniSTConfig().to_dict()
    for key in ("norm_scope", "gated_anchor", "norm_floor"):
        d.pop(key)
    old = UniSTConfig.from_dict(d)
    assert old.norm_scope == "sample" and old.gated_anchor is False
    assert UniSTConfig().norm_scope == "location" and UniSTConfig().gated_anchor


def test_gate_features_backtest_the_context():
    from unist.model.anchor import anchor_parts
    model = create_model("unist_tiny", lag_candidates=0, self_check=True)
    hours = np.arange(72)
    periodic = np.repeat(np.sin(2 * np.pi * hours / 24)[:, None, None], 2, axis=1).astype(np.float32)  # repeats daily
    walk = np.random.default_rng(0).normal(size=(72, 2, 1)).cumsum(0).astype(np.float32) * 0.05  # no daily cycle
    ts = np.datetime64("2024-03-04T00:00", "m") + (hours * 60).astype("timedelta64[m]")
    gaps = []
    for v in (periodic, walk):
        s = STSeries(values=v, mask=np.ones_like(v, bool), layout="graph", coords=np.array([[0., 0.], [1., 1.]]),
                     timestamps=ts, interval_minutes=60.0, name="g")
        b = model.patcher.patchify([s])
        keep = b.t_index < 14
        nb, _, _ = model.normalise_batch(b, b.mask & keep[:, None, None])
        parts = anchor_parts(nb.values, nb.mask & keep[:, None, None], keep, b.sample_id, b.space_index, b.t_index, 4,
                             b.time_feats, b.has_time, b.cu_seqlens)
        f = parts.features[~keep]
        assert torch.equal(f[:, 0], torch.log1p(4.0 * (b.t_index[~keep] - 13).float()))  # lead in steps
        assert (f[:, 2] == 1).all() and (f[:, 3] == 1).all()  # a day earlier (and its level) is visible
        gaps.append((f[:, 6] - f[:, 4]).mean().item())  # log e_S - log e_P
        assert parts.features[keep].abs().sum() == 0
    assert gaps[0] < -2 and gaps[1] > 0  # yesterday beats the last reading only for the periodic series


def test_anchor_only_ablation_is_the_untrained_forecast_and_ignores_the_network():
    model = create_model("unist_tiny", lag_candidates=0, self_check=True)
    w = _hourly_graph()
    untrained = model.forecast_batch([w], 8)[0]
    np.testing.assert_allclose(model.forecast_batch([w], 8, anchor_only=True)[0], untrained, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # a network that has learned something: the full forecast moves, the ablation does not
        for p in list(model.head.parameters()) + list(model.anchor_gate.parameters()):
            p.add_(0.05 * torch.randn_like(p))
    assert np.abs(model.forecast_batch([w], 8)[0] - untrained).max() > 1e-2
    np.testing.assert_allclose(model.forecast_batch([w], 8, anchor_only=True)[0], untrained, rtol=1e-5, atol=1e-5)


def test_masked_l1_is_the_mean_absolute_error_over_observed_entries():
    from unist.model.losses import masked_l1
    pred = torch.tensor([[1.0, 5.0], [0.0, float("nan")]])
    target = torch.tensor([[2.0, 1.0], [0.5, 3.0]])
    weight = torch.tensor([[True, True], [True, False]])
    assert torch.isclose(masked_l1(torch.nan_to_num(pred), target, weight), torch.tensor((1 + 4 + 0.5) / 3))
