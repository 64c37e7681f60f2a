"""Graph partition without coordinates: locality, components, determinism, work that grows as O(log N)
graph passes, the cached layout and crops that reuse it."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse import csgraph

from unist.data.series import DataError, STSeries
from unist.data.synthetic_common import random_geometric_graph
from unist.patching import graph_ops
from unist.patching import layout as PL
from unist.patching import partition as P
from unist.train import data_mix


def grid_edges(h: int, w: int) -> np.ndarray:
    """(2, E) 4-neighbour edges of an h x w grid, node id = row * w + col."""
    idx = np.arange(h * w).reshape(h, w)
    return np.concatenate([np.stack([idx[:, :-1].ravel(), idx[:, 1:].ravel()]),
                           np.stack([idx[:-1].ravel(), idx[1:].ravel()])], 1)


def adjacency(n: int, ei: np.ndarray) -> sp.csr_matrix:
    return sp.coo_matrix((np.ones(ei.shape[1]), tuple(ei)), shape=(n, n)).tocsr()


def pieces_per_patch(n: int, ei: np.ndarray, patch_of: np.ndarray) -> float:
    """Mean number of connected pieces of a patch's induced subgraph (1.0: every patch is connected)."""
    inside = patch_of[ei[0]] == patch_of[ei[1]]
    return csgraph.connected_components(adjacency(n, ei[:, inside]), directed=False)[0] / (patch_of.max() + 1)


def check_partition(part: P.Partition, n: int, k: int) -> np.ndarray:
    """Contract of a Partition; returns the patch sizes."""
    sizes = (part.nodes >= 0).sum(1)
    assert part.num_patches == -(-n // k) and sizes.max() <= k and sizes.min() >= min(n, k) - 1  # balanced
    assert np.array_equal(np.sort(part.nodes[part.nodes >= 0]), np.arange(n))              # each node once
    assert np.array_equal(part.nodes[part.patch_of, part.slot_of], np.arange(n))
    assert (part.pos >= 0).all() and (part.pos <= 1).all() and (np.abs(part.rel) <= 1 + 1e-12).all()
    return sizes


@pytest.fixture(autouse=True)
def fresh_caches():
    P._CACHE.clear()
    PL._LAYOUTS.clear()
    yield
    P._CACHE.clear()
    PL._LAYOUTS.clear()


class Counter:
    """Wraps a function and counts its calls."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kw):
        self.calls += 1
        return self.fn(*args, **kw)


# ---------------------------------------------------------------------------------- locality
def test_path_is_cut_into_runs():
    n, k = 203, 16
    ei = np.stack([np.arange(n - 1), np.arange(1, n)])
    part = P.partition_graph(n, k, edge_index=ei)
    check_partition(part, n, k)
    assert part.source == "edges"
    for row in part.nodes:
        real = row[row >= 0]
        assert np.array_equal(real, np.arange(real[0], real[0] + len(real)))  # a run of consecutive nodes
    assert pieces_per_patch(n, ei, part.patch_of) == 1.0


@pytest.mark.parametrize("kind", ["grid", "geometric"])
def test_edges_only_patches_are_connected_neighbourhoods(kind):
    if kind == "grid":
        n, ei = 48 * 48, grid_edges(48, 48)
    else:
        n = 3000
        xy, ei, _ = random_geometric_graph(np.random.default_rng(0), n)
    part = P.partition_graph(n, 16, edge_index=ei)
    check_partition(part, n, 16)
    shuffled = np.random.default_rng(1).permutation(part.patch_of)
    # patches are (nearly) connected; a random grouping of the same sizes is ~16 pieces each
    assert pieces_per_patch(n, ei, part.patch_of) < 1.3
    assert pieces_per_patch(n, ei, shuffled) > 8
    # and few edges are cut (RCB on the true coordinates cuts ~35 % of a geometric graph's edges)
    assert (part.patch_of[ei[0]] != part.patch_of[ei[1]]).mean() < 0.4
    hops = csgraph.dijkstra(adjacency(n, ei), directed=False, unweighted=True, indices=part.nodes[0])
    assert np.isfinite(hops[:, part.nodes[0]]).all() and hops[:, part.nodes[0]].max() <= 8


def test_components_that_fill_a_patch_are_its_patch():
    k, n_comp = 8, 300
    rng = np.random.default_rng(0)
    ids = rng.permutation(k * n_comp).reshape(n_comp, k)          # chains of k nodes with scattered ids
    ei = np.concatenate([np.stack([c[:-1], c[1:]]) for c in ids], 1)
    part = P.partition_graph(k * n_comp, k, edge_index=ei)
    check_partition(part, k * n_comp, k)
    assert sorted(map(tuple, np.sort(part.nodes, 1))) == sorted(map(tuple, np.sort(ids, 1)))


def test_many_tiny_components_and_isolated_nodes():
    n_pairs, n_iso, k = 2500, 700, 16
    n = 2 * n_pairs + n_iso
    perm = np.random.default_rng(0).permutation(n)
    ei = perm[:2 * n_pairs].reshape(n_pairs, 2).T                 # 2,500 pairs, 700 isolated nodes
    part = P.partition_graph(n, k, edge_index=ei)
    check_partition(part, n, k)
    split = part.patch_of[ei[0]] != part.patch_of[ei[1]]
    assert split.sum() < part.num_patches                         # a patch boundary cuts at most one pair
    iso = perm[2 * n_pairs:]
    mixed = np.isin(part.patch_of[iso], part.patch_of[ei.ravel()])
    assert mixed.sum() <= k                                       # isolated nodes share at most one patch with pairs
    # positions: each component in its own cell, isolated nodes at cell centres, all distinct cells
    assert len({tuple(p) for p in part.pos[iso]}) == n_iso


# ---------------------------------------------------------------------------------- determinism
def test_same_graph_same_partition_whatever_the_edge_order():
    n = 1500
    _, ei, ew = random_geometric_graph(np.random.default_rng(3), n)
    base = P.partition_graph(n, 12, edge_index=ei)
    rng = np.random.default_rng(0)
    half = ei[:, ei[0] < ei[1]]                                   # one direction only
    shuffled = np.concatenate([half[::-1], half], 1)[:, rng.permutation(2 * half.shape[1])]
    dup = np.concatenate([half, half[:, :50], np.stack([np.arange(n), np.arange(n)])], 1)  # duplicates, self-loops
    assert P.partition_graph(n, 12, edge_index=ei.copy()) is base  # cached by content
    for other in (shuffled, dup):
        P._CACHE.clear()
        PL._LAYOUTS.clear()
        again = P.partition_graph(n, 12, edge_index=other)
        assert np.array_equal(again.nodes, base.nodes) and np.array_equal(again.pos, base.pos)
    zero = np.where(np.arange(ei.shape[1]) % 2 == 0, ew, 0.0)     # zero-weight edges are no edges
    kept = ei[:, zero != 0]
    a = P.partition_graph(n, 12, edge_index=ei, edge_weight=zero)
    assert np.array_equal(a.nodes, P.partition_graph(n, 12, edge_index=kept).nodes)
    assert not base.pos.flags.writeable and not P.graph_layout(n, ei).flags.writeable


def test_graph_layout_is_deterministic_and_separates_components():
    n = 600
    _, ei, _ = random_geometric_graph(np.random.default_rng(5), n)
    pos = P.graph_layout(n, ei)
    assert pos.shape == (n, 2) and (pos >= 0).all() and (pos <= 1).all()
    PL._LAYOUTS.clear()
    np.testing.assert_array_equal(P.graph_layout(n, ei.copy()), pos)
    n_comp, label = csgraph.connected_components(adjacency(n, ei), directed=False)
    assert n_comp > 1
    cols = int(np.ceil(np.sqrt(n_comp)))
    cell = np.floor(pos * max(cols, -(-n_comp // cols))).astype(int)
    for c in range(n_comp):
        inside = {tuple(x) for x in cell[label == c]}
        assert len(inside) == 1 and not inside & {tuple(x) for x in cell[label != c]}
    np.testing.assert_array_equal(P.graph_layout(1, np.zeros((2, 0), np.int64)), [[0.5, 0.5]])


# ---------------------------------------------------------------------------------- work
@pytest.mark.parametrize("kind", ["geometric", "components"])
def test_20k_nodes_edges_only_take_log_n_graph_passes(kind, monkeypatch):
    n, k = 20_000, 16
    if kind == "geometric":                                       # 2,220 components, mean degree 3.4
        xy, ei, _ = random_geometric_graph(np.random.default_rng(0), n)
    else:                                                         # 6,000 triangles and 2,000 isolated nodes
        tri = np.random.default_rng(0).permutation(n)[:18_000].reshape(-1, 3).T
        ei = np.concatenate([tri[[0, 1]], tri[[1, 2]], tri[[2, 0]]], 1)
    bfs = Counter(graph_ops.bfs)  # every BFS: the partition's and the layout's
    monkeypatch.setattr(P, "bfs", bfs)
    monkeypatch.setattr(PL, "bfs", bfs)
    part = P.partition_graph(n, k, edge_index=ei)
    check_partition(part, n, k)
    levels = int(np.ceil(np.log2(-(-n // k)))) + 1
    # one layout (1 + LAYOUT_PIVOTS BFS) and three BFS per bisection level: no per-component work
    assert bfs.calls <= 1 + PL.LAYOUT_PIVOTS + 3 * levels
    pieces = pieces_per_patch(n, ei, part.patch_of)
    if kind == "geometric":  # as connected as coordinate bisection on the true positions (4.3), or more
        assert pieces < pieces_per_patch(n, ei, P.rcb(xy, k))
    else:  # 16 nodes hold >= 6 triangle pieces; a patch boundary cuts at most one triangle
        cut = (part.patch_of[tri[0]] != part.patch_of[tri[1]]) | (part.patch_of[tri[1]] != part.patch_of[tri[2]])
        assert pieces <= 7.0 and cut.sum() < part.num_patches
        iso = np.setdiff1d(np.arange(n), tri)
        assert np.isin(part.patch_of[iso], part.patch_of[tri.ravel()]).sum() <= k


# ---------------------------------------------------------------------------------- crops
def test_crops_reuse_the_full_graphs_layout(monkeypatch):
    n, crop = 4000, 500
    _, ei, ew = random_geometric_graph(np.random.default_rng(2), n)
    rng = np.random.default_rng(0)
    s = STSeries(values=rng.normal(size=(6, n, 1)).astype(np.float32), mask=np.ones((6, n, 1), bool),
                 layout="graph", edge_index=ei, edge_weight=ew)
    layout, bfs = Counter(PL._uncached_layout), Counter(graph_ops.bfs)
    monkeypatch.setattr(PL, "_uncached_layout", layout)
    monkeypatch.setattr(P, "bfs", bfs)
    monkeypatch.setattr(PL, "bfs", bfs)
    full = P.graph_layout(n, ei, ew)
    id_range = csgraph.connected_components(adjacency(n, ei)[:crop, :crop], directed=False)[0]
    draws = 0
    for j in range(12):
        c = data_mix.crop_cells(s, crop, np.random.default_rng(j))
        assert c.num_nodes == crop and c.meta["coords_kind"] == "graph_layout"
        keep = c.meta["crop_nodes"]
        np.testing.assert_array_equal(c.coords, full[keep][:, ::-1])  # the parent's positions, as (y, x)
        part = P.partition_graph(c.num_nodes, 16, c.coords, c.edge_index, c.edge_weight)
        assert part.source == "coords"
        check_partition(part, crop, 16)
        # a crop is a neighbourhood: few connected pieces (a node-id range of this graph has 362)
        pieces = csgraph.connected_components(adjacency(crop, c.edge_index), directed=False)[0]
        assert pieces < 0.2 * id_range
        draws += 1
    assert draws == 12 and layout.calls == 1                   # the layout was computed once ...
    assert bfs.calls == 1 + PL.LAYOUT_PIVOTS                    # ... and no crop did graph work


# ---------------------------------------------------------------------------------- bad input
def test_bad_input_is_named():
    with pytest.raises(DataError, match="outside"):
        P.partition_graph(3, 2, edge_index=np.array([[0], [3]]))
    with pytest.raises(DataError, match=r"shape \[2, E\]"):
        P.partition_graph(3, 2, edge_index=np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="graph_patch_nodes"):
        P.partition_graph(3, 0, edge_index=np.array([[0], [1]]))
    with pytest.raises(ValueError, match=r"coords must be finite with shape \(3, 2\)"):
        P.partition_graph(3, 2, coords=np.zeros((4, 2)))
    with pytest.raises(ValueError, match="at least one node"):
        P.graph_layout(0, np.zeros((2, 0), np.int64))
