"""Can the data pipeline feed a preset on one GPU? Micro-batch production rate against the GPU's consumption.

For each preset the pretraining mixture (`unist.train.data_mix.Mixture`, the preset's data section: real
datasets + synthetic corpus + prior, packed to `data.tokens_per_batch`) makes `--batches` micro-batches in
this process, one torch thread, as one DataLoader worker would. Each batch's training FLOPs come from the
trainer's own counter (`unist.train.metrics.FlopCounter`), so the time one GPU needs for it at a target MFU is
FLOPs / (MFU x peak). The ratio of the two is the number of loader workers the GPU needs:

    workers needed = (seconds to make a batch on one core) / (seconds the GPU computes on it at the MFU)

    python benchmarks/bench_pipeline.py                       # small and base, 40 % MFU on an H200 (989.5 TFLOP/s bf16)
    python benchmarks/bench_pipeline.py --presets base --batches 8 --mfu 0.4 --peak-tflops 989.5

Writes benchmarks/results/pipeline_<host>.csv. The batch time is this machine's core; a GPU host's cores are
usually faster, so the worker count is an upper bound for the same code.
"""
from __future__ import annotations

import argparse
import csv
import math
import socket
import statistics
import time
from pathlib import Path

import torch

from unist.train.config import load_config
from unist.train.data_mix import Mixture, build_sources, observed_points
from unist.train.metrics import FlopCounter

RESULTS = Path(__file__).resolve().parent / "results"
H200_CORES = 16  # the lent GPU machine (device README): 16 CPU cores for the loader, the launcher and the rank


def measure(preset: str, batches: int, seed: int = 0) -> dict:
    cfg = load_config(preset)
    t0 = time.perf_counter()
    mixture = Mixture(build_sources(cfg.data, seed), cfg.data, cfg.model_config().patch, seed)
    setup = time.perf_counter() - t0
    flops = FlopCounter(cfg.model_config())
    mixture.batch(0, 0)  # warm-up: partitions and layouts are cached per graph, as in a long run
    times, tokens, values, work = [], [], [], []
    for j in range(1, batches + 1):
        t = time.perf_counter()
        tb, info = mixture.batch(0, j)
        times.append(time.perf_counter() - t)
        tokens.append(tb.num_tokens)
        values.append(observed_points(tb))
        work.append(flops(tb))
    return {"preset": preset, "model": cfg.model.name, "tokens_per_batch": cfg.data.tokens_per_batch,
            "configured_workers": cfg.data.num_workers, "setup_s": setup, "batch_s": statistics.median(times),
            "tokens": statistics.mean(tokens), "values": statistics.mean(values), "flops": statistics.mean(work)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", nargs="+", default=["small", "base"])
    ap.add_argument("--batches", type=int, default=8, help="micro-batches timed per preset (after one warm-up)")
    ap.add_argument("--mfu", type=float, default=0.4)
    ap.add_argument("--peak-tflops", type=float, default=989.5, help="the GPU's dense bf16 peak (H100/H200 SXM)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)  # one loader worker = one process, one thread
    rows = []
    for preset in a.presets:
        r = measure(preset, a.batches)
        gpu_s = r["flops"] / (a.mfu * a.peak_tflops * 1e12)
        r.update(gpu_s=gpu_s, worker_tokens_per_s=r["tokens"] / r["batch_s"],
                 gpu_tokens_per_s=r["tokens"] / gpu_s, workers_needed=math.ceil(r["batch_s"] / gpu_s),
                 mfu=a.mfu, peak_tflops=a.peak_tflops, host=socket.gethostname())
        r["fits_on_h200_host"] = r["workers_needed"] <= H200_CORES - 2  # leave cores for the rank and the launcher
        rows.append(r)
    print(f"| preset | tokens/batch | make a batch (1 core) | GPU at {a.mfu:.0%} MFU of {a.peak_tflops:g} TFLOP/s | "
          "tokens/s one worker | tokens/s GPU | workers needed | fits 16 cores |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['preset']} | {r['tokens']:.0f} | {1e3 * r['batch_s']:.0f} ms | {1e3 * r['gpu_s']:.1f} ms | "
              f"{r['worker_tokens_per_s']:,.0f} | {r['gpu_tokens_per_s']:,.0f} | {r['workers_needed']} | "
              f"{'yes' if r['fits_on_h200_host'] else 'no'} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"pipeline_{socket.gethostname()}.csv"
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
