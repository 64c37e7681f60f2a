"""Third-party backends for packed variable-length attention (SDPA, FlexAttention, xformers, torch varlen).

Each takes the packed layout q, k, v (T, H, D) + cu_seqlens (N + 1,) int32 and returns (T, H, D);
gradients come from the library's own autograd. They serve as `backend=` choices of
`unist.kernels.varlen_attention` and as peers in benchmarks/bench_attention.py. A backend that cannot
run here raises `BackendUnavailable` saying why, never falls back silently.
"""
from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

from .reference import block_diagonal_mask, segment_ids

# One SDPA call over a (T, T) block-diagonal mask costs ~T^2; a loop of one SDPA per segment costs
# ~sum(L_i^2) plus a fixed overhead per segment. Measured on CPU (H=4, D=32, fwd+bwd): the dense call
# wins while T^2 <= 4096 * N (e.g. 256 tokens in 16 segments), the loop beyond. The loop needs the
# lengths on the host, so under torch.compile the dense call is always used (O(T^2) memory).
DENSE_MASK_ELEMENTS_PER_SEGMENT = 4096


class BackendUnavailable(RuntimeError):
    """The requested attention backend cannot run with this install / device."""


def _heads_first(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(0, 1).unsqueeze(0)  # (T, H, D) -> (1, H, T, D)


def _tokens_first(x: torch.Tensor) -> torch.Tensor:
    return x.squeeze(0).transpose(0, 1)  # (1, H, T, D) -> (T, H, D)


def sdpa_varlen(q, k, v, cu_seqlens, causal: bool = False, softmax_scale: float | None = None) -> torch.Tensor:
    """F.scaled_dot_product_attention: one call with a block-diagonal mask for small packs, else one per segment."""
    total, num_segments = q.shape[0], cu_seqlens.numel() - 1
    if torch.compiler.is_compiling() or total * total <= DENSE_MASK_ELEMENTS_PER_SEGMENT * num_segments:
        allowed = block_diagonal_mask(cu_seqlens, total, causal)  # (T, T)
        out = F.scaled_dot_product_attention(
            _heads_first(q), _heads_first(k), _heads_first(v), attn_mask=allowed, scale=softmax_scale
        )
        return _tokens_first(out)
    bounds = cu_seqlens.tolist()
    outs = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        if end == start:
            continue
        sl = slice(start, end)
        o = F.scaled_dot_product_attention(
            _heads_first(q[sl]), _heads_first(k[sl]), _heads_first(v[sl]), is_causal=causal, scale=softmax_scale
        )
        outs.append(_tokens_first(o))
    return torch.cat(outs, dim=0) if outs else torch.empty_like(q)


def flex_varlen(q, k, v, cu_seqlens, causal: bool = False, softmax_scale: float | None = None) -> torch.Tensor:
    """torch.nn.attention.flex_attention with a document mask (eager: dense fallback; wrap in torch.compile for speed)."""
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    except ImportError as e:  # pragma: no cover - depends on the torch build
        raise BackendUnavailable(f"backend 'flex' needs torch.nn.attention.flex_attention (torch>=2.5): {e}") from e
    if not q.is_cuda:
        if torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v)):
            raise BackendUnavailable("backend 'flex' has no backward on CPU (forward only); train with backend='sdpa'")
        q, k, v = q.detach(), k.detach(), v.detach()  # flex refuses CPU inputs that require grad, even under no_grad
    total = q.shape[0]
    seg, pos = segment_ids(cu_seqlens, total)

    def document_mask(b, h, q_idx, kv_idx):
        same = seg[q_idx] == seg[kv_idx]
        return same & (pos[q_idx] >= pos[kv_idx]) if causal else same

    block_mask = create_block_mask(document_mask, B=None, H=None, Q_LEN=total, KV_LEN=total, device=q.device)
    out = flex_attention(_heads_first(q), _heads_first(k), _heads_first(v), block_mask=block_mask, scale=softmax_scale)
    return _tokens_first(out)


def xformers_varlen(q, k, v, cu_seqlens, causal: bool = False, softmax_scale: float | None = None) -> torch.Tensor:
    """xformers.ops.memory_efficient_attention with a BlockDiagonal(Causal)Mask (CUDA only)."""
    try:
        from xformers.ops import fmha
    except ImportError as e:
        raise BackendUnavailable(f"backend 'xformers' needs the xformers package (pip install 'unist[gpu]'): {e}") from e
    if not q.is_cuda:
        raise BackendUnavailable("backend 'xformers' has no CPU operator; run on CUDA or pick backend='sdpa'")
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()
    lengths = [n for n in lengths if n > 0]  # empty segments own no tokens: dropping them is exact
    if not lengths:
        return torch.empty_like(q)
    mask_cls = fmha.attn_bias.BlockDiagonalCausalMask if causal else fmha.attn_bias.BlockDiagonalMask
    bias = mask_cls.from_seqlens(lengths)
    out = fmha.memory_efficient_attention(q[None], k[None], v[None], attn_bias=bias, scale=softmax_scale)
    return out[0]


def torch_varlen(q, k, v, cu_seqlens, causal: bool = False, softmax_scale: float | None = None,
                 max_seqlen: int | None = None) -> torch.Tensor:
    """torch.nn.attention.varlen.varlen_attn (FlashAttention kernels inside PyTorch; CUDA fp16/bf16 only)."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError as e:
        raise BackendUnavailable(f"backend 'torch_varlen' needs torch.nn.attention.varlen (a newer torch): {e}") from e
    if not q.is_cuda or q.dtype not in (torch.float16, torch.bfloat16):
        raise BackendUnavailable("backend 'torch_varlen' runs only on CUDA in fp16/bf16")
    if max_seqlen is None:
        max_seqlen = int((cu_seqlens[1:] - cu_seqlens[:-1]).max()) if cu_seqlens.numel() > 1 else 0
    params = inspect.signature(varlen_attn).parameters
    if "window_size" in params:  # torch >= 2.12
        causal_kw = {"window_size": (-1, 0) if causal else (-1, -1)}
    else:  # torch 2.9 .. 2.11
        causal_kw = {"is_causal": causal}
    if softmax_scale is not None and "scale" not in params:
        raise BackendUnavailable("backend 'torch_varlen' of this torch takes no softmax_scale; leave it None")
    scale_kw = {"scale": softmax_scale} if "scale" in params else {}
    return varlen_attn(q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, **causal_kw, **scale_kw)
