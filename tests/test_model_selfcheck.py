"""Self-check (`unist.model.selfcheck`): the network's correction of the anchor is scaled by how it did in
a backtest inside the context, so forecasts lie between the anchor and the network, a network that fails
the backtest falls back to the anchor, and one that has no backtest keeps its trained behaviour."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from tests.model_testing import graph_series, grid_series, mixed_windows, single_thread, tiny_model  # noqa: F401
from unist.model import UniSTConfig, create_model
from unist.model.selfcheck import TRUST_BETA, backtest_tokens, trust_weights


def _perturbed(model, scale=0.05, bias=0.0, seed=0):
    """The model with a head and decoder gate that have 'learned something' (and optionally a constant bias)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        gate = model.anchor_gate if model.anchor_gate is not None else model.lag_scorer  # four-candidate or lag copy
        for p in list(model.head.parameters()) + list(gate.parameters()):
            p.add_(scale * torch.randn(p.shape, generator=g))
        last = [m for m in model.head.out.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.bias.add_(bias)
    return model


def test_backtest_length_is_the_forecast_at_most_half_the_context():
    n_ctx = torch.tensor([1, 2, 5, 12, 30])
    assert backtest_tokens(n_ctx, 3).tolist() == [0, 1, 2, 3, 3]


def test_trust_is_the_inverse_error_rule_per_patch_with_a_pooled_fallback():
    # forecast samples 0, 1 (2 patches each, 1 token per patch); backtest samples 2 -> 0 and 3 -> 1
    L, S, C = 8, 2, 1
    sample_id = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    space = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    target = torch.zeros(L, S, C)
    net, anc = torch.zeros(L, S, C), torch.zeros(L, S, C)
    net[4], anc[4] = 0.1, 0.2  # sample 0 patch 0: the network's error is half the anchor's
    net[5], anc[5] = 0.3, 0.3  # sample 0 patch 1: a tie
    net[6], anc[6] = 1.0, 0.5  # sample 1 patch 0: the network is twice as wrong; patch 1 has no target
    valid = torch.zeros(L, S, C, dtype=torch.bool)
    valid[4:7] = True
    check_of = torch.tensor([-1, -1, 0, 1])
    t = trust_weights(net, anc, target, valid, check_of, sample_id, space, 2)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expect0 = sig(TRUST_BETA * (math.log(0.2 + 1e-3) - math.log(0.1 + 1e-3)))
    expect2 = sig(TRUST_BETA * (math.log(0.5 + 1e-3) - math.log(1.0 + 1e-3)))
    assert t[0].item() == pytest.approx(expect0, rel=1e-5) and t[0] > 0.9  # ~ 2^4 / (2^4 + 1)
    assert t[1].item() == pytest.approx(0.5, abs=1e-6)
    assert t[2].item() == pytest.approx(expect2, rel=1e-5) and t[2] < 0.1
    assert t[3].item() == pytest.approx(expect2, rel=1e-5)  # no target in its patch: the sample's pooled errors
    assert (t[4:] == 1).all()  # backtest tokens themselves are not forecasts


def test_a_sample_without_any_backtest_target_keeps_full_trust():
    sample_id, space = torch.tensor([0, 1]), torch.tensor([0, 0])
    x = torch.randn(2, 2, 1)
    t = trust_weights(x, x + 1, x, torch.zeros(2, 2, 1, dtype=torch.bool), torch.tensor([-1, 0]), sample_id, space, 1)
    assert t[0] == 1


ANCHORS = pytest.mark.parametrize("lag_candidates", [0, 4], ids=["four_candidate", "lag_copy"])


@ANCHORS
def test_self_checked_forecast_lies_between_anchor_and_network(single_thread, lag_candidates):
    model = _perturbed(tiny_model(lag_candidates=lag_candidates, self_check=True))
    windows = mixed_windows()
    anc = model.forecast_batch(windows, 4, anchor_only=True)
    net = model.forecast_batch(windows, 4, self_check=False)
    sc = model.forecast_batch(windows, 4, self_check=True)
    moved = 0.0
    for a, n, s in zip(anc, net, sc):
        # per location denormalisation is affine with a positive scale: the convex combination survives it
        assert np.all((s - a) * (n - a) >= -1e-6)
        assert np.all(np.abs(s - a) <= np.abs(n - a) + 1e-4)
        moved += float(np.abs(s - n).max())
    assert moved > 1e-3  # the check did change something


@ANCHORS
def test_a_network_that_fails_its_backtest_falls_back_to_the_anchor(single_thread, lag_candidates):
    model = _perturbed(tiny_model(lag_candidates=lag_candidates, self_check=True), scale=0.0, bias=5.0)  # every correction is +5 std: wildly wrong
    w = grid_series(t=16, seed=3)
    anc = model.forecast_batch([w], 4, anchor_only=True)[0]
    net = model.forecast_batch([w], 4, self_check=False)[0]
    sc = model.forecast_batch([w], 4)[0]  # config default: self_check on
    assert np.abs(net - anc).mean() > 1.0
    assert np.abs(sc - anc).mean() < 0.02 * np.abs(net - anc).mean()


def test_draws_keep_their_spread_and_move_their_centre_like_the_point_forecast(single_thread):
    model = _perturbed(tiny_model(lag_candidates=0, self_check=True), scale=0.0, bias=5.0)  # only the head is off: draws never contain it
    model.flow.zero_init_()
    with torch.no_grad():
        for p in model.flow.parameters():
            p.add_(0.05 * torch.randn_like(p))
    w = grid_series(t=16, seed=3)
    draw = lambda model, check: (torch.manual_seed(0), model.forecast_batch([w], 4, 6, self_check=check))[1][0]  # noqa: E731
    on, off = draw(model, True), draw(model, False)
    np.testing.assert_allclose(on, off, atol=1e-4)  # no decoder move to scale: the same draws
    _perturbed(model, scale=0.05, seed=1)  # the decoder now moves the anchor too
    on, off = draw(model, True), draw(model, False)
    np.testing.assert_allclose(on.std(0), off.std(0), rtol=1e-3, atol=1e-4)  # the spread is the flow's
    assert np.abs(on - off).max() > 1e-3
    # the network fails its backtest (trust ~ 0): the draws are the flow's residuals on the anchor alone,
    # i.e. what the same model gives with its decoder's move of the anchor switched off
    no_move = copy.deepcopy(model)
    with torch.no_grad():
        no_move.anchor_gate.weight.zero_()
        no_move.anchor_gate.bias.zero_()
    np.testing.assert_allclose(on, draw(no_move, False), atol=2e-3)


def test_a_one_token_context_has_no_backtest_and_forecasts_as_trained(single_thread):
    model = _perturbed(tiny_model(lag_candidates=0, self_check=True))
    w = graph_series(t=2, seed=4)  # tau = 2: one context token, nothing to backtest on
    np.testing.assert_allclose(model.forecast_batch([w], 3)[0], model.forecast_batch([w], 3, self_check=False)[0],
                               atol=1e-6)


def test_self_check_is_per_sample_in_a_packed_batch(single_thread):
    model = _perturbed(tiny_model(lag_candidates=0, self_check=True))
    windows = mixed_windows()
    batched = model.forecast_batch(windows, 3)
    for w, b in zip(windows, batched):
        np.testing.assert_allclose(b, model.forecast(w, 3), atol=1e-5)


def test_self_check_config_default_and_legacy_load():
    assert create_model("unist_tiny").config.self_check is False  # new models forecast with the lag copy
    d = UniSTConfig(lag_candidates=0, self_check=True).to_dict()
    d.pop("self_check")
    assert UniSTConfig.from_dict(d).self_check is False  # a release saved before it forecasts as it did


def test_asking_for_a_self_check_without_the_anchor_is_an_error():
    model = create_model("unist_tiny", lag_candidates=0, self_check=True, gated_anchor=False)  # config default on, nothing to check against: off
    w = graph_series(t=8, seed=5)
    assert model.forecast_batch([w], 4)[0].shape == (4, 11, 1)
    with pytest.raises(ValueError, match="self_check=True needs a backtest-weighted anchor"):
        model.forecast_batch([w], 4, self_check=True)
