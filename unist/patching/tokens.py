"""`TokenBatch`: the one token space shared by grids, graphs and video.

The patcher cuts every window (an `STSeries` slice) into patches of up to `S` cells:
  grid/video: p x p spatial block x tau time steps  (S = p*p*tau)
  graph:      up to k = p*p nodes x tau time steps   (S = k*tau)
Each patch becomes one token. Tokens of all samples in a batch are packed back to back into one
sequence of length L (no padding to the largest sample); `cu_seqlens` marks where each sample's
tokens start. Inside a token the S cells ("slots") carry their values for every channel, a validity
mask, and their relative position (dx, dy, dt) in the patch, so one point-set embedding serves every
patch type. Channels are padded to the batch's largest channel count and masked.

Shapes (L = total tokens, S = slots per token, C = max channels in the batch):
  values      (L, S, C) float32   observed values, 0 where mask is False
  mask        (L, S, C) bool      True = observed value (padding and missing are False)
  slot_valid  (L, S)    bool      True = the slot is a real cell (False = edge padding / short patch)
  rel_pos     (L, S, 3) float32   (dx, dy, dt) of each slot inside its patch, in [-1, 1]
  coords      (L, 2)    float32   patch centre, continuous, normalised to [0, 1] per sample
  t_index     (L,)      int64     time-patch index inside the window (0 .. T/tau - 1)
  space_index (L,)      int64     spatial-patch index inside the sample
  time_feats  (L, 4)    float32   sin/cos time of day, sin/cos day of week at the patch start (0 if unknown)
  has_time    (L,)      bool      whether time_feats are known
  sample_id   (L,)      int64     which sample of the batch (0 .. B-1)
  layout_id   (L,)      int64     0 grid, 1 graph, 2 video
  cu_seqlens  (B + 1,)  int32     sample boundaries in the packed sequence
  max_seqlen  int                 longest sample, in tokens
  specs       list[PatchSpec]     per-sample bookkeeping used by `unpatchify` (not tensors)
  domains     list[str]           per-sample domain tags

`validate()` checks these invariants (shapes, dtypes, finite values that are 0 where mask is False,
mask only on valid slots, rel_pos in [-1, 1], cu_seqlens / sample_id / max_seqlen consistent) and
raises ValueError naming the broken one; `UniversalPatcher.patchify` calls it on every batch.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import torch

LAYOUT_IDS = {"grid": 0, "graph": 1, "video": 2}


@dataclass
class TokenBatch:
    values: torch.Tensor
    mask: torch.Tensor
    slot_valid: torch.Tensor
    rel_pos: torch.Tensor
    coords: torch.Tensor
    t_index: torch.Tensor
    space_index: torch.Tensor
    time_feats: torch.Tensor
    has_time: torch.Tensor
    sample_id: torch.Tensor
    layout_id: torch.Tensor
    cu_seqlens: torch.Tensor
    max_seqlen: int
    specs: list[Any] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return int(self.values.shape[0])

    @property
    def num_samples(self) -> int:
        return int(self.cu_seqlens.numel() - 1)

    def patch_counts(self) -> tuple[list[int], list[int]] | None:
        """Per sample (spatial patches, time patches), read from the specs on the host (no device read), or None
        for a batch without specs. Exact for a patchified batch; after `select` they still describe the full
        samples (an upper bound for the kept tokens)."""
        if len(self.specs) != self.num_samples:
            return None
        return [s.space.n_space for s in self.specs], [s.n_time for s in self.specs]

    def validate(self) -> "TokenBatch":
        """Check the invariants in the module docstring; return self, or raise ValueError naming the problem."""
        L, S, C = self.values.shape if self.values.ndim == 3 else (None, None, None)
        want = {"values": ((L, S, C), torch.float32), "mask": ((L, S, C), torch.bool),
                "slot_valid": ((L, S), torch.bool), "rel_pos": ((L, S, 3), torch.float32),
                "coords": ((L, 2), torch.float32), "t_index": ((L,), torch.int64),
                "space_index": ((L,), torch.int64), "time_feats": ((L, 4), torch.float32),
                "has_time": ((L,), torch.bool), "sample_id": ((L,), torch.int64), "layout_id": ((L,), torch.int64)}
        for name, (shape, dtype) in want.items():
            x = getattr(self, name)
            if tuple(x.shape) != shape or x.dtype != dtype:
                raise ValueError(f"TokenBatch.{name} must be {dtype} {shape}, got {x.dtype} {tuple(x.shape)}")
        if not torch.isfinite(self.values).all():
            raise ValueError("TokenBatch.values has NaN/inf: unobserved values must be 0 and observed ones finite")
        if (self.values.ne(0) & ~self.mask).any():
            raise ValueError("TokenBatch.values must be 0 where mask is False (no leaked missing/padding values)")
        if (self.mask & ~self.slot_valid[..., None]).any():
            raise ValueError("TokenBatch.mask is True on a padding slot (slot_valid False)")
        if self.rel_pos.numel() and self.rel_pos.abs().max() > 1 + 1e-6:
            raise ValueError("TokenBatch.rel_pos must lie in [-1, 1]")
        cu = self.cu_seqlens
        if cu.dtype != torch.int32 or cu.ndim != 1 or cu.numel() < 2 or cu[0] != 0 or cu[-1] != L:
            raise ValueError(f"cu_seqlens must be int32 [0, ..., L={L}], got {cu.dtype} {cu.tolist()}")
        counts = cu[1:] - cu[:-1]
        if (counts < 0).any():
            raise ValueError(f"cu_seqlens must be non-decreasing, got {cu.tolist()}")
        expect = torch.repeat_interleave(torch.arange(counts.numel(), device=cu.device), counts.long())
        if not torch.equal(self.sample_id, expect):
            raise ValueError("sample_id does not match cu_seqlens (tokens of sample b must be cu[b]:cu[b+1])")
        if self.max_seqlen != int(counts.max()):
            raise ValueError(f"max_seqlen {self.max_seqlen} != longest sample {int(counts.max())}")
        for name in ("specs", "domains"):
            n = len(getattr(self, name))
            if n not in (0, counts.numel()):
                raise ValueError(f"TokenBatch.{name} has {n} entries for {counts.numel()} samples")
        return self

    def to(self, device: torch.device | str) -> "TokenBatch":
        kw = {}
        for f in fields(self):
            x = getattr(self, f.name)
            kw[f.name] = x.to(device) if isinstance(x, torch.Tensor) else x
        return TokenBatch(**kw)

    def select(self, keep: torch.Tensor) -> "TokenBatch":
        """Keep the tokens where `keep` (L,) bool is True; cu_seqlens is recomputed (samples may get 0 tokens).

        Two host syncs whatever the number of fields: the kept count (one `nonzero`) and max_seqlen."""
        idx = keep.nonzero().squeeze(1)  # (L',) the kept tokens, in order
        kw = {}
        for f in fields(self):
            x = getattr(self, f.name)
            if isinstance(x, torch.Tensor) and f.name != "cu_seqlens":
                kw[f.name] = x.index_select(0, idx)
            else:
                kw[f.name] = x
        sid = kw["sample_id"]
        counts = torch.zeros(self.num_samples, dtype=torch.long, device=sid.device).index_add_(0, sid, torch.ones_like(sid))
        cu = torch.zeros(self.num_samples + 1, dtype=torch.int32, device=self.values.device)
        cu[1:] = torch.cumsum(counts, 0).to(torch.int32)
        kw["cu_seqlens"] = cu
        kw["max_seqlen"] = int(counts.max().item()) if counts.numel() else 0
        return TokenBatch(**kw)
