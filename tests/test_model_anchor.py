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


def test_untrained_model_forecasts_last_value():
    model = create_model("unist_tiny")
    w = _graph_window()
    pred = model.forecast(w, horizon=6)  # (6, N, C)
    expect = np.broadcast_to(w.values[-1], pred.shape)
    np.testing.assert_allclose(pred, expect, rtol=1e-4, atol=1e-4)
    grid = STSeries(values=np.arange(8 * 5 * 7 * 1, dtype=np.float32).reshape(8, 5, 7, 1), mask=np.ones((8, 5, 7, 1), bool),
                    layout="grid")
    np.testing.assert_allclose(model.forecast(grid, 4), np.broadcast_to(grid.values[-1], (4, 5, 7, 1)), rtol=1e-4, atol=1e-3)


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
    model = create_model("unist_tiny", masking={"strategies": ("temporal",), "ratio": 0.5})
    v = np.zeros((16, 8, 8, 1), np.float32)
    v[8:] = 50.0  # zero night-time flow, then a burst
    s = STSeries(values=v, mask=np.ones_like(v, bool), layout="grid", name="burst")
    out = model(model.patcher.patchify([s]))
    assert torch.isfinite(out["loss"]) and out["masked"] < 20 and out["diffusion"] < 500
