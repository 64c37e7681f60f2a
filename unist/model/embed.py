"""One shared patch embedding and reconstruction head for every layout, in two codecs.

`PatchEmbed` / `PatchHead` (codec "basis", the default): a token's observed points are projected onto
R learned functions of their in-patch position (dx, dy, dt), per channel:
    phi = GELU(W fourier(rel_pos))                                     (L, S, R) slot basis
    m_k[c] = sum_s mask * v^k * phi / n_c,  k = 0, 1, 2                (L, C, R) moments, n_c observed points
    token  = W_out [GELU(W_c [m_0, m_1, m_2, size_c]) * observed_c]_c   (L, d_model)
and the head writes values back as a rank-R expansion in its own slot basis psi:
    y[s, c] = sum_r coef[c, r](h) psi[s, r] + bias[c](h)               (L, S, C)
This is MAE's linear patch embedding / head generalised to any slot set (a graph patch's slots are
nodes at arbitrary offsets), with the point-set codec's guarantees: invariant (embed) / equivariant
(head) to slot order, and unobserved points (NaN included) cannot influence the embedding. Its cost
is O(S*C*R) per token instead of a per-point MLP: 10-40x fewer FLOPs than the point-set codec
(docs/LOG.md, benchmarks/bench_step.py).

`PointSetEmbed` / `PointSetHead` (codec "pointset", releases trained before the basis codec): a token is a
set of observed points: each (slot, channel) with mask True contributes
(value, dx, dy, dt) + a channel-index embedding. Points are encoded by a small shared MLP and pooled
DeepSets-style (masked mean + multi-head attention pooling, the single-query core of a Perceiver),
then projected to d_model. Because pooling is over the set of observed points only:
  * the output is invariant to the order of slots (grid block, graph patch and video block alike),
  * unobserved points (missing cells, edge / short-patch / time / channel padding) cannot influence
    it at all: their values may be anything, NaN included (the observed flag of a point is its
    membership in the set; a token with no observed point gets a learned `empty` vector).
`PointSetHead` maps a token feature back to (S, C) values for any S: each slot is queried by an MLP of
its rel_pos added to the token feature, so it is equivariant to slot order, like the embedding.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.GELU(), nn.Linear(d_hidden, d_out))


class PointSetEmbed(nn.Module):
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
            raise ValueError(f"tokens have {C} channels but {type(self).__name__}(max_channels={self.max_channels}): "
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


class PointSetHead(nn.Module):
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
            raise ValueError(f"asked for {c} channels but {type(self).__name__}(max_channels={self.max_channels})")
        q = self.pos(rel_pos) + self.token(h)[:, None, :]  # (L, S, d_hidden)
        return self.out(F.gelu(q))[..., :c]  # (L, S, C)


FOURIER_FREQS = (0.5, 1.0, 2.0, 3.0)  # x pi: periods 4, 2, 1, 2/3 in rel_pos units ([-1, 1])


def fourier(rel_pos: torch.Tensor) -> torch.Tensor:
    """(..., 3) slot offsets in [-1, 1] -> (..., 3 + 3 * 2 * len(FOURIER_FREQS)) [x, sin(k pi x), cos(k pi x)]."""
    f = rel_pos.new_tensor(FOURIER_FREQS) * math.pi
    a = rel_pos[..., None] * f  # (..., 3, F)
    return torch.cat([rel_pos, a.sin().flatten(-2), a.cos().flatten(-2)], dim=-1)


FOURIER_DIM = 3 + 6 * len(FOURIER_FREQS)


class PatchEmbed(nn.Module):
    """(L, S, C) token values + mask + rel_pos -> (L, d_model) by slot-basis moments (module docstring).

    rank R: slot basis functions; d_point D: per-channel feature width; max_channels: channel blocks
    of the output projection (channel c always uses block c, so a channel keeps its identity)."""

    def __init__(self, d_model: int, max_channels: int = 8, d_point: int = 64, rank: int = 64) -> None:
        super().__init__()
        self.max_channels, self.rank, self.d_point = max_channels, rank, d_point
        self.basis = nn.Linear(FOURIER_DIM, rank)
        self.channel = nn.Linear(3 * rank + 1, d_point)
        self.channel_emb = nn.Parameter(torch.zeros(max_channels, d_point))
        self.out = nn.Linear(max_channels * d_point, d_model)
        self.empty = nn.Parameter(torch.zeros(d_model))

    def forward(self, values: torch.Tensor, mask: torch.Tensor, rel_pos: torch.Tensor) -> torch.Tensor:
        L, S, C = values.shape
        if C > self.max_channels:
            raise ValueError(f"tokens have {C} channels but PatchEmbed(max_channels={self.max_channels}): "
                             "build the embedding with a larger max_channels")
        phi = F.gelu(self.basis(fourier(rel_pos)))  # (L, S, R)
        m = mask.to(phi.dtype)  # (L, S, C)
        v = values.masked_fill(~mask, 0.0).to(phi.dtype)  # anything under mask False (NaN too) is gone
        count = m.sum(1)  # (L, C)
        w = torch.stack([m, v, v * v], dim=2) / count.clamp(min=1)[:, None, None, :]  # (L, S, 3, C)
        mom = torch.einsum("lskc,lsr->lckr", w, phi).reshape(L, C, 3 * self.rank)  # (L, C, 3R)
        size = (torch.log1p(count) / math.log1p(S))[..., None]  # (L, C, 1)
        h = F.gelu(self.channel(torch.cat([mom, size], dim=-1)) + self.channel_emb[:C].to(phi.dtype))  # (L, C, D)
        h = h * (count > 0)[..., None]  # an unobserved (or padding) channel contributes nothing
        z = F.linear(h.reshape(L, C * self.d_point), self.out.weight[:, :C * self.d_point], self.out.bias)
        return torch.where(count.sum(1, keepdim=True) > 0, z, self.empty.to(z.dtype))  # (L, d_model)


class PatchHead(nn.Module):
    """Token features (L, d_model) + slot rel_pos (L, S, 3) -> values (L, S, n_channels), any S (rank-R expansion)."""

    def __init__(self, d_model: int, max_channels: int = 8, d_hidden: int = 128, rank: int = 64) -> None:
        super().__init__()
        self.max_channels, self.rank = max_channels, rank
        self.basis = nn.Linear(FOURIER_DIM, rank)
        self.token = nn.Linear(d_model, d_hidden)
        self.out = nn.Linear(d_hidden, max_channels * (rank + 1))  # per channel: R coefficients + a bias

    def forward(self, h: torch.Tensor, rel_pos: torch.Tensor, n_channels: int | None = None) -> torch.Tensor:
        c = self.max_channels if n_channels is None else n_channels
        if c > self.max_channels:
            raise ValueError(f"asked for {c} channels but PatchHead(max_channels={self.max_channels})")
        L, R = h.shape[0], self.rank
        psi = F.gelu(self.basis(fourier(rel_pos)))  # (L, S, R)
        n = c * (R + 1)  # only the asked channels' rows of the output projection run
        coef = F.linear(F.gelu(self.token(h)), self.out.weight[:n], self.out.bias[:n]).view(L, c, R + 1)
        return torch.einsum("lsr,lcr->lsc", psi, coef[..., :R].to(psi.dtype)) + coef[:, None, :, R]  # (L, S, C)
