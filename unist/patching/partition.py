"""Graph partition into spatial patches of at most `k` nodes, in O(E log N) per bisection level.

A graph token is a set of up to `k` nodes, so the nodes must be cut into groups that are close in
space or in the graph (a token should describe one neighbourhood, like a p x p block of a grid).
Both cases use recursive bisection:

  split a part of n > k nodes at the rank that keeps both halves able to fill whole patches
  (ceil(n/k) patches, halved), in a node order that keeps neighbours together, and recurse until a
  part has <= k nodes.

The node order of a part is, by the graph's geometry:
  1. coords (real geography): coordinate bisection (RCB), sorted along the wider side of the part's
     bounding box; each patch is a compact box-shaped region.
  2. edges only: graph bisection. The part's induced subgraph is split into connected components,
     kept in their order at the level above (at the top: largest first, ties smallest node id);
     inside a component, nodes are sorted by d(a, v) - d(b, v), in BFS hops from a
     pseudo-peripheral pair a, b (a is the node farthest from the component's smallest id, b the
     node farthest from a). That is a cheap stand-in for the Fiedler vector: a path is cut in the
     middle, a long strip across, and a component is only cut where one patch must hold nodes of
     two. Node positions (`Partition.pos`) come from `graph_layout`, a pivot-distance layout
     (below), computed once per graph.
  3. neither: node index order (a 1-D line); patches are runs of consecutive node ids. This is a
     documented fallback, not an error.
Every level handles all parts (and all connected components) at once: a few sorts, one
`connected_components` and three multi-source BFS (`scipy.sparse.csgraph.dijkstra(min_only=True)`)
over the whole graph. There is no Python loop over parts or components, so the cost is
O((N + E) log N) per level and O((N + E) log^2 N) in all, whatever the graph: thousands of tiny
components, isolated nodes, a long path or an expander. Ties are broken by node id, and BFS hops
depend only on the set of undirected edges, so the result is deterministic and independent of edge
order and direction. Partitions and layouts are cached by a hash of their source (coords or edges),
since every window of a dataset shares one graph; crops of an edges-only graph take their positions
from the full graph's cached layout (`graph_layout`), so a crop costs no graph work.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse import csgraph

from unist.data.series import check_edges


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
    source:   "coords" | "edges" | "index": what the patches and positions came from
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


# ---------------------------------------------------------------------------------- helpers
def _normalise(pos: np.ndarray) -> np.ndarray:
    """Per-axis min-max to [0, 1]; a degenerate axis (all equal) maps to 0.5."""
    lo, span = pos.min(axis=0), np.ptp(pos, axis=0)
    return np.where(span > 0, (pos - lo) / np.where(span > 0, span, 1.0), 0.5)


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


def _group_starts(sorted_labels: np.ndarray) -> np.ndarray:
    """Start index of each run of equal values in an array sorted by label (none for an empty array)."""
    return np.flatnonzero(np.r_[len(sorted_labels) > 0, sorted_labels[1:] != sorted_labels[:-1]])


def _argsort_labels(labels: np.ndarray) -> np.ndarray:
    """Stable argsort of non-negative int labels; as uint16 when they fit, where numpy radix-sorts in O(N)."""
    small = len(labels) > 0 and labels.max() < 2**16
    return np.argsort(labels.astype(np.uint16) if small else labels, kind="stable")


def _first_per_label(labels: np.ndarray, *keys: np.ndarray) -> np.ndarray:
    """(n_labels,) for each label 0..L-1 (all present), the node that is smallest under `keys`
    (most significant first), ties broken by the smaller node id."""
    order = np.lexsort((np.arange(len(labels)),) + keys[::-1] + (labels,))
    return order[_group_starts(labels[order])]


def _adjacency(num_nodes: int, edge_index: np.ndarray, edge_weight: np.ndarray | None) -> sp.csr_matrix:
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


def _bfs(adj: sp.csr_matrix, sources: np.ndarray) -> np.ndarray:
    """(N,) hops from each node to its nearest source (inf where none is reachable): one multi-source
    BFS, so with one source per connected component it is every component's own BFS at once.
    `adj` is symmetric, so it is searched as directed (saves scipy a transpose per call)."""
    return csgraph.dijkstra(adj, directed=True, unweighted=True, indices=sources, min_only=True)


def _components(adj: sp.csr_matrix) -> tuple[int, np.ndarray]:
    """(C, label (N,)) connected components, renumbered largest first (ties: smaller smallest node id)."""
    nc, lab = csgraph.connected_components(adj, directed=False)
    size = np.bincount(lab, minlength=nc)
    first = _first_per_label(lab)  # smallest node id of each component
    rank = np.empty(nc, np.int64)
    rank[np.lexsort((first, -size))] = np.arange(nc)
    return nc, rank[lab]


def _peripheral_hops(adj: sp.csr_matrix, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(d_a, d_b), each (N,): BFS hops from a pseudo-peripheral pair (a, b) of every component.

    a is the node farthest from the component's smallest id and b the node farthest from a (the
    double sweep; ties: smaller id)."""
    d0 = _bfs(adj, _first_per_label(label))
    d_a = _bfs(adj, _first_per_label(label, -d0))
    d_b = _bfs(adj, _first_per_label(label, -d_a))
    return d_a, d_b


# ---------------------------------------------------------------------------------- bisection
SortKeys = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, ...]]


def _bisect(num_nodes: int, k: int, sort_keys: SortKeys, position: np.ndarray | None = None) -> np.ndarray:
    """(N,) patch of each node: recursive bisection of all nodes into parts of <= k, level by level.

    `sort_keys(nodes, part, position)` gets the nodes of every part that still has > k nodes
    (ascending ids), their part labels and their rank in the previous level's order (`position`
    at the first level, default node id), and returns sort keys (most significant first) that
    order each part's nodes along the line to cut. A part of n > k nodes needs m = ceil(n / k)
    patches; the first round(n * floor(m/2) / m) nodes in that order form the left part, so both
    sides fill their patches evenly. Patches are numbered left to right (depth-first order of the
    bisection tree).
    """
    if k < 1:
        raise ValueError(f"graph_patch_nodes must be >= 1, got {k}")
    part = np.zeros(num_nodes, np.int64)
    position = np.arange(num_nodes) if position is None else position
    while True:
        size = np.bincount(part)
        nodes = np.flatnonzero(size[part] > k)  # ascending
        if not len(nodes):
            return part
        p = part[nodes]
        order = np.arange(len(nodes))  # stable sorts, least significant key first: ties keep node order
        for key in tuple(sort_keys(nodes, p, position[nodes]))[::-1]:
            order = order[np.argsort(key[order], kind="stable")]
        order = order[_argsort_labels(p[order])]
        position = np.zeros(num_nodes, np.int64)
        position[nodes[order]] = np.arange(len(nodes))
        ps = p[order]
        starts = _group_starts(ps)
        n = size[ps[starts]]
        m = -(-n // k)
        n_left = np.rint(n * (m // 2) / m).astype(np.int64)
        rank = np.arange(len(nodes)) - np.repeat(starts, n)
        right = rank >= np.repeat(n_left, n)
        # new labels: 2 * old (+1 on the right side), renumbered densely in left-to-right order
        new = 2 * part
        new[nodes[order[right]]] += 1
        used = np.zeros(2 * len(size), bool)
        used[new] = True
        part = (np.cumsum(used) - 1)[new]


def _coordinate_keys(pos: np.ndarray) -> SortKeys:
    """RCB order: each part sorted by its coordinate along the wider side of its bounding box (x on ties)."""
    def keys(nodes: np.ndarray, part: np.ndarray, position: np.ndarray) -> tuple[np.ndarray, ...]:
        by_part = _argsort_labels(part)
        starts = _group_starts(part[by_part])
        q = pos[nodes[by_part]]
        span = np.maximum.reduceat(q, starts, axis=0) - np.minimum.reduceat(q, starts, axis=0)  # (parts, 2)
        axis = np.empty(len(nodes), np.int64)
        axis[by_part] = np.repeat(np.argmax(span, axis=1), np.diff(np.r_[starts, len(nodes)]))
        return (pos[nodes, axis],)
    return keys


def rcb(pos: np.ndarray, k: int) -> np.ndarray:
    """(N,) patch of each point: recursive coordinate bisection of `pos` (N, 2) into parts of <= k points.

    Raw positions are used (bounding-box aspect ratios matter): a part is cut across its wider side.
    """
    return _bisect(len(pos), k, _coordinate_keys(np.asarray(pos, np.float64)))


def _graph_keys(adj: sp.csr_matrix) -> SortKeys:
    """Graph-bisection order: the connected components of each part's induced subgraph, in the order
    of their first node in the previous level's order (so pieces of a cut component stay where it
    was, next to each other), then d(a, v) - d(b, v) for the component's pseudo-peripheral pair
    (a, b), then d(a, v)."""
    src, dst = adj.nonzero()
    n = adj.shape[0]

    def keys(nodes: np.ndarray, part: np.ndarray, position: np.ndarray) -> tuple[np.ndarray, ...]:
        label = np.full(n, -1, np.int64)
        label[nodes] = part
        inside = (label[src] == label[dst]) & (label[src] >= 0)  # edges within one active part
        sub = sp.csr_matrix((np.ones(int(inside.sum())), (src[inside], dst[inside])), shape=(n, n))
        n_comp, comp = csgraph.connected_components(sub, directed=False)  # finished nodes: singletons
        first = np.full(n_comp, np.iinfo(np.int64).max)
        np.minimum.at(first, comp[nodes], position)  # parts hold disjoint position ranges
        d_a, d_b = _peripheral_hops(sub, comp)
        return first[comp[nodes]], (d_a - d_b)[nodes], d_a[nodes]
    return keys


def graph_bisection(num_nodes: int, k: int, edge_index: np.ndarray,
                    edge_weight: np.ndarray | None = None) -> np.ndarray:
    """(N,) patch of each node: recursive graph bisection into parts of <= k (see the module doc).

    The first order lists the graph's connected components largest first (ties: smallest node id),
    so tiny components and isolated nodes are packed together at the end."""
    adj = _adjacency(num_nodes, edge_index, edge_weight)
    label = _components(adj)[1]
    position = np.empty(num_nodes, np.int64)
    position[np.lexsort((np.arange(num_nodes), label))] = np.arange(num_nodes)
    return _bisect(num_nodes, k, _graph_keys(adj), position)


# ---------------------------------------------------------------------------------- layout
LAYOUT_PIVOTS = 4  # BFS pivots per component of `graph_layout` (cost: this many BFS over the graph)


def _pivot_layout(adj: sp.csr_matrix, label: np.ndarray, n_comp: int, pivots: int) -> np.ndarray:
    """(N, 2) positions of every component at once, each centred on 0, in BFS hops.

    High-dimensional embedding (Harel & Koren 2002): BFS hops to `pivots` nodes per component,
    chosen farthest-first from a pseudo-peripheral node, then each component's two principal axes
    of those hop vectors. Signs: the smallest node id with a clearly non-zero coordinate is positive.
    """
    n = adj.shape[0]
    x = np.empty((n, pivots))                                                     # (N, m)
    d0 = _bfs(adj, _first_per_label(label))
    pivot, nearest = _first_per_label(label, -d0), np.full(n, np.inf)
    for j in range(pivots):
        x[:, j] = _bfs(adj, pivot)
        nearest = np.minimum(nearest, x[:, j])
        pivot = _first_per_label(label, -nearest)
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
        first = hit[_group_starts(label[hit])]
        sign[label[first], ax] = np.sign(pos[first, ax])
    return pos * sign[label]


def _uncached_layout(num_nodes: int, edge_index: np.ndarray, edge_weight: np.ndarray | None) -> np.ndarray:
    """`graph_layout` without its cache: (N, 2) positions, each component scaled into its grid cell."""
    adj = _adjacency(num_nodes, edge_index, edge_weight)
    n_comp, label = _components(adj)
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
    key = (num_nodes, _hash(np.asarray(edge_index), None if edge_weight is None else np.asarray(edge_weight)))
    if key in _LAYOUTS:
        _LAYOUTS.move_to_end(key)
        return _LAYOUTS[key]
    pos = _uncached_layout(num_nodes, edge_index, edge_weight)
    pos.flags.writeable = False
    _LAYOUTS[key] = pos
    if len(_LAYOUTS) > _CACHE_SIZE:
        _LAYOUTS.popitem(last=False)
    return pos


# ---------------------------------------------------------------------------------- partition
_CACHE: "OrderedDict[tuple, Partition]" = OrderedDict()
_CACHE_SIZE = 256


def _assemble(patch_of: np.ndarray, pos: np.ndarray, k: int, source: str) -> Partition:
    """The `Partition` of patch labels `patch_of` (N,) with raw positions `pos` (N, 2)."""
    num_nodes = len(patch_of)
    sizes = np.bincount(patch_of)
    n_p = len(sizes)
    order = np.lexsort((np.arange(num_nodes), patch_of))  # by patch, ascending ids inside
    slot_of = np.empty(num_nodes, np.int64)
    slot_of[order] = np.arange(num_nodes) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    nodes = np.full((n_p, k), -1, dtype=np.int64)
    nodes[patch_of, slot_of] = np.arange(num_nodes)
    slot = nodes >= 0                                                             # (n_p, k) real slots

    def per_slot(a: np.ndarray) -> np.ndarray:  # (N, 2) -> (n_p, k, 2), 0 on padding
        return a[np.where(slot, nodes, 0)] * slot[..., None]

    raw = per_slot(pos)
    off = (raw - raw.sum(1, keepdims=True) / sizes[:, None, None]) * slot[..., None]
    half = np.abs(off).max(axis=(1, 2))  # one scale for both axes: keeps the patch's true shape
    rel = off / np.where(half > 0, half, 1.0)[:, None, None]
    norm = _normalise(pos)
    centre = per_slot(norm).sum(1) / sizes[:, None]
    return Partition(nodes=nodes, patch_of=patch_of.astype(np.int64), slot_of=slot_of, pos=norm, centre=centre,
                     rel=rel, source=source)


def partition_graph(num_nodes: int, k: int, coords: np.ndarray | None = None,
                    edge_index: np.ndarray | None = None, edge_weight: np.ndarray | None = None) -> Partition:
    """Partition a graph of `num_nodes` nodes into patches of <= k nodes (cached, deterministic).

    coords: (N, 2) as in `STSeries` (lat, lon or x, y); column 1 is used as x and column 0 as y,
    matching a grid's (row, column) = (y, x); patches by coordinate bisection. Without coords the
    edges give patches by graph bisection and positions by `graph_layout`; without either, node
    index order is used.
    """
    if num_nodes < 1:
        raise ValueError(f"a graph needs at least one node, got {num_nodes}")
    if k < 1:
        raise ValueError(f"graph_patch_nodes must be >= 1, got {k}")
    if coords is not None:
        coords = np.asarray(coords, np.float64)
        if coords.shape != (num_nodes, 2) or not np.isfinite(coords).all():
            raise ValueError(f"coords must be finite with shape ({num_nodes}, 2), got {coords.shape}: "
                             "pass one (lat, lon) or (x, y) row per node, or None")
        source, key_arrays = "coords", (coords,)
    elif edge_index is not None and np.asarray(edge_index).size:
        source, key_arrays = "edges", (np.asarray(edge_index), edge_weight)
    else:
        source, key_arrays = "index", ()
    key = (num_nodes, k, source, _hash(*key_arrays))
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]

    if source == "coords":
        pos = coords[:, ::-1]
        patch_of = rcb(pos, k)
    elif source == "edges":
        pos = graph_layout(num_nodes, edge_index, edge_weight)
        patch_of = graph_bisection(num_nodes, k, edge_index, edge_weight)
    else:
        pos = np.stack([np.arange(num_nodes, dtype=np.float64), np.zeros(num_nodes)], axis=1)
        patch_of = rcb(pos, k)
    part = _assemble(patch_of, pos, k, source)
    _CACHE[key] = part
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return part
