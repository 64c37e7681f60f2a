"""Data-layer throughput: dataset loads/s, synthetic samples/s per kind, windows/s, and video
decoding frames/s with decord vs PyAV on the real clips.

    .venv/bin/python benchmarks/bench_data.py [--quick]

Prints a table and writes benchmarks/results/data_<host>.csv (group, item, metric, value, unit, n).
Numbers are medians over repeats on whatever machine runs it; compare like with like.
"""
from __future__ import annotations

import argparse
import csv
import platform
import socket
import statistics
import time
from pathlib import Path

import numpy as np

import unist.data as D
from unist.data import registry
from unist.data.video import VideoOptions, decode_frames

RESULTS = Path(__file__).resolve().parent / "results"


def _median_seconds(fn, repeats: int) -> float:
    fn()                                                                       # warm-up (imports, caches)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_datasets(repeats: int) -> list[tuple]:
    rows = []
    for name in D.list_datasets():
        spec = D.DATASETS[name]
        if not (D.data_dir() / spec.folder).exists():
            print(f"skip {name}: no data under {D.data_dir()}")
            continue
        if not spec.has_series:
            def load_uncached(name=name):
                registry._cached_graph.cache_clear()                          # include the spectral layout
                return D.load_graph(name)
            rows.append(("load_graph", name, "loads/s", 1 / _median_seconds(load_uncached, repeats), "1/s", repeats))
            continue
        opts = {"max_frames": 32, "size": 112} if spec.kind == "video" else {}
        s = D.load_series(name, **opts)

        def load(name=name, opts=opts):
            registry._cached_graph.cache_clear()
            return D.load_series(name, **opts)
        sec = _median_seconds(load, repeats)
        rows.append(("load_series", name, "loads/s", 1 / sec, "1/s", repeats))
        rows.append(("load_series", name, "values/s", s.values.size / sec / 1e6, "M/s", repeats))
    return rows


def bench_synthetic(samples: int) -> list[tuple]:
    rows = []
    for kind in D.KINDS:
        corpus = D.SyntheticCorpus(seed=0, kinds=(kind,))
        corpus.sample(0)
        t0 = time.perf_counter()
        cells = sum(corpus.sample(i).values.size for i in range(samples))
        sec = time.perf_counter() - t0
        rows.append(("synthetic", kind, "samples/s", samples / sec, "1/s", samples))
        rows.append(("synthetic", kind, "ms/sample", 1e3 * sec / samples, "ms", samples))
        rows.append(("synthetic", kind, "values/s", cells / sec / 1e6, "M/s", samples))
    return rows


def bench_windows(repeats: int) -> list[tuple]:
    rows = []
    for name, context, horizon in [("metr_la_week", 12, 12), ("era5_t2m_uk", 24, 24)]:
        if not (D.data_dir() / name).exists():
            continue
        s = D.load_series(name)
        count = D.num_windows(s.num_steps, context + horizon)
        sec = _median_seconds(lambda: sum(1 for _ in D.sliding_windows(s, context, horizon)), repeats)
        rows.append(("windows", f"{name} ({context}+{horizon})", "windows/s", count / sec, "1/s", count))
    synth = D.SyntheticCorpus(seed=0, kinds=("grid",)).sample(0)
    count = D.num_windows(synth.num_steps, 24)
    sec = _median_seconds(lambda: sum(1 for _ in D.sliding_windows(synth, 12, 12)), repeats)
    rows.append(("windows", "synthetic grid (12+12)", "windows/s", count / sec, "1/s", count))
    return rows


def bench_video(repeats: int, max_frames: int | None) -> list[tuple]:
    rows = []
    folder = D.data_dir() / "videos"
    clips = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".mp4", ".avi", ".mkv")) if folder.exists() else []
    for path in clips:
        for backend in ("decord", "pyav"):
            opts = VideoOptions(backend=backend, max_frames=max_frames)
            frames = len(decode_frames(path, opts)[0])
            sec = _median_seconds(lambda: decode_frames(path, opts), repeats)
            rows.append(("video decode", f"{path.name} [{backend}]", "frames/s", frames / sec, "1/s", frames))
        # full reader: decode + float conversion + antialiased resize to short side 112
        sec = _median_seconds(lambda: D.read_video(path, size=112, max_frames=max_frames), repeats)
        frames = D.read_video(path, size=112, max_frames=max_frames).num_steps
        rows.append(("video read+resize112", path.name, "frames/s", frames / sec, "1/s", frames))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats and samples")
    args = ap.parse_args()
    reps, samples = (2, 30) if args.quick else (5, 200)
    rows = (bench_datasets(reps) + bench_synthetic(samples) + bench_windows(reps)
            + bench_video(reps, 32 if args.quick else None))
    print(f"host {socket.gethostname()} | {platform.processor() or platform.machine()} | data {D.data_dir()}")
    print(f"{'group':<22} {'item':<38} {'metric':<11} {'value':>12}")
    for group, item, metric, value, unit, n in rows:
        print(f"{group:<22} {item:<38} {metric:<11} {value:>12.4g}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"data_{socket.gethostname()}.csv"
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["group", "item", "metric", "value", "unit", "n"])
        w.writerows([(g, i, m, f"{v:.6g}", u, n) for g, i, m, v, u, n in rows])
    print(f"wrote {out}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
