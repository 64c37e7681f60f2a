"""Pure-PyTorch reference for packed variable-length attention, plus the input checks every backend shares.

Packed layout (the `TokenBatch` token space): the tokens of all samples sit back to back in one
sequence of length T; `cu_seqlens` (num_segments + 1,) int32 marks where each segment starts, and a
token attends only to tokens of its own segment (optionally only to earlier ones: `causal`).

`varlen_attention_reference` is the ground truth the Triton kernel, the tests and the benchmark are
checked against. It is plain math on a dense block-diagonal mask: O(H * T^2) memory, so it is meant
for small packs, but it has no data-dependent Python, so it traces under `torch.compile(fullgraph=True)`.
"""
from __future__ import annotations

import math

import torch

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
MIN_HEAD_DIM, MAX_HEAD_DIM = 1, 256


def check_varlen_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor) -> None:
    """Raise a ValueError naming the problem (and the fix) when the packed inputs are inconsistent.

    Shape checks only touch metadata; the content checks on `cu_seqlens` (monotone, ends at T) read
    it, so they run only in eager mode (under torch.compile they would be data-dependent).
    """
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"varlen_attention: {name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 3:
            raise ValueError(
                f"varlen_attention: {name} must be 3-D (total_tokens, heads, head_dim), got shape {tuple(x.shape)}; "
                "pack the batch first (flatten (B, L) into total_tokens and describe segments with cu_seqlens)"
            )
        if x.dtype not in SUPPORTED_DTYPES:
            raise ValueError(f"varlen_attention: {name}.dtype {x.dtype} unsupported; use one of {SUPPORTED_DTYPES}")
    if not (q.shape == k.shape == v.shape):
        raise ValueError(
            f"varlen_attention: q, k, v must have the same (total_tokens, heads, head_dim); got q {tuple(q.shape)}, "
            f"k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"varlen_attention: q, k, v dtypes differ ({q.dtype}, {k.dtype}, {v.dtype}); cast them to one dtype")
    if not (q.device == k.device == v.device == cu_seqlens.device):
        raise ValueError(
            f"varlen_attention: q, k, v, cu_seqlens must be on one device; got {q.device}, {k.device}, {v.device}, "
            f"{cu_seqlens.device}"
        )
    head_dim = q.shape[-1]
    if not MIN_HEAD_DIM <= head_dim <= MAX_HEAD_DIM:
        raise ValueError(f"varlen_attention: head_dim {head_dim} unsupported; use {MIN_HEAD_DIM}..{MAX_HEAD_DIM}")
    if not isinstance(cu_seqlens, torch.Tensor) or cu_seqlens.dim() != 1 or cu_seqlens.numel() < 1:
        raise ValueError("varlen_attention: cu_seqlens must be a 1-D tensor (num_segments + 1,) starting at 0")
    if cu_seqlens.dtype != torch.int32:
        raise ValueError(
            f"varlen_attention: cu_seqlens must be int32, got {cu_seqlens.dtype}; use cu_seqlens.to(torch.int32)"
        )
    if torch.compiler.is_compiling():
        return
    total = q.shape[0]
    if int(cu_seqlens[0]) != 0 or int(cu_seqlens[-1]) != total:
        raise ValueError(
            f"varlen_attention: cu_seqlens must start at 0 and end at total_tokens={total}; got "
            f"first={int(cu_seqlens[0])}, last={int(cu_seqlens[-1])}"
        )
    if cu_seqlens.numel() > 1 and bool((cu_seqlens[1:] < cu_seqlens[:-1]).any()):
        raise ValueError("varlen_attention: cu_seqlens must be non-decreasing (segment lengths >= 0)")


def segment_ids(cu_seqlens: torch.Tensor, total_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(segment index, position inside the segment) of every packed token, both (T,) int64."""
    tokens = torch.arange(total_tokens, device=cu_seqlens.device)
    seg = torch.searchsorted(cu_seqlens[1:].long(), tokens, right=True)  # (T,)
    pos = tokens - cu_seqlens.long()[seg]  # (T,)
    return seg, pos


def block_diagonal_mask(cu_seqlens: torch.Tensor, total_tokens: int, causal: bool) -> torch.Tensor:
    """(T, T) bool, True where query token i may attend to key token j (same segment, and j <= i if causal)."""
    seg, pos = segment_ids(cu_seqlens, total_tokens)
    allowed = seg[:, None] == seg[None, :]
    if causal:
        allowed = allowed & (pos[:, None] >= pos[None, :])
    return allowed


def varlen_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    causal: bool = False,
    softmax_scale: float | None = None,
) -> torch.Tensor:
    """softmax(q k^T * scale + block-diagonal mask) v, computed in the inputs' dtype. q, k, v: (T, H, D)."""
    scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(q.shape[-1])
    allowed = block_diagonal_mask(cu_seqlens, q.shape[0], causal)  # (T, T)
    scores = torch.einsum("thd,shd->hts", q, k) * scale  # (H, T, T)
    scores = scores.masked_fill(~allowed, float("-inf"))
    probs = torch.softmax(scores, dim=-1)  # every token sees itself, so no row is fully masked
    return torch.einsum("hts,shd->thd", probs.to(v.dtype), v)  # (T, H, D)
