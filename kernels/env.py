"""The one place that knows the Triton environment: installed or not, compiled or interpreted, usable where.

Every other `unist.kernels` module asks here and none repeats these checks.

Triton interpreter (CPU, TRITON_INTERPRET=1): `triton.jit` reads TRITON_INTERPRET when it decorates, for
triton's own library (tl.zeros, tl.max, ...) too, so triton is imported (`import_triton`) and our kernels
jitted (`varlen_attention_kernels.jit_kernels`) at the first launch, not when unist.kernels is imported:
importing unist.kernels must not fix that choice for the whole process.
"""
from __future__ import annotations

import importlib.util
import os
from types import ModuleType

import torch

HAS_TRITON = importlib.util.find_spec("triton") is not None


class BackendUnavailable(RuntimeError):
    """The requested attention backend cannot run with this install / device."""


def triton_interpreting() -> bool:
    """True when Triton runs in its CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def triton_unavailable_reason(device: torch.device) -> str | None:
    """Why the Triton kernel cannot run on `device` (None when it can: CUDA, or CPU under TRITON_INTERPRET=1)."""
    if not HAS_TRITON:
        return "backend 'triton' needs the triton package; use backend='sdpa'"
    if device.type != "cuda" and not triton_interpreting():
        return ("backend 'triton' on CPU runs only in the Triton interpreter: "
                "set TRITON_INTERPRET=1 (slow, for tests), or use backend='sdpa'")
    return None


def triton_usable(device: torch.device) -> bool:
    """Whether the Triton kernel can run on `device` (CUDA, or CPU under TRITON_INTERPRET=1)."""
    return triton_unavailable_reason(device) is None


def import_triton() -> tuple[ModuleType, ModuleType]:
    """(triton, triton.language), imported now: the mode (compiled or interpreted) is fixed from then on."""
    # Lazy on purpose: triton is optional (setup.py: Linux only), and importing it fixes the interpreter choice.
    import triton
    import triton.language as tl

    return triton, tl


def check_interpreter_ready(*jitted) -> None:
    """Raise unless triton's own helpers (tl.zeros, tl.max, ...) and `jitted` were built in interpreter mode."""
    # Lazy: triton is optional and already imported by the caller's launch (see `import_triton`).
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction

    if not all(isinstance(fn, InterpretedFunction) for fn in (tl.zeros, *jitted)):
        raise BackendUnavailable(
            "TRITON_INTERPRET=1 was set after triton had been imported; set it before the first `import triton` "
            "(e.g. at the top of the script or in the environment)"
        )
