"""The diffusion head (`unist.model.heads.FlowHead`) with its loss (`unist.objectives.losses.flow_matching_loss`)
and sampler (`unist.forecast.policy.sample_flow`): trained on a known conditional distribution, the few-step
Euler sampler reproduces its mean and spread per condition, and unobserved entries do not enter the loss."""
from __future__ import annotations

import pytest
import torch
from model_testing import single_thread  # noqa: F401

from unist.forecast.policy import sample_flow
from unist.model.heads import FlowHead
from unist.objectives.losses import flow_matching_loss

pytestmark = pytest.mark.usefixtures("single_thread")


def test_flow_sampler_matches_a_conditional_gaussian():
    torch.manual_seed(0)
    head = FlowHead(slots=4, cond_dim=8, width=64, depth=2, max_channels=1)
    head.zero_init_()
    cond_table = torch.randn(2, 8)
    means = torch.tensor([[2.0, -1.0, 0.0, 1.0], [-2.0, 1.0, 3.0, 0.0]])
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    for _ in range(300):
        which = torch.randint(2, (256,))
        x1 = (means[which] + 0.3 * torch.randn(256, 4))[..., None]  # (N, S, C=1)
        loss = flow_matching_loss(head, x1, torch.ones_like(x1, dtype=torch.bool), cond_table[which])
        opt.zero_grad()
        loss.backward()
        opt.step()
    for c in range(2):
        samples = sample_flow(head, cond_table[c].expand(512, 8), channels=1, steps=8)[..., 0]  # (512, S)
        torch.testing.assert_close(samples.mean(0), means[c], atol=0.15, rtol=0)
        assert ((samples.std(0) - 0.3).abs() < 0.15).all(), samples.std(0)


def test_flow_loss_ignores_unobserved_entries():
    head = FlowHead(slots=3, cond_dim=4, width=16, depth=1, max_channels=2)
    x1 = torch.randn(5, 3, 2)
    observed = torch.rand(5, 3, 2) > 0.4
    h = torch.randn(5, 4)
    torch.manual_seed(1)
    a = flow_matching_loss(head, x1, observed, h)
    torch.manual_seed(1)
    b = flow_matching_loss(head, torch.where(observed, x1, torch.full_like(x1, float("nan"))), observed, h)
    assert torch.isfinite(a) and torch.equal(a, b)
