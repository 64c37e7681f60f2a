"""Tests of the universal patcher: round trips, packing, partition, bad input, real data, properties."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.sparse.csgraph import shortest_path

from unist.data.series import DataError, STSeries
from unist.patching import PatcherConfig, TokenBatch, UniversalPatcher, partition_graph
from unist.patching.tokens import LAYOUT_IDS

def make_series(layout: str, shape: tuple[int, ...], missing: float = 0.2, seed: int = 0, **kw) -> STSeries:
    rng = np.random.default_rng(seed)
    mask = rng.random(shape) >= missing
    values = np.where(mask, rng.normal(size=shape), np.nan).astype(np.float32)
    return STSeries(values=values, mask=mask, layout=layout, **kw)


def assert_round_trip(patcher: UniversalPatcher, windows: list[STSeries]) -> TokenBatch:
    batch = patcher.patchify(windows)
    assert not torch.isnan(batch.values).any()
    for s, (v, m) in zip(windows, patcher.unpatchify(batch.values.numpy(), batch, return_mask=True)):
        assert v.shape == s.values.shape and m.shape == s.mask.shape
        np.testing.assert_array_equal(m, s.mask)
        np.testing.assert_array_equal(v[s.mask], s.values[s.mask])
        assert (v[~s.mask] == 0).all()
    return batch


def pems07_edges(root: Path) -> np.ndarray:
    e = np.loadtxt(root / "pems_graphs" / "PEMS07.csv", delimiter=",", skiprows=1)
    return e[:, :2].astype(np.int64).T


# ---------------------------------------------------------------------------------- round trips
def test_grid_17x13_round_trip_and_fields():
    ts = np.arange("2024-01-01T00:00", "2024-01-01T07:00", 60, dtype="datetime64[m]")
    s = make_series("grid", (7, 17, 13, 2), timestamps=ts)
    batch = assert_round_trip(UniversalPatcher(PatcherConfig(patch_size=4, time_patch=4)), [s])
    n_s = 5 * 4  # ceil(17/4) x ceil(13/4) blocks
    assert batch.num_tokens == 2 * n_s and batch.values.shape == (40, 64, 2)
    assert batch.slot_valid.sum() == 7 * 17 * 13  # exactly the real cells
    assert batch.t_index.tolist() == [0] * n_s + [1] * n_s
    assert batch.space_index.tolist() == list(range(n_s)) * 2
    assert batch.has_time.all() and batch.layout_id.eq(LAYOUT_IDS["grid"]).all()
    # time features at patch starts 00:00 and 04:00 (2024-01-01 is a Monday)
    np.testing.assert_allclose(batch.time_feats[0].numpy(), [0, 1, 0, 1], atol=1e-6)
    np.testing.assert_allclose(batch.time_feats[n_s, :2].numpy(), [np.sin(np.pi / 3), np.cos(np.pi / 3)], atol=1e-6)
    assert (batch.coords >= 0).all() and (batch.coords <= 1).all()
    np.testing.assert_allclose(batch.coords[0].numpy(), [2 / 13, 2 / 17], rtol=1e-6)  # block (0,0) centre (x, y)
    assert batch.rel_pos[0, :4, 0].tolist() == pytest.approx([-1, -1 / 3, 1 / 3, 1])  # dx along a block row
    assert batch.rel_pos[0, ::16, 2].tolist() == pytest.approx([-1, -1 / 3, 1 / 3, 1])  # dt


def test_single_node_graph_round_trip():
    s = make_series("graph", (5, 1, 3))
    batch = assert_round_trip(UniversalPatcher(), [s])
    assert batch.num_tokens == 2 and batch.slot_valid[0].sum() == 4 and batch.slot_valid[1].sum() == 1
    assert not batch.has_time.any() and (batch.time_feats == 0).all()
    assert (batch.rel_pos[:, :, :2] == 0).all() and torch.allclose(batch.coords, torch.tensor(0.5))


def test_pems07_graph_round_trip_and_partition(real_data_dir):
    edges = pems07_edges(real_data_dir)
    s = make_series("graph", (12, 883, 1), edge_index=edges, missing=0.1)
    batch = assert_round_trip(UniversalPatcher(), [s])
    part = batch.specs[0].partition
    assert part.source == "edges" and part.num_patches == -(-883 // 16)
    assert ((part.nodes >= 0).sum(1) <= 16).all()
    # locality: connected nodes in a patch are few hops apart (vs a random grouping of the same sizes),
    # and patches rarely mix connected components (PEMS07 has 17 components)
    hops = shortest_path(_adjacency(edges, 883), unweighted=True, directed=False)
    shuffled = np.random.default_rng(0).permutation(part.patch_of)
    for dist, factor in ((np.where(np.isfinite(hops), hops, np.nan), 0.3), (np.isinf(hops).astype(float), 0.5)):
        assert _mean_intra(dist, part.patch_of) < factor * _mean_intra(dist, shuffled)


def _adjacency(edges: np.ndarray, n: int):
    import scipy.sparse as sp
    return sp.coo_matrix((np.ones(edges.shape[1]), (edges[0], edges[1])), shape=(n, n)).tocsr()


def _mean_intra(dist: np.ndarray, label: np.ndarray) -> float:
    same = label[:, None] == label[None, :]
    np.fill_diagonal(same, False)
    return float(np.nanmean(dist[same]))


def test_real_video_clip_round_trip(real_data_dir):
    import decord
    path = real_data_dir / "videos" / "mmaction2_test.avi"
    frames = decord.VideoReader(str(path)).get_batch(list(range(6))).asnumpy()[:, ::8, ::8]  # (6, 30, 40, 3)
    vals = frames.astype(np.float32) / 255.0
    s = STSeries(values=vals, mask=np.ones(vals.shape, bool), layout="video", domain="video")
    batch = assert_round_trip(UniversalPatcher(PatcherConfig(patch_size=8, time_patch=2)), [s])
    assert batch.layout_id.eq(LAYOUT_IDS["video"]).all() and batch.num_tokens == 3 * 4 * 5


def test_heterogeneous_packing():
    windows = [make_series("grid", (6, 9, 7, 2), seed=1),
               make_series("graph", (5, 40, 1), coords=np.random.default_rng(2).random((40, 2)), seed=2),
               make_series("video", (3, 8, 12, 3), missing=0.0, seed=3)]
    patcher = UniversalPatcher(PatcherConfig(patch_size=4, time_patch=2))
    batch = assert_round_trip(patcher, windows)
    counts = [3 * 3 * 2, 3 * 3, 2 * 2 * 3]
    assert batch.cu_seqlens.dtype == torch.int32 and batch.cu_seqlens.tolist() == [0, 18, 27, 39]
    assert batch.max_seqlen == 18 and batch.values.shape[2] == 3 and batch.domains == ["unknown"] * 3
    for b, s in enumerate(windows):
        lo, hi = batch.cu_seqlens[b], batch.cu_seqlens[b + 1]
        assert hi - lo == counts[b] and (batch.sample_id[lo:hi] == b).all()
        assert (batch.layout_id[lo:hi] == LAYOUT_IDS[s.layout]).all()
        assert not batch.mask[lo:hi, :, s.num_channels:].any()  # channel padding is masked
        alone = patcher.patchify([s])  # each sample's tokens equal its tokens patchified alone
        assert torch.equal(batch.values[lo:hi, :, : s.num_channels], alone.values)
        assert torch.equal(batch.rel_pos[lo:hi], alone.rel_pos)


def test_unpatchify_torch_keeps_autograd_and_channels():
    windows = [make_series("grid", (4, 5, 6, 1)), make_series("graph", (4, 20, 2), seed=4)]
    patcher = UniversalPatcher()
    batch = patcher.patchify(windows)
    x = torch.randn(batch.num_tokens, batch.values.shape[1], 5, requires_grad=True)  # extra channels dropped
    out = patcher.unpatchify(x, batch)
    assert [tuple(o.shape) for o in out] == [(4, 5, 6, 1), (4, 20, 2)]
    sum(o.sum() for o in out).backward()
    # gradient reaches exactly the real cells' channels
    expect = (batch.slot_valid[..., None] & (torch.arange(5) < torch.tensor([1, 2])[batch.sample_id][:, None, None]))
    assert torch.equal(x.grad != 0, expect)
    first = patcher.unpatchify(x.detach(), batch, first=1)  # only the leading samples
    assert len(first) == 1 and torch.equal(first[0], out[0].detach())


def test_graph_patch_nodes_differs_from_p_squared():
    windows = [make_series("grid", (3, 5, 5, 1)), make_series("graph", (3, 30, 1), seed=5)]
    batch = assert_round_trip(UniversalPatcher(PatcherConfig(patch_size=2, time_patch=1, graph_patch_nodes=9)), windows)
    assert batch.values.shape[1] == 9  # S = max(p*p, k) * tau
    assert not batch.slot_valid[: batch.cu_seqlens[1], 4:].any()  # grid slots beyond p*p are padding


# ---------------------------------------------------------------------------------- bad input
def test_bad_input_errors():
    patcher = UniversalPatcher(PatcherConfig(max_channels=2))
    with pytest.raises(DataError, match="empty list"):
        patcher.patchify([])
    with pytest.raises(DataError, match="max_channels"):
        patcher.patchify([make_series("grid", (2, 3, 3, 3))])
    with pytest.raises(TypeError, match="STSeries"):
        patcher.patchify([np.zeros((2, 3, 1))])
    s = make_series("graph", (2, 4, 1))
    s.layout = "grid"  # changed after validation: rank no longer matches the layout
    with pytest.raises(DataError, match="rank 4"):
        patcher.patchify([s])
    s = make_series("graph", (2, 4, 1), missing=0.0)
    s.values[0, 0, 0] = np.nan  # NaN under mask True
    with pytest.raises(DataError, match="NaN"):
        patcher.patchify([s])
    batch = patcher.patchify([make_series("grid", (2, 3, 3, 1))])
    with pytest.raises(ValueError, match="token_values must have shape"):
        patcher.unpatchify(batch.values[:-1], batch)
    with pytest.raises(ValueError, match="positive int"):
        PatcherConfig(patch_size=0)


def test_validate_catches_leaks():
    batch = UniversalPatcher().patchify([make_series("grid", (2, 3, 3, 1))])
    batch.values[~batch.mask] = 1.0
    with pytest.raises(ValueError, match="0 where mask is False"):
        batch.validate()


# ---------------------------------------------------------------------------------- partition
def test_partition_locality_coords_and_determinism():
    rng = np.random.default_rng(0)
    xy = rng.random((500, 2))
    part = partition_graph(500, 16, coords=xy)
    assert part.source == "coords" and part.num_patches == 32
    sizes = (part.nodes >= 0).sum(1)
    assert sizes.max() <= 16 and sizes.min() >= 15  # balanced
    assert np.array_equal(np.sort(part.nodes[part.nodes >= 0]), np.arange(500))  # each node exactly once
    dist = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    assert _mean_intra(dist, part.patch_of) < 0.25 * _mean_intra(dist, rng.permutation(part.patch_of))
    again = partition_graph(500, 16, coords=xy.copy())  # cached by content
    assert again is part
    from unist.patching import partition as partition_mod
    partition_mod._CACHE.clear()
    fresh = partition_graph(500, 16, coords=xy.copy())
    assert fresh is not part and np.array_equal(fresh.nodes, part.nodes)


def test_partition_fallbacks():
    idx = partition_graph(10, 4)  # no coords, no edges: runs of consecutive ids
    assert idx.source == "index" and idx.nodes.tolist() == [[0, 1, 2, -1], [3, 4, 5, 6], [7, 8, 9, -1]]
    # two disconnected chains never share a patch
    edges = np.array([[0, 1, 2, 3, 4, 6, 7, 8, 9, 10], [1, 2, 3, 4, 5, 7, 8, 9, 10, 11]])
    part = partition_graph(12, 6, edge_index=edges)
    assert part.source == "edges"
    assert sorted(sorted(r) for r in part.nodes.tolist()) == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]


# ---------------------------------------------------------------------------------- properties
@st.composite
def windows_and_config(draw):
    p, tau = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    k = draw(st.one_of(st.none(), st.integers(1, 20)))
    windows = []
    for i in range(draw(st.integers(1, 3))):
        layout = draw(st.sampled_from(["grid", "graph", "video"]))
        t, c = draw(st.integers(1, 9)), draw(st.integers(1, 3))
        miss = draw(st.sampled_from([0.0, 0.3, 1.0]))
        seed = draw(st.integers(0, 2 ** 16))
        if layout == "graph":
            n = draw(st.integers(1, 60))
            geo = draw(st.sampled_from(["coords", "edges", "none"]))
            rng = np.random.default_rng(seed)
            kw = {"coords": rng.random((n, 2))} if geo == "coords" else {}
            if geo == "edges":
                kw["edge_index"] = rng.integers(0, n, size=(2, 2 * n))
            windows.append(make_series("graph", (t, n, c), miss, seed, **kw))
        else:
            h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
            windows.append(make_series(layout, (t, h, w, c), miss, seed))
    return windows, PatcherConfig(patch_size=p, time_patch=tau, graph_patch_nodes=k)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(windows_and_config())
def test_property_round_trip(case):
    windows, cfg = case
    batch = assert_round_trip(UniversalPatcher(cfg), windows)  # also validates the TokenBatch
    assert batch.values.shape[1] == cfg.slots
    cu = batch.cu_seqlens.tolist()
    for b, (s, spec) in enumerate(zip(windows, batch.specs)):
        assert cu[b + 1] - cu[b] == spec.num_tokens
        assert batch.slot_valid[cu[b]:cu[b + 1]].sum() == s.num_steps * s.num_nodes
        if s.layout == "graph":
            part = spec.partition
            real = part.nodes[part.nodes >= 0]
            assert np.array_equal(np.sort(real), np.arange(s.num_nodes))  # every node exactly once
            assert ((part.nodes >= 0).sum(1) <= cfg.k).all()
            assert np.array_equal(part.nodes[part.patch_of, part.slot_of], np.arange(s.num_nodes))
    assert (batch.coords >= 0).all() and (batch.coords <= 1).all()
    again = UniversalPatcher(cfg).patchify(windows)  # deterministic
    assert torch.equal(again.values, batch.values) and torch.equal(again.rel_pos, batch.rel_pos)
