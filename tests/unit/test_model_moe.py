"""MoE feed-forward: dropless dispatch matches a per-token reference, capacity drops, gradients reach
routed experts, the auxiliary loss spreads load, per-layout load is reported, dense/shared options."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from model_testing import single_thread  # noqa: F401

from unist.model.config import MoEConfig
from unist.model.moe import MoEFeedForward

pytestmark = pytest.mark.usefixtures("single_thread")


def reference_moe(moe: MoEFeedForward, x: torch.Tensor) -> torch.Tensor:
    """Token-by-token loop: sum over the chosen experts of gate * expert(x)."""
    probs = moe.router(x).softmax(-1)
    gate, idx = probs.topk(moe.top_k, dim=-1)
    if moe.top_k > 1:
        gate = gate / gate.sum(-1, keepdim=True)
    ex = moe.experts
    out = torch.zeros_like(x)
    for t in range(x.shape[0]):
        for g, e in zip(gate[t], idx[t]):
            out[t] += g * (F.gelu(x[t] @ ex.w1[e] + ex.b1[e]) @ ex.w2[e] + ex.b2[e])
    return out


@pytest.mark.parametrize("top_k", [1, 2])
def test_dropless_matches_per_token_reference(top_k):
    moe = MoEFeedForward(16, 32, MoEConfig(num_experts=4, top_k=top_k, router_init_std=0.5))
    x = torch.randn(37, 16)
    y, stats = moe(x)
    torch.testing.assert_close(y, reference_moe(moe, x), atol=1e-5, rtol=1e-5)
    assert stats.load.sum() == 37 * top_k and stats.dropped == 0
    assert stats.aux_loss >= 0.99  # E * sum f * P >= 1 at best balance (Cauchy-Schwarz-like, ~1)
    assert stats.z_loss >= math.log(4) ** 2 - 1e-4  # logsumexp >= log E when logits ~ equal


def test_capacity_mode_drops_overflow_in_token_order():
    cfg = MoEConfig(num_experts=4, top_k=1, capacity_factor=0.5)
    moe = MoEFeedForward(8, 16, cfg)
    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.weight[0, 0] = 10.0  # every token with x[:, 0] > 0 goes to expert 0
    x = torch.randn(64, 8)
    x[:, 0] = 1.0
    y, stats = moe(x)
    cap = math.ceil(0.5 * 64 / 4)
    assert stats.load[0] == cap and stats.dropped == pytest.approx(1 - cap / 64)
    assert (y[cap:] == 0).all() and (y[:cap].abs().sum(1) > 0).all()  # first tokens kept, rest skip the FFN


def test_gradients_reach_every_routed_expert_only():
    moe = MoEFeedForward(8, 16, MoEConfig(num_experts=4, top_k=2, router_init_std=1.0))
    with torch.no_grad():
        moe.router.weight[3] = -100.0  # never chosen for positive inputs
    x = torch.rand(50, 8)  # positive inputs -> expert 3 gets very negative logits
    y, stats = moe(x)
    (y.pow(2).sum() + stats.aux_loss).backward()
    routed = stats.load > 0
    assert not routed[3] and routed.sum() >= 2
    g = moe.experts.w1.grad.flatten(1).abs().sum(1)  # (E,)
    assert (g[routed] > 0).all() and (g[~routed] == 0).all()
    assert moe.router.weight.grad.abs().sum() > 0


def test_aux_loss_spreads_load_from_a_biased_router():
    torch.manual_seed(0)
    moe = MoEFeedForward(16, 16, MoEConfig(num_experts=4, top_k=2, router_init_std=0.1))
    x = torch.randn(256, 16) + 1.0
    with torch.no_grad():
        moe.router.weight[0] += 0.5  # biased: expert 0 (and 1 by luck) take most tokens
        moe.router.weight[1] += 0.4

    def load_stats():
        with torch.no_grad():
            share = moe(x)[1].load / (256 * 2)
        return -(share.clamp(min=1e-9) * share.clamp(min=1e-9).log()).sum().item(), share.max().item()

    ent0, max0 = load_stats()
    opt = torch.optim.Adam(moe.router.parameters(), lr=0.05)
    for _ in range(40):
        _, stats = moe(x)
        opt.zero_grad()
        stats.aux_loss.backward()
        opt.step()
    ent1, max1 = load_stats()
    assert max0 > 0.4 and ent1 > ent0 + 0.2 and max1 < max0 - 0.1, (ent0, ent1, max0, max1)
    assert ent1 > 0.95 * math.log(4)  # close to uniform over 4 experts


def test_layout_load_partitions_the_load():
    moe = MoEFeedForward(8, 16, MoEConfig(num_experts=3, top_k=2))
    layout = torch.tensor([0] * 10 + [1] * 7 + [2] * 4)
    _, stats = moe(torch.randn(21, 8), layout)
    assert stats.layout_load.shape == (3, 3)
    torch.testing.assert_close(stats.layout_load.sum(0), stats.load)
    torch.testing.assert_close(stats.layout_load.sum(1), torch.tensor([20.0, 14.0, 8.0]))


def test_dense_and_shared_expert_options():
    x = torch.randn(9, 8)
    dense = MoEFeedForward(8, 16, MoEConfig(dense=True))
    y, stats = dense(x)
    assert y.shape == x.shape and stats.aux_loss == 0 and stats.z_loss == 0
    assert not hasattr(dense, "router")
    shared = MoEFeedForward(8, 16, MoEConfig(num_experts=2, top_k=1, shared_expert=True))
    y, _ = shared(x)
    routed_only = y - shared.shared(x)
    torch.testing.assert_close(routed_only, reference_moe(shared, x), atol=1e-5, rtol=1e-5)
