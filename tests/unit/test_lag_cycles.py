"""The two-cycle rule of the lag copy (`UniSTConfig.lag_cycles`): a lag is a candidate only where the context holds
it `cycles` times, and the longest such lag must dip below its valid neighbours like any other (`lag_edge_dip`). A lag nearly as long as the context is backtested on a few pairs, and the lowest of many such
errors is luck (docs/LOG.md, session 11: on bursty counts it copied lags 59-68 of a 104-step context)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from unist.data import STSeries
from unist.errors import ConfigError
from unist.model import UniSTConfig
from unist.model.lags import lag_parts
from unist.model.steps import StepGrid, lag_errors
from unist.patching import PatcherConfig, UniversalPatcher

REPO = Path(__file__).resolve().parents[2]


def test_a_lag_is_valid_where_the_context_holds_it_cycles_times():
    T = 60
    x = torch.randn(1, T, 1, 1, generator=torch.Generator().manual_seed(0))
    grid = StepGrid(x, torch.ones_like(x, dtype=torch.bool), torch.zeros(1, dtype=torch.long), 4)
    for cycles, longest in ((2.0, 30), (1.5, 40), (3.0, 20)):  # T - l pairs >= (cycles - 1) l
        _, valid = lag_errors(grid, T - 1, cycles)
        assert valid[0].nonzero().squeeze(1).tolist() == list(range(1, longest + 1)), cycles
    _, default = lag_errors(grid, T - 1)
    assert int(default[0].nonzero().max()) == 40  # the default is the old rule: releases up to unist-tiny-5


def _counts(T, N=6, seed=0, period=None):
    rng = np.random.default_rng(seed)
    v = ((rng.random((T, N)) < 0.2) * rng.poisson(5, (T, N))).astype(np.float32)
    if period:  # a clean cycle on top
        v = v + 4 * np.sin(2 * np.pi * np.arange(T) / period)[:, None] + 4
    v = v[..., None]
    s = STSeries(values=v, mask=np.ones_like(v, bool), layout="graph", coords=rng.random((N, 2)), name="counts")
    tb = UniversalPatcher(PatcherConfig(time_patch=4)).patchify([s])
    return tb, torch.where(tb.mask, tb.values, torch.zeros_like(tb.values))


def _picked_lags(tb, values, ctx_tokens, cycles, edge_dip=False):
    keep = tb.t_index < ctx_tokens
    parts = lag_parts(values, tb.mask & keep[:, None, None], keep, tb.sample_id, tb.space_index, tb.t_index, 4, 1,
                      k=4, smooth=True, fill=True, error="mae", dip=1.0, cycles=cycles, edge_dip=edge_dip)
    return parts.lags[~keep]  # the forecast tokens' lags (0 = none)


def test_long_noise_lags_are_copied_only_under_the_old_rule():
    tb, values = _counts(T=112)  # a 104-step context (26 tokens), 2 future tokens
    old = _picked_lags(tb, values, 26, 1.5, edge_dip=True)
    new = _picked_lags(tb, values, 26, 2.0)
    assert (old > 52).any()  # the old rule copies lags that the context holds less than twice
    assert ((new <= 52) | (new == 0)).all()


def _near_multiples(lags, period):
    r = lags % period
    return (r <= 1) | (r >= period - 1)


def test_a_period_within_half_the_context_is_found_and_the_edge_must_dip():
    """A 12-step cycle in a 104-step context: every copied lag is a multiple of it (+-1) under the new rules; with
    the old edge (the longest valid lag always dips) lag 50 is copied, two steps off the cycle."""
    tb, values = _counts(T=112, period=12)
    lags = _picked_lags(tb, values, 26, 2.0)
    assert (lags > 0).all() and _near_multiples(lags, 12).all() and (lags == 24).any(1).all()
    edge = _picked_lags(tb, values, 26, 2.0, edge_dip=True)
    assert not _near_multiples(edge, 12).all() and (edge >= 49).any()


def test_lag_cycles_setting():
    assert UniSTConfig().lag_cycles == 2.0 and UniSTConfig().lag_edge_dip is False
    for bad in (0.5, 5.0):
        with pytest.raises(ConfigError, match=f"lag_cycles={bad} must be in"):
            UniSTConfig(lag_cycles=bad).validate()
    for name in ("unist-tiny-2", "unist-tiny-3", "unist-tiny-4", "unist-tiny-5"):  # trained with 1.5: they keep it
        cfg = json.loads((REPO / "checkpoints" / name / "config.json").read_text())
        assert cfg["model_config"]["lag_cycles"] == 1.5 and cfg["model_config"]["lag_edge_dip"] is True, name
    cfg = json.loads((REPO / "checkpoints" / "unist-tiny-6" / "config.json").read_text())["model_config"]
    assert cfg["lag_cycles"] == 2.0 and cfg["lag_edge_dip"] is False  # the first release trained with them
    with pytest.raises(ConfigError, match="lag_edge_dip=1 must be a bool"):
        UniSTConfig(lag_edge_dip=1).validate()
