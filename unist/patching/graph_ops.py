"""Graph and label primitives shared by the partition (`partition.py`) and the edge-only layout (`layout.py`).

Everything is vectorised over all parts / components at once (sorts, `scipy.sparse.csgraph`), so no
caller loops over components in Python.
"""
from __future__ import annotations

import hashlib

import numpy as np
import scipy.sparse as sp
from scipy.sparse import csgraph

from unist.data.series import check_edges


def normalise_positions(pos: np.ndarray) -> np.ndarray:
    """Per-axis min-max to [0, 1]; a degenerate axis (all equal) maps to 0.5."""
    lo, span = pos.min(axis=0), np.ptp(pos, axis=0)
    return np.where(span > 0, (pos - lo) / np.where(span > 0, span, 1.0), 0.5)


def array_hash(*arrays: np.ndarray | None) -> str:
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        if a is None:
            h.update(b"none")
        else:
            a = np.ascontiguousarray(a)
            h.update(str((a.dtype.str, a.shape)).encode())
            h.update(a.tobytes())
    return h.hexdigest()


def group_starts(sorted_labels: np.ndarray) -> np.ndarray:
    """Start index of each run of equal values in an array sorted by label (none for an empty array)."""
    return np.flatnonzero(np.r_[len(sorted_labels) > 0, sorted_labels[1:] != sorted_labels[:-1]])


def argsort_labels(labels: np.ndarray) -> np.ndarray:
    """Stable argsort of non-negative int labels; as uint16 when they fit, where numpy radix-sorts in O(N)."""
    small = len(labels) > 0 and labels.max() < 2**16
    return np.argsort(labels.astype(np.uint16) if small else labels, kind="stable")


def first_per_label(labels: np.ndarray, *keys: np.ndarray) -> np.ndarray:
    """(n_labels,) for each label 0..L-1 (all present), the node that is smallest under `keys`
    (most significant first), ties broken by the smaller node id."""
    order = np.lexsort((np.arange(len(labels)),) + keys[::-1] + (labels,))
    return order[group_starts(labels[order])]


def adjacency(num_nodes: int, edge_index: np.ndarray, edge_weight: np.ndarray | None) -> sp.csr_matrix:
    """Symmetric 0/1 CSR adjacency (N, N): an edge in either direction with non-zero weight, no self-loops.

    Weights only decide which edges exist: their meaning differs between datasets (a distance in
    PEMS, a similarity elsewhere), while a hop is a hop."""
    ei, ew = check_edges(num_nodes, edge_index, edge_weight)
    keep = ei[0] != ei[1]
    if ew is not None:
        keep &= np.abs(ew) > 0  # NaN and 0 weights are no edge
    src, dst = ei[0, keep], ei[1, keep]
    a = sp.csr_matrix((np.ones(2 * len(src)), (np.r_[src, dst], np.r_[dst, src])), shape=(num_nodes, num_nodes))
    a.sum_duplicates()
    a.data[:] = 1.0
    return a


def bfs(adj: sp.csr_matrix, sources: np.ndarray) -> np.ndarray:
    """(N,) hops from each node to its nearest source (inf where none is reachable): one multi-source
    BFS, so with one source per connected component it is every component's own BFS at once.
    `adj` is symmetric, so it is searched as directed (saves scipy a transpose per call)."""
    return csgraph.dijkstra(adj, directed=True, unweighted=True, indices=sources, min_only=True)


def components(adj: sp.csr_matrix) -> tuple[int, np.ndarray]:
    """(C, label (N,)) connected components, renumbered largest first (ties: smaller smallest node id)."""
    nc, lab = csgraph.connected_components(adj, directed=False)
    size = np.bincount(lab, minlength=nc)
    first = first_per_label(lab)  # smallest node id of each component
    rank = np.empty(nc, np.int64)
    rank[np.lexsort((first, -size))] = np.arange(nc)
    return nc, rank[lab]
