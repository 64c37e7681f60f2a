"""A small cache keyed by a live tensor's identity and version, for per-`cu_seqlens` work.

Every attention layer of one model step receives the *same* `cu_seqlens` tensor object (the encoder
gets the visible tokens' one, the decoder the full batch's), so whatever is derived from its values
(the input checks, the SDPA bucketing plan) needs computing once per step, not once per layer. The
cache holds a weak reference to the tensor and its `_version` (bumped by every in-place write), so
an entry is used only while that very tensor is alive and unmodified; a new tensor, even one that
reuses a freed tensor's address, never hits a stale entry.
"""
from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Any, Callable, Hashable

import torch


class TensorKeyedCache:
    """LRU map (tensor identity + version + extra key) -> value, holding at most `capacity` entries."""

    def __init__(self, capacity: int = 8):
        if capacity < 1:
            raise ValueError(f"TensorKeyedCache: capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._entries: OrderedDict[tuple, tuple[weakref.ref, int, Any]] = OrderedDict()

    def get_or_compute(self, tensor: torch.Tensor, extra: Hashable, compute: Callable[[], Any]) -> Any:
        """The cached value for (tensor as it is now, extra), computing and storing it on a miss."""
        key = (id(tensor), extra)
        hit = self._entries.get(key)
        if hit is not None:
            ref, version, value = hit
            if ref() is tensor and version == tensor._version:
                self._entries.move_to_end(key)
                return value
        value = compute()
        self._entries[key] = (weakref.ref(tensor), tensor._version, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
