"""unist.data: every source of spatio-temporal data as one record type, `STSeries`.

  load_series(source)   registered dataset name | unist npz path | video path -> STSeries
  load_graph(name)      GraphStructure of a registered graph dataset (incl. structure-only PEMS graphs)
  list_datasets()       registered names;  save_npz(series, path) writes the unist npz format
  preprocess            split_series, Normalizer, sliding_windows, time_features, spectral_layout
  synthetic             SyntheticCorpus (seeded on-the-fly pretraining corpus), synthetic_graph_signal
  prior                 PriorCorpus (the in-context forecasting prior: random periods, trends, counts)
See docs/data.md.
"""
from .graph import GraphStructure, adjacency_to_edges
from .load import load_series
from .npz_format import load_npz, save_npz
from .preprocess import (Normalizer, num_windows, sliding_windows, spectral_layout, split_context_target,
                         split_series, time_features)
from .prior import PriorConfig, PriorCorpus, make_prior
from .readers import data_dir
from .registry import DATASETS, DatasetSpec, list_datasets, load_graph
from .series import LAYOUTS, DataError, STSeries
from .synthetic import KINDS, SyntheticConfig, SyntheticCorpus, make_graph, make_grid, make_video, synthetic_graph_signal
from .synthetic_common import random_geometric_graph
from .trajectory import TrajectoryGridOptions, points_to_grid
from .video import VideoOptions, read_video

__all__ = [
    "STSeries", "DataError", "LAYOUTS", "GraphStructure", "adjacency_to_edges",
    "load_series", "load_graph", "list_datasets", "data_dir", "DATASETS", "DatasetSpec",
    "load_npz", "save_npz", "read_video", "VideoOptions", "TrajectoryGridOptions", "points_to_grid",
    "split_series", "Normalizer", "sliding_windows", "split_context_target", "num_windows", "time_features",
    "spectral_layout", "SyntheticCorpus", "SyntheticConfig", "KINDS", "make_grid", "make_graph", "make_video",
    "random_geometric_graph", "synthetic_graph_signal", "PriorConfig", "PriorCorpus", "make_prior",
]
