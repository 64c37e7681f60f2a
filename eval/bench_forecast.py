"""Forecast throughput of the evaluation harness on CPU: one window at a time vs `forecast_batch`,
and what the self-check (an in-context backtest pass packed with the forecast) costs.

  python eval/bench_forecast.py [--model unist_tiny] [--windows 32] [--batch-size 32]

Prints a table and writes benchmarks/results/eval_forecast_threads<N>.json (ms per window per path).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from unist.evaluation.forecasters import forecast_windows, sample_locations, temporal_forecast
from unist.evaluation.protocols import protocol_for
from unist.evaluation.runner import load_target
from unist.evaluation.windows import make_windows
from unist.forecast import Forecaster
from unist.model import create_model
from unist.train.export import git_commit

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def timed(fn, repeat: int = 2) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="unist_tiny")
    ap.add_argument("--datasets", nargs="+", default=["metr_la_week", "nyc_bike1", "era5_t2m_uk"])
    ap.add_argument("--windows", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, help="torch CPU threads")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    # random weights; the self-check policy ("checked"), the path whose cost is measured against "full"
    model = Forecaster(create_model(a.model).eval()).with_policy(correction="checked")
    rows = []
    for name in a.datasets:
        s = load_target(name)
        p = protocol_for(s)
        w = make_windows(s, p, a.windows)
        n = w.num_windows
        one = timed(lambda: [model.forecast(c, p.horizon) for c in w.contexts[:8]], 1) / min(8, n)
        batched = timed(lambda: forecast_windows(model, w.contexts, p.horizon, a.batch_size)) / n
        unchecked = timed(lambda: forecast_windows(model.with_policy(correction="full"), w.contexts, p.horizon,
                                                   a.batch_size)) / n
        locs = sample_locations(s.num_nodes, 32)
        temporal = timed(lambda: temporal_forecast(model, w, p.horizon, locs), 1) / n
        rows.append({"dataset": name, "locations": s.num_nodes, "context": p.context, "horizon": p.horizon,
                     "windows": n, "ms_per_window_single": 1e3 * one, "ms_per_window_batched": 1e3 * batched,
                     "speedup": one / batched, "ms_per_window_batched_no_self_check": 1e3 * unchecked,
                     "self_check_cost": batched / unchecked, "ms_per_window_temporal_32_locations": 1e3 * temporal})
    print(f"{a.model}, torch threads {torch.get_num_threads()}, batch {a.batch_size}")
    print("| dataset | locations | C/H | single ms/window | batched ms/window | speedup | batched, no self-check "
          "| self-check cost | temporal-only (32 loc) ms/window |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dataset']} | {r['locations']} | {r['context']}/{r['horizon']} | {r['ms_per_window_single']:.1f} | "
              f"{r['ms_per_window_batched']:.1f} | {r['speedup']:.1f}x | {r['ms_per_window_batched_no_self_check']:.1f} | "
              f"{r['self_check_cost']:.2f}x | {r['ms_per_window_temporal_32_locations']:.1f} |")
    out = RESULTS / f"eval_forecast_threads{torch.get_num_threads()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": a.model, "device": f"cpu ({os.cpu_count()} cores)",
                               "commit": git_commit().get("commit"), "threads": torch.get_num_threads(),
                               "batch_size": a.batch_size, "rows": rows}, indent=1, default=float))
    print(f"wrote {out}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
