"""Spatial crops of training windows to a cell budget: a grid/video rectangle, or a graph's nearest nodes.

A graph with edges but no coordinates is cropped in its full graph's `graph_layout` (computed once per graph,
cached), and the crop carries those positions as coords, so partitioning a crop costs no graph work.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from unist.data import STSeries
from unist.patching.layout import graph_layout


def crop_cells(s: STSeries, max_cells: int, rng: np.random.Generator) -> STSeries:
    """A random spatial crop with at most `max_cells` cells: a rectangle of a grid/video (aspect kept),
    or the `max_cells` nodes nearest to a random node of a graph (see `_crop_graph`)."""
    if s.num_nodes <= max_cells:
        return s
    if s.layout == "graph":
        return _crop_graph(s, max_cells, rng)
    h, w = s.spatial_shape
    scale = math.sqrt(max_cells / (h * w))
    ch, cw = max(1, int(h * scale)), max(1, int(w * scale))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    coords = None if s.coords is None else s.coords[y:y + ch, x:x + cw]
    return replace(s, values=s.values[:, y:y + ch, x:x + cw], mask=s.mask[:, y:y + ch, x:x + cw], coords=coords,
                   meta={**s.meta, "crop": (y, x, ch, cw)})


def _crop_graph(s: STSeries, k: int, rng: np.random.Generator) -> STSeries:
    """The k nodes nearest to a random node, in `coords` or, for a graph with edges but no coords, in
    its full graph's `graph_layout` (computed once per graph, cached by edge hash). That layout becomes
    the crop's coords (column order (y, x), like coords), so partitioning a crop costs a coordinate
    bisection of k points and no graph work. A graph with neither takes a node-id range."""
    n = s.num_nodes
    coords, meta = s.coords, {**s.meta}
    if coords is None and s.edge_index is not None and s.edge_index.size:
        coords = graph_layout(n, s.edge_index, s.edge_weight)[:, ::-1]  # (N, 2) as (y, x)
        meta["coords_kind"] = "graph_layout"
    if coords is not None:
        d = ((coords - coords[rng.integers(0, n)]) ** 2).sum(1)  # (N,)
        keep = np.sort(np.argsort(d, kind="stable")[:k])
    else:
        start = int(rng.integers(0, n - k + 1))
        keep = np.arange(start, start + k)
    new_id = np.full(n, -1, np.int64)
    new_id[keep] = np.arange(k)
    ei, ew = s.edge_index, s.edge_weight
    if ei is not None:
        inside = (new_id[ei[0]] >= 0) & (new_id[ei[1]] >= 0)
        ei, ew = new_id[ei[:, inside]], (None if ew is None else ew[inside])
    coords = None if coords is None else np.ascontiguousarray(coords[keep])
    return replace(s, values=s.values[:, keep], mask=s.mask[:, keep], coords=coords, edge_index=ei, edge_weight=ew,
                   meta={**meta, "crop_nodes": keep})


__all__ = ["crop_cells"]
