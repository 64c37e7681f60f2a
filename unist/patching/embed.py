"""One shared patch embedding (`PatchEmbed`) and reconstruction head (`PatchHead`) for every layout.

A token is a set of observed points: each (slot, channel) with mask True contributes
(value, dx, dy, dt) + a channel-index embedding. Points are encoded by a small shared MLP and pooled
DeepSets-style (masked mean + multi-head attention pooling, the single-query core of a Perceiver),
then projected to d_model. Because pooling is over the set of observed points only:
  * the output is invariant to the order of slots (grid block, graph patch and video block alike),
  * unobserved points (missing cells, edge / short-patch / time / channel padding) cannot influence
    it at all: their values may be anything, NaN included (the observed flag of a point is its
    membership in the set; a token with no observed point gets a learned `empty` vector).
`PatchHead` maps a token feature back to (S, C) values for any S: each slot is queried by an MLP of
its rel_pos added to the token feature, so it is equivariant to slot order, like the embedding.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.GELU(), nn.Linear(d_hidden, d_out))


class PatchEmbed(nn.Module):
    """(L, S, C) token values + mask + rel_pos -> (L, d_model). Weights shared by every layout.

    d_point: width of the per-point encoding; n_heads: attention-pooling heads (divides d_point);
    max_channels: size of the channel-index embedding (a batch may have at most this many channels).
    """

    def __init__(self, d_model: int, max_channels: int = 8, d_point: int = 64, n_heads: int = 4) -> None:
        super().__init__()
        if d_point % n_heads:
            raise ValueError(f"d_point ({d_point}) must be divisible by n_heads ({n_heads})")
        self.max_channels, self.n_heads = max_channels, n_heads
        self.point_in = nn.Linear(4, d_point)  # (value, dx, dy, dt)
        self.channel = nn.Embedding(max_channels, d_point)
        self.point_mlp = _mlp(d_point, 2 * d_point, d_point)
        self.score = nn.Linear(d_point, n_heads)
        self.out = nn.Sequential(nn.LayerNorm(2 * d_point + 1), nn.Linear(2 * d_point + 1, d_model))
        self.empty = nn.Parameter(torch.zeros(d_model))

    def forward(self, values: torch.Tensor, mask: torch.Tensor, rel_pos: torch.Tensor) -> torch.Tensor:
        L, S, C = values.shape
        if C > self.max_channels:
            raise ValueError(f"tokens have {C} channels but PatchEmbed(max_channels={self.max_channels}): "
                             "build the embedding with a larger max_channels")
        m = mask.reshape(L, S * C)  # (L, N) observed points, N = S*C
        v = values.masked_fill(~mask, 0.0)  # (L, S, C): anything under mask False (NaN too) is gone
        feat = torch.cat([v[..., None], rel_pos[:, :, None, :].expand(L, S, C, 3)], dim=-1)  # (L, S, C, 4)
        h = self.point_in(feat) + self.channel.weight[:C]  # (L, S, C, D)
        h = (h + self.point_mlp(h)).reshape(L, S * C, -1)  # (L, N, D)
        h = h * m[..., None]

        count = m.sum(1, keepdim=True)  # (L, 1)
        mean = h.sum(1) / count.clamp(min=1)  # (L, D)
        logits = self.score(h)  # (L, N, H); under autocast its dtype can differ from h's
        logits = logits.masked_fill(~m[..., None], torch.finfo(logits.dtype).min)
        w = logits.softmax(dim=1)  # all-masked tokens: uniform over zeroed points -> 0
        heads = h.reshape(L, S * C, self.n_heads, -1)  # (L, N, H, D/H)
        attn = torch.einsum("lnh,lnhd->lhd", w, heads).reshape(L, -1)  # (L, D)
        size = torch.log1p(count.to(h.dtype)) / math.log1p(S)  # (L, 1) point count (independent of batch C)
        z = self.out(torch.cat([mean, attn, size], dim=-1))  # (L, d_model)
        return torch.where(count > 0, z, self.empty.to(z.dtype))


class PatchHead(nn.Module):
    """Token features (L, d_model) + slot rel_pos (L, S, 3) -> values (L, S, n_channels), any S."""

    def __init__(self, d_model: int, max_channels: int = 8, d_hidden: int = 128) -> None:
        super().__init__()
        self.max_channels = max_channels
        self.pos = _mlp(3, d_hidden, d_hidden)
        self.token = nn.Linear(d_model, d_hidden)
        self.out = _mlp(d_hidden, d_hidden, max_channels)

    def forward(self, h: torch.Tensor, rel_pos: torch.Tensor, n_channels: int | None = None) -> torch.Tensor:
        c = self.max_channels if n_channels is None else n_channels
        if c > self.max_channels:
            raise ValueError(f"asked for {c} channels but PatchHead(max_channels={self.max_channels})")
        q = self.pos(rel_pos) + self.token(h)[:, None, :]  # (L, S, d_hidden)
        return self.out(F.gelu(q))[..., :c]  # (L, S, C)
