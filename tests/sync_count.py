"""Count the Python calls that would make the host wait for the GPU, and where they come from.

A CUDA kernel launch returns at once; the host only waits (a device->host sync) when Python needs a
value from the device: `.item()`, `.tolist()`, `int(t)` / `float(t)` / `bool(t)` (so `if t:`),
`.cpu()` / `.numpy()`, and ops whose output *shape* depends on the data (`nonzero`, boolean-mask
indexing, `unique`, `masked_select`, `repeat_interleave` without `output_size`, `bincount`, ...).
Each one stalls the launch queue, so a training step should have as few as possible.

`SyncCounter` records these calls while it is active, with the call site (the first frame outside
torch and this module), so a test can bound them and a person can see where they are:

    with SyncCounter() as syncs:
        loss = Pretrainer(model)(batch)["loss"]; loss.backward()
    assert syncs.count(within=("unist/", "kernels/")) <= 3, syncs.report()

On CPU it is a *proxy*: it counts the calls that would sync if the tensors were on a GPU (it cannot
tell a host tensor from a device one when everything is on CPU, so host-side bookkeeping done with
torch tensors counts too; do such bookkeeping in numpy or Python). With `cuda=True` on a CUDA machine
it also records the real syncs CUDA reports (`torch.cuda.set_sync_debug_mode("warn")`).
Don't use it under torch.compile (it patches torch.Tensor methods for its duration; not thread-safe).
"""
from __future__ import annotations

import collections
import functools
import os
import sys
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch

# Tensor methods that read device data on the host. (name, predicate on (args, kwargs) or None = always)
_TENSOR_METHODS = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "__complex__", "cpu", "numpy",
                   "nonzero", "argwhere", "unique", "unique_consecutive", "masked_select", "bincount", "equal",
                   "allclose", "repeat_interleave", "__getitem__", "__setitem__")
_TORCH_FUNCTIONS = ("nonzero", "argwhere", "unique", "unique_consecutive", "masked_select", "bincount", "equal",
                    "allclose", "repeat_interleave", "where", "is_nonzero")

_TORCH_DIR = os.path.dirname(torch.__file__)
_THIS_FILE = os.path.abspath(__file__)
_STATE = threading.local()


def _is_bool_index(index: Any) -> bool:
    """Whether an indexing key holds a bool tensor (a mask: the result's size depends on the data)."""
    keys = index if isinstance(index, tuple) else (index,)
    return any(isinstance(k, torch.Tensor) and k.dtype == torch.bool and k.dim() > 0 for k in keys)


def _syncs(name: str, args: tuple, kwargs: dict) -> bool:
    """Whether this call of `name` reads device data on the host (some ops only in some forms)."""
    if name in ("__getitem__", "__setitem__"):
        return len(args) > 1 and _is_bool_index(args[1])
    if name == "repeat_interleave":  # repeats as a tensor without output_size: the output length is data
        repeats = args[1] if len(args) > 1 else kwargs.get("repeats")
        if len(args) == 1 and "repeats" not in kwargs and isinstance(args[0], torch.Tensor):
            repeats = args[0]  # torch.repeat_interleave(repeats_tensor)
        return isinstance(repeats, torch.Tensor) and kwargs.get("output_size") is None
    if name == "where":  # torch.where(cond) is nonzero; the 3-argument form is elementwise
        return len(args) + len(kwargs) == 1
    if name == "bincount":
        return True  # the output length is max(input) + 1 (minlength only raises it)
    return True


@dataclass(frozen=True)
class SyncEvent:
    """One recorded call: what (`kind`, e.g. 'item' or 'cuda' for a CUDA-reported sync) and where."""

    kind: str
    filename: str
    lineno: int
    function: str
    stack: tuple[str, ...]  # up to 4 outer call sites "file:line (function)", innermost first

    @property
    def site(self) -> str:
        return f"{_short(self.filename)}:{self.lineno} ({self.function})"


def _short(path: str) -> str:
    cwd = os.getcwd() + os.sep
    return path[len(cwd):] if path.startswith(cwd) else path


def _outside(filename: str) -> bool:
    return not (filename.startswith(_TORCH_DIR) or os.path.abspath(filename) == _THIS_FILE)


def _call_sites(frame, depth: int = 5) -> list[tuple[str, int, str]]:
    """The first `depth` frames (innermost first) outside torch and this module."""
    out = []
    while frame is not None and len(out) < depth:
        code = frame.f_code
        if _outside(code.co_filename):
            out.append((code.co_filename, frame.f_lineno, code.co_name))
        frame = frame.f_back
    return out


class SyncCounter:
    """Context manager recording host-sync calls (see module docstring) in `self.events`.

    kinds: the method / function names to watch (default: all known ones). cuda: also record the
    syncs CUDA itself reports (only when CUDA is available; restores the previous debug mode).
    """

    def __init__(self, kinds: Iterable[str] | None = None, cuda: bool = False):
        known = set(_TENSOR_METHODS) | set(_TORCH_FUNCTIONS)
        self.kinds = set(kinds) if kinds is not None else known
        unknown = self.kinds - known
        if unknown:
            raise ValueError(f"SyncCounter: unknown kinds {sorted(unknown)}; choose from {sorted(known)}")
        self.cuda = cuda and torch.cuda.is_available()
        self.events: list[SyncEvent] = []
        self._saved: list[tuple[Any, str, bool, Any]] = []
        self._warnings = None
        self._recorded_warnings: list | None = None
        self._debug_mode = 0

    # ------------------------------------------------------------------ patching
    def _wrap(self, name: str, original: Callable) -> Callable:
        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            if getattr(_STATE, "depth", 0) == 0 and _syncs(name, args, kwargs):
                self._record(name, sys._getframe(1))
            _STATE.depth = getattr(_STATE, "depth", 0) + 1
            try:
                return original(*args, **kwargs)
            finally:
                _STATE.depth -= 1

        return wrapper

    def _patch(self, owner: Any, name: str) -> None:
        if not hasattr(owner, name):
            return
        own = name in vars(owner)
        original = getattr(owner, name)
        self._saved.append((owner, name, own, vars(owner).get(name)))
        setattr(owner, name, self._wrap(name, original))

    def _record(self, kind: str, frame) -> None:
        sites = _call_sites(frame)
        if not sites:
            return
        filename, lineno, function = sites[0]
        stack = tuple(f"{_short(f)}:{n} ({fn})" for f, n, fn in sites[1:])
        self.events.append(SyncEvent(kind, filename, lineno, function, stack))

    def __enter__(self) -> "SyncCounter":
        if self._saved:
            raise RuntimeError("SyncCounter is not re-entrant; use a new one")
        self.events = []
        for name in _TENSOR_METHODS:
            if name in self.kinds:
                self._patch(torch.Tensor, name)
        for name in _TORCH_FUNCTIONS:
            if name in self.kinds:
                self._patch(torch, name)
        if self.cuda:
            self._warnings = warnings.catch_warnings(record=True)
            self._recorded_warnings = self._warnings.__enter__()
            warnings.simplefilter("always")
            self._debug_mode = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode("warn")
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.set_sync_debug_mode(self._debug_mode)
            for w in self._recorded_warnings or []:
                if "synchroniz" in str(w.message):
                    self.events.append(SyncEvent("cuda", w.filename, w.lineno, str(w.message).splitlines()[0][:80], ()))
            self._warnings.__exit__(*exc)
        for owner, name, own, original in reversed(self._saved):
            if own:
                setattr(owner, name, original)
            else:
                delattr(owner, name)  # back to the inherited (C) slot
        self._saved = []

    # ------------------------------------------------------------------ queries
    def select(self, within: Iterable[str] | str | None = None, kinds: Iterable[str] | None = None) -> list[SyncEvent]:
        """Events whose call site path contains one of `within` (e.g. "kernels/"), of the given kinds."""
        within = (within,) if isinstance(within, str) else tuple(within) if within is not None else None
        wanted = set(kinds) if kinds is not None else None
        return [e for e in self.events
                if (within is None or any(w in e.filename for w in within)) and (wanted is None or e.kind in wanted)]

    def count(self, within: Iterable[str] | str | None = None, kinds: Iterable[str] | None = None) -> int:
        return len(self.select(within, kinds))

    def by_site(self, within: Iterable[str] | str | None = None) -> collections.Counter:
        """Counter of "file:line (function) [kind]" -> calls, most frequent first with `.most_common()`."""
        return collections.Counter(f"{e.site} [{e.kind}]" for e in self.select(within))

    def report(self, within: Iterable[str] | str | None = None, limit: int = 30) -> str:
        """A readable table of the call sites (for assertion messages and logs)."""
        sites = self.by_site(within).most_common(limit)
        lines = [f"{self.count(within)} host-sync calls at {len(self.by_site(within))} sites:"]
        lines += [f"  {n:5d}  {site}" for site, n in sites]
        return "\n".join(lines)
