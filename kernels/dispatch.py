"""The public entry `varlen_attention`: checks the packed inputs, picks a backend, calls it.

Backends: `triton` (kernels/varlen_attention.py), `reference` (kernels/reference.py) and the third-party
ones of kernels/backends.py. A backend that cannot run raises `BackendUnavailable`; nothing falls back.
"""
from __future__ import annotations

import os

import torch

from .backends import flex_varlen, sdpa_varlen, torch_varlen, xformers_varlen
from .env import triton_usable
from .reference import check_varlen_inputs, varlen_attention_reference
from .varlen_attention import TRITON_MAX_HEAD_DIM, varlen_attention_triton

BACKENDS = ("triton", "reference", "sdpa", "flex", "xformers", "torch_varlen")


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
