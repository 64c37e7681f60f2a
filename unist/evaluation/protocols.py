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


MONTH = 43830.0   # nominal: the registry gives monthly data this interval (30.4375 days)
YEAR = 525960.0   # nominal: 365.25 days


def _season(interval_minutes: float | None) -> int | None:
    """Steps per day for sub-daily data, per week for daily data, per year for weekly (52) and monthly (12) data."""
    if not interval_minutes:
        return None
    for cycle in (DAY, WEEK):
        if interval_minutes < cycle and cycle % interval_minutes == 0:
            return int(cycle // interval_minutes)
    return {WEEK: 52, MONTH: 12}.get(float(interval_minutes))


def default_context(season: int | None) -> int:
    """Generic context: two seasonal cycles at least, and at least 64 steps (the model reads long contexts)."""
    return max(64, 2 * season) if season else 64


# (layout, domain, interval in minutes) -> protocol. None in a key matches anything.
# Contexts hold at least two cycles of the dominant season (docs/evaluation.md): the forecast targets are the
# field's, the context is what a forecaster that reads the past would be given.
PROTOCOLS: dict[tuple[str | None, str | None, float | None], Protocol] = {
    ("graph", "traffic", 5.0): Protocol(
        "traffic-5min", 576, 12, season=288, report_steps=(3, 6, 12), zero_is_missing=True,
        reference="DCRNN (Li et al. 2018) / Graph WaveNet targets: 12 x 5 min out, horizons 15/30/60 min; two days "
                  "(576 steps) in, so the same time of the previous days is in view (the 12-step context of those "
                  "papers hides it); a speed of 0 marks a sensor failure (DCRNN masked metrics, null_val=0)"),
    ("grid", None, 60.0): Protocol(
        "grid-hourly", 168, 12, season=24, report_steps=(1, 3, 6, 12), mape_min=5.0,
        reference="crowd/bike flow grids: 12 steps out as in UniST's short-term setting, one week in (ST-ResNet's "
                  "closeness + period + trend inputs reach a week back); MAPE over flows > 5 as in ST-SSL"),
    ("grid", None, 30.0): Protocol(
        "grid-30min", 336, 12, season=48, report_steps=(1, 3, 6, 12), mape_min=5.0,
        reference="grid-hourly at 30-min slots (NYC bike 2 / STDN): one week (336 steps) in, 12 out; "
                  "MAPE over flows > 5 as in ST-SSL"),
    ("grid", "weather", 60.0): Protocol(
        "weather-hourly", 168, 24, season=24, report_steps=(1, 6, 12, 24),
        reference="one week in, one day out of hourly ERA5 fields (short-range, WeatherBench-style lead times up "
                  "to 24 h; the context holds the diurnal cycle seven times)"),
    ("graph", "epidemic", WEEK): Protocol(
        "epidemic-weekly", 104, 4, season=52, report_steps=(1, 4), mape_min=None,
        reference="weekly case counts: two years (104 weeks) in so the yearly wave is in view twice, four weeks "
                  "out (the CDC FluSight horizons 1-4); MAPE not reported (counts and standardized series hit 0)"),
    ("graph", "bus", 60.0): Protocol(
        "bus-hourly", 168, 12, season=24, report_steps=(1, 3, 6, 12), mape_min=5.0,
        reference="hourly demand: one week in, 12 out, MAPE over counts > 5, as hourly flow grids"),
    ("video", None, None): Protocol(
        "video", 8, 8, stride=4, season=None, report_steps=(1, 4, 8), video=True, mape_min=None,
        reference="video prediction benchmarks (e.g. KTH/BAIR-style 8-10 frames in, 8-10 out) at reduced "
                  "size: 64 px short side, native frame rate; MAE, RMSE and PSNR per frame",
        load={"size": 64}),
    # fallbacks by interval only
    (None, None, 5.0): Protocol("5min", 576, 12, season=288, report_steps=(3, 6, 12),
                                reference="5-min sensors: the traffic protocol (two days in, 12 out)"),
    (None, None, 30.0): Protocol("30min", 336, 12, season=48, report_steps=(1, 3, 6, 12),
                                 reference="30-min data: one week in, 12 out"),
    (None, None, 60.0): Protocol("hourly", 168, 24, season=24, report_steps=(1, 6, 12, 24),
                                 reference="hourly: one week in, one day out (GIFT-Eval's short-term hourly horizon)"),
    (None, None, DAY): Protocol("daily", 56, 7, season=7, report_steps=(1, 7),
                                reference="daily: eight weeks in, one week out (GIFT-Eval / M4 daily-style horizon)"),
    (None, None, WEEK): Protocol("weekly", 104, 4, season=52, report_steps=(1, 4),
                                 reference="weekly: two years in, four weeks out"),
    (None, None, MONTH): Protocol("monthly", 48, 12, season=12, report_steps=(1, 6, 12), mape_min=None,
                                  reference="monthly: four years in, one year out (M4 monthly horizon 18, shortened)"),
    (None, None, YEAR): Protocol("yearly", 20, 5, season=None, report_steps=(1, 5), mape_min=None,
                                 reference="yearly: 20 years in, 5 out (M4 yearly horizon 6)"),
}
GENERIC = Protocol("generic", 64, 12, report_steps=(1, 3, 6, 12),
                   reference="no protocol for this layout/domain/interval: 12 out; two seasons (at least 64 steps) in")


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
        season = _season(dt)
        base = replace(GENERIC, season=season, context=default_context(season))
    overrides = {k: v for k, v in (("context", context), ("horizon", horizon), ("stride", stride)) if v is not None}
    return replace(base, **overrides) if overrides else base


__all__ = ["GENERIC", "MONTH", "PROTOCOLS", "YEAR", "default_context", "Protocol", "load_options", "load_target", "protocol_for"]
