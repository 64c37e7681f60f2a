"""The forecasting policy (`unist.forecast.policy.ForecastPolicy`): forecast = rule + w * (network - rule).

correction="none" is the lag copy's backtest rule alone (the untrained forecast, whatever the network has
learned); "checked" scales the network's correction of the rule by how it did in a backtest inside the
context, so forecasts lie between the rule and the network, a network that fails the backtest falls back to
the rule, and one that has no backtest keeps its trained behaviour ("full"). Bad policies are ConfigErrors."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from tests.model_testing import graph_series, grid_series, mixed_windows, single_thread, tiny_model  # noqa: F401
from unist.errors import ConfigError
from unist.forecast import Forecaster, ForecastPolicy
from unist.forecast.policy import TRUST_BETA, backtest_tokens, trust_weights
from unist.model import create_model

CHECKED, FULL, NONE = ForecastPolicy("checked"), ForecastPolicy("full"), ForecastPolicy("none")


def _perturbed(model, scale=0.05, bias=0.0, seed=0):
    """The model with a head and lag scorer that have 'learned something' (and optionally a constant bias)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in list(model.head.parameters()) + list(model.lag_scorer.parameters()):
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


def test_self_checked_forecast_lies_between_rule_and_network(single_thread):
    fc = Forecaster(_perturbed(tiny_model()))
    windows = mixed_windows()
    rule = fc.with_policy(correction="none").forecast_batch(windows, 4)
    net = fc.with_policy(correction="full").forecast_batch(windows, 4)
    sc = fc.with_policy(correction="checked").forecast_batch(windows, 4)
    moved = 0.0
    for a, n, s in zip(rule, net, sc):
        # per location denormalisation is affine with a positive scale: the convex combination survives it
        assert np.all((s - a) * (n - a) >= -1e-6)
        assert np.all(np.abs(s - a) <= np.abs(n - a) + 1e-4)
        moved += float(np.abs(s - n).max())
    assert moved > 1e-3  # the check did change something


def test_a_network_that_fails_its_backtest_falls_back_to_the_rule(single_thread):
    fc = Forecaster(_perturbed(tiny_model(), scale=0.0, bias=5.0), CHECKED)  # every correction is +5 std: wildly wrong
    w = grid_series(t=16, seed=3)
    rule = fc.with_policy(correction="none").forecast_batch([w], 4)[0]
    net = fc.with_policy(correction="full").forecast_batch([w], 4)[0]
    sc = fc.forecast_batch([w], 4)[0]
    assert np.abs(net - rule).mean() > 1.0
    assert np.abs(sc - rule).mean() < 0.02 * np.abs(net - rule).mean()


def test_the_rule_alone_is_the_untrained_forecast_and_ignores_the_network(single_thread):
    model = tiny_model()
    w = grid_series(t=16, seed=3)
    untrained = Forecaster(model).forecast_batch([w], 8)[0]
    rule = Forecaster(model, NONE)
    np.testing.assert_allclose(rule.forecast_batch([w], 8)[0], untrained, rtol=1e-5, atol=1e-5)
    # a network that has learned something (decoder, head, the decoder's say in the lag weights):
    # the full forecast moves, the rule's does not
    learned = [*model.decoder.parameters(), *model.head.parameters(), *model.lag_scorer.proj.parameters(),
               *model.lag_scorer.mlp.parameters()]
    with torch.no_grad():
        for p in learned:
            p.add_(0.05 * torch.randn_like(p))
    assert np.abs(Forecaster(model).forecast_batch([w], 8)[0] - untrained).max() > 1e-2
    np.testing.assert_allclose(rule.forecast_batch([w], 8)[0], untrained, rtol=1e-5, atol=1e-5)


def test_draws_keep_their_spread_and_move_their_centre_like_the_point_forecast(single_thread):
    model = _perturbed(tiny_model(), scale=0.0, bias=5.0)  # only the head is off: draws never contain it
    model.flow.zero_init_()
    with torch.no_grad():
        for p in model.flow.parameters():
            p.add_(0.05 * torch.randn_like(p))
    w = grid_series(t=16, seed=3)

    def draw(model, policy):
        torch.manual_seed(0)
        return Forecaster(model, policy).forecast_batch([w], 4, 6)[0]

    on, off = draw(model, CHECKED), draw(model, FULL)
    np.testing.assert_allclose(on, off, atol=1e-4)  # no decoder move to scale: the same draws
    _perturbed(model, scale=0.05, seed=1)  # the decoder now moves the lag copy too
    on, off = draw(model, CHECKED), draw(model, FULL)
    np.testing.assert_allclose(on.std(0), off.std(0), rtol=1e-3, atol=1e-4)  # the spread is the flow's
    assert np.abs(on - off).max() > 1e-3
    # the network fails its backtest (trust ~ 0): the draws are the flow's residuals on the rule alone,
    # i.e. what the same model gives with its decoder's say in the lag copy switched off
    no_move = copy.deepcopy(model)
    with torch.no_grad():
        no_move.lag_scorer.mlp[-1].weight.zero_()
        no_move.lag_scorer.mlp[-1].bias.zero_()
    np.testing.assert_allclose(on, draw(no_move, FULL), atol=2e-3)


def test_a_one_token_context_has_no_backtest_and_forecasts_as_trained(single_thread):
    fc = Forecaster(_perturbed(tiny_model()))
    w = graph_series(t=2, seed=4)  # tau = 2: one context token, nothing to backtest on
    full = fc.forecast_batch([w], 3)[0]
    np.testing.assert_allclose(fc.with_policy(correction="checked").forecast_batch([w], 3)[0], full, atol=1e-6)
    np.testing.assert_allclose(fc.with_policy(correction="checked").forecast(w, 3), fc.forecast(w, 3), atol=1e-6)
    assert np.abs(fc.with_policy(correction="none").forecast(w, 3) - full).max() > 1e-3  # the network does differ


def test_self_check_is_per_sample_in_a_packed_batch(single_thread):
    fc = Forecaster(_perturbed(tiny_model()), CHECKED)
    # a 2-channel grid, a 1-channel graph and a 3-channel video window: the lag copy's coverage feature counts
    # each sample's own cells, not the channels the packed batch pads it with, so a trained scorer sees the same
    # features packed or alone
    windows = [grid_series(c=2), graph_series(seed=1), grid_series(t=6, h=4, w=4, c=3, seed=2, layout="video")]
    batched = fc.forecast_batch(windows, 3)
    for w, b in zip(windows, batched):
        np.testing.assert_allclose(b, fc.forecast(w, 3), atol=1e-5)


# ----------------------------------------------------------------------------- the policy object
def test_policy_defaults_and_dict_round_trip():
    assert Forecaster(create_model("unist_tiny")).policy == FULL  # a bare network forecasts as trained
    assert ForecastPolicy().beta == TRUST_BETA
    p = ForecastPolicy("checked", beta=2.0)
    assert ForecastPolicy.from_dict(p.to_dict()) == p
    assert p.to_dict() == {"correction": "checked", "beta": 2.0, "residual": True}
    assert ForecastPolicy.from_dict({"correction": "checked", "beta": 2.0}) == p  # releases written before residual
    assert ForecastPolicy.from_dict(None) == ForecastPolicy() and p.replace(correction="none").beta == 2.0
    fc = Forecaster(create_model("unist_tiny"), p)
    assert fc.with_policy(correction="none").policy == ForecastPolicy("none", 2.0) and fc.policy == p  # a new object


def test_bad_policies_are_config_errors():
    with pytest.raises(ConfigError, match="correction='anchor_only' unknown"):
        ForecastPolicy("anchor_only")
    with pytest.raises(ConfigError, match="beta"):
        ForecastPolicy("checked", beta=0.0)
    with pytest.raises(ConfigError, match="residual='no' must be true or false"):
        ForecastPolicy("checked", residual="no")
    with pytest.raises(ConfigError, match=r"unknown forecast_policy fields \['self_check'\]"):
        ForecastPolicy.from_dict({"self_check": True})  # the removed config field is not read silently


@pytest.mark.parametrize("correction", ["checked", "none"])
def test_a_policy_that_needs_the_rule_on_a_model_without_a_lag_copy_is_an_error(correction):
    model = create_model("unist_tiny", lag_candidates=0)
    with pytest.raises(ConfigError, match=f"correction='{correction}'.*lag_candidates=0.*correction='full'"):
        Forecaster(model, ForecastPolicy(correction))
    fc = Forecaster(model)  # "full": the head alone forecasts
    assert fc.forecast_batch([graph_series(t=8, seed=5)], 4)[0].shape == (4, 11, 1)
    with pytest.raises(ConfigError, match="lag_candidates=0"):
        fc.with_policy(correction=correction)
    with pytest.raises(ConfigError, match=r"residual=False.*lag_candidates=0.*residual=True"):
        fc.with_policy(residual=False)


def test_the_rule_gives_point_forecasts_only():
    fc = Forecaster(create_model("unist_tiny"), NONE)
    with pytest.raises(ConfigError, match="point forecasts only.*num_samples=0"):
        fc.forecast_batch([graph_series(t=8, seed=5)], 4, num_samples=2)


def test_without_the_residual_the_network_is_its_decoder_weighted_lag_copy(single_thread):
    model = _perturbed(tiny_model())
    w = grid_series(t=16, seed=3)
    fc = Forecaster(model, ForecastPolicy("full", residual=False))
    no_head = copy.deepcopy(model)
    no_head.head.forward = lambda h, rel_pos, channels: h.new_zeros(h.shape[0], rel_pos.shape[1], channels)
    expect = Forecaster(no_head).forecast_batch([w], 8)[0]
    np.testing.assert_allclose(fc.forecast_batch([w], 8)[0], expect, rtol=1e-5, atol=1e-5)
    assert np.abs(Forecaster(model).forecast_batch([w], 8)[0] - expect).max() > 1e-3  # the residual does move it
    # the rule never had the residual; the self-check now weighs the rule against the decoder's weighting alone
    np.testing.assert_allclose(fc.with_policy(correction="none").forecast_batch([w], 8)[0],
                               Forecaster(model, NONE).forecast_batch([w], 8)[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fc.with_policy(correction="checked").forecast_batch([w], 8)[0],
                               Forecaster(no_head, CHECKED).forecast_batch([w], 8)[0], rtol=1e-5, atol=1e-5)
    # imputation follows the same switch
    holes = copy.deepcopy(w)
    holes.mask[5:7, 1:3] = False
    holes.values[~holes.mask] = np.nan
    got = fc.impute(holes).values
    np.testing.assert_allclose(got, Forecaster(no_head).impute(holes).values, rtol=1e-5, atol=1e-5)
    assert np.abs(got - Forecaster(model).impute(holes).values).max() > 1e-3
    np.testing.assert_array_equal(got[holes.mask], w.values[holes.mask])  # observed values are kept
    # correction="none" imputes with the rule alone, as it forecasts: the scorer without its learned MLP term
    no_mlp = copy.deepcopy(no_head)
    torch.nn.init.zeros_(no_mlp.lag_scorer.mlp[-1].weight)
    torch.nn.init.zeros_(no_mlp.lag_scorer.mlp[-1].bias)
    rule_fill = fc.with_policy(correction="none").impute(holes).values
    np.testing.assert_allclose(rule_fill, Forecaster(no_mlp).impute(holes).values, rtol=1e-5, atol=1e-5)
    assert np.abs(rule_fill - got).max() > 1e-4  # the decoder's say moves the network's fill
