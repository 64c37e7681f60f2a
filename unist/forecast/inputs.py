"""What `Forecaster` accepts besides `STSeries`: numpy arrays and pandas long frames, and the frame it returns.

  numpy     [T] one series, [T, N] N series (a graph of N nodes without edges), [T, N, C] with channels,
            [T, H, W, C] a grid; NaN = missing. No timestamps: the model reads periods from the values.
  pandas    a long frame with columns `unique_id`, `ds`, `y` (as statsforecast, Chronos and TimesFM users
            hand it): one series per unique_id, on the union of the `ds` values (a missing (id, ds) is a
            missing value); datetime `ds` gives the model the clock, a regular step gives future stamps.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from unist.data.series import DataError, STSeries

FRAME_COLUMNS = ("unique_id", "ds", "y")


def is_frame(data: Any) -> bool:
    return type(data).__name__ == "DataFrame" and hasattr(data, "columns")


def array_series(values: np.ndarray, name: str = "array", interval_minutes: float | None = None,
                 timestamps: np.ndarray | None = None) -> STSeries:
    """An STSeries from a numpy array (shapes in the module docstring); NaN marks a missing value."""
    v = np.asarray(values, dtype=np.float32)
    if v.ndim == 1:
        v = v[:, None, None]
    elif v.ndim == 2:
        v = v[:, :, None]
    if v.ndim not in (3, 4):
        raise DataError(f"array input of shape {np.shape(values)}: give [T], [T, N], [T, N, C] (series) or "
                        "[T, H, W, C] (a grid)")
    if np.isinf(v).any():
        raise DataError(f"array input has {int(np.isinf(v).sum())} inf value(s): mark missing values as NaN")
    mask = np.isfinite(v)
    return STSeries(values=np.where(mask, v, np.nan).astype(np.float32), mask=mask,
                    layout="graph" if v.ndim == 3 else "grid", name=name, interval_minutes=interval_minutes,
                    timestamps=timestamps)


def frame_series(df: Any, name: str = "frame") -> tuple[STSeries, list[Any]]:
    """(STSeries [T, N, 1], the unique_ids in node order) from a long frame with `FRAME_COLUMNS`."""
    import pandas as pd  # optional dependency: only frame input needs it

    missing = [c for c in FRAME_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"frame input lacks columns {missing}: give a long frame with {list(FRAME_COLUMNS)} "
                        "(one row per series and time step)")
    if df.empty:
        raise DataError("frame input has no rows: give at least one (unique_id, ds, y) row per series")
    if df.duplicated(["unique_id", "ds"]).any():
        raise DataError("frame input has duplicate (unique_id, ds) rows: give one value per series and time step")
    wide = df.pivot(index="ds", columns="unique_id", values="y").sort_index()
    ids = list(wide.columns)
    values = wide.to_numpy(dtype=np.float32)  # [T, N]
    ds = wide.index
    timestamps, step = None, None
    if pd.api.types.is_datetime64_any_dtype(ds):
        timestamps = ds.to_numpy().astype("datetime64[m]")
        diffs = np.unique(np.diff(timestamps).astype(np.int64)) if len(timestamps) > 1 else np.array([])
        if len(diffs) == 1:
            step = float(diffs[0])
        else:
            timestamps = None  # an irregular clock would mislead the time features: read periods from values
    return array_series(values, name=name, interval_minutes=step, timestamps=timestamps), ids


def forecast_frame(df: Any, ids: list[Any], point: np.ndarray, samples: np.ndarray | None,
                   quantiles: tuple[float, ...]) -> Any:
    """The long frame of a forecast: unique_id, ds (after each series' last ds), `unist` (point) and, with
    samples, `unist-q{q}` quantile columns. point [H, N, 1]; samples [m, H, N, 1]."""
    import pandas as pd  # optional dependency: only frame input needs it

    horizon = point.shape[0]
    last = df["ds"].max()
    if pd.api.types.is_datetime64_any_dtype(df["ds"]):
        ds_sorted = np.sort(df["ds"].unique())
        step = ds_sorted[-1] - ds_sorted[-2] if len(ds_sorted) > 1 else pd.Timedelta(0)
        future = [last + (h + 1) * step for h in range(horizon)]
    else:
        future = [last + h + 1 for h in range(horizon)]
    rows: dict[str, Any] = {"unique_id": np.repeat(np.array(ids, dtype=object), horizon),
                            "ds": np.tile(np.array(future, dtype=object), len(ids)),
                            "unist": point[:, :, 0].T.reshape(-1)}
    if samples is not None:
        for q in quantiles:
            rows[f"unist-q{q:g}"] = np.quantile(samples[..., 0], q, axis=0).T.reshape(-1)
    out = pd.DataFrame(rows)
    out["ds"] = pd.to_datetime(out["ds"]) if pd.api.types.is_datetime64_any_dtype(df["ds"]) else out["ds"]
    return out


__all__ = ["FRAME_COLUMNS", "array_series", "forecast_frame", "frame_series", "is_frame"]
