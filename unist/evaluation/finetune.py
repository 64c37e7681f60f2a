"""Few-shot adaptation: fine-tune a copy of the model on the first fraction of the target's training split.

The copy trains with the model's own pretraining losses (masked reconstruction + diffusion +
contrastive, `UniST.forward`) but with the masking fixed to the forecasting task: only the
`temporal` strategy, hiding exactly the horizon's time patches of each context + horizon window,
and no extra hidden cells. So the point head learns the forecast and the flow head its
distribution, in the same normalised units as `forecast` (instance normalisation per window: no
training statistic is needed, even here).

Modes: `full` updates every parameter; `lora` freezes the model and trains rank-r adapters
(W x + (alpha / r) B A x, B zero-initialised so training starts from the pretrained function) on
every attention projection (qkv, proj) and dense MLP linear of the encoder and decoder. Expert
weights are stacked tensors, not Linear modules, and stay frozen in LoRA mode.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn as nn

from unist.data import DataError, STSeries, sliding_windows
from unist.model import MaskingConfig

MODES = ("full", "lora")


@dataclass(frozen=True)
class FinetuneConfig:
    """fraction: share of the training split used (its first part in time); steps x batch_size windows
    drawn with replacement; lr: None = 1e-4 (full) or 1e-3 (lora)."""

    fraction: float
    mode: str = "full"
    steps: int = 50
    batch_size: int = 8
    lr: float | None = None
    weight_decay: float = 0.0
    lora_rank: int = 4
    lora_alpha: float = 8.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"finetune fraction must be in (0, 1], got {self.fraction}")
        if self.mode not in MODES:
            raise ValueError(f"finetune mode {self.mode!r} is unknown: use one of {MODES}")
        if self.steps < 1 or self.batch_size < 1 or self.lora_rank < 1:
            raise ValueError("finetune steps, batch_size and lora_rank must be >= 1")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (1e-4 if self.mode == "full" else 1e-3)


class LoRALinear(nn.Module):
    """A frozen `nn.Linear` plus a trainable low-rank update (alpha / r) B A (Hu et al. 2021)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.T @ self.lora_b.T) * self.scale


def add_lora(model: nn.Module, rank: int, alpha: float) -> list[str]:
    """Freeze `model` and wrap the attention and dense-MLP linears of its encoder and decoder in `LoRALinear`.
    Returns the wrapped module names."""
    model.requires_grad_(False)
    wrapped = []
    for root in ("encoder", "decoder"):
        for name, module in list(getattr(model, root).named_modules()):
            for child_name in ("qkv", "proj", "fc1", "fc2"):
                child = getattr(module, child_name, None)
                if isinstance(child, nn.Linear):
                    setattr(module, child_name, LoRALinear(child, rank, alpha))
                    wrapped.append(f"{root}.{name}.{child_name}")
    if not wrapped:
        raise RuntimeError("add_lora found no attention/MLP Linear layer in model.encoder / model.decoder")
    return wrapped


def training_windows(train: STSeries, fraction: float, context: int, horizon: int, tau: int) -> list[STSeries]:
    """Windows of the first `fraction` of `train`, cropped like `forecast` crops a context (whole time patches)."""
    n = int(round(train.num_steps * fraction))
    part = train.slice_time(0, n)
    crop = context % tau
    wins = [w.slice_time(crop, w.num_steps) for w in sliding_windows(part, context, horizon)] if n else []
    if not wins:
        raise DataError(f"--finetune-fraction {fraction}: the first {n} steps of the training split hold no window "
                        f"of {context} + {horizon} steps; raise the fraction")
    return wins


def forecasting_masking(context: int, horizon: int, tau: int) -> MaskingConfig:
    """Temporal masking that hides exactly the horizon's time patches of a (cropped) window."""
    n_ctx, n_fut = context // tau, -(-horizon // tau)
    return MaskingConfig(strategies=("temporal",), ratio=(n_fut - 0.5) / (n_ctx + n_fut), cell_ratio=0.0)


def finetune(model: nn.Module, train: STSeries, context: int, horizon: int,
             cfg: FinetuneConfig) -> tuple[nn.Module, dict]:
    """A fine-tuned copy of `model` (the original is untouched) and a record of what was done."""
    tau = model.config.patch.time_patch
    if context < tau:
        raise DataError(f"context {context} is shorter than one time patch ({tau}): nothing to fine-tune on")
    wins = training_windows(train, cfg.fraction, context, horizon, tau)
    tuned = copy.deepcopy(model)
    tuned.config = replace(tuned.config, masking=forecasting_masking(context, horizon, tau))
    wrapped = add_lora(tuned, cfg.lora_rank, cfg.lora_alpha) if cfg.mode == "lora" else []
    params = [p for p in tuned.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    device = next(tuned.parameters()).device
    rng = np.random.default_rng(cfg.seed)
    losses = []
    tuned.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        for _ in range(cfg.steps):
            batch = tuned.patcher.patchify([wins[i] for i in rng.integers(0, len(wins), cfg.batch_size)]).to(device)
            loss = tuned(batch)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    tuned.eval()
    record = {"mode": cfg.mode, "fraction": cfg.fraction, "steps": cfg.steps, "batch_size": cfg.batch_size,
              "lr": cfg.learning_rate, "train_steps_used": int(round(train.num_steps * cfg.fraction)),
              "windows_available": len(wins), "trainable_params": sum(p.numel() for p in params),
              "loss_first": losses[0], "loss_last": losses[-1],
              "loss_last10_mean": float(np.mean(losses[-10:]))}
    if wrapped:
        record.update(lora_rank=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_modules=len(wrapped))
    return tuned, record


__all__ = ["FinetuneConfig", "LoRALinear", "MODES", "add_lora", "finetune", "forecasting_masking", "training_windows"]
