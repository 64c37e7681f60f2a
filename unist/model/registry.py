"""timm-style registry of named model sizes: `create_model("unist_tiny", depth=2)`, `list_models()`.

A registered name is a function returning a `UniSTConfig`; `get_config` (and `create_model`, in `unist.py`) applies keyword overrides
(top-level fields, or a dict for a nested section: `moe={"top_k": 1}`) and builds the model.
Sizes (parameter counts are checked in tests/unit/test_model_config.py):
  unist_tiny   d=128,  4 blocks, 4 experts top-2   ~2.3M  (trains on 2 CPU cores)
  unist_small  d=256,  6 blocks, 8 experts top-2   ~27M
  unist_base   d=512, 12 blocks, 8 experts top-2   ~0.2B total, ~70M active per token
  unist_large  d=1024, 16 blocks, 8 experts top-2  ~1.2B total, ~0.35B active per token
"""
from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import fields, is_dataclass, replace

from unist.errors import ConfigError

from .config import MaskingConfig, MoEConfig, ObjectiveConfig, UniSTConfig

_REGISTRY: dict[str, Callable[[], UniSTConfig]] = {}


def register_model(fn: Callable[[], UniSTConfig]) -> Callable[[], UniSTConfig]:
    """Decorator: register a config factory under its function name."""
    if fn.__name__ in _REGISTRY:
        raise ValueError(f"model {fn.__name__!r} is already registered")
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_config(name: str, **overrides) -> UniSTConfig:
    """The named config with `overrides` applied, validated."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise KeyError(f"unknown model {name!r}{hint}; registered: {list_models()}")
    cfg = _REGISTRY[name]()
    known = {f.name for f in fields(cfg)}
    for key, value in overrides.items():
        if key not in known:
            raise ConfigError(f"unknown config field {key!r} for {name}; fields: {sorted(known)}")
        current = getattr(cfg, key)
        if is_dataclass(current) and isinstance(value, dict):
            value = replace(current, **value)
        cfg = replace(cfg, **{key: value})
    return cfg.validate()


@register_model
def unist_tiny() -> UniSTConfig:
    return UniSTConfig(d_model=128, depth=4, heads=4, decoder_dim=96, decoder_depth=2, decoder_heads=4,
                       diffusion_dim=128, diffusion_depth=2, patch_embed_dim=32,
                       moe=MoEConfig(num_experts=4, top_k=2))


@register_model
def unist_small() -> UniSTConfig:
    return UniSTConfig(d_model=256, depth=6, heads=8, decoder_dim=192, decoder_depth=3, decoder_heads=6,
                       diffusion_dim=256, diffusion_depth=3, moe=MoEConfig(num_experts=8, top_k=2),
                       objectives=ObjectiveConfig(proj_dim=128))


@register_model
def unist_base() -> UniSTConfig:
    return UniSTConfig(d_model=512, depth=12, heads=8, decoder_dim=256, decoder_depth=4, decoder_heads=8,
                       diffusion_dim=512, diffusion_depth=3, patch_embed_dim=128,
                       moe=MoEConfig(num_experts=8, top_k=2), objectives=ObjectiveConfig(proj_dim=256))


@register_model
def unist_large() -> UniSTConfig:
    return UniSTConfig(d_model=1024, depth=16, heads=16, decoder_dim=512, decoder_depth=8, decoder_heads=16,
                       diffusion_dim=1024, diffusion_depth=4, patch_embed_dim=128,
                       moe=MoEConfig(num_experts=8, top_k=2), masking=MaskingConfig(ratio=0.6),
                       objectives=ObjectiveConfig(proj_dim=256))
