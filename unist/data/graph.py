"""`GraphStructure`: a sensor graph without a time series (nodes, weighted edges, coordinates).

Some real datasets here ship only their graph (PEMS-BAY, PEMS03/04/07/08), and every graph
dataset has one; the synthetic corpus can put signals on any of them
(`synthetic_graph_signal`). Node ids are always renumbered 0..N-1; the original sensor ids are
kept in `node_ids`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .preprocess import spectral_layout
from .series import DataError, STSeries, check_edges


@dataclass
class GraphStructure:
    """num_nodes N; edge_index int64 [2, E] (source, target); edge_weight float32 [E] or None;
    coords float64 [N, 2] (lat, lon when real, else x, y of a spectral layout in [0, 1]);
    node_ids [N] original sensor ids; coords_kind "lat_lon" | "projected_m" | "spectral"."""

    num_nodes: int
    edge_index: np.ndarray
    edge_weight: np.ndarray | None
    coords: np.ndarray
    node_ids: np.ndarray
    name: str = "graph"
    coords_kind: str = "spectral"

    def __post_init__(self) -> None:
        n = self.num_nodes = int(self.num_nodes)
        if n < 1:
            raise DataError(f"graph {self.name!r} is empty (0 nodes): a graph needs at least one node")
        self.edge_index, self.edge_weight = check_edges(n, self.edge_index, self.edge_weight)
        self.coords = np.asarray(self.coords, np.float64)
        if self.coords.shape != (n, 2) or not np.isfinite(self.coords).all():
            raise DataError(f"graph {self.name!r}: coords must be finite [N={n}, 2], got {self.coords.shape}")
        if len(self.node_ids) != n:
            raise DataError(f"graph {self.name!r}: {len(self.node_ids)} node ids for {n} nodes")

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    @classmethod
    def build(cls, num_nodes: int, edge_index: np.ndarray, edge_weight: np.ndarray | None = None,
              coords: np.ndarray | None = None, node_ids: np.ndarray | None = None, name: str = "graph",
              coords_kind: str = "lat_lon") -> "GraphStructure":
        """Fill in a spectral layout when `coords` is None and 0..N-1 when `node_ids` is None."""
        if num_nodes < 1:
            raise DataError(f"graph {name!r} is empty (0 nodes): a graph needs at least one node")
        if coords is None:
            coords, coords_kind = spectral_layout(num_nodes, edge_index, edge_weight), "spectral"
        ids = np.arange(num_nodes) if node_ids is None else np.asarray(node_ids)
        return cls(num_nodes, edge_index, edge_weight, coords, ids, name, coords_kind)

    @classmethod
    def from_series(cls, series: STSeries) -> "GraphStructure":
        """The graph of a graph `STSeries` (no edges -> an edgeless graph)."""
        if series.layout != "graph":
            raise DataError(f"series {series.name!r} is a {series.layout}, not a graph")
        ei = series.edge_index if series.edge_index is not None else np.zeros((2, 0), np.int64)
        return cls.build(series.num_nodes, ei, series.edge_weight, series.coords, series.meta.get("node_ids"),
                         series.name, series.meta.get("coords_kind", "lat_lon"))


def adjacency_to_edges(adj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All non-zero entries of a (N, N) adjacency as (edge_index int64 [2, E], weight float32 [E]), row-major."""
    adj = np.asarray(adj)
    if adj.ndim != 2 or adj.shape[0] != adj.shape[1]:
        raise DataError(f"adjacency must be square (N, N), got {adj.shape}")
    src, dst = np.nonzero(adj)
    return np.stack([src, dst]).astype(np.int64), adj[src, dst].astype(np.float32)
