"""The UniST model: MoE Transformer over patched tokens, trained on masked, contrastive and diffusion losses.

    from unist.model import create_model, list_models
    model = create_model("unist_tiny")
    losses = model(model.patcher.patchify(windows))   # dict: loss, masked, contrastive, diffusion, ...
    model.forecast(window, horizon=12)                # [12, *spatial, C]
"""
from .config import MASK_STRATEGIES, ConfigError, MaskingConfig, MoEConfig, ObjectiveConfig, UniSTConfig
from .flops import count_params, flops_per_token
from .moe import MoEFeedForward
from .registry import create_model, get_config, list_models, register_model
from .unist import UniST

__all__ = ["MASK_STRATEGIES", "ConfigError", "MaskingConfig", "MoEConfig", "MoEFeedForward", "ObjectiveConfig",
           "UniST", "UniSTConfig", "count_params", "create_model", "flops_per_token", "get_config", "list_models",
           "register_model"]
