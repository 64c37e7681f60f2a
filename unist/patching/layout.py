"""Node positions of a graph from its edges alone: a pivot-distance layout per connected component (cached).

Used by the partition for edges-only graphs (`Partition.pos`) and by the training mixture, whose crops of
a graph take their coordinates from the full graph's cached layout, so a crop costs no graph work.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import scipy.sparse as sp

from .graph_ops import adjacency, array_hash, bfs, components, first_per_label, group_starts

_CACHE_SIZE = 256
LAYOUT_PIVOTS = 4  # BFS pivots per component of `graph_layout` (cost: this many BFS over the graph)


def _pivot_layout(adj: sp.csr_matrix, label: np.ndarray, n_comp: int, pivots: int) -> np.ndarray:
    """(N, 2) positions of every component at once, each centred on 0, in BFS hops.

    High-dimensional embedding (Harel & Koren 2002): BFS hops to `pivots` nodes per component,
    chosen farthest-first from a pseudo-peripheral node, then each component's two principal axes
    of those hop vectors. Signs: the smallest node id with a clearly non-zero coordinate is positive.
    """
    n = adj.shape[0]
    x = np.empty((n, pivots))                                                     # (N, m)
    d0 = bfs(adj, first_per_label(label))
    pivot, nearest = first_per_label(label, -d0), np.full(n, np.inf)
    for j in range(pivots):
        x[:, j] = bfs(adj, pivot)
        nearest = np.minimum(nearest, x[:, j])
        pivot = first_per_label(label, -nearest)
    member = sp.csr_matrix((np.ones(n), (label, np.arange(n))), shape=(n_comp, n))  # (C, N)
    size = np.bincount(label, minlength=n_comp).astype(np.float64)
    xc = x - (member @ x / size[:, None])[label]                                  # centred per component
    cov = (member @ (xc[:, :, None] * xc[:, None, :]).reshape(n, -1)).reshape(n_comp, pivots, pivots)
    axes = np.linalg.eigh(cov)[1][:, :, ::-1][:, :, :2]                           # (C, m, 2), largest first
    pos = np.einsum("nm,nmk->nk", xc, axes[label])                                # (N, 2)
    scale = np.zeros((n_comp, 2))
    np.maximum.at(scale, label, np.abs(pos))
    big = np.abs(pos) > 1e-9 * np.maximum(scale[label], 1e-300)
    sign = np.ones((n_comp, 2))
    for ax in range(2):  # first clearly non-zero entry per component (nodes are in id order)
        hit = np.flatnonzero(big[:, ax])
        hit = hit[np.argsort(label[hit], kind="stable")]
        first = hit[group_starts(label[hit])]
        sign[label[first], ax] = np.sign(pos[first, ax])
    return pos * sign[label]


def _uncached_layout(num_nodes: int, edge_index: np.ndarray, edge_weight: np.ndarray | None) -> np.ndarray:
    """`graph_layout` without its cache: (N, 2) positions, each component scaled into its grid cell."""
    adj = adjacency(num_nodes, edge_index, edge_weight)
    n_comp, label = components(adj)
    pos = _pivot_layout(adj, label, n_comp, LAYOUT_PIVOTS)
    lo = np.full((n_comp, 2), np.inf)
    hi = np.full((n_comp, 2), -np.inf)
    np.minimum.at(lo, label, pos)
    np.maximum.at(hi, label, pos)
    span = (hi - lo).max(1)                                                       # (C,) one scale: keeps shape
    local = (pos - (lo + hi)[label] / 2) / np.where(span > 0, span, 1.0)[label, None]  # in [-0.5, 0.5]
    cols = int(np.ceil(np.sqrt(n_comp)))
    row, col = np.divmod(np.arange(n_comp), cols)
    col = np.where(row % 2 == 1, cols - 1 - col, col)  # serpentine: consecutive components share a cell edge
    cell = np.stack([col, row], 1).astype(np.float64)
    side = max(cols, int(row[-1]) + 1)
    return (cell[label] + 0.5 + 0.8 * local) / side  # 10 % margin inside each cell keeps components apart


_LAYOUTS: "OrderedDict[tuple, np.ndarray]" = OrderedDict()


def graph_layout(num_nodes: int, edge_index: np.ndarray, edge_weight: np.ndarray | None = None) -> np.ndarray:
    """(N, 2) float64 read-only node positions (x, y) in [0, 1]^2 from the edges alone (cached, deterministic).

    Each connected component gets a pivot-distance layout (`_pivot_layout`, LAYOUT_PIVOTS BFS in
    all) scaled into its own square cell (aspect kept, 10 % margin) of a near-square grid of cells,
    largest component first in serpentine order; isolated nodes sit at their cell's centre. Cost
    O(LAYOUT_PIVOTS * (N + E) log N), for any number of components. Cached by a hash of the edges:
    crops of a graph (`unist.train.data_mix`) reuse their parent's layout as coordinates.
    """
    if num_nodes < 1:
        raise ValueError(f"a graph needs at least one node, got {num_nodes}")
    key = (num_nodes, array_hash(np.asarray(edge_index), None if edge_weight is None else np.asarray(edge_weight)))
    if key in _LAYOUTS:
        _LAYOUTS.move_to_end(key)
        return _LAYOUTS[key]
    pos = _uncached_layout(num_nodes, edge_index, edge_weight)
    pos.flags.writeable = False
    _LAYOUTS[key] = pos
    if len(_LAYOUTS) > _CACHE_SIZE:
        _LAYOUTS.popitem(last=False)
    return pos
