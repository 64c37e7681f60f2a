"""The DeepSpeed JSON, generated from a `PretrainConfig` (or read from `ds_config=path`).

One micro-batch is one packed `TokenBatch` per rank, so DeepSpeed's batch bookkeeping counts packed
micro-batches: train_micro_batch_size_per_gpu = 1 and train_batch_size = world * grad_accum. The
optimizer is DeepSpeed's "AdamW" with `torch_adam: true` (torch.optim.AdamW, so no CPU op is JIT
compiled). bf16 is torch autocast (DeepSpeed's `torch_autocast`): fp32 master weights, bf16 matmuls,
which keeps the model's fp32 islands (router softmax, losses) intact; the learning-rate schedule is built in Python (`lr_lambda`) so resuming restores it from
the checkpoint. Expert parallelism is checked here because it decides what DeepSpeed can run.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .config import ConfigError, PretrainConfig

EP_UNSUPPORTED = (
    "expert parallelism (a DeepSpeed JSON with moe.ep_size={ep}) is not supported: unist's MoE layer (unist.model.moe.MoEFeedForward) keeps "
    "every expert on every rank and has no all-to-all token dispatch, so experts are data parallel "
    "(replicated under ZeRO 0, optimizer/gradient/parameter-sharded like any other weight under ZeRO 1/2/3). "
    "DeepSpeed's native MoE (which does all-to-all expert parallelism) is not used: it is refused under "
    "ZeRO-3. Drop moe.ep_size from the JSON; to fit more experts use ZeRO-3 (see docs/training.md)."
)


def resolve_precision(precision: str, on_gpu: bool) -> str:
    """'auto' -> 'bf16' on GPU, 'fp32' on CPU; bf16 (autocast) is allowed on CPU when asked for."""
    return ("bf16" if on_gpu else "fp32") if precision == "auto" else precision


def build_ds_config(cfg: PretrainConfig, world_size: int, on_gpu: bool) -> dict[str, Any]:
    """The DeepSpeed config dict for `cfg` on `world_size` ranks."""
    z, o = cfg.zero, cfg.optim
    zero: dict[str, Any] = {"stage": z.stage, "overlap_comm": z.overlap_comm, "contiguous_gradients": True,
                            "reduce_bucket_size": z.bucket_size, "allgather_bucket_size": z.bucket_size}
    if z.stage == 3:
        zero.update(stage3_prefetch_bucket_size=z.bucket_size, stage3_param_persistence_threshold=10_000,
                    stage3_gather_16bit_weights_on_model_save=False)
    if z.offload_optimizer:
        if z.stage == 0:
            raise ConfigError("zero.offload_optimizer=true needs zero.stage >= 1")
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": on_gpu}
    adamw: dict[str, Any] = {"lr": o.lr, "betas": [o.beta1, o.beta2], "eps": o.eps, "weight_decay": o.weight_decay}
    if not z.offload_optimizer:
        adamw["torch_adam"] = True
    ds = {
        "train_batch_size": world_size * cfg.train.grad_accum,
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": cfg.train.grad_accum,
        "gradient_clipping": o.grad_clip,
        "zero_optimization": zero,
        "optimizer": {"type": "AdamW", "params": adamw},
        "steps_per_print": 10**12,
        "wall_clock_breakdown": False,
        "zero_allow_untested_optimizer": True,
    }
    if resolve_precision(z.precision, on_gpu) == "bf16":
        ds["torch_autocast"] = {"enabled": True, "dtype": "bfloat16"}
    return ds


def load_ds_config(path: str | Path, cfg: PretrainConfig, world_size: int) -> dict[str, Any]:
    """A user-given DeepSpeed JSON; batch keys must agree with the run (one packed micro-batch per rank)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"ds_config={str(path)!r} does not exist: give a DeepSpeed JSON file, or leave ds_config "
                          "empty to generate one from the config")
    try:
        ds = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"ds_config {p} is not valid JSON: {e}") from None
    ds.setdefault("train_micro_batch_size_per_gpu", 1)
    ds.setdefault("gradient_accumulation_steps", cfg.train.grad_accum)
    if ds["train_micro_batch_size_per_gpu"] != 1:
        raise ConfigError(f"{p}: train_micro_batch_size_per_gpu must be 1 (one packed TokenBatch per rank); "
                          "set the micro-batch size with data.tokens_per_batch")
    ds.setdefault("train_batch_size", world_size * ds["gradient_accumulation_steps"])
    if ds.get("fp16", {}).get("enabled"):
        raise ConfigError(f"{p}: fp16 is not supported (loss scaling of the diffusion loss); use bf16")
    moe = ds.get("moe") or {}
    if int(moe.get("ep_size", 1)) != 1:
        raise ConfigError(EP_UNSUPPORTED.format(ep=moe["ep_size"]))
    return ds


def lr_lambda(cfg: PretrainConfig):
    """step -> lr multiplier: linear warmup from 1/warmup to 1, then cosine down to min_lr_ratio."""
    warmup, total, floor = cfg.optim.warmup_steps, cfg.train.steps, cfg.optim.min_lr_ratio

    def fn(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return fn
