"""Training-step throughput of one model without DeepSpeed: tokens/s, values/s and MFU.

One step = forward of the pretraining losses, backward, gradient clipping and an AdamW step (fused on
CUDA), optionally under bf16 autocast, on packed micro-batches of the pretraining data stream
(`unist.train.data_mix.Mixture` with the preset of the model: real datasets + synthetic corpus), or
of the synthetic corpus alone. The micro-batches are made before timing, so a one-core data stream
does not limit a GPU; their making time is reported apart (data_ms_per_batch).

  tokens/s   packed tokens per second (TokenBatch.num_tokens)
  values/s   observed cells x time steps per second: batch.mask[..., 0].sum() (first channel only)
  MFU        model FLOP/s / peak; FLOPs per micro-batch from unist.train.metrics.FlopCounter (which
             applies unist.model.flops.flops_per_token to every sample), peak from
             unist.train.metrics.PEAK_TFLOPS (H200 / H100 SXM dense bf16: 989.5 TFLOP/s); n/a on CPU
  syncs      host syncs of one step as CUDA reports them (torch.cuda.set_sync_debug_mode), CUDA only

  python benchmarks/bench_step.py --model unist_small --backend triton --precision bf16 --steps 10
  python benchmarks/bench_step.py --model unist_tiny --backend sdpa --precision fp32 --steps 3 --tokens 1024

Appends a row to benchmarks/results/step_<device>.csv (or --out-dir); a rerun with the same device,
commit, model, backend, precision and tokens replaces its row.
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch

from unist.kernels import BACKENDS
from unist.model import create_model
from unist.objectives import Pretrainer
from unist.patching import TokenBatch
from unist.train.config import load_config
from unist.train.data_mix import Mixture, build_sources
from unist.train.metrics import FlopCounter, peak_flops

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PRESET_OF_MODEL = {"unist_tiny": "tiny", "unist_small": "small", "unist_base": "base"}
WARMUP_STEPS = 2  # Triton JIT, allocator, autotuning of cuBLAS: not timed


@dataclass
class StepRow:
    device: str
    commit: str
    torch: str
    model: str
    backend: str
    precision: str
    data: str
    tokens_per_batch: int
    steps: int
    params_m: float
    mean_tokens: float
    mean_values: float
    data_ms_per_batch: float
    step_ms: float
    step_ms_median: float
    tokens_per_s: float
    values_per_s: float
    model_tflops: float
    mfu: float | str
    peak_mem_gib: float | str
    syncs_per_step: int | str
    loss_first: float
    loss_last: float


def git_commit() -> str:
    """$UNIST_COMMIT, else the short commit, '+dirty' when tracked files have local changes ('unknown' outside git)."""
    if os.environ.get("UNIST_COMMIT"):  # set by scripts/gpu_check.sh (a copied tree may have no .git)
        return os.environ["UNIST_COMMIT"]
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=here).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=here).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"


def make_batches(model_name: str, tokens: int, data: str, count: int, seed: int) -> tuple[list[TokenBatch], str, float]:
    """`count` packed micro-batches of about `tokens` tokens; (batches, data used, ms per batch made).

    data: 'mix' = the preset's real-data mixture (needs UNIST_DATA_DIR), 'synthetic' = the synthetic
    corpus only, 'auto' = mix when UNIST_DATA_DIR names an existing folder, else synthetic.
    """
    cfg = load_config(PRESET_OF_MODEL[model_name])
    if data == "auto":
        data = "mix" if os.environ.get("UNIST_DATA_DIR") and Path(os.environ["UNIST_DATA_DIR"]).is_dir() else "synthetic"
    section = replace(cfg.data, tokens_per_batch=tokens)
    if data == "synthetic":
        section = replace(section, datasets=("synthetic",), synthetic_weight=1.0)
    mixture = Mixture(build_sources(section, seed), section, create_model(model_name).config.patch, seed)
    t0 = time.perf_counter()
    batches = [mixture.batch(0, j)[0] for j in range(count)]
    return batches, data, (time.perf_counter() - t0) / count * 1e3


def count_cuda_syncs(fn) -> int:
    """Host syncs CUDA reports while fn() runs (set_sync_debug_mode('warn') warns at each one)."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return sum("synchroniz" in str(w.message) for w in caught)


def run(args: argparse.Namespace) -> StepRow:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.precision == "bf16" and device.type == "cpu":
        print("note: bf16 autocast on CPU is slow and not what the GPU runs; timing it anyway")
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    count = WARMUP_STEPS + 1 + args.steps  # warm-up, one sync-counting step (CUDA), timed steps
    batches, data, data_ms = make_batches(args.model, args.tokens, args.data, count, args.seed)
    batches = [b.to(device) for b in batches]
    torch.manual_seed(args.seed)
    model = create_model(args.model, attn_backend=args.backend).to(device).train()
    objective = Pretrainer(model)  # the training losses (model(batch) is the bare network)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    flops = FlopCounter(model.config)
    losses: list[float] = []

    def step(batch: TokenBatch) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            loss = objective(batch)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    for b in batches[:WARMUP_STEPS]:
        losses.append(float(step(b)))
    syncs: int | str = "n/a"
    if device.type == "cuda":
        syncs = count_cuda_syncs(lambda: step(batches[WARMUP_STEPS]))
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    timed = batches[WARMUP_STEPS + 1:]
    step_s, kept = [], []
    t_all = time.perf_counter()
    for b in timed:
        t0 = time.perf_counter()
        kept.append(step(b))  # no .item() inside the timed loop: it would sync every step
        if device.type == "cuda" and args.per_step_sync:
            torch.cuda.synchronize()
        step_s.append(time.perf_counter() - t0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t_all
    losses += [float(x) for x in kept]
    tokens = sum(b.num_tokens for b in timed)
    values = sum(int(b.mask[..., 0].sum()) for b in timed)
    flop = sum(flops(b) for b in timed)
    peak = peak_flops(device)
    versions = torch.__version__
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return StepRow(
        device=name, commit=git_commit(), torch=versions, model=args.model, backend=args.backend or "auto",
        precision=args.precision, data=data, tokens_per_batch=args.tokens, steps=len(timed),
        params_m=round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        mean_tokens=round(tokens / len(timed), 1), mean_values=round(values / len(timed), 1),
        data_ms_per_batch=round(data_ms, 1), step_ms=round(wall / len(timed) * 1e3, 2),
        step_ms_median=round(statistics.median(step_s) * 1e3, 2), tokens_per_s=round(tokens / wall, 1),
        values_per_s=round(values / wall, 1), model_tflops=round(flop / wall / 1e12, 4),
        mfu=round(flop / wall / peak, 4) if peak else "n/a",
        peak_mem_gib=round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else "n/a",
        syncs_per_step=syncs, loss_first=round(losses[0], 4), loss_last=round(losses[-1], 4))


def write_row(row: StepRow, path: Path) -> None:
    names = [f.name for f in fields(StepRow)]
    key = ("device", "commit", "model", "backend", "precision", "tokens_per_batch")
    kept = []
    if path.exists():
        with path.open() as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames == names:
                new = asdict(row)
                kept = [r for r in reader if any(r[k] != str(new[k]) for k in key)]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=names)
        writer.writeheader()
        writer.writerows(kept + [asdict(row)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(PRESET_OF_MODEL), default="unist_tiny")
    parser.add_argument("--backend", choices=BACKENDS, default=None, help="attention backend (default: auto)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (after 2 warm-up steps)")
    parser.add_argument("--tokens", type=int, default=None, help="tokens per micro-batch (default: the preset's)")
    parser.add_argument("--data", choices=["auto", "mix", "synthetic"], default="auto")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1: the machine is shared)")
    parser.add_argument("--per-step-sync", action="store_true", help="synchronize after every step (for step_ms_median)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    if args.tokens is None:
        args.tokens = load_config(PRESET_OF_MODEL[args.model]).data.tokens_per_batch
    row = run(args)
    for key, value in asdict(row).items():
        print(f"{key:>18}: {value}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"step_{row.device.replace(' ', '_').replace('/', '_')}.csv"
    write_row(row, path)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
