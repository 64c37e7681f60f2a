"""Build the DeepSpeed engine around the pretraining objective (`unist.objectives.Pretrainer` over `UniST`).

  - weight decay on matrices only (biases, norms, embeddings' 1-D params and the mask token are exempt);
  - activation checkpointing: the encoder and decoder `Transformer`s recompute each block in backward
    (`Transformer.activation_checkpointing`, see `unist.model.blocks`);
  - ZeRO-3: `MoEFeedForward` is registered as a leaf module (`deepspeed.utils.set_z3_leaf_modules`),
    so ZeRO gathers all of a layer's experts at once instead of hooking each one, which would stall
    prefetching (and hang) when a rank routes no token to some expert. DeepSpeed reduces a leaf
    module's gradients from a full backward hook, which fires once per *call*: a leaf called twice in
    one forward reduces twice and trips `assert len(set(p.ds_id ...)) == len(params_in_bucket)` in
    stage3. UniST's second (contrastive) encoder pass runs under `torch.no_grad`, so every MoE layer
    has one call with gradient per step and the leaf registration is safe with every objective on;
  - the model is built fully on every rank (identical weights: UniST seeds its own init) and
    partitioned by `deepspeed.initialize`; `deepspeed.zero.Init` is not used because it would skip
    UniST's custom init of already-partitioned weights.
"""
from __future__ import annotations

from typing import Any

import torch.nn as nn
from torch.optim.lr_scheduler import LambdaLR

from unist.model import MoEFeedForward, UniST, UniSTConfig
from unist.objectives import Pretrainer

from .config import PretrainConfig
from .ds_config import lr_lambda


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_model(cfg: PretrainConfig, model_cfg: UniSTConfig, zero_stage: int) -> Pretrainer:
    """The Pretrainer over UniST(`model_cfg`), prepared for `zero_stage` (the stage of the DeepSpeed JSON used)."""
    net = UniST(model_cfg)
    for stack in (net.encoder, net.decoder):
        stack.activation_checkpointing = cfg.model.activation_checkpointing
    if zero_stage == 3:
        from deepspeed.utils import set_z3_leaf_modules  # DeepSpeed is imported by the engine only
        set_z3_leaf_modules(net, [MoEFeedForward])
    return Pretrainer(net)


def build_engine(cfg: PretrainConfig, model: nn.Module, ds_config: dict[str, Any]):
    """deepspeed.initialize with our param groups and, unless the JSON brings its own, our LR schedule."""
    import deepspeed

    schedule = None if "scheduler" in ds_config else (lambda opt: LambdaLR(opt, lr_lambda(cfg)))
    engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=param_groups(model, cfg.optim.weight_decay),
                                           config=ds_config, lr_scheduler=schedule)
    return engine
