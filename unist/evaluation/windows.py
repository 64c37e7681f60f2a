"""The test windows of one dataset, shared by every model of a run so all are scored on the same points.

The series is cut chronologically 6:2:2 (`split_series`). A window is defined by its forecast targets:
its `horizon` target steps lie inside the test split (or the validation split, for model selection),
with origins `stride` apart from the split's first step; its context is the `context` steps before
the origin and may reach back before the split (only the past is read, nothing is fitted on it), as
in the GIFT-Eval / Chronos / TimesFM benchmarks. So a series whose test split holds one horizon is
never refused: when the series before the first origin is shorter than `context`, every window takes
the context that is there (`EvalWindows.context_used`). Windows that straddle a gap in the timestamps
are skipped. With `max_windows`, an evenly spaced subset is kept (the whole test period stays
covered, unlike taking the first N). `EvalWindows` holds numpy stacks for the baselines and the
context windows as `STSeries` for the model, plus each window's absolute start in the full series
(the seasonal baselines read the observed past before each window).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unist.data import DataError, STSeries, sliding_windows, split_context_target, split_series

from .protocols import Protocol


@dataclass
class EvalWindows:
    """context [B, Tc, *spatial, C] (NaN = missing), target [B, H, *spatial, C], their masks, `starts` (B,)
    absolute index of each window's first step in `series`; `contexts`: the context windows as STSeries;
    `available`: how many windows the test split holds before `max_windows` subsampling."""

    series: STSeries
    splits: dict[str, STSeries]
    context: np.ndarray
    context_mask: np.ndarray
    target: np.ndarray
    target_mask: np.ndarray
    starts: np.ndarray
    contexts: list[STSeries]
    available: int
    context_asked: int = 0

    @property
    def num_windows(self) -> int:
        return len(self.starts)

    @property
    def origins(self) -> np.ndarray:
        """(B,) absolute index of the first forecast step."""
        return self.starts + self.context.shape[1]

    @property
    def context_used(self) -> int:
        """Context steps every window has (the protocol's, or less when the series before the split is shorter)."""
        return int(self.context.shape[1])

    @property
    def train(self) -> STSeries:
        return self.splits["train"]


SPLITS = ("test", "val")


def make_windows(series: STSeries, protocol: Protocol, max_windows: int | None = None,
                 split: str = "test") -> EvalWindows:
    """Windows of `series` under `protocol` whose targets lie in its test split (or, for model selection, its
    validation split: steps 60-80 %) (see module docstring)."""
    if split not in SPLITS:
        raise DataError(f"split={split!r}: evaluate on 'test' (the last 20 %) or 'val' (60-80 %, model selection)")
    splits = split_series(series)
    part = splits[split]
    first, h = int(part.meta["split_start"]), protocol.horizon
    last = first + part.num_steps  # targets must end by here
    if part.num_steps < h:
        raise DataError(f"dataset {series.name!r}: its {split} split has {part.num_steps} steps, fewer than one "
                        f"horizon ({h}); lower --horizon to at most {part.num_steps}")
    c = min(protocol.context, first)
    if c < 1:
        raise DataError(f"dataset {series.name!r}: nothing precedes its {split} split to forecast from")
    span = series.slice_time(first - c, last)
    wins = list(sliding_windows(span, c, h, protocol.stride))
    if not wins:
        raise DataError(f"dataset {series.name!r}: every window of context {c} + horizon {h} with targets in its "
                        f"{split} split straddles a gap in the timestamps; lower --context")
    available = len(wins)
    if max_windows is not None:
        if max_windows < 1:
            raise DataError(f"max_windows must be >= 1, got {max_windows}")
        if available > max_windows:
            keep = np.unique(np.linspace(0, available - 1, max_windows).round().astype(int))
            wins = [wins[i] for i in keep]
    pairs = [split_context_target(w) for w in wins]
    offset = first - c
    return EvalWindows(
        series=series, splits=splits,
        context=np.stack([p[0].values for p in pairs]), context_mask=np.stack([p[0].mask for p in pairs]),
        target=np.stack([p[1].values for p in pairs]), target_mask=np.stack([p[1].mask for p in pairs]),
        starts=np.array([offset + w.meta["window_start"] for w in wins]), contexts=[p[0] for p in pairs],
        available=available, context_asked=protocol.context)


__all__ = ["SPLITS", "EvalWindows", "make_windows"]
