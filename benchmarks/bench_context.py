"""Forecast cost against context length: `unist_tiny` (random weights, the lag copy) on one window of
metr_la_week's 207 sensors, contexts 48..1024 steps, horizon 12.

    python benchmarks/bench_context.py [--reps 3] [--threads 2]

Prints a table and writes benchmarks/results/context_cost.csv (context, tokens, seconds per window, peak RSS MB).
"""
from __future__ import annotations

import argparse
import csv
import resource
import time
from pathlib import Path

import numpy as np
import torch

from unist.data import load_series
from unist.forecast import Forecaster
from unist.model import create_model

OUT = Path(__file__).resolve().parent / "results" / "context_cost.csv"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dataset", default="metr_la_week")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    s = load_series(a.dataset)
    model = Forecaster(create_model("unist_tiny").eval())
    rows = []
    for ctx in (48, 128, 256, 512, 768, 1024):
        w = s.slice_time(0, ctx)
        model.forecast(w, 12)  # warm-up
        times = []
        for _ in range(a.reps):
            t0 = time.perf_counter()
            model.forecast(w, 12)
            times.append(time.perf_counter() - t0)
        tokens = model.patcher.patchify([w]).num_tokens
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows.append({"dataset": a.dataset, "locations": s.num_nodes, "context": ctx, "tokens": tokens,
                     "seconds": round(float(np.median(times)), 4), "peak_rss_mb": round(rss, 1)})
        print(f"context {ctx:5d}  tokens {tokens:6d}  {np.median(times):.3f} s/window  peak RSS {rss:.0f} MB", flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
