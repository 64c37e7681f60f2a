"""Graph partition into spatial patches of at most `k` nodes (recursive coordinate bisection).

A graph token is a set of up to `k` nodes, so the nodes must be cut into groups that are close in
space (a token should describe one neighbourhood, like a p x p block of a grid). We use recursive
coordinate bisection (RCB) on 2-D node positions:

  split the node set along the wider side of its bounding box, at the rank that keeps both halves
  able to fill whole patches (ceil(n/k) patches, halved), and recurse until a part has <= k nodes.

Sorting is stable with ties broken by node index, so the result is deterministic. Cost is
O(N log N) (one sort per tree level), patch sizes differ by at most one node within a level, and
each patch is a compact box-shaped region. Positions come from, in order of preference:
  1. the series' own `coords` (real geography);
  2. `unist.data.preprocess.spectral_layout` of the edges (Laplacian eigenvectors 2 and 3 per
     connected component, deterministic sign, components in separate cells), so graph distance
     becomes space;
  3. node index order (a 1-D line), when the graph has neither coords nor edges: patches are then
     runs of consecutive node ids. This is a documented fallback, not an error.
Partitions are cached by a hash of the positions' source (coords or edges), since every window of
a dataset shares one graph.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from unist.data.preprocess import spectral_layout


@dataclass(frozen=True)
class Partition:
    """Nodes grouped into patches of at most k nodes.

    nodes:    int64 (n_patches, k)  node ids of each patch (ascending), -1 where the patch is short
    patch_of: int64 (N,)            patch of each node
    slot_of:  int64 (N,)            position of each node inside its patch (0 .. k-1)
    pos:      float64 (N, 2)        node positions (x, y) normalised to [0, 1] per graph
    centre:   float64 (n_patches, 2) mean position of each patch's nodes, in [0, 1]
    rel:      float64 (n_patches, k, 2) node offset from its patch centre divided by the patch's
              half extent (largest |offset| on either axis), so it lies in [-1, 1]; 0 for padding
    source:   "coords" | "spectral" | "index": where the positions came from
    """

    nodes: np.ndarray
    patch_of: np.ndarray
    slot_of: np.ndarray
    pos: np.ndarray
    centre: np.ndarray
    rel: np.ndarray
    source: str

    def __post_init__(self) -> None:  # partitions are cached and shared: make their arrays read-only
        for a in (self.nodes, self.patch_of, self.slot_of, self.pos, self.centre, self.rel):
            a.flags.writeable = False

    @property
    def num_patches(self) -> int:
        return int(self.nodes.shape[0])


# ---------------------------------------------------------------------------------- positions
def _normalise(pos: np.ndarray) -> np.ndarray:
    """Per-axis min-max to [0, 1]; a degenerate axis (all equal) maps to 0.5."""
    lo, span = pos.min(axis=0), np.ptp(pos, axis=0)
    return np.where(span > 0, (pos - lo) / np.where(span > 0, span, 1.0), 0.5)


# ---------------------------------------------------------------------------------- bisection
def rcb(pos: np.ndarray, k: int) -> list[np.ndarray]:
    """Recursive coordinate bisection of points `pos` (N, 2) into parts of at most k points.

    Returns the parts in depth-first (left, right) order, each as sorted node ids. A part of n > k
    nodes needs m = ceil(n / k) patches; it is split along the wider bounding-box axis so that the
    left side gets round(n * floor(m/2) / m) nodes, i.e. both sides fill their patches evenly.
    """
    if k < 1:
        raise ValueError(f"graph_patch_nodes must be >= 1, got {k}")
    parts: list[np.ndarray] = []
    stack = [np.arange(len(pos))]
    while stack:
        idx = stack.pop()
        n = len(idx)
        if n <= k:
            parts.append(np.sort(idx))
            continue
        p = pos[idx]
        axis = int(np.argmax(np.ptp(p, axis=0)))  # wider axis; x on ties
        order = idx[np.lexsort((idx, p[:, axis]))]  # by coordinate, then node id
        m = -(-n // k)
        n_left = int(round(n * (m // 2) / m))
        stack.append(order[n_left:])  # pushed first so the left part is emitted first
        stack.append(order[:n_left])
    return parts


def _hash(*arrays: np.ndarray | None) -> str:
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        if a is None:
            h.update(b"none")
        else:
            a = np.ascontiguousarray(a)
            h.update(str((a.dtype.str, a.shape)).encode())
            h.update(a.tobytes())
    return h.hexdigest()


_CACHE: "OrderedDict[tuple, Partition]" = OrderedDict()
_CACHE_SIZE = 256


def partition_graph(num_nodes: int, k: int, coords: np.ndarray | None = None,
                    edge_index: np.ndarray | None = None, edge_weight: np.ndarray | None = None) -> Partition:
    """Partition a graph of `num_nodes` nodes into patches of <= k nodes (cached, deterministic).

    coords: (N, 2) as in `STSeries` (lat, lon or x, y); column 1 is used as x and column 0 as y,
    matching a grid's (row, column) = (y, x). Without coords the edges give a spectral layout;
    without either, node index order is used.
    """
    if num_nodes < 1:
        raise ValueError(f"a graph needs at least one node, got {num_nodes}")
    if coords is not None:
        source, key_arrays = "coords", (np.asarray(coords, np.float64),)
    elif edge_index is not None and np.asarray(edge_index).size:
        source, key_arrays = "spectral", (np.asarray(edge_index, np.int64), edge_weight)
    else:
        source, key_arrays = "index", ()
    key = (num_nodes, k, source, _hash(*key_arrays))
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]

    if source == "coords":
        pos = np.asarray(coords, np.float64)[:, ::-1]
    elif source == "spectral":
        pos = spectral_layout(num_nodes, np.asarray(edge_index, np.int64), edge_weight)
    else:
        pos = np.stack([np.arange(num_nodes, dtype=np.float64), np.zeros(num_nodes)], axis=1)
    parts = rcb(pos, k)  # raw positions: bounding-box aspect ratios matter
    n_p = len(parts)
    sizes = np.array([len(q) for q in parts])
    nodes = np.full((n_p, k), -1, dtype=np.int64)
    slot = np.arange(k)[None, :] < sizes[:, None]  # (n_p, k) real slots
    nodes[slot] = np.concatenate(parts)
    patch_of = np.empty(num_nodes, np.int64)
    slot_of = np.empty(num_nodes, np.int64)
    patch_of[nodes[slot]] = np.nonzero(slot)[0]
    slot_of[nodes[slot]] = np.nonzero(slot)[1]

    def per_slot(a: np.ndarray) -> np.ndarray:  # (N, 2) -> (n_p, k, 2), 0 on padding
        return a[np.where(slot, nodes, 0)] * slot[..., None]

    raw = per_slot(pos)
    off = (raw - raw.sum(1, keepdims=True) / sizes[:, None, None]) * slot[..., None]
    half = np.abs(off).max(axis=(1, 2))  # one scale for both axes: keeps the patch's true shape
    rel = off / np.where(half > 0, half, 1.0)[:, None, None]
    norm = _normalise(pos)
    centre = per_slot(norm).sum(1) / sizes[:, None]

    part = Partition(nodes=nodes, patch_of=patch_of, slot_of=slot_of, pos=norm, centre=centre, rel=rel,
                     source=source)
    _CACHE[key] = part
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return part
