"""The lag scorer's MLP inputs (`UniSTConfig.lag_scorer_inputs`, `heads.LagScorer`): with 'relative' the MLP reads
each candidate's log backtest error against the token's best and no absolute lag or lead, so its logits are the same
for a series at any scale of error or sampling rate; 'raw' (every release up to unist-tiny-6) reads them all."""
from __future__ import annotations

import pytest
import torch

from unist.errors import ConfigError
from unist.model import UniST, UniSTConfig
from unist.model.heads import LagScorer
from unist.model.lags import LAG_FEATURES


def _features(tokens: int = 6, cands: int = 7) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    f = torch.randn(tokens, cands, LAG_FEATURES, generator=g)
    f[..., 3] = torch.rand(tokens, cands, generator=g) + 0.1  # coverage > 0: available
    f[:, -1] = 0  # one unavailable candidate: all its features are 0
    return f


def _trained(inputs: str) -> LagScorer:
    torch.manual_seed(0)
    s = LagScorer(16, inputs=inputs)
    s.reset_parameters()
    torch.nn.init.normal_(s.mlp[-1].weight)  # as after training: the MLP's output layer no longer 0
    return s


def test_relative_inputs_ignore_error_scale_lag_and_lead():
    f, h = _features(), torch.randn(6, 16)
    moved = f.clone()
    moved[:, :-1, 0] += torch.randn(6, 1)  # every available candidate's log error shifted by a per-token constant
    moved[:, :-1, 1] = torch.rand(6, 6) * 6  # other log lags (another sampling rate)
    moved[:, :-1, 6] = 2.5  # another log lead
    mlp = lambda s, x: s.mlp(torch.cat([s.mlp_features(x), s.proj(h)[:, None].expand(-1, x.shape[1], -1)], -1))
    rel, raw = _trained("relative"), _trained("raw")
    assert torch.allclose(mlp(rel, f), mlp(rel, moved), atol=1e-5)
    assert not torch.allclose(mlp(raw, f), mlp(raw, moved), atol=1e-3)  # raw inputs key on them
    feats = rel.mlp_features(f)
    assert (feats[:, -1] == 0).all()  # an unavailable candidate stays all zero
    assert torch.allclose(feats[:, :-1, 0].amin(1), torch.zeros(6))  # the best available candidate reads 0
    assert (feats[..., [1, 6]] == 0).all() and torch.equal(feats[..., 2:6], f[..., 2:6])


def test_relative_inputs_keep_the_untrained_rule_and_the_linear_term():
    f, h = _features(), torch.randn(6, 16)
    a, b = LagScorer(16, inputs="relative"), LagScorer(16, inputs="raw")
    a.reset_parameters()
    b.load_state_dict(a.state_dict())  # same parameters: the inputs change no parameter's shape
    assert torch.equal(a(f, h), b(f, h))  # the MLP's output layer starts at 0: both are the rule
    assert torch.equal(a(f), a.rule(f).squeeze(-1))


def test_config_field_reaches_the_scorer_and_rejects_unknown_values():
    net = UniST(UniSTConfig(lag_scorer_inputs="relative"))
    assert net.lag_scorer.inputs == "relative"
    assert UniSTConfig().lag_scorer_inputs == "raw"  # every release up to unist-tiny-6 was trained with it
    with pytest.raises(ConfigError, match="lag_scorer_inputs='logs' unknown"):
        UniSTConfig(lag_scorer_inputs="logs").validate()
    with pytest.raises(ValueError, match="inputs='logs' unknown"):
        LagScorer(16, inputs="logs")
