"""The Triton path of packed variable-length attention: launchers, custom ops and autograd.

Tokens of many segments (samples) are packed into q, k, v of shape (T, H, D); `cu_seqlens` (N + 1,) int32
marks segment boundaries and a token attends only within its segment (`causal`: only to itself and earlier
tokens of it). Nothing is padded to the longest segment.

`_block_table` maps each program to (segment, first row of its block) with torch ops on the device (no host
sync); `_triton_forward` / `_triton_backward` launch the kernels of kernels/varlen_attention_kernels.py.
`torch.ops.unist.varlen_attn_fwd/bwd` are `torch.library.custom_op`s (fake + autograd registered), so
`torch.compile` treats the kernel as one opaque node with no graph break. The public entry that picks a
backend is `unist.kernels.varlen_attention` (kernels/dispatch.py).
"""
from __future__ import annotations

import math

import torch

from . import varlen_attention_kernels as kernels
from .env import (BackendUnavailable, check_interpreter_ready, import_triton, triton_interpreting,
                  triton_unavailable_reason)
from .varlen_attention_kernels import LOG2E, PREPROCESS_BLOCK, TRITON_MAX_HEAD_DIM, kernel_configs

# The kernels are read as attributes of `kernels` at each launch: `kernels.jit_kernels()` replaces them there.


# ----------------------------------------------------------------------------------------------
# Launchers
# ----------------------------------------------------------------------------------------------


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
    """Check that the kernel can run on q, jit it (first launch), and pick its tiles and constexprs."""
    reason = triton_unavailable_reason(q.device)
    if reason is not None:
        raise BackendUnavailable(reason)
    interpret = triton_interpreting()
    kernels.jit_kernels()
    if interpret:
        check_interpreter_ready(kernels._fwd_kernel)
    head_dim = q.shape[-1]
    if head_dim > TRITON_MAX_HEAD_DIM:
        raise ValueError(f"backend 'triton' supports head_dim <= {TRITON_MAX_HEAD_DIM}, got {head_dim}; use backend='sdpa'")
    if q.dtype == torch.float64:
        raise ValueError("backend 'triton' supports fp32/fp16/bf16, got float64; use backend='reference'")
    triton, _ = import_triton()  # already imported by jit_kernels
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
    kernels._fwd_kernel[(seg.numel(), heads)](
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
    kernels._bwd_preprocess_kernel[((total + PREPROCESS_BLOCK - 1) // PREPROCESS_BLOCK, heads)](
        out, dout, delta, out.stride(0), out.stride(1), total, head_dim,
        BLOCK_M=PREPROCESS_BLOCK, BLOCK_D=consts["BLOCK_D"],
    )
    strides = (q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), out.stride(0), out.stride(1))
    scalars = (total, head_dim, softmax_scale * LOG2E, softmax_scale)

    seg, start = _block_table(cu_seqlens, total, cfg.dkdv.block_n, reverse=False)
    kernels._bwd_dkdv_kernel[(seg.numel(), heads)](
        q, k, v, dout, dk, dv, lse, delta, cu_seqlens, seg, start, *strides, *scalars,
        CAUSAL=causal, BLOCK_M=cfg.dkdv.block_m, BLOCK_N=cfg.dkdv.block_n, num_warps=cfg.dkdv.num_warps,
        num_stages=cfg.dkdv.num_stages, **consts,
    )
    seg, start = _block_table(cu_seqlens, total, cfg.dq.block_m, reverse=causal)
    kernels._bwd_dq_kernel[(seg.numel(), heads)](
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
