"""Where and when a token is: continuous space, time-patch index, calendar, data layout and domain.

Every layout shares one position code, so a grid cell, a sensor of a graph and a video pixel block
are placed in the same space:
  space     Fourier features of the patch centre `coords` in [0, 1]^2 (frequencies 2^0..2^(F-1) * pi
            per axis, sin and cos, 4F features) -> Linear. Continuous, so any grid size or irregular
            graph gets a position without a lookup table.
  time      fixed sinusoidal code of `t_index` (the time-patch index in the window; Transformer style).
  calendar  Linear(4 -> d) of sin/cos time of day and day of week, zeroed where `has_time` is False.
  layout    learned embedding of grid / graph / video.
  domain    learned embedding of the sample's domain string, hashed into `domain_buckets` rows with
            CRC-32 (stable across processes and Python versions, unlike `hash()`); unseen domains
            still get a row, and colliding domains share one, which only costs a little specificity.
"""
from __future__ import annotations

import math
import zlib

import torch
import torch.nn as nn

from unist.patching.tokens import TokenBatch

NUM_LAYOUTS = 3


def domain_bucket(domain: str, buckets: int) -> int:
    """Stable row of `domain` in a table of `buckets` rows (CRC-32 of the UTF-8 string)."""
    return zlib.crc32(domain.encode("utf-8")) % buckets


def sincos_1d(pos: torch.Tensor, dim: int, base: float = 10000.0) -> torch.Tensor:
    """pos (L,) -> (L, dim) sinusoidal code [sin(pos * w_i), cos(pos * w_i)] (dim padded with 0 if odd)."""
    half = dim // 2
    freqs = torch.exp(-math.log(base) * torch.arange(half, device=pos.device, dtype=torch.float32) / max(half, 1))
    ang = pos.float()[:, None] * freqs[None]  # (L, half)
    out = torch.cat([ang.sin(), ang.cos()], dim=-1)  # (L, 2 * half)
    return nn.functional.pad(out, (0, dim - 2 * half))


def fourier_features(coords: torch.Tensor, num_freqs: int) -> torch.Tensor:
    """coords (L, 2) in [0, 1] -> (L, 4 * num_freqs): sin/cos of 2^k * pi * x for k < num_freqs, per axis."""
    freqs = math.pi * 2.0 ** torch.arange(num_freqs, device=coords.device, dtype=torch.float32)  # (F,)
    ang = coords.float()[:, :, None] * freqs  # (L, 2, F)
    return torch.cat([ang.sin(), ang.cos()], dim=-1).flatten(1)  # (L, 4F)


class TokenPosition(nn.Module):
    """TokenBatch -> (L, dim) additive position/context code (see module docstring)."""

    def __init__(self, dim: int, fourier_freqs: int = 8, domain_buckets: int = 64):
        super().__init__()
        self.dim, self.fourier_freqs, self.domain_buckets = dim, fourier_freqs, domain_buckets
        self.space = nn.Linear(4 * fourier_freqs, dim)
        self.calendar = nn.Linear(4, dim, bias=False)
        self.layout = nn.Embedding(NUM_LAYOUTS, dim)
        self.domain = nn.Embedding(domain_buckets, dim)

    def domain_ids(self, batch: TokenBatch) -> torch.Tensor:
        """(B,) int64 domain row per sample ("unknown" when the batch carries no domains)."""
        domains = batch.domains or ["unknown"] * batch.num_samples
        if len(domains) != batch.num_samples:
            raise ValueError(f"batch.domains has {len(domains)} entries for {batch.num_samples} samples: give one "
                             "domain string per sample (or none)")
        rows = [domain_bucket(d, self.domain_buckets) for d in domains]
        return torch.tensor(rows, dtype=torch.long, device=batch.sample_id.device)

    def forward(self, batch: TokenBatch) -> torch.Tensor:
        cal = batch.time_feats * batch.has_time[:, None].to(batch.time_feats.dtype)  # (L, 4)
        pos = (self.space(fourier_features(batch.coords, self.fourier_freqs))  # (L, d)
               + sincos_1d(batch.t_index, self.dim)
               + self.calendar(cal)
               + self.layout(batch.layout_id)
               + self.domain(self.domain_ids(batch)[batch.sample_id]))
        return pos
