"""Resume guards: a run resumes only with the model, fixed settings, ranks and data mixture it was started with.

They run before any weight is loaded, so a changed setting is named here instead of failing in torch's
`Error(s) in loading state_dict` or silently continuing a different run.
"""
from __future__ import annotations

import json
from typing import Any

from unist.model import UniSTConfig

from .checkpoint import CheckpointError
from .config import PretrainConfig

# Settings fixed for the life of a run: they set the LR schedule, the optimizer's hyper-parameters
# (DeepSpeed restores those from the checkpoint, so a new value would be silently ignored) or the
# data stream (the micro-batches of each rank). Resuming with any of them changed is refused.
RESUME_FIXED_KEYS = ("train.steps", "train.grad_accum", "train.seed", "optim.lr", "optim.min_lr_ratio",
                     "optim.warmup_steps", "optim.weight_decay", "optim.beta1", "optim.beta2", "optim.eps",
                     "data.tokens_per_batch", "data.window", "data.max_cells", "data.repeat_batches")


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {dotted key: leaf value} (lists and tuples compare as lists)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = list(v) if isinstance(v, tuple) else v
    return out


def differences(saved: dict[str, Any], now: dict[str, Any], keys: tuple[str, ...] | None = None) -> list[str]:
    """'key: checkpoint X, now Y' for every dotted key (of `keys`, default all) whose values differ."""
    a, b = flatten(saved), flatten(now)
    names = keys if keys is not None else tuple(sorted(set(a) | set(b)))
    return [f"{k}: checkpoint {a.get(k, '(absent)')!r}, now {b.get(k, '(absent)')!r}" for k in names
            if json.dumps(a.get(k), default=str) != json.dumps(b.get(k), default=str)]


def check_resume_settings(state: dict[str, Any], saved_world: int, cfg: PretrainConfig, model_cfg: UniSTConfig,
                          world: int) -> None:
    """Refuse to resume when the model, a RESUME_FIXED_KEYS setting or the number of ranks differs from
    the checkpoint's (`state`: its unist_state.json). Runs before any weight is loaded, so a changed
    model.* setting is named here instead of failing in torch's `Error(s) in loading state_dict`."""
    diff = differences({"model": state.get("model_config", {})}, {"model": model_cfg.to_dict()})
    if diff:
        raise CheckpointError("cannot resume: the model differs from the checkpoint's (" + "; ".join(diff) + "). "
                              "Resume with the checkpoint's model.* settings (unist_state.json in the checkpoint "
                              "has them), or start a new run (another name=..., or without resume)")
    diff = differences(state.get("run_config", {}), cfg.to_dict(), RESUME_FIXED_KEYS)
    if diff:
        raise CheckpointError("cannot resume: " + "; ".join(diff) + ". These settings are fixed for a run (LR "
                              "schedule, optimizer, data stream): resuming with new values would not continue the "
                              "same run. Resume with the checkpoint's values, or start a new run (another "
                              "name=..., or without resume) to use the new ones")
    if saved_world != world:
        raise CheckpointError(f"cannot resume: the checkpoint was written by {saved_world} ranks, this run has "
                              f"{world}: the batch (ranks x train.grad_accum x data.tokens_per_batch) and each "
                              "rank's data stream would change. Resume on the same number of ranks, or export a "
                              "release and start a new run")


def check_training_data(saved: dict[str, Any], now: dict[str, Any]) -> None:
    """Refuse to resume when the data mixture (datasets and weights) differs from the checkpoint's."""
    mix = lambda d: [(r["name"], round(r.get("weight", 0), 9)) for r in d.get("datasets", [])]  # noqa: E731
    if mix(saved) != mix(now):
        raise CheckpointError(f"cannot resume: the data mixture differs from the checkpoint's ({mix(saved)} vs now "
                              f"{mix(now)}): resuming would not continue the same data stream; use the same data.* "
                              "settings and UNIST_DATA_DIR, or start a new run")


__all__ = ["RESUME_FIXED_KEYS", "check_resume_settings", "check_training_data", "differences", "flatten"]
