"""Benchmark packed variable-length attention: our kernels against the field, on real pack shapes.

Methods (each only where it runs; otherwise its row says why, status 'n/a'):
  unist_triton         varlen_attention(backend='triton'): our Triton FlashAttention-2 kernel (CUDA;
                       on CPU interpreted, so only its error is meaningful there)
  unist_sdpa           varlen_attention(backend='sdpa'): segments bucketed by length, one padded SDPA
                       call per bucket (the CPU default)
  sdpa_per_segment     one SDPA call per segment (what the sdpa backend did before bucketing)
  sdpa_flash/_cudnn/_efficient   SDPA pinned to one kernel with torch.nn.attention.sdpa_kernel, on
                       the (B, L) view of equal lengths (dense shapes only: these kernels take no
                       varlen layout, and flash takes no mask)
  sdpa_padded          pad every segment to the longest, one SDPA with a key-padding mask (pad and
                       unpad timed), efficient/cuDNN/math kernels allowed
  flex_document        torch.compile(flex_attention) with a document mask (CUDA; the block-mask build
                       time is the separate column mask_build_ms, not in the timings)
  torch_varlen / flash_attn_varlen / xformers   torch.nn.attention.varlen, flash_attn_varlen_func,
                       xformers BlockDiagonalMask, where installed
  reference            unist varlen_attention_reference, dense masked math (CPU smoke mode, T <= 1024)

Shapes: `dense` (equal segments), `curve` (fixed total tokens as 1, 4, 16, 64, 256 segments: cost
per unit of sum(len^2) should not grow with the segment count), `hetero` (a seeded patcher-like mix)
and `stream` (the packs the model's attention layers really see: cu_seqlens recorded from
unist.train.data_mix micro-batches of the tiny/small/base presets, saved in
benchmarks/results/attention_stream_packs.json by --save-packs, with each model's heads and head dim).

FLOPs (columns fwd_flops, *_tflops; formula also in the CSV column flop_formula):
  forward  F = 4 * sum(len_i^2) * H * D   (halved when causal);  backward 2.5 F;  fwd+bwd 3.5 F.
Errors err_out / err_dq: max |x - ref| of the output and dq against textbook attention computed per
segment in fp32 on GPU (fp64 on CPU) with explicit matmuls and softmax (`math_reference`: no
benchmarked kernel is involved), never against the Triton output.
Budget: after --budget-s seconds every remaining row is written with status 'skipped (budget)'.

  python benchmarks/bench_attention.py                       # GPU: bf16, full table
  python benchmarks/bench_attention.py --smoke               # CPU smoke mode (< 2 min): fp32, small shapes
  python benchmarks/bench_attention.py --save-packs          # record stream packs (needs UNIST_DATA_DIR)
  python benchmarks/bench_attention.py --tune-buckets        # CPU: the sdpa backend's bucketing constants

Writes benchmarks/results/attention_<device>.csv (or --out-dir): rows keyed by device name + git
commit (a rerun at the same commit replaces that device's rows).
"""
from __future__ import annotations

import argparse
import csv
import importlib
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before the first `import triton` (see kernels/env.py)

from unist.kernels import BackendUnavailable, varlen_attention, varlen_attention_reference  # noqa: E402
from unist.kernels.backends import torch_varlen, xformers_varlen  # noqa: E402
from unist.kernels.reference import segment_ids  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PACKS_FILE = RESULTS_DIR / "attention_stream_packs.json"
FLOP_FORMULA = "fwd=4*sum(len^2)*H*D (/2 causal); bwd=2.5*fwd; fwdbwd=3.5*fwd"
Fn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, bool], torch.Tensor]


# ---------------------------------------------------------------- shapes


@dataclass(frozen=True)
class Shape:
    family: str
    label: str
    lengths: tuple[int, ...]
    heads: int
    head_dim: int
    causal: bool = False

    @property
    def sum_len2(self) -> int:
        return sum(n * n for n in self.lengths)

    def fwd_flops(self) -> float:
        flops = 4.0 * self.sum_len2 * self.heads * self.head_dim
        return flops / 2 if self.causal else flops


def patcher_like_lengths(total_tokens: int, seed: int, min_len: int = 8, max_len: int = 2000) -> list[int]:
    """Segment lengths summing to total_tokens, a seeded mix like the patcher's on mixed data:
    60% small (log-uniform min_len..max_len/16), 30% medium (..max_len/2), 10% large (..max_len)."""
    g = torch.Generator().manual_seed(seed)
    bands = [(min_len, max_len // 16), (max_len // 16, max_len // 2), (max_len // 2, max_len)]
    lengths, left = [], total_tokens
    while left > 0:
        lo, hi = bands[int(torch.multinomial(torch.tensor([0.6, 0.3, 0.1]), 1, generator=g))]
        n = min(left, int(math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * torch.rand(1, generator=g).item())))
        lengths.append(n)
        left -= n
    return lengths


def load_stream_packs(path: Path) -> list[dict]:
    """The saved stream packs (see `save_stream_packs`), or [] when the file is missing."""
    if not path.exists():
        print(f"note: {path} missing: no stream shapes (make it with --save-packs where the data is)")
        return []
    return json.loads(path.read_text())["packs"]


def stream_shapes(packs: list[dict], presets: tuple[str, ...]) -> list[Shape]:
    """The first micro-batch's packs of each preset (encoder, decoder, second contrastive view)."""
    return [Shape("stream", f"{p['preset']} {p['role']} T={p['tokens']} n={len(p['lengths'])}", tuple(p["lengths"]),
                  p["heads"], p["head_dim"]) for p in packs if p["preset"] in presets and p["batch"] == 0]


def shapes(smoke: bool, packs: list[dict], head_dims: tuple[int, ...] | None) -> list[Shape]:
    """Stream packs first (what training runs), then dense, hetero and the segment-count curve: with a
    --budget-s the most telling rows come first."""
    out: list[Shape] = []
    if smoke:
        out += stream_shapes(packs, ("tiny",))
        curve_total, curve_hd, heads = 4096, (32,), 4
        dense = [(d, n, 2048 // n, 4) for d in (32,) for n in (256, 2048)]
        hetero = [(32, patcher_like_lengths(1024, seed=0, max_len=256), 4)]
    else:
        out += stream_shapes(packs, ("small", "base"))
        curve_total, curve_hd, heads = 16384, (32, 64), None
        dense = [(d, n, 16384 // n, 1024 // d) for d in (32, 64, 128) for n in (1024, 4096)]
        hetero = [(d, patcher_like_lengths(16384, seed=0), 1024 // d) for d in (32, 64)]
    for d, n, count, h in dense:
        out.append(Shape("dense", f"dense {count}x{n}", (n,) * count, h, d))
    out.append(Shape("dense", f"dense {dense[-1][2]}x{dense[-1][1]} causal", (dense[-1][1],) * dense[-1][2],
                     dense[-1][3], dense[-1][0], causal=True))
    for d, lengths, h in hetero:
        out.append(Shape("hetero", f"patcher-like n={len(lengths)} max={max(lengths)}", tuple(lengths), h, d))
    for d in curve_hd:
        h = heads or 1024 // d
        for segments in (1, 4, 16, 64, 256):
            n = curve_total // segments
            out.append(Shape("curve", f"{curve_total} tokens as {segments}x{n}", (n,) * segments, h, d))
    if head_dims:
        out = [s for s in out if s.head_dim in head_dims]
    return out


def save_stream_packs(path: Path, presets: tuple[str, ...], batches: int) -> None:
    """Record the cu_seqlens every attention layer of the model sees on real micro-batches of `presets`.

    A forward pre-hook on each Attention module captures (cu_seqlens, heads, head_dim) while the model
    runs its training forward (masking, so the encoder sees the visible tokens only); one entry per
    distinct pack (encoder, decoder, ...), per micro-batch.
    """
    from unist.model import create_model
    from unist.model.blocks import Attention
    from unist.objectives import Pretrainer
    from unist.train.config import load_config
    from unist.train.data_mix import Mixture, build_sources

    packs = []
    for preset in presets:
        cfg = load_config(preset)
        torch.manual_seed(0)
        model = create_model(cfg.model.name).train()
        objective = Pretrainer(model)  # the training forward: masks, both contrastive views, decoder
        mix = Mixture(build_sources(cfg.data, 0), cfg.data, model.config.patch, 0)
        seen: dict[tuple, str] = {}  # (lengths, heads, head_dim) -> role, for the current micro-batch

        def hook(module, args):
            x, cu, _ = args
            key = (tuple(torch.diff(cu.long()).tolist()), module.heads, module.head_dim)
            if key not in seen:
                roles = list(seen.values())
                seen[key] = module.role if module.role not in roles else f"{module.role}_view{roles.count(module.role) + 1}"

        for name, m in model.named_modules():
            if isinstance(m, Attention):
                m.role = name.split(".")[0]  # encoder / decoder / ...
                m.register_forward_pre_hook(hook)
        for j in range(batches):
            batch, _ = mix.batch(0, j)
            seen.clear()
            with torch.no_grad():
                objective(batch)
            for (lengths, heads, head_dim), role in seen.items():
                packs.append(dict(preset=preset, model=cfg.model.name, batch=j, role=role, heads=heads,
                                  head_dim=head_dim, tokens=sum(lengths), lengths=list(lengths)))
                print(f"{preset:>6} batch {j} {role:>14} heads={heads} head_dim={head_dim} tokens={sum(lengths)} "
                      f"segments={len(lengths)} max={max(lengths)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"source": "bench_attention.py --save-packs", "commit": git_commit(),
                                "batches_per_preset": batches, "packs": packs}))
    print(f"wrote {path} ({len(packs)} packs)")


# ---------------------------------------------------------------- methods


def ours(backend: str) -> Fn:
    return lambda q, k, v, cu, c: varlen_attention(q, k, v, cu, causal=c, backend=backend)


def sdpa_per_segment(q, k, v, cu, causal):
    """The old sdpa backend: one SDPA call per segment (a fixed cost per segment)."""
    outs = []
    bounds = cu.tolist()
    for a, b in zip(bounds[:-1], bounds[1:]):
        if b > a:
            f = lambda x: x[a:b].transpose(0, 1)[None]  # noqa: E731  (1, H, L, D)
            outs.append(F.scaled_dot_product_attention(f(q), f(k), f(v), is_causal=causal)[0].transpose(0, 1))
    return torch.cat(outs)


def pinned_dense(backend_name: str, lengths: tuple[int, ...], device: torch.device) -> Fn:
    """SDPA pinned to one kernel on the (B, L) view of equal-length segments."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if len(set(lengths)) != 1:
        raise BackendUnavailable("pinned SDPA kernels take no varlen layout: dense shapes only")
    if device.type != "cuda" and backend_name != "FLASH_ATTENTION":
        raise BackendUnavailable(f"SDPA {backend_name} is a CUDA kernel")
    backend = getattr(SDPBackend, backend_name)
    count, n = len(lengths), lengths[0]

    def run(q, k, v, cu, causal):
        f = lambda x: x.view(count, n, *x.shape[1:]).transpose(1, 2)  # noqa: E731  (B, H, L, D)
        with sdpa_kernel([backend]):
            o = F.scaled_dot_product_attention(f(q), f(k), f(v), is_causal=causal)
        return o.transpose(1, 2).reshape(q.shape)

    return run


def sdpa_padded(lengths: tuple[int, ...], device: torch.device) -> Fn:
    """Pad every segment to the longest, one masked SDPA call, unpad (pad/unpad inside the timing)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    lens = torch.tensor(lengths, device=device)
    count, longest = len(lengths), max(lengths)
    seg = torch.repeat_interleave(torch.arange(count, device=device), lens)  # (T,)
    pos = torch.arange(sum(lengths), device=device) - (torch.cumsum(lens, 0) - lens)[seg]  # (T,)
    keep = (torch.arange(longest, device=device)[None, :] < lens[:, None])[:, None, None, :]  # (B, 1, 1, Lmax)
    kernels = [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.MATH]
    if device.type == "cpu":
        kernels = [SDPBackend.FLASH_ATTENTION, SDPBackend.MATH]  # the CPU flash kernel takes masks

    def run(q, k, v, cu, causal):
        def pad(x):
            out = x.new_zeros(count, longest, *x.shape[1:])
            out[seg, pos] = x
            return out.transpose(1, 2)  # (B, H, Lmax, D)
        mask = keep & torch.ones(longest, longest, dtype=torch.bool, device=device).tril() if causal else keep
        with sdpa_kernel(kernels):
            o = F.scaled_dot_product_attention(pad(q), pad(k), pad(v), attn_mask=mask)
        return o.transpose(1, 2)[seg, pos]

    return run


def flex_document(shape: Shape, cu: torch.Tensor, device: torch.device) -> tuple[Fn, float]:
    """Compiled flex_attention with the pack's document mask; returns (fn, block-mask build ms)."""
    if device.type != "cuda":
        raise BackendUnavailable("flex: no backward on CPU (and compiled flex is slow to build there)")
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    total = sum(shape.lengths)
    seg, pos = segment_ids(cu, total)

    def document(b, h, qi, ki):
        same = seg[qi] == seg[ki]
        return same & (pos[qi] >= pos[ki]) if shape.causal else same

    torch.cuda.synchronize()
    t0 = time.perf_counter()
    block_mask = create_block_mask(document, None, None, total, total, device=device)
    torch.cuda.synchronize()
    build_ms = (time.perf_counter() - t0) * 1e3
    torch._dynamo.reset()  # one compile per shape: stay clear of dynamo's recompile limit (then it runs eager)
    flex = torch.compile(flex_attention, dynamic=False)

    def run(q, k, v, cu, causal):
        f = lambda x: x.transpose(0, 1)[None]  # noqa: E731  (1, H, T, D)
        return flex(f(q), f(k), f(v), block_mask=block_mask)[0].transpose(0, 1)

    return run, build_ms


def flash_attn_varlen(shape: Shape) -> Fn:
    if importlib.util.find_spec("flash_attn") is None:
        raise BackendUnavailable("flash_attn is not installed")
    from flash_attn import flash_attn_varlen_func

    longest = max(shape.lengths)
    return lambda q, k, v, cu, c: flash_attn_varlen_func(q, k, v, cu, cu, longest, longest, causal=c)


def method_table(smoke: bool) -> dict[str, Callable[[Shape, torch.Tensor, torch.device], Fn]]:
    """name -> factory(shape, cu_seqlens, device) -> fn(q, k, v, cu, causal). Flex is last (slow to build)."""
    table: dict[str, Callable] = {
        "unist_triton": lambda s, cu, dev: ours("triton"),
        "unist_sdpa": lambda s, cu, dev: ours("sdpa"),
        "sdpa_per_segment": lambda s, cu, dev: sdpa_per_segment,
        "sdpa_flash": lambda s, cu, dev: pinned_dense("FLASH_ATTENTION", s.lengths, dev),
        "sdpa_cudnn": lambda s, cu, dev: pinned_dense("CUDNN_ATTENTION", s.lengths, dev),
        "sdpa_efficient": lambda s, cu, dev: pinned_dense("EFFICIENT_ATTENTION", s.lengths, dev),
        "sdpa_padded": lambda s, cu, dev: sdpa_padded(s.lengths, dev),
        "torch_varlen": lambda s, cu, dev: lambda q, k, v, cu, c: torch_varlen(q, k, v, cu, c, max_seqlen=max(s.lengths)),
        "flash_attn_varlen": lambda s, cu, dev: flash_attn_varlen(s),
        "xformers": lambda s, cu, dev: lambda q, k, v, cu, c: xformers_varlen(q, k, v, cu, c),
        "flex_document": None,  # built by flex_document (returns the mask build time too)
    }
    if smoke:
        table["reference"] = lambda s, cu, dev: lambda q, k, v, cu, c: varlen_attention_reference(q, k, v, cu, causal=c)
    return table


# ---------------------------------------------------------------- timing and rows


def time_ms(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    """Median of CUDA-event timings on GPU; the minimum of perf_counter timings on CPU (shared, noisy)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
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
    torch: str
    triton: str
    dtype: str
    family: str
    shape: str
    method: str
    causal: bool
    heads: int
    head_dim: int
    tokens: int
    segments: int
    max_len: int
    sum_len2: int
    fwd_flops: float
    status: str = "ok"
    fwd_ms: float | str = ""
    bwd_ms: float | str = ""
    fwdbwd_ms: float | str = ""
    fwd_tflops: float | str = ""
    bwd_tflops: float | str = ""
    fwdbwd_tflops: float | str = ""
    fwdbwd_ms_per_mlen2: float | str = ""  # fwd+bwd ms per million units of sum(len^2)
    err_out: float | str = ""
    err_dq: float | str = ""
    mask_build_ms: float | str = ""
    peak_mem_mb: float | str = ""
    note: str = ""
    flop_formula: str = FLOP_FORMULA


@dataclass
class Inputs:
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    dout: torch.Tensor
    cu: torch.Tensor
    ref_out: torch.Tensor | None = None
    ref_dq: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)


def make_inputs(shape: Shape, dtype: torch.dtype, device: torch.device) -> Inputs:
    """Seeded q, k, v, dout (T, H, D) and cu_seqlens; fp32 reference out and dq (see module docstring)."""
    total = sum(shape.lengths)
    g = torch.Generator(device="cpu").manual_seed(0)
    q, k, v, dout = (torch.randn(total, shape.heads, shape.head_dim, generator=g).to(device, dtype) for _ in range(4))
    cu = torch.zeros(len(shape.lengths) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(shape.lengths), 0)
    inputs = Inputs(*(x.requires_grad_() for x in (q, k, v)), dout, cu.to(device))
    inputs.ref_out, inputs.ref_dq = math_reference(q, k, v, dout, shape)
    return inputs


def math_reference(q, k, v, dout, shape: Shape, chunk_bytes: float = 2**30) -> tuple[torch.Tensor, torch.Tensor]:
    """Textbook attention per segment and per group of heads: out and dq (T, H, D), fp32 on GPU, fp64 on CPU.

    Independent of every benchmarked kernel (explicit q k^T, softmax, p v, autograd for dq); heads are
    taken a few at a time so a (heads, L, L) score block stays under `chunk_bytes`.
    """
    dt = torch.float64 if q.device.type == "cpu" else torch.float32
    scale = 1.0 / math.sqrt(shape.head_dim)
    out, dq = torch.empty(q.shape, dtype=dt, device=q.device), torch.empty(q.shape, dtype=dt, device=q.device)
    start = 0
    for n in shape.lengths:
        if n == 0:
            continue
        step = max(1, int(chunk_bytes // (3 * n * n * torch.finfo(dt).bits // 8)))
        for h0 in range(0, shape.heads, step):
            sl = (slice(start, start + n), slice(h0, h0 + step))
            qs, ks, vs = (x[sl].detach().to(dt).transpose(0, 1) for x in (q, k, v))  # (h, L, D)
            qs.requires_grad_()
            scores = qs @ ks.transpose(1, 2) * scale  # (h, L, L)
            if shape.causal:
                scores = scores.masked_fill(~torch.ones(n, n, dtype=torch.bool, device=q.device).tril(), float("-inf"))
            o = scores.softmax(-1) @ vs  # (h, L, D)
            (g,) = torch.autograd.grad(o, qs, dout[sl].to(dt).transpose(0, 1))
            out[sl], dq[sl] = o.detach().transpose(0, 1), g.transpose(0, 1)
        start += n
    return out, dq


def bench_row(shape: Shape, name: str, factory, inputs: Inputs, device: torch.device, warmup: int, repeats: int,
              row: Row) -> Row:
    q, k, v, dout, cu = inputs.q, inputs.k, inputs.v, inputs.dout, inputs.cu
    causal = shape.causal
    try:
        if name == "flex_document":
            fn, build_ms = flex_document(shape, cu, device)
            row.mask_build_ms = round(build_ms, 3)
        else:
            fn = factory(shape, cu, device)
        out = fn(q, k, v, cu, causal)
        (dq,) = torch.autograd.grad(out, q, dout, retain_graph=True)
        row.err_out = float(f"{(out.to(inputs.ref_out.dtype) - inputs.ref_out).abs().max().item():.3g}")
        row.err_dq = float(f"{(dq.to(inputs.ref_dq.dtype) - inputs.ref_dq).abs().max().item():.3g}")
        row.fwd_ms = time_ms(lambda: fn(q, k, v, cu, causal), device, warmup, repeats)
        row.bwd_ms = time_ms(lambda: torch.autograd.grad(out, (q, k, v), dout, retain_graph=True), device, warmup,
                             repeats)
        out = dq = None  # free them before the fwd+bwd timing

        def fwd_bwd():
            torch.autograd.grad(fn(q, k, v, cu, causal), (q, k, v), dout)

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            fwd_bwd()
            row.peak_mem_mb = round((torch.cuda.max_memory_allocated() - base) / 2**20, 1)
        row.fwdbwd_ms = time_ms(fwd_bwd, device, warmup, repeats)
    except (BackendUnavailable, ImportError) as e:
        row.status, row.note = "n/a", f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
        return row
    except (RuntimeError, ValueError, NotImplementedError, TypeError) as e:
        row.status, row.note = "error", f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return row
    f = shape.fwd_flops()
    for key, flops in (("fwd", f), ("bwd", 2.5 * f), ("fwdbwd", 3.5 * f)):
        ms = getattr(row, f"{key}_ms")
        setattr(row, f"{key}_ms", round(ms, 4))
        setattr(row, f"{key}_tflops", round(flops / (ms * 1e-3) / 1e12, 4))
    row.fwdbwd_ms_per_mlen2 = round(row.fwdbwd_ms / (shape.sum_len2 / 1e6), 4)
    return row


def tune_buckets(packs: list[dict]) -> None:
    """fwd+bwd ms of the sdpa backend (CPU, fp32) per (PAD_RATIO, MIN_CALL_WORK) choice, on the tiny preset's
    stream packs and three synthetic packs: the measurement behind the constants in kernels/backends.py."""
    from unist.kernels import backends

    choices = [(1.0, 0), (1.1, 0), (1.25, 0), (1.25, 2**18), (1.5, 2**19), (1.5, 2**21)]
    cases = [(f"tiny {p['role']}", p["lengths"], p["heads"], p["head_dim"]) for p in packs
             if p["preset"] == "tiny" and p["batch"] == 0]
    cases += [("64x64", [64] * 64, 4, 32), ("256x16", [16] * 256, 4, 32),
              ("mixed n=30", [7, 190, 33, 64, 12, 100, 150, 8, 9, 45] * 3, 4, 32)]
    saved = backends.PAD_RATIO, backends.MIN_CALL_WORK
    print("pack | " + " | ".join(f"ratio {r} slack 2^{int(math.log2(w)) if w else '-'}" for r, w in choices))
    try:
        for label, lengths, heads, head_dim in cases:
            shape = Shape("tune", label, tuple(lengths), heads, head_dim)
            inputs = make_inputs(shape, torch.float32, torch.device("cpu"))
            cells = []
            for ratio, work in choices:
                backends.PAD_RATIO, backends.MIN_CALL_WORK = ratio, work
                backends._PLANS.clear()
                groups = len(backends.group_lengths(list(lengths), heads * head_dim))

                def fwd_bwd():
                    out = varlen_attention(inputs.q, inputs.k, inputs.v, inputs.cu, backend="sdpa")
                    torch.autograd.grad(out, (inputs.q, inputs.k, inputs.v), inputs.dout)

                cells.append(f"{time_ms(fwd_bwd, torch.device('cpu'), 3, 15):.2f} ms ({groups} calls)")
            print(f"{label} | " + " | ".join(cells), flush=True)
    finally:
        backends.PAD_RATIO, backends.MIN_CALL_WORK = saved
        backends._PLANS.clear()


# ---------------------------------------------------------------- output


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


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def write_csv(rows: list[Row], path: Path) -> None:
    """Rows of the same device + commit from an earlier run are replaced; other rows are kept."""
    names = [f.name for f in fields(Row)]
    kept = []
    if path.exists():
        with path.open() as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames == names:  # an older layout is dropped rather than mixed in
                kept = [r for r in reader if (r["device"], r["commit"]) != (rows[0].device, rows[0].commit)]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=names)
        writer.writeheader()
        writer.writerows(kept + [asdict(r) for r in rows])


def print_row(r: Row) -> None:
    print(f"{r.shape:>34} d={r.head_dim:<3} {r.method:>17} {r.status:>16} fwd {r.fwd_ms!s:>9} bwd {r.bwd_ms!s:>9} "
          f"fwd+bwd {r.fwdbwd_ms!s:>9} ms {r.fwdbwd_tflops!s:>8} TF/s {r.fwdbwd_ms_per_mlen2!s:>8} ms/Mlen2 "
          f"err {r.err_out!s:>8}/{r.err_dq!s:<8} {r.note}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", "--quick", action="store_true", help="CPU smoke mode: small fp32 shapes (< 2 min)")
    parser.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default=None, help="default bf16 (smoke: fp32)")
    parser.add_argument("--methods", default=None, help="comma-separated subset of the methods")
    parser.add_argument("--family", default=None, help="comma-separated subset of stream,curve,dense,hetero")
    parser.add_argument("--head-dims", default=None, help="only these head dims, e.g. 32,64")
    parser.add_argument("--budget-s", type=float, default=0.0, help="stop timing after this many seconds (0 = none)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per figure (default 10; smoke 3)")
    parser.add_argument("--flex-all", action="store_true", help="FlexAttention on every shape, not only stream/hetero")
    parser.add_argument("--packs", type=Path, default=PACKS_FILE, help="saved stream packs (JSON)")
    parser.add_argument("--save-packs", action="store_true", help="record stream packs from the data mixture, exit")
    parser.add_argument("--presets", default="tiny,small,base", help="presets for --save-packs")
    parser.add_argument("--tune-buckets", action="store_true", help="CPU: time the sdpa bucketing constants, exit")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)

    if args.tune_buckets:
        torch.set_num_threads(1)
        tune_buckets(load_stream_packs(args.packs))
        return 0
    if args.save_packs:
        save_stream_packs(args.packs, tuple(args.presets.split(",")), batches=2)
        return 0
    t_start = time.time()
    smoke = args.smoke or not torch.cuda.is_available()
    if smoke and not args.smoke:
        print("no CUDA device: running the CPU smoke mode")
    device = torch.device("cpu" if smoke else "cuda")
    if device.type == "cpu":
        torch.set_num_threads(1)  # on a shared box a 2-thread op stalls whenever one thread is descheduled
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype or ("fp32" if smoke else "bf16")]
    warmup, repeats = (1, args.repeats or 3) if smoke else (3, args.repeats or 10)
    table = method_table(smoke)
    if args.methods:
        unknown = set(args.methods.split(",")) - set(table)
        if unknown:
            sys.exit(f"unknown methods {sorted(unknown)}; choose from {sorted(table)}")
        table = {m: f for m, f in table.items() if m in args.methods.split(",")}
    head_dims = tuple(int(d) for d in args.head_dims.split(",")) if args.head_dims else None
    todo = shapes(smoke, load_stream_packs(args.packs), head_dims)
    if args.family:
        todo = [s for s in todo if s.family in args.family.split(",")]
    if not todo:
        sys.exit("no shape matched the filters")
    versions = {m: getattr(importlib.import_module(m), "__version__", "?") if importlib.util.find_spec(m) else "-"
                for m in ("torch", "triton")}
    base = dict(device=device_name(device), commit=git_commit(), torch=versions["torch"], triton=versions["triton"],
                dtype=str(dtype).removeprefix("torch."))
    print(f"device {base['device']}  commit {base['commit']}  torch {base['torch']}  triton {base['triton']}  "
          f"{base['dtype']}  {len(todo)} shapes x {len(table)} methods  FLOPs: {FLOP_FORMULA}")
    rows: list[Row] = []
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"attention_{base['device'].replace(' ', '_').replace('/', '_')}.csv"
    for shape in todo:
        inputs = None
        for name, factory in table.items():
            row = Row(**base, family=shape.family, shape=shape.label, method=name, causal=shape.causal,
                      heads=shape.heads, head_dim=shape.head_dim, tokens=sum(shape.lengths),
                      segments=len(shape.lengths), max_len=max(shape.lengths), sum_len2=shape.sum_len2,
                      fwd_flops=shape.fwd_flops())
            left = args.budget_s - (time.time() - t_start) if args.budget_s else math.inf
            interpreted = name == "unist_triton" and device.type == "cpu"
            if left <= 0:
                row.status = "skipped (budget)"
            elif name == "flex_document" and device.type == "cuda" and not args.flex_all and shape.family not in (
                    "stream", "hetero"):
                row.status, row.note = "n/a", "flex compiles per shape (~30 s): stream/hetero shapes only (--flex-all)"
            elif name == "flex_document" and left < 45 and device.type == "cuda":
                row.status, row.note = "skipped (budget)", "compiling flex needs ~30 s; under 45 s left"
            elif interpreted and (shape.family not in ("stream", "hetero") or shape.sum_len2 * shape.heads > 2**20):
                row.status, row.note = "n/a", "Triton interpreter on CPU: run on the small stream/hetero shapes only"
            elif name == "reference" and sum(shape.lengths) > 1024:
                row.status, row.note = "n/a", "dense reference: small packs only"
            else:
                inputs = inputs or make_inputs(shape, dtype, device)
                row = bench_row(shape, name, factory, inputs, device, 0 if interpreted else warmup,
                                1 if interpreted else repeats, row)
                if interpreted:
                    row.note = "interpreted on CPU: timings are not performance figures"
            rows.append(row)
            print_row(row)
        del inputs
        if device.type == "cuda":
            torch.cuda.empty_cache()
        write_csv(rows, path)  # after every shape: a run killed from outside keeps what it measured
    counts = {s: sum(r.status == s for r in rows) for s in dict.fromkeys(r.status for r in rows)}
    print(f"wrote {path}: {len(rows)} rows {counts} in {time.time() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
