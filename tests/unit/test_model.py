"""The UniST network and its pretraining objective (`Pretrainer`): the network's pass, loss terms, missing-value
safety, reproducibility, objective switches, per-location normalisation, and the `Forecaster` API (forecast /
impute / embed) on grids, graphs and video."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from model_testing import LOSS_KEYS, graph_series, grid_series, losses, mixed_windows, single_thread, tiny_model  # noqa: F401

from unist.data.series import DataError, STSeries
from unist.forecast import Forecaster
from unist.model import NetOutput, ObjectiveConfig, create_model
from unist.model.norm import instance_stats, location_stats
from unist.objectives import masked_l1

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture
def batch(model):
    return model.patcher.patchify(mixed_windows())


def test_network_pass_predicts_every_slot_and_stops_after_the_encoder_on_request(model, batch):
    keep = batch.t_index < 2  # the first time patches visible, the rest hidden
    out = model(batch, keep)
    assert isinstance(out, NetOutput)
    assert out.pred.shape == batch.values.shape and torch.isfinite(out.pred).all()
    assert out.h.shape == (batch.num_tokens, model.config.decoder_dim)
    assert out.latent.shape == (int(keep.sum()), model.config.d_model) and out.visible.num_tokens == int(keep.sum())
    assert out.copy is not None and out.lagged.shape == out.pred.shape  # the lag copy (lag_candidates > 0)
    enc = model(batch, keep, decode=False)
    assert enc.h is None and enc.pred is None and torch.equal(enc.latent, out.latent)
    head_only = tiny_model(lag_candidates=0)(batch, keep)  # no lag copy: the head alone
    assert head_only.copy is None and head_only.lagged is None and head_only.pred.shape == batch.values.shape


def test_forward_returns_every_term_and_stats(model, batch):
    out = losses(model, batch)
    for k in LOSS_KEYS:
        assert out[k].ndim == 0 and torch.isfinite(out[k]), k
    o, m = model.config.objectives, model.config.moe
    expected = (o.masked * out["masked"] + o.contrastive * out["contrastive"] + o.diffusion * out["diffusion"]
                + m.aux_loss_weight * out["moe_aux"] + m.z_loss_weight * out["moe_z"])
    torch.testing.assert_close(out["loss"], expected)
    assert out["moe_load"].shape == (m.num_experts,) and out["moe_layout_load"].shape == (3, m.num_experts)
    assert (out["moe_layout_load"].sum(1) > 0).all()  # grid, graph and video tokens all routed
    assert out["num_hidden_tokens"] > 0 and out["num_visible_tokens"] > 0


@pytest.mark.parametrize("poison", [1e30, float("nan"), -float("inf")])
def test_unobserved_values_never_reach_a_loss(model, poison):
    windows = [grid_series(seed=1, missing=0.3), graph_series(seed=2, missing=0.3)]
    clean = model.patcher.patchify(windows)
    assert (~clean.mask & clean.slot_valid[..., None]).any()
    poisoned = replace(clean, values=torch.where(clean.mask, clean.values, torch.full_like(clean.values, poison)))
    a, b = losses(model, clean), losses(model, poisoned)
    for k in LOSS_KEYS:
        assert torch.equal(a[k], b[k]), (k, a[k], b[k])
    model.zero_grad()
    b["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.zero_grad()


def test_same_seed_same_losses_and_different_seed_different(model, batch):
    a, b, c = losses(model, batch, seed=7), losses(model, batch, seed=7), losses(model, batch, seed=8)
    assert all(torch.equal(a[k], b[k]) for k in LOSS_KEYS)
    assert not torch.equal(a["masked"], c["masked"])
    fresh = tiny_model()  # a second model from the same config reproduces the first
    assert torch.equal(losses(fresh, batch, seed=7)["loss"], a["loss"])


def test_every_parameter_gets_a_gradient(batch):
    model = tiny_model(moe={"num_experts": 2, "top_k": 2})  # top-2 of 2: every expert is routed to
    losses(model, batch)["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing


@pytest.mark.parametrize("weights, on", [((1, 0, 0), "masked"), ((0, 1, 0), "contrastive"), ((0, 0, 1), "diffusion")])
def test_each_objective_can_run_alone(batch, weights, on):
    model = tiny_model(objectives=ObjectiveConfig(*weights))
    out = losses(model, batch)
    for k in ("masked", "contrastive", "diffusion"):
        assert (out[k] != 0) == (k == on), (k, out[k])
    out["loss"].backward()
    decoder_grads = [p.grad for p in model.decoder.parameters()]
    assert all(g is None for g in decoder_grads) == (on == "contrastive")  # no decoder run without its losses


def test_without_instance_norm(batch):
    out = losses(tiny_model(instance_norm=False), batch)
    assert all(torch.isfinite(out[k]) for k in LOSS_KEYS)


def test_bf16_autocast_trains_and_forecasts(batch):
    """The trainer's bf16 mode is torch autocast: every path must accept mixed dtypes."""
    model = tiny_model()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = losses(model, batch)
        samples = Forecaster(model).forecast(mixed_windows()[1], horizon=3, num_samples=2)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and np.isfinite(samples).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_bad_batches_are_refused(model):
    other = tiny_model(patch={"patch_size": 1, "time_patch": 2})
    wrong_slots = other.patcher.patchify([grid_series()])
    with pytest.raises(ValueError, match="slots per token"):
        model(wrong_slots, torch.ones_like(wrong_slots.has_time))
    too_wide = model.patcher.patchify([grid_series(c=9)])
    with pytest.raises(ValueError, match="max_channels"):
        model(too_wide, torch.ones_like(too_wide.has_time))


@pytest.mark.parametrize("window", [grid_series(t=7), graph_series(t=9, n=13), grid_series(t=6, h=5, w=3, c=3, layout="video")],
                         ids=["grid", "graph", "video"])
def test_forecast_shapes_every_layout(model, window):
    fc = Forecaster(model)
    point = fc.forecast(window, horizon=3)
    assert point.shape == (3,) + window.values.shape[1:] and point.dtype == np.float32
    assert np.isfinite(point).all()
    samples = fc.forecast(window, horizon=5, num_samples=4)
    assert samples.shape == (4, 5) + window.values.shape[1:] and np.isfinite(samples).all()
    assert samples.std(axis=0).mean() > 0  # the samples differ
    assert model.training  # inference restored the mode


def test_forecast_is_in_data_units_and_rejects_short_context(model):
    w = grid_series(t=8)
    shifted = replace(w, values=w.values * 100 + 5000)
    torch.manual_seed(0)
    fc = Forecaster(model)
    f = fc.forecast(shifted, horizon=2)
    assert abs(f.mean() - 5000) < 1000  # de-normalised back to the window's scale
    with pytest.raises(DataError, match="fewer than one time patch"):
        fc.forecast(grid_series(t=1), horizon=2)
    with pytest.raises(ValueError, match="horizon"):
        fc.forecast(w, horizon=0)


def test_impute_fills_only_missing_values(model):
    s = graph_series(t=10, n=12, missing=0.3)
    out = Forecaster(model).impute(s)
    assert out.mask.all() and np.isfinite(out.values).all()
    np.testing.assert_array_equal(out.values[s.mask], s.values[s.mask])
    np.testing.assert_array_equal(out.meta["imputed"], ~s.mask)


def test_embed_one_vector_per_sample(model):
    fc = Forecaster(model)
    z = fc.embed(mixed_windows())
    assert z.shape == (3, model.config.d_model) and torch.isfinite(z).all()
    assert fc.embed(grid_series()).shape == (1, model.config.d_model)
    assert model.training  # embedding restored the mode


# ----------------------------------------------------------------------------- normalisation, losses
def test_location_stats_are_per_cell_and_floored():
    model = create_model("unist_tiny")
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


@pytest.mark.parametrize("lag_candidates", [0, 4], ids=["head_only", "lag_copy"])
def test_flat_context_does_not_blow_up_the_loss(lag_candidates):
    model = create_model("unist_tiny", lag_candidates=lag_candidates,
                         masking={"strategies": ("temporal",), "ratio": 0.5})
    v = np.zeros((16, 8, 8, 1), np.float32)
    v[8:] = 50.0  # zero night-time flow, then a burst
    s = STSeries(values=v, mask=np.ones_like(v, bool), layout="grid", name="burst")
    out = losses(model, model.patcher.patchify([s]))
    assert torch.isfinite(out["loss"]) and out["masked"] < 20 and out["diffusion"] < 500


def test_masked_l1_is_the_mean_absolute_error_over_observed_entries():
    pred = torch.tensor([[1.0, 5.0], [0.0, float("nan")]])
    target = torch.tensor([[2.0, 1.0], [0.5, 3.0]])
    weight = torch.tensor([[True, True], [True, False]])
    assert torch.isclose(masked_l1(torch.nan_to_num(pred), target, weight), torch.tensor((1 + 4 + 0.5) / 3))
