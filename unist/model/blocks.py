"""Pre-norm Transformer blocks over packed variable-length tokens.

The tokens of every sample sit back to back in one (L, d) sequence; attention calls
`unist.kernels.varlen_attention` with `cu_seqlens`, so each token attends to all tokens of its own
sample (full, non-causal attention) and never across samples, with no padding. The feed-forward is
an `MoEFeedForward` (routed experts, or a dense MLP when `MoEConfig.dense`), and every block returns
its router statistics so the model can add the load-balancing and z losses. With
`activation_checkpointing` on, each block recomputes its forward in backward (torch.utils.checkpoint,
non-reentrant, RNG state preserved; the MoE statistics are return values, not side effects, so
recomputation does not double-count them).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from unist.kernels import varlen_attention

from .config import MoEConfig
from .moe import MoEFeedForward, MoEStats


class Attention(nn.Module):
    """Multi-head self-attention within each packed segment."""

    def __init__(self, dim: int, heads: int, backend: str | None = None, dropout: float = 0.0):
        super().__init__()
        self.heads, self.head_dim, self.backend = heads, dim // heads, backend
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int) -> torch.Tensor:
        n, d = x.shape  # (L, d)
        q, k, v = self.qkv(x).view(n, 3, self.heads, self.head_dim).unbind(1)  # 3 x (L, H, Dh)
        o = varlen_attention(q, k, v, cu_seqlens, max_seqlen=max_seqlen, causal=False, backend=self.backend)
        return self.drop(self.proj(o.reshape(n, d)))  # (L, d)


class Block(nn.Module):
    """x + Attn(LN(x)); x + FFN(LN(x)) where FFN is routed experts or a dense MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, moe: MoEConfig, backend: str | None = None,
                 dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, backend, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = MoEFeedForward(dim, int(dim * mlp_ratio), moe, dropout)

    def forward(self, x: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int,
                layout_id: torch.Tensor | None = None) -> tuple[torch.Tensor, MoEStats]:
        x = x + self.attn(self.norm1(x), cu_seqlens, max_seqlen)
        y, stats = self.ffn(self.norm2(x), layout_id)
        return x + y, stats


class Transformer(nn.Module):
    """depth Blocks + final LayerNorm; returns the tokens and every block's MoE statistics."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float, moe: MoEConfig,
                 backend: str | None = None, dropout: float = 0.0):
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, moe, backend, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.activation_checkpointing = False  # set by the training engine (`unist.train.engine`)

    def forward(self, x: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int,
                layout_id: torch.Tensor | None = None) -> tuple[torch.Tensor, list[MoEStats]]:
        stats = []
        recompute = self.activation_checkpointing and torch.is_grad_enabled()
        for blk in self.blocks:
            if recompute:
                x, s = checkpoint(blk, x, cu_seqlens, max_seqlen, layout_id, use_reentrant=False)
            else:
                x, s = blk(x, cu_seqlens, max_seqlen, layout_id)  # (L, d)
            stats.append(s)
        return self.norm(x), stats
