"""Token masking strategies of the pretraining objectives (`unist.objectives.masking`) on packed batches mixing
grids, graphs and video."""
from __future__ import annotations

import pytest
import torch
from model_testing import grid_series, mixed_windows

from unist.objectives.masking import block_mask, random_mask, sample_mask, temporal_mask, tube_mask
from unist.patching import PatcherConfig, UniversalPatcher

PATCHER = UniversalPatcher(PatcherConfig(patch_size=2, time_patch=2))


@pytest.fixture
def batch():
    return PATCHER.patchify(mixed_windows() + [grid_series(t=12, h=8, w=8, seed=5)])


def per_sample(mask, batch):
    return torch.bincount(batch.sample_id, weights=mask.double(), minlength=batch.num_samples).long()


def test_random_mask_hides_exact_share_per_sample(batch):
    m = random_mask(batch, 0.5)
    n = torch.bincount(batch.sample_id)
    torch.testing.assert_close(per_sample(m, batch), torch.round(0.5 * n.double()).long())


def test_tube_mask_hides_whole_spatial_patches_over_time(batch):
    m = tube_mask(batch, 0.5)
    key = batch.sample_id * 10_000 + batch.space_index
    for k in key.unique():
        assert m[key == k].all() or not m[key == k].any()
    assert (per_sample(m, batch) > 0).all() and (per_sample(~m, batch) > 0).all()


def test_temporal_mask_hides_the_last_time_patches(batch):
    m = temporal_mask(batch, 0.5)
    for b in range(batch.num_samples):
        sel = batch.sample_id == b
        t, hid = batch.t_index[sel], m[sel]
        assert hid.any() and (~hid).any()
        assert t[hid].min() > t[~hid].max()  # every hidden patch is later than every visible one


def test_temporal_mask_draws_every_horizon_up_to_the_ratio():
    b = PATCHER.patchify([grid_series(t=16, h=4, w=4, seed=1)])  # 8 time patches: 1..4 hidden
    seen = set()
    for seed in range(60):
        torch.manual_seed(seed)
        m = temporal_mask(b, 0.5)
        seen.add(int(b.t_index[m].unique().numel()))
    assert seen == {1, 2, 3, 4}


def test_block_mask_is_a_spatial_region_over_all_time(batch):
    m = block_mask(batch, 0.25)
    key = batch.sample_id * 10_000 + batch.space_index
    for k in key.unique():
        assert m[key == k].all() or not m[key == k].any()


@pytest.mark.parametrize("strategy", ["random", "tube", "block", "temporal"])
def test_sample_mask_keeps_something_visible_and_something_hidden(batch, strategy):
    tiny = PATCHER.patchify([grid_series(t=2, h=2, w=2, c=1)])  # one token: nothing can be hidden
    assert not sample_mask(tiny, (strategy,), 0.5).any()
    for seed in range(5):
        torch.manual_seed(seed)
        m = sample_mask(batch, (strategy,), 0.75)
        assert (per_sample(m, batch) >= 1).all() and (per_sample(~m, batch) >= 1).all()


def test_sample_mask_is_reproducible_and_mixes_strategies(batch):
    torch.manual_seed(3)
    a = sample_mask(batch, ("random", "temporal"), 0.5)
    torch.manual_seed(3)
    b = sample_mask(batch, ("random", "temporal"), 0.5)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="unknown masking strategies"):
        sample_mask(batch, ("nope",), 0.5)
