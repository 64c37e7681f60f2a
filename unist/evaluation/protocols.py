"""Evaluation protocols: how many steps in and out, per data type, following each field's benchmarks.

A protocol fixes context, horizon, the season used by the seasonal baselines, which horizon steps
the summary table shows, and the metric conventions (MAPE threshold, zero = missing). The table is
keyed by (layout, domain, sampling interval); `protocol_for(series)` picks the most specific row,
then falls back to a row for the interval alone. Every default can be overridden from the CLI
(`--context`, `--horizon`, `--stride`). See docs/evaluation.md for the reasoning behind each row.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from unist.data import DATASETS, DataError, STSeries, load_series
from unist.data.registry import canonical_name
from unist.data.video import VIDEO_SUFFIXES

DAY = 1440.0
WEEK = 7 * DAY


@dataclass(frozen=True)
class Protocol:
    """context/horizon: steps in and out; stride: steps between window starts on the test split;
    season: steps per seasonal cycle (None: no seasonal baseline); report_steps: 1-based horizon
    steps shown in the table; mape_min: MAPE only over targets with |y| > mape_min (None: MAPE not
    reported); zero_is_missing: a target of exactly 0 is a sensor failure (excluded from every metric);
    video: frame metrics (PSNR, predictions clipped to [0, 1]); load: options for `load_series`."""

    name: str
    context: int
    horizon: int
    stride: int = 1
    season: int | None = None
    report_steps: tuple[int, ...] = ()
    mape_min: float | None = 0.0
    zero_is_missing: bool = False
    video: bool = False
    reference: str = ""
    load: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("context", "horizon", "stride"):
            v = getattr(self, key)
            if not isinstance(v, int) or v < 1:
                raise DataError(f"protocol {self.name!r}: {key} must be a positive int, got {v!r}")
        if self.season is not None and self.season < 1:
            raise DataError(f"protocol {self.name!r}: season must be >= 1 or None, got {self.season}")

    @property
    def steps_shown(self) -> tuple[int, ...]:
        """The table's horizon steps: report_steps that fit the horizon, always including the last."""
        return tuple(sorted({s for s in self.report_steps if s <= self.horizon} | {self.horizon}))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _season(interval_minutes: float | None) -> int | None:
    """Steps per day for sub-daily data, per week for daily data, per year (52) for weekly data."""
    if not interval_minutes:
        return None
    for cycle in (DAY, WEEK):
        if interval_minutes < cycle and cycle % interval_minutes == 0:
            return int(cycle // interval_minutes)
    return 52 if interval_minutes == WEEK else None


# (layout, domain, interval in minutes) -> protocol. None in a key matches anything.
PROTOCOLS: dict[tuple[str | None, str | None, float | None], Protocol] = {
    ("graph", "traffic", 5.0): Protocol(
        "traffic-5min", 12, 12, season=288, report_steps=(3, 6, 12), zero_is_missing=True,
        reference="DCRNN (Li et al. 2018) / Graph WaveNet: 12 x 5 min in, 12 out; horizons 15/30/60 min; "
                  "a speed of 0 marks a sensor failure (DCRNN masked metrics, null_val=0)"),
    ("grid", None, 60.0): Protocol(
        "grid-hourly", 48, 12, season=24, report_steps=(1, 3, 6, 12), mape_min=5.0,
        reference="crowd/bike flow grids: 12 steps out as in UniST's short-term setting, two days in so the "
                  "context holds the same hours of the previous days (ST-ResNet's closeness + period inputs, "
                  "STDN's periodic window); MAPE over flows > 5 as in ST-SSL's test_metrics"),
    ("grid", None, 30.0): Protocol(
        "grid-30min", 96, 12, season=48, report_steps=(1, 3, 6, 12), mape_min=5.0,
        reference="grid-hourly at 30-min slots (NYC bike 2 / STDN): two days (96 steps) in, 12 out; "
                  "MAPE over flows > 5 as in ST-SSL"),
    ("grid", "weather", 60.0): Protocol(
        "weather-hourly", 48, 24, season=24, report_steps=(1, 6, 12, 24),
        reference="two days in, one day out of hourly ERA5 fields (short-range, WeatherBench-style lead times "
                  "up to 24 h; the context holds the diurnal cycle twice)"),
    ("graph", "epidemic", WEEK): Protocol(
        "epidemic-weekly", 4, 1, season=52, report_steps=(1,), mape_min=None,
        reference="PyTorch Geometric Temporal ChickenpoxDatasetLoader(lags=4): 4 weeks in, next week out; "
                  "MAPE not reported (the series is standardized, values cross 0)"),
    ("graph", "bus", 60.0): Protocol(
        "bus-hourly", 12, 12, season=24, report_steps=(1, 3, 6, 12), mape_min=5.0,
        reference="hourly demand: same 12 in / 12 out (and MAPE over counts > 5) as hourly flow grids "
                  "(PyG-Temporal's MontevideoBus uses 4 lags -> 1 step: --context 4 --horizon 1)"),
    ("video", None, None): Protocol(
        "video", 8, 8, stride=4, season=None, report_steps=(1, 4, 8), video=True, mape_min=None,
        reference="video prediction benchmarks (e.g. KTH/BAIR-style 8-10 frames in, 8-10 out) at reduced "
                  "size: 64 px short side, native frame rate; MAE, RMSE and PSNR per frame",
        load={"size": 64}),
    # fallbacks by interval only
    (None, None, 5.0): Protocol("5min", 12, 12, season=288, report_steps=(3, 6, 12),
                                reference="5-min sensors: the traffic 12 in / 12 out setting"),
    (None, None, 60.0): Protocol("hourly", 12, 12, season=24, report_steps=(1, 3, 6, 12),
                                 reference="hourly: the UniST short-term 12 in / 12 out setting"),
    (None, None, DAY): Protocol("daily", 14, 7, season=7, report_steps=(1, 7),
                                reference="daily: two weeks in, one week out"),
    (None, None, WEEK): Protocol("weekly", 4, 1, season=52, report_steps=(1,),
                                 reference="weekly: PyG-Temporal's 4 lags -> next week"),
}
GENERIC = Protocol("generic", 12, 12, report_steps=(1, 3, 6, 12),
                   reference="no protocol for this layout/domain/interval: 12 in / 12 out; season from the interval")


def load_options(layout_or_kind: str) -> dict[str, Any]:
    """`load_series` options a protocol needs before the series is read (video: decode at 64 px)."""
    return dict(PROTOCOLS[("video", None, None)].load) if layout_or_kind == "video" else {}


def _is_video(source: str) -> bool:
    key = canonical_name(source)
    if key is not None:
        return key.startswith("video:") or DATASETS[key].kind == "video"
    return Path(source).suffix.lower() in VIDEO_SUFFIXES


def load_target(source: str) -> STSeries:
    """The series to evaluate or fine-tune on, read with its protocol's load options (video: 64 px short side)."""
    return load_series(source, **(load_options("video") if _is_video(source) else {}))


def protocol_for(series: STSeries, context: int | None = None, horizon: int | None = None,
                 stride: int | None = None) -> Protocol:
    """The protocol of `series` (most specific table row first), with optional overrides."""
    dt = None if series.layout == "video" else series.interval_minutes
    keys = [(series.layout, series.domain, dt), (series.layout, None, dt), (None, None, dt)]
    base = next((PROTOCOLS[k] for k in keys if k in PROTOCOLS), None)
    if base is None:
        base = replace(GENERIC, season=_season(dt))
    overrides = {k: v for k, v in (("context", context), ("horizon", horizon), ("stride", stride)) if v is not None}
    return replace(base, **overrides) if overrides else base


__all__ = ["GENERIC", "PROTOCOLS", "Protocol", "load_options", "load_target", "protocol_for"]
