"""Tests of the network's patch codecs (`unist.model.embed`: basis PatchEmbed / PatchHead and the point-set
pair): slot-permutation symmetry, masking, mixed batches. Every test runs on both codecs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from unist.data.series import STSeries
from unist.patching import PatcherConfig, UniversalPatcher
from unist.model.embed import PatchEmbed, PatchHead, PointSetEmbed, PointSetHead

CODECS = {"basis": (PatchEmbed, PatchHead), "pointset": (PointSetEmbed, PointSetHead)}


def _series(layout: str, shape: tuple[int, ...], seed: int, **kw) -> STSeries:
    rng = np.random.default_rng(seed)
    mask = rng.random(shape) > 0.25
    return STSeries(values=np.where(mask, rng.normal(size=shape), np.nan).astype(np.float32), mask=mask,
                    layout=layout, **kw)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one thread avoids OpenMP spin contention on the shared 2-core CI box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(params=sorted(CODECS))
def codec(request):
    return CODECS[request.param]


@pytest.fixture(scope="module")
def mixed():
    windows = [_series("grid", (5, 9, 7, 2), 0),
               _series("graph", (4, 30, 1), 1, coords=np.random.default_rng(1).random((30, 2))),
               _series("video", (3, 8, 8, 3), 2)]
    patcher = UniversalPatcher(PatcherConfig(patch_size=4, time_patch=2))
    return windows, patcher, patcher.patchify(windows)


def test_embed_mixed_batch_shapes_and_sample_independence(mixed, codec):
    windows, patcher, batch = mixed
    torch.manual_seed(0)
    embed = codec[0](d_model=32, max_channels=4)
    z = embed(batch.values, batch.mask, batch.rel_pos)
    assert z.shape == (batch.num_tokens, 32) and torch.isfinite(z).all()
    for b, s in enumerate(windows):  # channel padding from the other samples changes nothing
        alone = patcher.patchify([s])
        lo, hi = batch.cu_seqlens[b], batch.cu_seqlens[b + 1]
        torch.testing.assert_close(embed(alone.values, alone.mask, alone.rel_pos), z[lo:hi])


def test_embed_slot_permutation_invariance(mixed, codec):
    _, _, batch = mixed
    torch.manual_seed(1)
    embed = codec[0](d_model=16, max_channels=3)
    perm = torch.randperm(batch.values.shape[1])
    z = embed(batch.values, batch.mask, batch.rel_pos)
    zp = embed(batch.values[:, perm], batch.mask[:, perm], batch.rel_pos[:, perm])
    torch.testing.assert_close(z, zp, rtol=1e-5, atol=1e-5)


def test_embed_ignores_unobserved_points(mixed, codec):
    _, _, batch = mixed
    torch.manual_seed(2)
    embed = codec[0](d_model=16, max_channels=3)
    poison = torch.where(torch.rand(batch.values.shape) < 0.5, float("nan"), 1e6)
    poisoned = torch.where(batch.mask, batch.values, poison)
    z = embed(batch.values, batch.mask, batch.rel_pos)
    assert torch.equal(z, embed(poisoned, batch.mask, batch.rel_pos))
    empty = torch.zeros_like(batch.mask)  # tokens with no observation get the learned empty vector
    torch.testing.assert_close(embed(poisoned, empty, batch.rel_pos), embed.empty.expand_as(z))
    # ...and gradients to masked inputs are exactly zero
    x = batch.values.clone().requires_grad_()
    embed(x, batch.mask, batch.rel_pos).sum().backward()
    assert (x.grad[~batch.mask] == 0).all() and (x.grad[batch.mask] != 0).any()


def test_head_any_slots_equivariant_and_trains(mixed, codec):
    windows, patcher, batch = mixed
    torch.manual_seed(3)
    embed = codec[0](d_model=32, max_channels=3, d_point=16)
    head = codec[1](d_model=32, max_channels=3, d_hidden=32)
    out = head(embed(batch.values, batch.mask, batch.rel_pos), batch.rel_pos, n_channels=3)
    assert out.shape == batch.values.shape
    perm = torch.randperm(batch.values.shape[1])
    torch.testing.assert_close(head(torch.ones(2, 32), batch.rel_pos[:2, perm]),
                               head(torch.ones(2, 32), batch.rel_pos[:2])[:, perm])
    # a few steps of reconstruction lower the loss on a learnable target (the path is differentiable)
    target = (batch.rel_pos[..., :1] + batch.rel_pos[..., 2:]).expand_as(batch.values)  # (L, S, C)
    x = torch.where(batch.mask, target, 0.0)
    opt = torch.optim.Adam([*embed.parameters(), *head.parameters()], lr=1e-2)
    losses = []
    for _ in range(10):
        pred = head(embed(x, batch.mask, batch.rel_pos), batch.rel_pos, n_channels=3)
        loss = ((pred - x) ** 2)[batch.mask].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    shapes = [tuple(o.shape) for o in patcher.unpatchify(pred, batch)]
    assert shapes == [s.values.shape for s in windows]


def test_embed_rejects_too_many_channels(codec):
    with pytest.raises(ValueError, match="max_channels"):
        codec[0](d_model=8, max_channels=2)(torch.zeros(1, 4, 3), torch.ones(1, 4, 3, dtype=torch.bool),
                                              torch.zeros(1, 4, 3))
