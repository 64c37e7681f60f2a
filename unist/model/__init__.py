"""The UniST network: patch embedding, MoE Transformer encoder, light decoder, heads (residual, lag copy,
diffusion velocity), per-location normalisation, configs and the size registry. Nothing here trains or
forecasts: the objectives are `unist.objectives`, the forecasting API `unist.forecast`.

    from unist.model import create_model, list_models
    model = create_model("unist_tiny")
    out = model(batch, keep)                    # NetOutput: normalised batch, latent, decoder features, pred
"""
from unist.errors import ConfigError

from .config import MASK_STRATEGIES, MaskingConfig, MoEConfig, ObjectiveConfig, UniSTConfig
from .flops import count_params, flops_per_token
from .moe import MoEFeedForward
from .registry import get_config, list_models, register_model
from .unist import NetOutput, UniST, create_model

__all__ = ["MASK_STRATEGIES", "ConfigError", "MaskingConfig", "MoEConfig", "MoEFeedForward", "NetOutput",
           "ObjectiveConfig", "UniST", "UniSTConfig", "count_params", "create_model", "flops_per_token", "get_config",
           "list_models", "register_model"]
