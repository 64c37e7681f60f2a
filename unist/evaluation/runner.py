"""One evaluation run: every dataset, the model zero-shot (and optionally few-shot), its temporal-only
variant and the baselines, all on the same test windows and scored on the same points.

Zero-shot = no parameter update and no statistic of the target's training split: the model sees
only each test window's context and normalises it by itself. Models that do use target data
(historical average, ridge, few-shot fine-tuning) are flagged `uses_target_data` in the output.
Scoring mask = observed targets (minus zeros under `zero_is_missing`) where every full-coverage
model produced a finite forecast; the temporal-only variant covers a sample of locations and is
scored there, next to the zero-shot model on the same locations.
"""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from unist.data import DataError, STSeries
from unist.forecast import horizon_limit

from .baselines import run_baselines
from .checkpoints import Checkpoint, load_checkpoint
from .errors import EvalError
from .finetune import FinetuneConfig, finetune
from .forecasters import (ensemble_forecast, has_lag_copy, has_self_check, network_forecast, rule_forecast,
                          sample_locations, temporal_forecast, unist_forecast)
from .metrics import point_metrics, probabilistic_metrics, psnr
from .peers import peers_unavailable  # statsforecast is optional: without it the run goes on, noted
from .protocols import Protocol, load_target, protocol_for
from .windows import SPLITS, EvalWindows, make_windows

SCHEMA_VERSION = 1


@dataclass
class EvalConfig:
    """What `run` evaluates (the CLI's flags, eval/zeroshot.py --help)."""

    checkpoint: str
    datasets: tuple[str, ...]
    context: int | None = None
    horizon: int | None = None
    stride: int | None = None
    max_windows: int | None = None
    num_samples: int = 0
    batch_size: int = 32
    temporal_locations: int = 32
    allow_contaminated: bool = False
    finetune: FinetuneConfig | None = None
    baselines: bool = True
    device: str = "cpu"
    seed: int = 0
    split: str = "test"
    peers: bool = True                    # statsforecast peers (with the baselines; not on video)
    peer_max_series: int | None = None    # None: as many series as take ~2 min at this context (peers.py)
    peers_note: str | None = field(default=None, init=False)  # why peers=True did not run them

    def __post_init__(self) -> None:
        """Every setting checked before any work starts (EvalError naming the setting)."""
        if self.split not in SPLITS:
            raise EvalError(f"split={self.split!r}: use 'test' (reporting) or 'val' (model selection only)")
        if not self.datasets:
            raise EvalError("give at least one dataset (--dataset NAME|FILE.npz|VIDEO)")
        for key in ("context", "horizon", "stride", "max_windows"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise EvalError(f"{key}={value!r}: give a positive whole number (or leave it out for the default)")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise EvalError(f"batch_size={self.batch_size!r}: give a positive whole number of windows per pass")
        if self.num_samples < 0 or self.temporal_locations < 0:
            raise EvalError(f"num_samples={self.num_samples} and temporal_locations={self.temporal_locations} must "
                            "be >= 0")
        if self.num_samples == 1:
            raise EvalError("num_samples=1 gives no spread: use 0 (point forecast only) or >= 2 (e.g. 32)")
        if self.peer_max_series is not None and (not isinstance(self.peer_max_series, int)
                                                 or isinstance(self.peer_max_series, bool) or self.peer_max_series < 1):
            raise EvalError(f"peer_max_series={self.peer_max_series!r}: give a positive whole number of series (or "
                            "leave it out for the ~2-minute default)")
        note = peers_unavailable() if self.peers and self.baselines else None
        if note:
            self.peers, self.peers_note = False, note
            print(f"note: {note}", file=sys.stderr)


@dataclass
class ModelRun:
    """One model's forecasts on a dataset's windows and how they were made."""

    name: str
    label: str
    kind: str                      # zero-shot | few-shot | baseline | ablation
    pred: np.ndarray               # [B, H, *sp, C] (NaN where not predicted)
    uses_target_data: bool = False
    few_shot: bool = False
    samples: np.ndarray | None = None
    locations: np.ndarray | None = None   # subset of flat location indices, None = all
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class DatasetRun:
    """Everything about one dataset: the result dict (JSON) and the arrays kept for plots."""

    result: dict[str, Any]
    windows: EvalWindows
    protocol: Protocol
    models: list[ModelRun]
    score_mask: np.ndarray


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def model_runs(ckpt: Checkpoint, w: EvalWindows, p: Protocol, cfg: EvalConfig) -> list[ModelRun]:
    """The model zero-shot, its temporal-only variant, few-shot (if asked) and the baselines."""
    h, model = p.horizon, ckpt.model
    (point, samples), dt = _timed(lambda: unist_forecast(model, w, h, cfg.batch_size, cfg.num_samples))
    checked = has_self_check(model)
    runs = [ModelRun("unist", f"unist zero-shot ({ckpt.model_name})", "zero-shot", point, samples=samples, seconds=dt,
                     info={"self_check": checked})]
    if checked:
        pred, dt = _timed(lambda: network_forecast(model, w, h, cfg.batch_size))
        runs.append(ModelRun("unist_network", "unist network as trained (no self-check)", "ablation", pred, seconds=dt,
                             info={"notes": "the network's correction of the anchor applied in full, without the "
                                            "in-context backtest that scales it, zero-shot"}))
    if has_lag_copy(model):
        pred, dt = _timed(lambda: rule_forecast(model, w, h, cfg.batch_size))
        runs.append(ModelRun("unist_anchor", "unist lag copy, backtest rule only (no network)", "ablation", pred,
                             seconds=dt,
                             info={"notes": "last value and the lags the context selects, weighted by the scorer's "
                                            "backtest rule alone (no decoder features, no head residual), zero-shot"}))
    if cfg.temporal_locations and not p.video:
        locs = sample_locations(w.series.num_nodes, cfg.temporal_locations, cfg.seed)
        pred, dt = _timed(lambda: temporal_forecast(model, w, h, locs))
        runs.append(ModelRun("unist_temporal", f"unist temporal-only ({len(locs)}/{w.series.num_nodes} locations)",
                             "ablation", pred, locations=locs, seconds=dt,
                             info={"notes": "each location forecast alone (no neighbours), zero-shot"}))
    if cfg.finetune is not None:
        (tuned, record), dt_train = _timed(lambda: finetune(model, w.train, p.context, h, cfg.finetune))
        (fs_point, fs_samples), dt = _timed(lambda: unist_forecast(tuned, w, h, cfg.batch_size, cfg.num_samples))
        runs.append(ModelRun("unist_fewshot", f"unist few-shot {cfg.finetune.mode} ({cfg.finetune.fraction:.0%} train)",
                             "few-shot", fs_point, uses_target_data=True, few_shot=True, samples=fs_samples,
                             seconds=dt_train + dt, info={**record, "train_seconds": round(dt_train, 3)}))
    if cfg.baselines and not p.video:
        pred, dt = _timed(lambda: ensemble_forecast(model.config.patch, w, h, cfg.batch_size))
        runs.append(ModelRun("ensemble4", "classical 4-candidate ensemble (no network)", "baseline", pred, seconds=dt,
                             info={"notes": "last value, smoothed last value, seasonal naive on the clock's day and "
                                            "its level-corrected variant, weighted by their in-context backtest "
                                            "error^-4 (unist.evaluation.ensemble; the anchor of the first release), "
                                            "context only"}))
    if cfg.baselines:
        for name, b in run_baselines(w, h, p.season, peers=cfg.peers and not p.video,
                                     peer_max_series=cfg.peer_max_series, seed=cfg.seed).items():
            info = {k: v for k, v in b.items()
                    if k not in ("pred", "label", "uses_target_data", "seconds", "samples", "locations")}
            runs.append(ModelRun(name, b["label"], "baseline", b["pred"], uses_target_data=b["uses_target_data"],
                                 samples=b.get("samples"), locations=b.get("locations"), seconds=b["seconds"],
                                 info=info))
    return runs


def score_mask(w: EvalWindows, p: Protocol, runs: list[ModelRun]) -> np.ndarray:
    """Observed targets (zeros dropped under zero_is_missing) that every full-coverage model predicted."""
    m = w.target_mask.copy()
    if p.zero_is_missing:
        m &= w.target != 0
    for r in runs:
        if r.locations is None:
            m &= np.isfinite(r.pred)
    return m


def location_mask(shape: tuple[int, ...], locations: np.ndarray) -> np.ndarray:
    """[B, H, *sp, C] bool, True at the given flat location indices."""
    flat = np.zeros(int(np.prod(shape[2:-1])), bool)
    flat[locations] = True
    return np.broadcast_to(flat.reshape((1, 1) + shape[2:-1] + (1,)), shape)


def score(pred: np.ndarray, target: np.ndarray, mask: np.ndarray, p: Protocol,
          samples: np.ndarray | None = None) -> dict[str, Any]:
    """Every metric of the protocol: MAE/RMSE/MAPE (+ PSNR for video, + CRPS/coverage with samples)."""
    if p.video:
        pred = np.clip(pred, 0.0, 1.0)
    out = point_metrics(pred, target, mask, p.mape_min)
    if p.video:
        out["psnr"] = psnr(pred, target, mask)
    if samples is not None:
        out.update(probabilistic_metrics(samples, target, mask))
    return out


def _model_entry(r: ModelRun, w: EvalWindows, p: Protocol, mask: np.ndarray, zero_shot: ModelRun,
                 contaminated: bool) -> dict[str, Any]:
    """JSON entry of one model: flags, timing, notes and metrics (on `mask`, or its own locations)."""
    entry = {"label": r.label, "kind": r.kind, "uses_target_data": r.uses_target_data, "few_shot": r.few_shot,
             "contaminated": contaminated and r.name.startswith("unist"), "seconds": round(r.seconds, 3), **r.info}
    m, own = mask, w.target_mask
    if r.locations is not None:
        own = w.target_mask & location_mask(mask.shape, r.locations)
        m = mask & own & np.isfinite(r.pred)
        entry["locations"] = r.locations.tolist()
        entry["reference_unist_same_locations"] = score(zero_shot.pred, w.target, m, p)
    entry["points_scored"] = int(m.sum())
    entry["unpredicted_points"] = int((own & ~np.isfinite(r.pred)).sum())  # observed targets it gave no forecast for
    entry["metrics"] = score(r.pred, w.target, m, p, r.samples)
    return entry


def check_model_fits(ckpt: Checkpoint, series: STSeries, p: Protocol, source: str) -> None:
    """Refuse, before any forecast, what the model cannot do: more channels than it embeds, or a horizon
    beyond `unist.forecast.horizon_limit` of the protocol's context."""
    config = ckpt.model.config
    if config.max_channels is not None and series.num_channels > config.max_channels:
        raise EvalError(f"dataset {source!r} has {series.num_channels} channels, the model takes at most "
                        f"{config.max_channels} ({ckpt.model_name}): evaluate a subset of channels, e.g. save "
                        f"data[..., :{config.max_channels}] to an .npz with unist.data.save_npz")
    tau = config.patch.time_patch
    seen = p.context - p.context % tau
    if seen < 1:
        raise EvalError(f"dataset {source!r}: context {p.context} is shorter than one time patch ({tau} steps): "
                        f"give --context >= {tau}")
    if p.horizon > horizon_limit(seen):
        raise EvalError(f"dataset {source!r}: horizon {p.horizon} is more than the model forecasts from a "
                        f"{p.context}-step context (at most {horizon_limit(seen)}, docs/model.md 'Forecast limits'): "
                        "lower --horizon or raise --context")


def coverage(w: EvalWindows, mask: np.ndarray) -> dict[str, int]:
    """What could not be scored (results["windows"]): `skipped` windows have no observed context value (no
    model can forecast them), `unscored` windows have no scored point at all (the skipped ones among
    them); over (window, location) pairs, `locations_scored` have a scored point and `locations_unscored`
    an observed target but no scored point (e.g. no observed context value at that location, so last
    value, and with it the common scoring mask, has nothing there)."""
    b, h, c = w.num_windows, w.target.shape[1], w.target.shape[-1]
    per_loc = lambda m: m.reshape(b, h, -1, c).any(axis=(1, 3))  # noqa: E731  (B, N)
    scored, observed = per_loc(mask), per_loc(w.target_mask)
    return {"skipped": int((~w.context_mask.reshape(b, -1).any(1)).sum()),
            "unscored": int((~mask.reshape(b, -1).any(1)).sum()),
            "locations": int(scored.size), "locations_scored": int(scored.sum()),
            "locations_unscored": int((observed & ~scored).sum())}


def evaluate_dataset(ckpt: Checkpoint, source: str, cfg: EvalConfig) -> DatasetRun:
    """Load, audit, window, forecast and score one dataset: every window and location that can be scored
    is, and what could not be is counted (`coverage`)."""
    series = load_target(source)
    audit = ckpt.require_zero_shot(source, series, cfg.allow_contaminated)
    p = protocol_for(series, cfg.context, cfg.horizon, cfg.stride)
    check_model_fits(ckpt, series, p, source)
    w = make_windows(series, p, cfg.max_windows, cfg.split)
    runs = model_runs(ckpt, w, p, cfg)
    contaminated = audit["contaminated"] is not False
    mask = score_mask(w, p, runs)
    if not mask.any():
        raise DataError(f"dataset {source!r}: no target point of its {w.num_windows} {cfg.split} windows can be "
                        "scored (every target is missing, or has no observed context value before it); check the "
                        "data's mask, or give a longer --context")
    splits = w.splits
    result = {
        "dataset": {"source": source, "name": series.name, "layout": series.layout, "domain": series.domain,
                    "interval_minutes": series.interval_minutes, "shape": list(series.values.shape),
                    "channels": series.channels, "missing_rate": series.missing_rate},
        "protocol": p.to_dict(),
        "split": {name: {"start": int(s.meta["split_start"]), "steps": s.num_steps} for name, s in splits.items()},
        "windows": {"count": w.num_windows, "available": w.available, "starts": w.starts.tolist(),
                    "context_used": w.context_used, "targets_in": cfg.split,
                    "points_scored": int(mask.sum()), **coverage(w, mask)},
        "contamination": audit,
        "contaminated": contaminated,
        "models": {r.name: _model_entry(r, w, p, mask, runs[0], contaminated) for r in runs},
    }
    return DatasetRun(result, w, p, runs, mask)


def run(cfg: EvalConfig, checkpoint: Checkpoint | None = None) -> tuple[dict[str, Any], list[DatasetRun]]:
    """Evaluate every dataset of `cfg`; returns (the JSON-ready results, the per-dataset runs for plots)."""
    ckpt = checkpoint or load_checkpoint(cfg.checkpoint, cfg.device)
    torch.manual_seed(cfg.seed)  # the flow sampler's draws
    runs = [evaluate_dataset(ckpt, src, cfg) for src in cfg.datasets]
    settings = asdict(cfg)
    results = {"schema_version": SCHEMA_VERSION, "checkpoint": ckpt.describe(), "settings": settings,
               "results": [r.result for r in runs]}
    return results, runs


__all__ = ["DatasetRun", "EvalConfig", "EvalError", "ModelRun", "SCHEMA_VERSION", "check_model_fits", "coverage",
           "evaluate_dataset", "load_target", "run", "score", "score_mask"]
