"""unist: one spatio-temporal foundation model for grids, graphs and video."""
