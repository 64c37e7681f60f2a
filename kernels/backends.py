"""Third-party backends for packed variable-length attention (SDPA, FlexAttention, xformers, torch varlen).

Each takes the packed layout q, k, v (T, H, D) + cu_seqlens (N + 1,) int32 and returns (T, H, D);
gradients come from the library's own autograd. They serve as `backend=` choices of
`unist.kernels.varlen_attention` (kernels/dispatch.py) and as peers in benchmarks/bench_attention.py.
A backend that cannot run here raises `BackendUnavailable` saying why, never falls back silently.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .cache import TensorKeyedCache
from .env import BackendUnavailable
from .reference import block_diagonal_mask, segment_ids

# Bucketing rule of the SDPA backend (see `group_lengths`): segments sorted by length are grouped while a
# group's padded work n * max_len^2 stays within PAD_RATIO x its real work sum(len^2) plus a slack of
# MIN_CALL_WORK / (H * D) tokens^2 (about one SDPA call's fixed cost). Tuned on CPU, fwd+bwd, one thread,
# on the tiny preset's real packs and on 64x64 / 256x16 / mixed packs (`python benchmarks/bench_attention.py
# --tune-buckets`): the choices (1.0 | 1.1 | 1.25, 0), (1.25, 2^18), (1.5, 2^19 | 2^21) were all within
# the ~10 % run-to-run noise of that shared machine, with more padding trending slower (on CPU padded work
# costs as much as real work); (1.25, 2^18) was never the slowest. Under torch.compile one call over a (T, T)
# block-diagonal mask is used instead (no host reads of cu_seqlens while tracing; O(T^2) memory).
PAD_RATIO = 1.25
MIN_CALL_WORK = 2**18


def _heads_first(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(0, 1).unsqueeze(0)  # (T, H, D) -> (1, H, T, D)


def _tokens_first(x: torch.Tensor) -> torch.Tensor:
    return x.squeeze(0).transpose(0, 1)  # (1, H, T, D) -> (T, H, D)


@dataclass(frozen=True)
class SegmentGroup:
    """One padded SDPA call: `count` segments of up to `max_len` tokens, gathered into (count, max_len).

    gather (count * max_len,) int64: packed token read into each padded slot (a padding slot repeats its
    segment's last token, so every value stays finite); None when the group is one contiguous run of
    `count` segments of exactly `max_len` tokens starting at token `start` (then it is a view, no copy).
    keep (count * max_len,) int64: the padded slots that hold real tokens (None when nothing is padded).
    key_mask (count, 1, 1, max_len) bool: real keys (None when nothing is padded or the call is causal,
    since with right padding a causal row never sees the padding).
    """

    count: int
    max_len: int
    start: int
    gather: torch.Tensor | None
    keep: torch.Tensor | None
    key_mask: torch.Tensor | None


@dataclass(frozen=True)
class BucketPlan:
    """How `sdpa_varlen` runs one cu_seqlens: its groups and the permutation back to packed order.

    order (T,) int64: packed position of each row of the groups' concatenated outputs' inverse, i.e.
    out = cat(group outputs)[order]; None when the concatenation is already in packed order.
    """

    groups: tuple[SegmentGroup, ...]
    order: torch.Tensor | None
    padded_work: int  # sum over groups of count * max_len^2 (tokens^2 per head)
    work: int  # sum(len^2)


_PLANS = TensorKeyedCache(capacity=8)


def group_lengths(lengths: list[int], heads_x_dim: int, pad_ratio: float | None = None,
                  min_call_work: int | None = None) -> list[list[int]]:
    """Partition the non-empty segments into padded-call groups (lists of segment indices).

    Segments are taken longest first; a group (max length m, n segments) takes the next one while
    n * m^2 <= pad_ratio * sum(len^2) + min_call_work / heads_x_dim, so the total padded work is at most
    pad_ratio x sum(len^2) plus one call's fixed cost per group. Ties keep packed order.
    """
    pad_ratio = PAD_RATIO if pad_ratio is None else pad_ratio  # module values read per call (tunable)
    slack = (MIN_CALL_WORK if min_call_work is None else min_call_work) / max(1, heads_x_dim)
    order = sorted((i for i, n in enumerate(lengths) if n > 0), key=lambda i: (-lengths[i], i))
    groups: list[list[int]] = []
    top, work = 0, 0
    for i in order:
        n = lengths[i]
        if groups and (len(groups[-1]) + 1) * top * top <= pad_ratio * (work + n * n) + slack:
            groups[-1].append(i)
            work += n * n
            continue
        groups.append([i])
        top, work = n, n * n
    return groups


def bucket_plan(cu_seqlens: torch.Tensor, total_tokens: int, causal: bool, heads_x_dim: int) -> BucketPlan:
    """Build the grouping of `group_lengths` as device index tensors.

    The one host read is `cu_seqlens.tolist()` (a device->host sync on CUDA); the index arithmetic is
    numpy on the host and each index tensor is copied to the device once.
    """
    bounds = np.asarray(cu_seqlens.tolist(), dtype=np.int64)  # (N + 1,)
    starts, lengths = bounds[:-1], np.diff(bounds)  # (N,), (N,)
    device = cu_seqlens.device

    def to_device(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)

    groups, rows, padded_work = [], [], 0
    for members in group_lengths(lengths.tolist(), heads_x_dim):
        idx = np.asarray(members)
        m, count, first = int(lengths[idx[0]]), len(members), int(starts[idx[0]])
        padded_work += count * m * m
        if np.all(lengths[idx] == m) and np.array_equal(starts[idx], first + m * np.arange(count)):
            groups.append(SegmentGroup(count, m, first, None, None, None))  # a contiguous run: a view
            rows.append(np.arange(first, first + count * m))
            continue
        offs = np.arange(m)  # (m,)
        real = offs[None, :] < lengths[idx][:, None]  # (n, m)
        gather = (starts[idx][:, None] + np.minimum(offs[None, :], lengths[idx][:, None] - 1)).reshape(-1)  # (n*m,)
        keep = np.flatnonzero(real)  # (real tokens,)
        key_mask = None if causal else to_device(real[:, None, None, :])
        groups.append(SegmentGroup(count, m, first, to_device(gather), to_device(keep), key_mask))
        rows.append(gather[keep])
    packed_rows = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)  # packed position per row
    order = None
    if not np.array_equal(packed_rows, np.arange(total_tokens)):
        inverse = np.empty(total_tokens, dtype=np.int64)
        inverse[packed_rows] = np.arange(packed_rows.size)
        order = to_device(inverse)
    return BucketPlan(tuple(groups), order, padded_work, int((lengths * lengths).sum()))


def _run_group(q, k, v, g: SegmentGroup, causal: bool, softmax_scale: float | None) -> torch.Tensor:
    """SDPA over one group: (T, H, D) inputs -> (real tokens of the group, H, D) in the group's row order."""
    heads, dim = q.shape[1:]

    def padded(x):  # (T, H, D) -> (n, H, m, D)
        if g.gather is None:
            x = x.narrow(0, g.start, g.count * g.max_len)
        else:
            x = x.index_select(0, g.gather)
        return x.view(g.count, g.max_len, heads, dim).transpose(1, 2)

    o = F.scaled_dot_product_attention(padded(q), padded(k), padded(v), attn_mask=g.key_mask,
                                       is_causal=causal, scale=softmax_scale)  # (n, H, m, D)
    o = o.transpose(1, 2).reshape(g.count * g.max_len, heads, dim)
    return o if g.keep is None else o.index_select(0, g.keep)


def sdpa_varlen(q, k, v, cu_seqlens, causal: bool = False, softmax_scale: float | None = None) -> torch.Tensor:
    """F.scaled_dot_product_attention on length-bucketed, right-padded groups of segments.

    Segments of similar length share one (n, H, max_len, D) SDPA call (`group_lengths`), so the cost
    follows sum(len^2) with a fixed cost per group rather than per segment. The plan (index tensors)
    is built once per cu_seqlens tensor (cached; every layer of a step shares it), which costs one host
    read of cu_seqlens (a sync on CUDA). Under torch.compile: one call with a (T, T) block-diagonal mask.
    """
    total = q.shape[0]
    if torch.compiler.is_compiling():
        allowed = block_diagonal_mask(cu_seqlens, total, causal)  # (T, T)
        out = F.scaled_dot_product_attention(
            _heads_first(q), _heads_first(k), _heads_first(v), attn_mask=allowed, scale=softmax_scale
        )
        return _tokens_first(out)
    if total == 0:
        return torch.empty_like(q)
    heads_x_dim = q.shape[1] * q.shape[2]
    plan = _PLANS.get_or_compute(cu_seqlens, (total, causal, heads_x_dim),
                                 lambda: bucket_plan(cu_seqlens, total, causal, heads_x_dim))
    outs = [_run_group(q, k, v, g, causal, softmax_scale) for g in plan.groups]
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=0)  # (T, H, D) in group row order
    return out if plan.order is None else out.index_select(0, plan.order)


def flex_varlen(q, k, v, cu_seqlens, causal: bool = False, softmax_scale: float | None = None) -> torch.Tensor:
    """torch.nn.attention.flex_attention with a document mask (eager: dense fallback; wrap in torch.compile for speed)."""
    try:  # lazy: optional, only in newer torch builds
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
    try:  # lazy: xformers is an optional dependency (unist[gpu])
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
    try:  # lazy: optional, only in newer torch builds
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
