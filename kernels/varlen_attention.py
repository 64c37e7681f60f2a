"""Packed variable-length attention: Triton FlashAttention-2 kernels, autograd, custom op and dispatcher.

Tokens of many segments (samples) are packed into q, k, v of shape (T, H, D); `cu_seqlens`
(N + 1,) int32 marks segment boundaries and a token attends only within its segment (`causal`:
only to itself and earlier tokens of it). Nothing is padded to the longest segment.

Kernels (FlashAttention-2, fp32 accumulation, exp2 with log2(e) folded into the scale):
  grid mapping  a block table maps program p -> (segment, first row of its block) using cu_seqlens
                (`_block_table`, torch ops on the device, no host sync); programs past the last
                block exit at once. Axis 1 of the grid is the head.
  forward       one program = one query block of one head; loops over the key blocks of its segment
                (causal: up to the diagonal) with the online softmax; stores O and the log-sum-exp
                (base 2, (H, T) fp32) for the backward.
  backward      `_bwd_preprocess_kernel`: delta = rowsum(dO * O); `_bwd_dkdv_kernel`: one program =
                one key block, loops over the query blocks that see it, accumulates dK and dV;
                `_bwd_dq_kernel`: one program = one query block, loops over its key blocks. No atomics.
Head dims up to 128 are padded to a power of two (>= 16) inside the kernel with masks.

Triton interpreter (CPU, TRITON_INTERPRET=1): `triton.jit` reads TRITON_INTERPRET when it decorates,
for triton's own library too, so triton is imported and our kernels jitted at the first launch
(`_import_triton`), not when unist.kernels is imported. Low-precision dots are upcast to fp32 there
(bf16 `tl.dot` is wrong in the interpreter) and fixed large tiles keep interpretation fast.

`torch.ops.unist.varlen_attn_fwd/bwd` are `torch.library.custom_op`s (fake + autograd registered),
so `torch.compile` treats the kernel as one opaque node with no graph break.
"""
from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass

import torch

from .backends import BackendUnavailable, flex_varlen, sdpa_varlen, torch_varlen, xformers_varlen
from .reference import check_varlen_inputs, varlen_attention_reference

# triton is imported at the first launch, not here: its standard library (tl.zeros, tl.max, ...) is
# jitted for the interpreter only if TRITON_INTERPRET=1 is set when triton is first imported, so
# importing unist.kernels must not fix that choice for the whole process. The kernels' bodies use
# the module globals `triton` / `tl` that `_import_triton` fills in (annotations stay strings).
HAS_TRITON = importlib.util.find_spec("triton") is not None
triton = tl = None

BACKENDS = ("triton", "reference", "sdpa", "flex", "xformers", "torch_varlen")
TRITON_MAX_HEAD_DIM = 128
PREPROCESS_BLOCK = 64  # tokens per program of the delta = rowsum(dO * O) kernel
LOG2E = 1.4426950408889634


# ----------------------------------------------------------------------------------------------
# Triton kernels (plain functions here; `_import_triton` jits them, and their helpers, at first launch)
# ----------------------------------------------------------------------------------------------


def _program_block(CuSeqlens, BlockSeg, BlockStart):
    """(segment or -1, first row of this program's block in the segment, segment start, segment length)."""
    seg = tl.load(BlockSeg + tl.program_id(0))
    start = tl.load(BlockStart + tl.program_id(0))
    seq_start = tl.load(CuSeqlens + tl.maximum(seg, 0))
    seq_len = tl.load(CuSeqlens + tl.maximum(seg, 0) + 1) - seq_start
    return seg, start, seq_start, seq_len


def _load_rows(Ptr, rows, row_mask, stride_t, head, stride_h, offs_d, head_dim, UPCAST: tl.constexpr):
    """(len(rows), BLOCK_D) tile of one head; zeros outside the segment and past head_dim."""
    tile = tl.load(Ptr + rows.to(tl.int64)[:, None] * stride_t + head * stride_h + offs_d[None, :],
                   mask=row_mask[:, None] & (offs_d < head_dim)[None, :], other=0.0)
    if UPCAST:  # interpreter: low-precision tl.dot is wrong there, so compute in fp32
        tile = tile.to(tl.float32)
    return tile


def _store_rows(Ptr, tile, rows, row_mask, stride_t, head, stride_h, offs_d, head_dim):
    tl.store(Ptr + rows.to(tl.int64)[:, None] * stride_t + head * stride_h + offs_d[None, :],
             tile.to(Ptr.dtype.element_ty), mask=row_mask[:, None] & (offs_d < head_dim)[None, :])


def _fwd_kernel(
    Q, K, V, O, LSE, CuSeqlens, BlockSeg, BlockStart,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ot, stride_oh,
    total_tokens, head_dim, qk_scale,
    CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """One program = one query block of one head; online softmax over the key blocks of its segment."""
    seg, start_m, seq_start, seq_len = _program_block(CuSeqlens, BlockSeg, BlockStart)
    if seg < 0:
        return
    head = tl.program_id(1)
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    mask_m = offs_m < seq_len
    q = _load_rows(Q, seq_start + offs_m, mask_m, stride_qt, head, stride_qh, offs_d, head_dim, UPCAST)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)  # running max (log2 units)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # running softmax denominator
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    end_n = seq_len
    if CAUSAL:
        end_n = tl.minimum(start_m + BLOCK_M, seq_len)
    for start_n in range(0, end_n, BLOCK_N):
        cols = start_n + offs_n
        mask_n = cols < seq_len
        k = _load_rows(K, seq_start + cols, mask_n, stride_kt, head, stride_kh, offs_d, head_dim, UPCAST)
        v = _load_rows(V, seq_start + cols, mask_n, stride_vt, head, stride_vh, offs_d, head_dim, UPCAST)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N)
        valid = mask_n[None, :]
        if CAUSAL:
            valid = valid & (offs_m[:, None] >= cols[None, :])
        s = tl.where(valid, s, float("-inf"))
        # key 0 is valid for every row, so m_new is finite from the first block on
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.math.exp2(m_i - m_new)
        p = tl.math.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None], input_precision=DOT_PRECISION)
        m_i = m_new

    _store_rows(O, acc / l_i[:, None], seq_start + offs_m, mask_m, stride_ot, head, stride_oh, offs_d, head_dim)
    tl.store(LSE + head * total_tokens + seq_start + offs_m, m_i + tl.math.log2(l_i), mask=mask_m)


def _bwd_preprocess_kernel(
    O, DO, Delta, stride_t, stride_h, total_tokens, head_dim,
    BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """delta = rowsum(dO * O) per token and head, (H, T) fp32."""
    head = tl.program_id(1)
    offs_t = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask_t = offs_t < total_tokens
    o = _load_rows(O, offs_t, mask_t, stride_t, head, stride_h, offs_d, head_dim, False).to(tl.float32)
    do = _load_rows(DO, offs_t, mask_t, stride_t, head, stride_h, offs_d, head_dim, False).to(tl.float32)
    tl.store(Delta + head * total_tokens + offs_t, tl.sum(o * do, 1), mask=mask_t)


def _bwd_dkdv_kernel(
    Q, K, V, DO, DK, DV, LSE, Delta, CuSeqlens, BlockSeg, BlockStart,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ot, stride_oh,
    total_tokens, head_dim, qk_scale, sm_scale,
    CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """One program = one key block of one head; DO, DK, DV share the contiguous (T, H, D) strides of O."""
    seg, start_n, seq_start, seq_len = _program_block(CuSeqlens, BlockSeg, BlockStart)
    if seg < 0:
        return
    head = tl.program_id(1)
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    mask_n = offs_n < seq_len
    k = _load_rows(K, seq_start + offs_n, mask_n, stride_kt, head, stride_kh, offs_d, head_dim, UPCAST)
    v = _load_rows(V, seq_start + offs_n, mask_n, stride_vt, head, stride_vh, offs_d, head_dim, UPCAST)

    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    start_m_lo = 0
    if CAUSAL:
        start_m_lo = start_n  # earlier queries never see this key block
    for start_m in range(start_m_lo, seq_len, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        mask_m = offs_m < seq_len
        q = _load_rows(Q, seq_start + offs_m, mask_m, stride_qt, head, stride_qh, offs_d, head_dim, UPCAST)
        do = _load_rows(DO, seq_start + offs_m, mask_m, stride_ot, head, stride_oh, offs_d, head_dim, UPCAST)
        lse = tl.load(LSE + head * total_tokens + seq_start + offs_m, mask=mask_m, other=0.0)
        delta = tl.load(Delta + head * total_tokens + seq_start + offs_m, mask=mask_m, other=0.0)
        s_t = tl.dot(k, tl.trans(q), input_precision=DOT_PRECISION) * qk_scale  # (BLOCK_N, BLOCK_M)
        valid = mask_m[None, :]
        if CAUSAL:
            valid = valid & (offs_m[None, :] >= offs_n[:, None])
        p_t = tl.where(valid, tl.math.exp2(s_t - lse[None, :]), 0.0)
        dv = tl.dot(p_t.to(do.dtype), do, dv, input_precision=DOT_PRECISION)
        dp_t = tl.dot(v, tl.trans(do), input_precision=DOT_PRECISION)  # (BLOCK_N, BLOCK_M)
        ds_t = p_t * (dp_t - delta[None, :])
        dk = tl.dot(ds_t.to(q.dtype), q, dk, input_precision=DOT_PRECISION)

    _store_rows(DK, dk * sm_scale, seq_start + offs_n, mask_n, stride_ot, head, stride_oh, offs_d, head_dim)
    _store_rows(DV, dv, seq_start + offs_n, mask_n, stride_ot, head, stride_oh, offs_d, head_dim)


def _bwd_dq_kernel(
    Q, K, V, DO, DQ, LSE, Delta, CuSeqlens, BlockSeg, BlockStart,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ot, stride_oh,
    total_tokens, head_dim, qk_scale, sm_scale,
    CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """One program = one query block of one head; DO and DQ share the contiguous (T, H, D) strides of O."""
    seg, start_m, seq_start, seq_len = _program_block(CuSeqlens, BlockSeg, BlockStart)
    if seg < 0:
        return
    head = tl.program_id(1)
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    mask_m = offs_m < seq_len
    q = _load_rows(Q, seq_start + offs_m, mask_m, stride_qt, head, stride_qh, offs_d, head_dim, UPCAST)
    do = _load_rows(DO, seq_start + offs_m, mask_m, stride_ot, head, stride_oh, offs_d, head_dim, UPCAST)
    lse = tl.load(LSE + head * total_tokens + seq_start + offs_m, mask=mask_m, other=0.0)
    delta = tl.load(Delta + head * total_tokens + seq_start + offs_m, mask=mask_m, other=0.0)

    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    end_n = seq_len
    if CAUSAL:
        end_n = tl.minimum(start_m + BLOCK_M, seq_len)
    for start_n in range(0, end_n, BLOCK_N):
        cols = start_n + offs_n
        mask_n = cols < seq_len
        k = _load_rows(K, seq_start + cols, mask_n, stride_kt, head, stride_kh, offs_d, head_dim, UPCAST)
        v = _load_rows(V, seq_start + cols, mask_n, stride_vt, head, stride_vh, offs_d, head_dim, UPCAST)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N)
        valid = mask_n[None, :]
        if CAUSAL:
            valid = valid & (offs_m[:, None] >= cols[None, :])
        p = tl.where(valid, tl.math.exp2(s - lse[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PRECISION)
        ds = p * (dp - delta[:, None])
        dq = tl.dot(ds.to(k.dtype), k, dq, input_precision=DOT_PRECISION)

    _store_rows(DQ, dq * sm_scale, seq_start + offs_m, mask_m, stride_ot, head, stride_oh, offs_d, head_dim)


# Jitted (in this order: helpers before the kernels that call them) by `_import_triton`.
_TRITON_FUNCTIONS = ("_program_block", "_load_rows", "_store_rows", "_fwd_kernel", "_bwd_preprocess_kernel",
                     "_bwd_dkdv_kernel", "_bwd_dq_kernel")


# ----------------------------------------------------------------------------------------------
# Launchers
# ----------------------------------------------------------------------------------------------


def triton_interpreting() -> bool:
    """True when Triton runs in its CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def _import_triton() -> None:
    """Import triton and jit our kernels once; the mode (compiled or interpreted) is fixed from then on."""
    global triton, tl
    if triton is not None:
        return
    import triton as triton_module
    import triton.language as tl_module

    triton, tl = triton_module, tl_module
    module = globals()
    for name in _TRITON_FUNCTIONS:
        module[name] = triton.jit(module[name])


def _check_interpreter_ready() -> None:
    """The interpreter needs triton's own jitted helpers (tl.zeros, tl.max, ...) built in interpreter mode."""
    from triton.runtime.interpreter import InterpretedFunction

    if not isinstance(tl.zeros, InterpretedFunction) or not isinstance(_fwd_kernel, InterpretedFunction):
        raise BackendUnavailable(
            "TRITON_INTERPRET=1 was set after triton had been imported; set it before the first `import triton` "
            "(e.g. at the top of the script or in the environment)"
        )


@dataclass(frozen=True)
class TileConfig:
    block_m: int  # query rows per tile
    block_n: int  # key rows per tile
    num_warps: int = 4
    num_stages: int = 2


@dataclass(frozen=True)
class KernelConfigs:
    fwd: TileConfig
    dkdv: TileConfig
    dq: TileConfig


def kernel_configs(block_d: int, dtype: torch.dtype, interpret: bool, aligned: bool = True) -> KernelConfigs:
    """Tiles per kernel: big fixed tiles under the interpreter, a small Hopper table on GPU.

    aligned: head_dim is a multiple of 16 (the head stride then gets a divisibility hint and loads
    vectorise); misaligned head dims (e.g. 40) need smaller 16-bit tiles to stay spill-free. Every
    entry is spill-free (no local memory, no stack) on sm_90 per `python -m unist.kernels.compile_check`.
    """
    if interpret:
        big = TileConfig(64, 64)
        return KernelConfigs(big, big, big)
    if dtype == torch.float32:
        # IEEE fp32 dots run on FMA units, not tensor cores, so register pressure (not shared memory)
        # sets the tiles (a 64x32 dK/dV tile spilled kilobytes to the stack at every head dim, and
        # 4 warps hit the 255-register ceiling from d=64 on).
        if block_d <= 32:
            return KernelConfigs(fwd=TileConfig(64, 32, 4, 2), dkdv=TileConfig(32, 32, 8, 2), dq=TileConfig(64, 32, 4, 2))
        if block_d <= 64:
            return KernelConfigs(fwd=TileConfig(64, 32, 8, 2), dkdv=TileConfig(32, 32, 8, 2), dq=TileConfig(64, 32, 8, 2))
        return KernelConfigs(fwd=TileConfig(32, 32, 8, 2), dkdv=TileConfig(16, 32, 4, 2), dq=TileConfig(64, 32, 8, 2))
    if block_d <= 64 and not aligned:
        return KernelConfigs(fwd=TileConfig(128, 64, 8, 3), dkdv=TileConfig(32, 64, 4, 3), dq=TileConfig(128, 32, 8, 3))
    if block_d <= 64:
        return KernelConfigs(fwd=TileConfig(128, 64, 4, 3), dkdv=TileConfig(32, 128, 4, 3), dq=TileConfig(128, 32, 4, 3))
    return KernelConfigs(fwd=TileConfig(128, 64, 8, 3), dkdv=TileConfig(32, 64, 4, 3), dq=TileConfig(64, 64, 4, 3))


def _block_table(cu_seqlens: torch.Tensor, total_tokens: int, block: int, reverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Map program p -> (segment, first row of its block), both int32 (P,), with segment -1 for spare programs.

    P = T // block + N bounds sum(ceil(len_i / block)) without reading cu_seqlens on the host.
    `reverse` puts the last blocks first (for causal: long rows get scheduled first).
    """
    lens = (cu_seqlens[1:] - cu_seqlens[:-1]).long()  # (N,)
    nblocks = (lens + block - 1) // block  # (N,)
    cum = torch.cumsum(nblocks, 0)  # (N,)
    programs = total_tokens // block + lens.numel()
    pid = torch.arange(programs, device=cu_seqlens.device)
    seg = torch.searchsorted(cum, pid, right=True)  # (P,)
    valid = seg < lens.numel()
    seg = seg.clamp(max=lens.numel() - 1)
    start = (pid - (cum - nblocks)[seg]) * block
    seg = torch.where(valid, seg, -1).to(torch.int32)
    start = start.to(torch.int32)
    if reverse:
        seg, start = seg.flip(0), start.flip(0)
    return seg, start


def _launch_setup(q: torch.Tensor):
    interpret = triton_interpreting()
    if not HAS_TRITON:
        raise BackendUnavailable("backend 'triton' needs the triton package; use backend='sdpa'")
    if not q.is_cuda and not interpret:
        raise BackendUnavailable(
            "backend 'triton' on CPU runs only in the Triton interpreter: set TRITON_INTERPRET=1 (slow, for tests), "
            "or use backend='sdpa'"
        )
    _import_triton()
    if interpret:
        _check_interpreter_ready()
    head_dim = q.shape[-1]
    if head_dim > TRITON_MAX_HEAD_DIM:
        raise ValueError(f"backend 'triton' supports head_dim <= {TRITON_MAX_HEAD_DIM}, got {head_dim}; use backend='sdpa'")
    if q.dtype == torch.float64:
        raise ValueError("backend 'triton' supports fp32/fp16/bf16, got float64; use backend='reference'")
    block_d = max(16, triton.next_power_of_2(head_dim))
    dot_precision = "tf32" if (q.dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32 and not interpret) else "ieee"
    consts = dict(BLOCK_D=block_d, UPCAST=interpret and q.dtype != torch.float32, DOT_PRECISION=dot_precision)
    return kernel_configs(block_d, q.dtype, interpret, aligned=head_dim % 16 == 0), consts


def _last_dim_contiguous(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


def _triton_forward(q, k, v, cu_seqlens, causal: bool, softmax_scale: float):
    total, heads, head_dim = q.shape
    out = torch.empty((total, heads, head_dim), dtype=q.dtype, device=q.device)
    lse = torch.empty((heads, total), dtype=torch.float32, device=q.device)
    if total == 0:
        return out, lse
    cfg, consts = _launch_setup(q)
    q, k, v = (_last_dim_contiguous(x) for x in (q, k, v))
    seg, start = _block_table(cu_seqlens, total, cfg.fwd.block_m, reverse=causal)
    _fwd_kernel[(seg.numel(), heads)](
        q, k, v, out, lse, cu_seqlens, seg, start,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), out.stride(0), out.stride(1),
        total, head_dim, softmax_scale * LOG2E,
        CAUSAL=causal, BLOCK_M=cfg.fwd.block_m, BLOCK_N=cfg.fwd.block_n, num_warps=cfg.fwd.num_warps,
        num_stages=cfg.fwd.num_stages, **consts,
    )
    return out, lse


def _triton_backward(dout, q, k, v, out, lse, cu_seqlens, causal: bool, softmax_scale: float):
    total, heads, head_dim = q.shape
    dq, dk, dv = (torch.empty((total, heads, head_dim), dtype=q.dtype, device=q.device) for _ in range(3))
    if total == 0:
        return dq, dk, dv
    cfg, consts = _launch_setup(q)
    q, k, v = (_last_dim_contiguous(x) for x in (q, k, v))
    dout = dout.contiguous()  # shares out's contiguous (T, H, D) strides, as do dq, dk, dv
    delta = torch.empty_like(lse)
    _bwd_preprocess_kernel[(triton.cdiv(total, PREPROCESS_BLOCK), heads)](
        out, dout, delta, out.stride(0), out.stride(1), total, head_dim,
        BLOCK_M=PREPROCESS_BLOCK, BLOCK_D=consts["BLOCK_D"],
    )
    strides = (q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), out.stride(0), out.stride(1))
    scalars = (total, head_dim, softmax_scale * LOG2E, softmax_scale)

    seg, start = _block_table(cu_seqlens, total, cfg.dkdv.block_n, reverse=False)
    _bwd_dkdv_kernel[(seg.numel(), heads)](
        q, k, v, dout, dk, dv, lse, delta, cu_seqlens, seg, start, *strides, *scalars,
        CAUSAL=causal, BLOCK_M=cfg.dkdv.block_m, BLOCK_N=cfg.dkdv.block_n, num_warps=cfg.dkdv.num_warps,
        num_stages=cfg.dkdv.num_stages, **consts,
    )
    seg, start = _block_table(cu_seqlens, total, cfg.dq.block_m, reverse=causal)
    _bwd_dq_kernel[(seg.numel(), heads)](
        q, k, v, dout, dq, lse, delta, cu_seqlens, seg, start, *strides, *scalars,
        CAUSAL=causal, BLOCK_M=cfg.dq.block_m, BLOCK_N=cfg.dq.block_n, num_warps=cfg.dq.num_warps,
        num_stages=cfg.dq.num_stages, **consts,
    )
    return dq, dk, dv


# ----------------------------------------------------------------------------------------------
# Custom ops + autograd
# ----------------------------------------------------------------------------------------------


@torch.library.custom_op("unist::varlen_attn_fwd", mutates_args=())
def varlen_attn_fwd(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, causal: bool, softmax_scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton forward: (out (T, H, D), lse (H, T) fp32, base-2 log-sum-exp of the scaled scores)."""
    return _triton_forward(q, k, v, cu_seqlens, causal, softmax_scale)


@varlen_attn_fwd.register_fake
def _(q, k, v, cu_seqlens, causal, softmax_scale):
    total, heads, _ = q.shape
    return q.new_empty(q.shape), q.new_empty((heads, total), dtype=torch.float32)


@torch.library.custom_op("unist::varlen_attn_bwd", mutates_args=())
def varlen_attn_bwd(
    dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, lse: torch.Tensor,
    cu_seqlens: torch.Tensor, causal: bool, softmax_scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Triton backward: (dq, dk, dv), each (T, H, D)."""
    return _triton_backward(dout, q, k, v, out, lse, cu_seqlens, causal, softmax_scale)


@varlen_attn_bwd.register_fake
def _(dout, q, k, v, out, lse, cu_seqlens, causal, softmax_scale):
    return q.new_empty(q.shape), q.new_empty(q.shape), q.new_empty(q.shape)


class VarlenAttentionFunction(torch.autograd.Function):
    """The autograd rule of the Triton path, registered on `unist::varlen_attn_fwd` (call the op, not `apply`)."""

    @staticmethod
    def forward(q, k, v, cu_seqlens, causal, softmax_scale):
        return varlen_attn_fwd(q, k, v, cu_seqlens, causal, softmax_scale)

    @staticmethod
    def setup_context(ctx, inputs, output):
        q, k, v, cu_seqlens, causal, softmax_scale = inputs
        out, lse = output
        ctx.save_for_backward(q, k, v, out, lse, cu_seqlens)
        ctx.causal, ctx.softmax_scale = causal, softmax_scale

    @staticmethod
    def backward(ctx, dout, dlse):
        q, k, v, out, lse, cu_seqlens = ctx.saved_tensors
        dq, dk, dv = varlen_attn_bwd(dout, q, k, v, out, lse, cu_seqlens, ctx.causal, ctx.softmax_scale)
        return dq, dk, dv, None, None, None


torch.library.register_autograd(
    "unist::varlen_attn_fwd", VarlenAttentionFunction.backward, setup_context=VarlenAttentionFunction.setup_context
)


def varlen_attention_triton(q, k, v, cu_seqlens, causal: bool = False, softmax_scale: float | None = None) -> torch.Tensor:
    """The Triton kernel through its custom op (differentiable, torch.compile-safe)."""
    scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(q.shape[-1])
    out, _ = varlen_attn_fwd(q, k, v, cu_seqlens, causal, float(scale))
    return out


# ----------------------------------------------------------------------------------------------
# Dispatcher
# ----------------------------------------------------------------------------------------------


def triton_usable(device: torch.device) -> bool:
    """Whether the Triton kernel can run on `device` (CUDA, or CPU under TRITON_INTERPRET=1)."""
    return HAS_TRITON and (device.type == "cuda" or triton_interpreting())


def default_backend(q: torch.Tensor) -> str:
    """triton on CUDA for what it supports; else sdpa (faster than the reference on CPU, see docs/kernels.md)."""
    kernel_fits = q.dtype != torch.float64 and q.shape[-1] <= TRITON_MAX_HEAD_DIM
    return "triton" if q.is_cuda and kernel_fits and triton_usable(q.device) else "sdpa"


def varlen_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int | None = None,
    causal: bool = False,
    softmax_scale: float | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """Attention within each packed segment. q, k, v: (T, H, D); cu_seqlens: (N + 1,) int32 -> (T, H, D).

    backend: one of BACKENDS; default from env var UNIST_ATTN_BACKEND, else `default_backend(q)`.
    max_seqlen (longest segment) is only used by backend 'torch_varlen'; the others derive what they need.
    Segments of length 0 are allowed and own no rows.
    """
    check_varlen_inputs(q, k, v, cu_seqlens)
    name = backend or os.environ.get("UNIST_ATTN_BACKEND") or default_backend(q)
    if name == "triton":
        return varlen_attention_triton(q, k, v, cu_seqlens, causal, softmax_scale)
    if name == "reference":
        return varlen_attention_reference(q, k, v, cu_seqlens, causal, softmax_scale)
    if name == "sdpa":
        return sdpa_varlen(q, k, v, cu_seqlens, causal, softmax_scale)
    if name == "flex":
        return flex_varlen(q, k, v, cu_seqlens, causal, softmax_scale)
    if name == "xformers":
        return xformers_varlen(q, k, v, cu_seqlens, causal, softmax_scale)
    if name == "torch_varlen":
        return torch_varlen(q, k, v, cu_seqlens, causal, softmax_scale, max_seqlen)
    raise ValueError(f"varlen_attention: unknown backend {name!r}; choose one of {BACKENDS} (arg or UNIST_ATTN_BACKEND)")
