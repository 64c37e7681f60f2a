"""Benchmark the pretraining job: tokens/s, steps/s and MFU of short real runs of train/pretrain.py.

  CPU (always):  preset `tiny`, one process (and, with --cpu-procs 2, two gloo processes under the
                 deepspeed launcher), ZeRO-2, fp32.
  GPU (if any):  presets `small` and `base`, ZeRO-2, bf16 autocast, attention backend `triton`
                 against `reference` (model.attn_backend), on all visible GPUs.
Each configuration is a fresh `train/pretrain.py` run (no export, no progress bar); throughput is
the mean over the steps after `--warmup` (the first steps pay one-off costs: allocator, oneDNN /
Triton compilation). MFU uses the FLOP model of unist.model.flops and the peak table in
docs/training.md (n/a on CPU).

  python benchmarks/bench_train.py                 # CPU tiny, ~1-2 min on 2 cores
  python benchmarks/bench_train.py --steps 60 --cpu-procs 2

Writes benchmarks/results/train_<host>.csv (one row per configuration, appended per run).
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
FIELDS = ["date", "host", "device", "preset", "model", "procs", "zero_stage", "precision", "attn_backend", "steps",
          "tokens_per_step", "tokens_per_s", "steps_per_s", "tflops_per_device", "mfu", "git"]


def git_commit() -> str:
    r = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


def run_one(preset: str, procs: int, steps: int, warmup: int, overrides: list[str]) -> dict:
    """One short training run; returns the mean throughput over the steps after `warmup`."""
    with tempfile.TemporaryDirectory() as out:
        args = [f"--config={preset}", f"out_dir={out}", "name=bench", f"train.steps={steps}",
                "checkpoint.export=false", f"checkpoint.every={steps}", "logging.progress=false", "logging.every=1",
                f"logging.print_every={steps}", *overrides]
        script = str(REPO / "train" / "pretrain.py")
        if procs > 1:
            port = _free_port()
            cmd = [str(Path(sys.executable).parent / "deepspeed"), "--num_gpus", str(procs), "--master_port",
                   str(port), script, *args]
        else:
            cmd = [sys.executable, script, *args]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}")
        recs = [json.loads(line) for line in (Path(out) / "bench" / "metrics.jsonl").read_text().splitlines()]
    steady = [r for r in recs if r["step"] > warmup] or recs
    time_s = sum(1.0 / r["steps_per_s"] for r in steady)
    mfu = [r["mfu"] for r in steady if r.get("mfu") is not None]
    return {"steps": len(steady), "tokens_per_step": statistics.mean(r["tokens"] for r in steady),
            "tokens_per_s": sum(r["tokens"] for r in steady) / time_s, "steps_per_s": len(steady) / time_s,
            "tflops_per_device": statistics.mean(r["tflops_per_device"] for r in steady),
            "mfu": statistics.mean(mfu) if mfu else "n/a"}


def _free_port() -> int:
    from unist.train.distributed import free_port
    return free_port()


def configurations(args) -> list[tuple[str, int, list[str], dict]]:
    """(preset, processes, overrides, labels) of every run."""
    runs = []
    if torch.cuda.is_available():
        gpus = torch.cuda.device_count()
        for preset in ("small", "base"):
            for backend in ("triton", "reference"):
                labels = {"device": torch.cuda.get_device_name(0), "zero_stage": 2, "precision": "bf16",
                          "attn_backend": backend}
                runs.append((preset, gpus, ["zero.stage=2", f"model.attn_backend={backend}", "data.num_workers=4"],
                             labels))
    else:
        for procs in sorted({1, args.cpu_procs}):
            labels = {"device": "cpu", "zero_stage": 2, "precision": "fp32", "attn_backend": "sdpa"}
            runs.append(("tiny", procs, ["zero.stage=2"], labels))
    return runs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=40, help="optimizer steps per run (default 40)")
    p.add_argument("--warmup", type=int, default=5, help="steps excluded from the averages (default 5)")
    p.add_argument("--cpu-procs", type=int, default=1, help="also run this many gloo processes on CPU")
    args = p.parse_args()
    if args.warmup >= args.steps:
        p.error("--warmup must be smaller than --steps")
    host = socket.gethostname().split(".")[0]
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"train_{host}.csv"
    rows = []
    for preset, procs, overrides, labels in configurations(args):
        from unist.train.config import load_config
        model = load_config(preset).model.name
        try:
            res = run_one(preset, procs, args.steps, args.warmup, overrides)
        except RuntimeError as e:  # e.g. the reference attention out of memory: record it, go on
            print(f"{preset} procs={procs} {labels}: FAILED\n{e}", flush=True)
            continue
        row = {"date": dt.datetime.now().isoformat(timespec="seconds"), "host": host, "preset": preset,
               "model": model, "procs": procs, "git": git_commit(), **labels, **res}
        rows.append(row)
        mfu = row["mfu"] if row["mfu"] == "n/a" else f"{100 * row['mfu']:.1f}%"
        print(f"{preset:6s} {model:12s} procs={procs} zero={labels['zero_stage']} {labels['precision']:5s} "
              f"attn={labels['attn_backend']:9s} | {row['tokens_per_s']:9.0f} tok/s | {row['steps_per_s']:6.2f} "
              f"steps/s | {row['tokens_per_step']:7.0f} tok/step | MFU {mfu}", flush=True)
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, FIELDS, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerows({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    print(f"wrote {path}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
