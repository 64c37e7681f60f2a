"""The training step's fast paths: grouped expert matmuls, the forward-only contrastive view, host syncs."""
from __future__ import annotations

import torch

from sync_count import SyncCounter
from unist.data.synthetic import SyntheticCorpus
from unist.model import create_model
from unist.model.moe import Experts, MoEFeedForward, count_ids
from unist.objectives import Pretrainer

STEP_SYNC_BUDGET = 12  # unist_tiny fwd+bwd on CPU, 2026-12-04 (86 on 2026-12-03, 68 after the MoE counts, 67 at issue 15, 19)


def _batch(model, n: int = 4):
    corpus = SyntheticCorpus(seed=0)
    return model.patcher.patchify([corpus.sample(i) for i in range(n)])


def test_grouped_experts_match_the_per_expert_loop():
    torch.manual_seed(0)
    ex = Experts(4, 16, 32)
    counts = torch.tensor([5, 0, 9, 3])  # an expert with no token too
    expert = torch.repeat_interleave(torch.arange(4), counts)
    x = torch.randn(int(counts.sum()), 16, requires_grad=True)
    y = ex(x, expert, counts)
    y.sum().backward()  # an expanded (stride-0) gradient: the grouped matmul needs it made contiguous
    grads = [x.grad.clone()] + [p.grad.clone() for p in ex.parameters()]
    x.grad = None
    ex.zero_grad()
    ref = ex._loop(x, counts.tolist())
    ref.sum().backward()
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    for g, r in zip(grads, [x.grad] + [p.grad for p in ex.parameters()]):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5)


def test_count_ids_equals_bincount():
    ids = torch.tensor([3, 0, 3, 1, 3])
    assert torch.equal(count_ids(ids, 5), torch.bincount(ids, minlength=5))


def test_contrastive_view_has_no_backward():
    """Each MoE layer runs once with gradient per step (ZeRO-3 leaf modules rely on it) and once without."""
    model = create_model("unist_tiny")
    step = Pretrainer(model)
    calls = []
    for m in model.modules():
        if isinstance(m, MoEFeedForward) and not m.dense:
            m.register_forward_hook(lambda mod, args, out: calls.append(torch.is_grad_enabled()))
    out = step(_batch(model))
    out["loss"].backward()
    assert calls.count(True) == model.config.depth and calls.count(False) == model.config.depth
    assert out["contrastive"] > 0


def test_training_step_host_syncs_within_budget():
    model = create_model("unist_tiny")
    step = Pretrainer(model)
    batch = _batch(model)
    step(batch)["loss"].backward()
    with SyncCounter() as syncs:
        step(batch)["loss"].backward()
    n = syncs.count(within=("unist/", "kernels/"))
    assert n <= STEP_SYNC_BUDGET, syncs.report(within=("unist/", "kernels/"))
