"""unist.kernels: Triton kernels (installed from the top-level kernels/ folder).

varlen_attention: attention within packed variable-length segments (Triton FlashAttention-2 on CUDA,
PyTorch backends elsewhere); see docs/kernels.md for the layering (env, kernels, launchers, dispatch).
"""
from .dispatch import BACKENDS, default_backend, varlen_attention
from .env import BackendUnavailable, triton_interpreting
from .reference import check_varlen_inputs, varlen_attention_reference

__all__ = [
    "BACKENDS",
    "BackendUnavailable",
    "check_varlen_inputs",
    "default_backend",
    "triton_interpreting",
    "varlen_attention",
    "varlen_attention_reference",
]
