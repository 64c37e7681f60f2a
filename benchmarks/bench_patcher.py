"""Throughput of `UniversalPatcher.patchify` / `unpatchify` on grids, graphs, video and a mixed pack.

    .venv/bin/python benchmarks/bench_patcher.py [--seconds 1.0] [--steps 12] [--threads 1]

Values are random (speed does not depend on them); 20 % are missing. Graph partitions are cached
after the first call, as in training where every window of a dataset shares one graph: the cold
partition time is reported separately. Prints a table and writes
benchmarks/results/patcher_<host>.csv. "values" counts the samples' own cells (T x spatial x C),
"tokens" the packed tokens.
"""
from __future__ import annotations

import argparse
import csv
import socket
import time
from pathlib import Path

import numpy as np
import torch

from unist.data.series import STSeries
from unist.patching import PatcherConfig, UniversalPatcher, partition_graph
from unist.patching import partition as partition_mod


def series(layout: str, shape: tuple[int, ...], seed: int, **kw) -> STSeries:
    rng = np.random.default_rng(seed)
    mask = rng.random(shape) >= 0.2
    return STSeries(values=np.where(mask, rng.normal(size=shape), np.nan).astype(np.float32), mask=mask,
                    layout=layout, **kw)


def graph(n: int, t: int, seed: int) -> STSeries:
    coords = np.random.default_rng(n).random((n, 2))  # one graph per size, shared by its windows
    return series("graph", (t, n, 1), seed, coords=coords)


def cases(t: int) -> dict[str, list[STSeries]]:
    mixed = [series("grid", (t, 32, 32, 2), 1), graph(883, t, 2), series("video", (t, 64, 64, 3), 3)]
    return {
        "grid 32x32x2 x16": [series("grid", (t, 32, 32, 2), i) for i in range(16)],
        "grid 64x64x2 x8": [series("grid", (t, 64, 64, 2), i) for i in range(8)],
        "graph 207x1 x16": [graph(207, t, i) for i in range(16)],
        "graph 883x1 x16": [graph(883, t, i) for i in range(16)],
        "graph 4000x1 x4": [graph(4000, t, i) for i in range(4)],
        "video 64x64x3 x4": [series("video", (t, 64, 64, 3), i) for i in range(4)],
        "video 128x128x3 x4": [series("video", (t, 128, 128, 3), i) for i in range(4)],
        "mixed grid+graph+video x4": mixed * 4,
    }


def timed(fn, seconds: float) -> float:
    """Mean seconds per call (one warm-up call, then repeat for about `seconds`)."""
    fn()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or n < 3:
        fn()
        n += 1
    return (time.perf_counter() - start) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    ap.add_argument("--steps", type=int, default=12, help="time steps per window")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 = a data-loader worker; more threads contend on a busy small box)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    cfg = PatcherConfig(patch_size=4, time_patch=4)  # validates every batch (the default)
    checked = UniversalPatcher(cfg)
    fast = UniversalPatcher(PatcherConfig(patch_size=4, time_patch=4, validate=False))
    rows = []
    for name, windows in cases(args.steps).items():
        n_values = sum(s.values.size for s in windows)
        batch = checked.patchify(windows)
        tokens = batch.num_tokens
        sec = {
            "patchify": timed(lambda: checked.patchify(windows), args.seconds),
            "patchify (no validate)": timed(lambda: fast.patchify(windows), args.seconds),
            "unpatchify numpy": timed(lambda: fast.unpatchify(batch.values.numpy(), batch), args.seconds),
            "unpatchify torch": timed(lambda: fast.unpatchify(batch.values, batch), args.seconds),
        }
        for op, s in sec.items():
            rows.append({"case": name, "op": op, "tokens": tokens, "values": n_values, "ms": 1e3 * s,
                         "Mtokens_s": tokens / s / 1e6, "Mvalues_s": n_values / s / 1e6})

    for n in (207, 883, 4000):  # cold partition (cache cleared), the one-off cost per graph
        coords = np.random.default_rng(n).random((n, 2))

        def cold(n=n, coords=coords):
            partition_mod._CACHE.clear()
            partition_graph(n, cfg.k, coords=coords)

        s = timed(cold, args.seconds / 2)
        rows.append({"case": f"graph {n} nodes", "op": "partition (cold)", "tokens": 0, "values": n,
                     "ms": 1e3 * s, "Mtokens_s": 0.0, "Mvalues_s": n / s / 1e6})

    host = socket.gethostname()
    print(f"UniversalPatcher p=4 tau=4 k=16, T={args.steps}, host={host}, torch threads={torch.get_num_threads()}")
    print(f"{'case':28s} {'op':24s} {'tokens':>7s} {'values':>9s} {'ms':>9s} {'Mtok/s':>8s} {'Mval/s':>8s}")
    for r in rows:
        print(f"{r['case']:28s} {r['op']:24s} {r['tokens']:7d} {r['values']:9d} {r['ms']:9.3f} "
              f"{r['Mtokens_s']:8.3f} {r['Mvalues_s']:8.1f}")
    out = Path(__file__).resolve().parent / "results" / f"patcher_{host}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
