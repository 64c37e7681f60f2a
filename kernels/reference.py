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
import os

import torch

from .cache import TensorKeyedCache

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
MIN_HEAD_DIM, MAX_HEAD_DIM = 1, 256


CHECK_MODES = ("host", "async", "off")
_CHECKED = TensorKeyedCache(capacity=8)  # cu_seqlens tensors whose values passed the checks


def value_check_mode(device: torch.device) -> str:
    """How `check_varlen_inputs` checks the *values* of cu_seqlens on `device` (shapes are always checked).

    host   read cu_seqlens on the host and raise a ValueError naming the problem; free on CPU, but one
           device->host sync per new cu_seqlens on CUDA.
    async  `torch._assert_async` on the device: no sync; a bad cu_seqlens stops the run at a later CUDA
           call with a device-side assert (which ends the CUDA context), so debug with host mode.
    off    no value checks (a bad cu_seqlens gives wrong results or out-of-bounds reads).
    Env var UNIST_CHECK_INPUTS: 1 = host, async, 0 = off; unset = host on CPU, async on CUDA.
    """
    env = os.environ.get("UNIST_CHECK_INPUTS", "").strip().lower()
    modes = {"1": "host", "host": "host", "async": "async", "0": "off", "off": "off"}
    if env and env not in modes:
        raise ValueError(f"UNIST_CHECK_INPUTS={env!r} unknown: use 1 (host checks), async, or 0 (off); unset = auto")
    if env:
        return modes[env]
    return "host" if device.type == "cpu" else "async"


def check_varlen_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor) -> None:
    """Raise a ValueError naming the problem (and the fix) when the packed inputs are inconsistent.

    Shape, dtype and device checks only touch metadata. The content checks on `cu_seqlens` (starts at
    0, ends at T, non-decreasing) read the tensor, so they follow `value_check_mode` (no host sync on
    CUDA by default), run once per cu_seqlens tensor (every layer of a step shares one; see
    kernels/cache.py), and are skipped under torch.compile (they would be data-dependent).
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
    if not isinstance(cu_seqlens, torch.Tensor) or cu_seqlens.dim() != 1 or cu_seqlens.numel() < 1:
        raise ValueError("varlen_attention: cu_seqlens must be a 1-D tensor (num_segments + 1,) starting at 0")
    if not (q.device == k.device == v.device == cu_seqlens.device):
        raise ValueError(
            f"varlen_attention: q, k, v, cu_seqlens must be on one device; got {q.device}, {k.device}, {v.device}, "
            f"{cu_seqlens.device}"
        )
    head_dim = q.shape[-1]
    if not MIN_HEAD_DIM <= head_dim <= MAX_HEAD_DIM:
        raise ValueError(f"varlen_attention: head_dim {head_dim} unsupported; use {MIN_HEAD_DIM}..{MAX_HEAD_DIM}")
    if cu_seqlens.dtype != torch.int32:
        raise ValueError(
            f"varlen_attention: cu_seqlens must be int32, got {cu_seqlens.dtype}; use cu_seqlens.to(torch.int32)"
        )
    if torch.compiler.is_compiling():
        return
    mode = value_check_mode(cu_seqlens.device)
    if mode != "off":
        total = q.shape[0]
        _CHECKED.get_or_compute(cu_seqlens, (total, mode), lambda: _check_cu_seqlens_values(cu_seqlens, total, mode))


def _check_cu_seqlens_values(cu_seqlens: torch.Tensor, total: int, mode: str) -> bool:
    """The content checks of cu_seqlens (N + 1,): host mode raises ValueError, async mode queues a device assert."""
    if mode == "async":
        ok = (cu_seqlens[0] == 0) & (cu_seqlens[-1] == total)  # () bool, on the device
        if cu_seqlens.numel() > 1:
            ok = ok & (cu_seqlens[1:] >= cu_seqlens[:-1]).all()
        torch._assert_async(ok, f"varlen_attention: cu_seqlens must start at 0, end at total_tokens={total} and be "
                                "non-decreasing (rerun with UNIST_CHECK_INPUTS=1 for a host-side error naming which)")
        return True
    bounds = cu_seqlens.tolist()  # one host read (a device->host sync on CUDA)
    if bounds[0] != 0 or bounds[-1] != total:
        raise ValueError(
            f"varlen_attention: cu_seqlens must start at 0 and end at total_tokens={total}; got "
            f"first={bounds[0]}, last={bounds[-1]}"
        )
    if any(b < a for a, b in zip(bounds[:-1], bounds[1:])):
        raise ValueError("varlen_attention: cu_seqlens must be non-decreasing (segment lengths >= 0)")
    return True


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
