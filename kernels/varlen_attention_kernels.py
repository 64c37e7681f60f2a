"""Triton kernels of packed variable-length attention (FlashAttention-2) and their tile table: no launches here.

Kernels (fp32 accumulation, exp2 with log2(e) folded into the scale):
  grid mapping  a block table (varlen_attention._block_table) maps program p -> (segment, first row of its
                block); programs past the last block exit at once. Axis 1 of the grid is the head.
  forward       `_fwd_kernel`: one program = one query block of one head; loops over the key blocks of its
                segment (causal: up to the diagonal) with the online softmax; stores O and the log-sum-exp
                (base 2, (H, T) fp32) for the backward.
  backward      `_bwd_preprocess_kernel`: delta = rowsum(dO * O); `_bwd_dkdv_kernel`: one program =
                one key block, loops over the query blocks that see it, accumulates dK and dV;
                `_bwd_dq_kernel`: one program = one query block, loops over its key blocks. No atomics.
Head dims up to 128 are padded to a power of two (>= 16) inside the kernel with masks.

The functions below are plain Python until `jit_kernels` (called at the first launch) imports triton and
jits them, since the interpreter mode must be chosen before triton is imported (kernels/env.py). Their bodies
use the module globals `triton` / `tl` that `jit_kernels` fills in (annotations stay strings). Under the
interpreter low-precision dots are upcast to fp32 (`UPCAST`: bf16 `tl.dot` is wrong there) and fixed large
tiles keep interpretation fast.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .env import import_triton

triton = tl = None  # set by `jit_kernels`

TRITON_MAX_HEAD_DIM = 128
PREPROCESS_BLOCK = 64  # tokens per program of the delta = rowsum(dO * O) kernel
LOG2E = 1.4426950408889634


# ----------------------------------------------------------------------------------------------
# Kernels and their helpers (plain functions until `jit_kernels`)
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


# Jitted (in this order: helpers before the kernels that call them) by `jit_kernels`.
_TRITON_FUNCTIONS = ("_program_block", "_load_rows", "_store_rows", "_fwd_kernel", "_bwd_preprocess_kernel",
                     "_bwd_dkdv_kernel", "_bwd_dq_kernel")


def jit_kernels() -> None:
    """Import triton and jit the kernels once (idempotent); read them as module attributes afterwards."""
    global triton, tl
    if triton is not None:
        return
    triton, tl = import_triton()
    module = globals()
    for name in _TRITON_FUNCTIONS:
        module[name] = triton.jit(module[name])


# ----------------------------------------------------------------------------------------------
# Tiles (data: a small table rather than @triton.autotune, because the block table depends on the tile)
# ----------------------------------------------------------------------------------------------


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
