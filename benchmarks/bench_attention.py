"""Benchmark packed variable-length attention: our Triton kernel against the field's alternatives.

Methods (each only where it runs, else recorded as 'n/a' with the reason):
  triton        unist.kernels varlen_attention, backend='triton' (interpreted on CPU, --quick only)
  sdpa_padded   pad the pack to (B, max_len), one F.scaled_dot_product_attention, unpad (pad/unpad timed)
  sdpa_varlen   unist.kernels backend='sdpa' (block-diagonal mask or one SDPA per segment)
  flex          torch.compile(flex_attention) with a document mask (block mask built outside the timing)
  xformers      memory_efficient_attention with BlockDiagonal(Causal)Mask
  torch_varlen  torch.nn.attention.varlen.varlen_attn (FlashAttention inside PyTorch)
  reference     unist.kernels varlen_attention_reference (dense math, small packs only)

Shape families: `dense` (equal segments of 512..16k tokens, 16k tokens in all) and `hetero`
(`patcher_like_lengths`: a seeded mix of 8..2000-token segments like the patcher's output).
FLOPs: forward 4 * sum(L_i^2) * D * H (halved when causal), backward 2.5x forward.

  python benchmarks/bench_attention.py            # GPU, bf16, full table
  python benchmarks/bench_attention.py --quick    # CPU smoke test (< 60 s): tiny shapes, fp32

Writes benchmarks/results/attention_<device>.csv (rows keyed by device + git commit) and a PNG plot.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before the first `import triton` (see kernels/varlen_attention.py)

from unist.kernels import BackendUnavailable, varlen_attention, varlen_attention_reference  # noqa: E402
from unist.kernels.backends import torch_varlen, xformers_varlen  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"


# ---------------------------------------------------------------- shapes


def patcher_like_lengths(total_tokens: int, seed: int, min_len: int = 8, max_len: int = 2000) -> list[int]:
    """Segment lengths summing to total_tokens, mimicking the patcher on a mixed batch (for max_len 2000):
    60% small (graphs, small grids: log-uniform 8..125), 30% medium (125..1000), 10% large (1000..2000)."""
    g = torch.Generator().manual_seed(seed)
    bands = [(min_len, max_len // 16), (max_len // 16, max_len // 2), (max_len // 2, max_len)]
    lengths, left = [], total_tokens
    while left > 0:
        band = bands[int(torch.multinomial(torch.tensor([0.6, 0.3, 0.1]), 1, generator=g))]
        lo, hi = math.log(band[0]), math.log(band[1])
        n = int(math.exp(lo + (hi - lo) * torch.rand(1, generator=g).item()))
        n = min(n, left)
        lengths.append(n)
        left -= n
    return lengths


@dataclass(frozen=True)
class Shape:
    family: str
    lengths: tuple[int, ...]
    heads: int
    head_dim: int
    causal: bool

    @property
    def label(self) -> str:
        if self.family == "dense":
            return f"dense {self.lengths[0]}x{len(self.lengths)}"
        return f"hetero n={len(self.lengths)} max={max(self.lengths)}"

    def fwd_flops(self) -> float:
        flops = 4.0 * sum(n * n for n in self.lengths) * self.head_dim * self.heads
        return flops / 2 if self.causal else flops


def shapes(quick: bool) -> list[Shape]:
    if quick:
        dims, total, dense_lens, max_len, heads_of = (32,), 256, (64,), 128, (lambda d: 2)
    else:
        dims, total, dense_lens, max_len = (64, 128), 16384, (512, 1024, 2048, 4096, 8192, 16384), 2000
        heads_of = lambda d: 2048 // d  # noqa: E731  (model width 2048, as in the FlashAttention benchmarks)
    out = []
    for d in dims:
        for causal in (False, True):
            for n in dense_lens:
                out.append(Shape("dense", (n,) * (total // n), heads_of(d), d, causal))
            lengths = patcher_like_lengths(total, seed=0, max_len=max_len)
            out.append(Shape("hetero", tuple(lengths), heads_of(d), d, causal))
    return out


# ---------------------------------------------------------------- methods


def sdpa_padded(q, k, v, cu_seqlens, causal):
    """The padded baseline: (T, H, D) -> (B, H, max_len, D), SDPA with a key-padding mask, then unpad."""
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()
    batch, max_len = len(lengths), max(lengths)
    seg = torch.repeat_interleave(torch.arange(batch, device=q.device), torch.tensor(lengths, device=q.device))
    pos = torch.arange(q.shape[0], device=q.device) - cu_seqlens[:-1].long()[seg]

    def pad(x):
        out = x.new_zeros(batch, max_len, *x.shape[1:])
        out[seg, pos] = x
        return out.transpose(1, 2)  # (B, H, max_len, D)

    if len(set(lengths)) == 1:  # equal lengths: no mask, the flash kernel can run
        o = F.scaled_dot_product_attention(pad(q), pad(k), pad(v), is_causal=causal)
    else:
        keep = torch.arange(max_len, device=q.device)[None, :] < torch.tensor(lengths, device=q.device)[:, None]
        mask = keep[:, None, None, :]  # (B, 1, 1, max_len)
        if causal:
            mask = mask & torch.ones(max_len, max_len, dtype=torch.bool, device=q.device).tril()
        o = F.scaled_dot_product_attention(pad(q), pad(k), pad(v), attn_mask=mask)
    return o.transpose(1, 2)[seg, pos]


def make_flex(q, cu_seqlens, causal):
    """Compiled flex_attention with the pack's document mask (the block mask is built here, untimed)."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    from unist.kernels.reference import segment_ids

    if not q.is_cuda:
        raise BackendUnavailable("flex: no backward on CPU and compiled flex is slow to build there")
    seg, pos = segment_ids(cu_seqlens, q.shape[0])

    def document_mask(b, h, q_idx, kv_idx):
        same = seg[q_idx] == seg[kv_idx]
        return same & (pos[q_idx] >= pos[kv_idx]) if causal else same

    block_mask = create_block_mask(document_mask, None, None, q.shape[0], q.shape[0], device=q.device)
    flex = torch.compile(flex_attention, dynamic=False)

    def run(q, k, v, cu_seqlens, causal):
        o = flex(q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None], block_mask=block_mask)
        return o[0].transpose(0, 1)

    return run


def methods(quick: bool) -> dict[str, Callable]:
    """name -> factory(q, cu_seqlens, causal) -> fn(q, k, v, cu_seqlens, causal)."""
    ours = lambda backend: lambda q, cu, c: lambda q, k, v, cu, c: varlen_attention(q, k, v, cu, causal=c, backend=backend)  # noqa: E731
    table = {
        "triton": ours("triton"),
        "sdpa_padded": lambda q, cu, c: sdpa_padded,
        "sdpa_varlen": ours("sdpa"),
        "flex": make_flex,
        "xformers": lambda q, cu, c: lambda q, k, v, cu, c: xformers_varlen(q, k, v, cu, c),
        "torch_varlen": lambda q, cu, c: lambda q, k, v, cu, c: torch_varlen(q, k, v, cu, c),
    }
    if quick:
        table["reference"] = lambda q, cu, c: lambda q, k, v, cu, c: varlen_attention_reference(q, k, v, cu, causal=c)
    return table


# ---------------------------------------------------------------- timing


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_ms(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    """Wall time of fn in ms: median of CUDA-event timings, or the minimum on CPU (shared, noisy machines)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[len(times) // 2] if device.type == "cuda" else min(times)


@dataclass
class Row:
    device: str
    commit: str
    family: str
    shape: str
    method: str
    dtype: str
    causal: bool
    heads: int
    head_dim: int
    total_tokens: int
    num_segments: int
    max_seqlen: int
    fwd_ms: float | str = "n/a"
    bwd_ms: float | str = "n/a"
    fwdbwd_ms: float | str = "n/a"
    fwd_tflops: float | str = "n/a"
    bwd_tflops: float | str = "n/a"
    fwdbwd_tflops: float | str = "n/a"
    peak_mem_mb: float | str = "n/a"
    max_abs_diff_vs_triton: float | str = "n/a"
    note: str = ""


def bench_one(shape: Shape, name: str, factory, dtype, device, warmup, repeats, base_row: dict, triton_out):
    row = Row(method=name, **base_row)
    total = sum(shape.lengths)
    g = torch.Generator(device="cpu").manual_seed(0)
    q, k, v, dout = (torch.randn(total, shape.heads, shape.head_dim, generator=g).to(device, dtype) for _ in range(4))
    q, k, v = (x.requires_grad_() for x in (q, k, v))
    cu = torch.zeros(len(shape.lengths) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(shape.lengths), 0)
    cu = cu.to(device)
    try:
        fn = factory(q, cu, shape.causal)
        out = fn(q, k, v, cu, shape.causal)
        if triton_out is not None:
            row.max_abs_diff_vs_triton = float((out.float() - triton_out.float()).abs().max())
        row.fwd_ms = time_ms(lambda: fn(q, k, v, cu, shape.causal), device, warmup, repeats)
        try:
            out = fn(q, k, v, cu, shape.causal)
            row.bwd_ms = time_ms(lambda: torch.autograd.grad(out, (q, k, v), dout, retain_graph=True), device, warmup, repeats)

            def fwd_bwd():
                torch.autograd.grad(fn(q, k, v, cu, shape.causal), (q, k, v), dout)

            if device.type == "cuda":
                del out
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
                fwd_bwd()
                row.peak_mem_mb = round((torch.cuda.max_memory_allocated() - base) / 2**20, 1)
            row.fwdbwd_ms = time_ms(fwd_bwd, device, warmup, repeats)
        except (BackendUnavailable, NotImplementedError, RuntimeError) as e:
            row.note = f"backward: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
    except (BackendUnavailable, NotImplementedError, RuntimeError, ValueError, ImportError) as e:
        row.note = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
        if "out of memory" in str(e) and device.type == "cuda":
            torch.cuda.empty_cache()
        return row, None
    f = shape.fwd_flops()
    for attr, flops in (("fwd", f), ("bwd", 2.5 * f), ("fwdbwd", 3.5 * f)):
        ms = getattr(row, f"{attr}_ms")
        if isinstance(ms, float):
            setattr(row, f"{attr}_ms", round(ms, 4))
            setattr(row, f"{attr}_tflops", round(flops / (ms * 1e-3) / 1e12, 4))
    return row, out.detach() if name == "triton" else None


# ---------------------------------------------------------------- output


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip() or "uncommitted"
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "uncommitted"


def write_csv(rows: list[Row], path: Path) -> None:
    """Append rows; rows of the same device + commit from an earlier run are replaced."""
    names = [f.name for f in fields(Row)]
    kept = []
    if path.exists():
        with path.open() as fh:
            kept = [r for r in csv.DictReader(fh) if (r["device"], r["commit"]) != (rows[0].device, rows[0].commit)]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=names)
        writer.writeheader()
        writer.writerows(kept + [asdict(r) for r in rows])


def plot(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r.head_dim, r.causal) for r in rows})
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for ax, (d, causal) in zip(axes[0], panels):
        sub = [r for r in rows if r.head_dim == d and r.causal == causal]
        labels = list(dict.fromkeys(r.shape for r in sub))
        for method in dict.fromkeys(r.method for r in sub):
            ys = [next((r.fwdbwd_tflops for r in sub if r.shape == s and r.method == method), "n/a") for s in labels]
            ys = [y if isinstance(y, float) else float("nan") for y in ys]
            ax.plot(range(len(labels)), ys, marker="o", label=method)
        ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=7)
        ax.set_title(f"head_dim {d}, {'causal' if causal else 'full'}")
        ax.set_ylabel("fwd+bwd TFLOP/s")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"varlen attention on {rows[0].device} ({rows[0].dtype}, commit {rows[0].commit})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def print_table(rows: list[Row]) -> None:
    cols = ["shape", "method", "causal", "head_dim", "fwd_ms", "bwd_ms", "fwdbwd_ms", "fwdbwd_tflops", "peak_mem_mb",
            "max_abs_diff_vs_triton", "note"]
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(getattr(r, c)) for c in cols))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny fp32 shapes, runs on CPU in < 60 s")
    parser.add_argument("--dtype", default=None, choices=["bf16", "fp16", "fp32"], help="default bf16 (fp32 with --quick)")
    parser.add_argument("--methods", default=None, help="comma-separated subset of methods")
    parser.add_argument("--family", default=None, choices=["dense", "hetero"], help="only this shape family")
    parser.add_argument("--head-dim", type=int, default=None, help="only this head dim")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() and not args.quick else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(1)  # on a shared box a 2-thread op stalls whenever one thread is descheduled
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype or ("fp32" if args.quick else "bf16")]
    warmup, repeats = (1, args.repeats or 5) if args.quick else (3, args.repeats or 10)
    device_name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    device_tag = device_name.replace(" ", "_").replace("/", "_")
    table = methods(args.quick)
    if args.methods:
        table = {m: table[m] for m in args.methods.split(",")}
    rows = []
    for shape in shapes(args.quick):
        if (args.family and shape.family != args.family) or (args.head_dim and shape.head_dim != args.head_dim):
            continue
        base = dict(device=device_name, commit=git_commit(), family=shape.family, shape=shape.label,
                    dtype=str(dtype).removeprefix("torch."), causal=shape.causal, heads=shape.heads,
                    head_dim=shape.head_dim, total_tokens=sum(shape.lengths), num_segments=len(shape.lengths),
                    max_seqlen=max(shape.lengths))
        triton_out = None
        for name, factory in table.items():
            interpreted = name == "triton" and device.type == "cpu"  # ~1 s a call: time it once
            row, out = bench_one(shape, name, factory, dtype, device, warmup, 1 if interpreted else repeats, base,
                                 triton_out)
            triton_out = out if out is not None else triton_out
            rows.append(row)
            print(f"{row.shape:>28} {row.method:>12} causal={row.causal!s:5} d={row.head_dim:3} "
                  f"fwd+bwd {row.fwdbwd_ms} ms {row.fwdbwd_tflops} TFLOP/s  mem {row.peak_mem_mb} MB {row.note}",
                  flush=True)
    if not rows:
        sys.exit("no shape matched the filters")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = args.out_dir / f"attention_{device_tag}.csv"
    write_csv(rows, csv_path)
    plot(rows, args.out_dir / f"attention_{device_tag}.png")
    print_table(rows)
    print(f"wrote {csv_path} and {csv_path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
