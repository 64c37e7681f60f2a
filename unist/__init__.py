"""unist: one spatio-temporal foundation model for grids, graphs and video."""

from unist.release import from_pretrained  # noqa: E402  (torch only: no DeepSpeed import)

__all__ = ["from_pretrained"]
