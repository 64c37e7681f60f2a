"""Few-shot adaptation: fine-tune a copy of the model on the first fraction of the target's training split.

The copy trains with the model's own pretraining losses (masked reconstruction + diffusion +
contrastive, `unist.objectives.Pretrainer`) but with the masking fixed to the forecasting task: only the
`temporal` strategy, hiding exactly the horizon's time patches of each context + horizon window,
and no extra hidden cells. So the point head learns the forecast and the flow head its
distribution, in the same normalised units as `forecast` (instance normalisation per window: no
training statistic is needed, even here).

Modes: `full` updates every parameter; `lora` freezes the model and trains rank-r adapters
(W x + (alpha / r) B A x, B zero-initialised so training starts from the pretrained function) on
every attention projection (qkv, proj) and dense MLP linear of the encoder and decoder. Expert
weights are stacked tensors, not Linear modules, and stay frozen in LoRA mode.

`finetune_release` (CLI: `python -m unist.evaluation.finetune --checkpoint unist-tiny --data my.npz
--steps 50 --lora-rank 8 --out my_release`) fine-tunes a release on a dataset's training split and
writes the result as a release: LoRA adapters are merged into the weights first (`merge_lora`), so the
folder has the base model's keys and loads with `unist.from_pretrained` like any release. The written
release is loaded back and must reproduce the tuned model's forecast before the command succeeds.
"""
from __future__ import annotations

import argparse
import copy
import datetime as _dt
import math
import shlex
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from unist.data import DataError, STSeries, sliding_windows, split_context_target, split_series
from unist.forecast import Forecaster
from unist.forecast.policy import release_policy
from unist.model import MaskingConfig, UniST
from unist.model.hub import load_release
from unist.objectives import Pretrainer
from unist.release import WEIGHT_DTYPES, ReleaseError, load_name, write_release
from unist.train.export import model_card

from ..checkpoints import dataset_key
from ..cli import USER_ERRORS, device, fraction, positive_float, positive_int, report_error
from ..errors import EvalError
from ..protocols import load_target, protocol_for

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
            raise EvalError(f"finetune fraction must be in (0, 1], got {self.fraction}")
        if self.mode not in MODES:
            raise EvalError(f"finetune mode {self.mode!r} is unknown: use one of {MODES}")
        if self.steps < 1 or self.batch_size < 1 or self.lora_rank < 1:
            raise EvalError(f"finetune steps ({self.steps}), batch_size ({self.batch_size}) and lora_rank "
                            f"({self.lora_rank}) must be >= 1")
        if self.lr is not None and not 0.0 < self.lr < math.inf:
            raise EvalError(f"finetune lr must be a finite number > 0, got {self.lr}")

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


def merge_lora(model: nn.Module) -> list[str]:
    """Fold every `LoRALinear` of `model` into its Linear (W += (alpha / r) B A) and put the Linear back, in
    place; returns the merged module names. The state dict then has exactly the un-adapted model's keys,
    so a LoRA fine-tune is saved as an ordinary release."""
    merged = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                with torch.no_grad():
                    child.base.weight += child.scale * (child.lora_b @ child.lora_a)   # (out, r) @ (r, in)
                setattr(module, child_name, child.base)
                merged.append(f"{name}.{child_name}" if name else child_name)
    return merged


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


def finetune(model: Forecaster, train: STSeries, context: int, horizon: int,
             cfg: FinetuneConfig) -> tuple[Forecaster, dict]:
    """A fine-tuned copy of `model` under the same policy (the original is untouched) and a record of what was
    done."""
    tau = model.config.patch.time_patch
    if context < tau:
        raise DataError(f"context {context} is shorter than one time patch ({tau}): nothing to fine-tune on")
    wins = training_windows(train, cfg.fraction, context, horizon, tau)
    tuned = copy.deepcopy(model.model)
    tuned.config = replace(tuned.config, masking=forecasting_masking(context, horizon, tau))
    objective = Pretrainer(tuned)
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
            loss = objective(batch)["loss"]
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
    return Forecaster(tuned, model.policy), record


# ---------------------------------------------------------------------------------- fine-tuned releases
def _finetuned_training_data(base: dict[str, Any], series: STSeries, source: str, train: STSeries,
                             record: dict[str, Any]) -> dict[str, Any]:
    """The base release's training_data.json plus the fine-tuning data (so the contamination audit refuses
    it as a zero-shot target), which is no longer held out."""
    data = copy.deepcopy(base) if base else {"datasets": [], "heldout": []}
    data.setdefault("datasets", []).append({
        "name": series.name, "source": source, "layout": series.layout, "shape": list(series.values.shape),
        "split": f"fine-tuning: first {record['fraction']:.0%} of the train split ({record['train_steps_used']} of "
                 f"{train.num_steps} steps)", "steps": record["train_steps_used"]})
    names = {dataset_key(series.name), dataset_key(source), dataset_key(Path(source).stem)}
    data["heldout"] = [n for n in data.get("heldout", []) if dataset_key(n) not in names]
    return data


def finetune_release(checkpoint: str, data: str, out: str | Path, cfg: FinetuneConfig, context: int | None = None,
                     horizon: int | None = None, weights_dtype: str = "float32", device: str = "cpu",
                     command: str = "") -> tuple[Path, dict[str, Any]]:
    """Fine-tune release `checkpoint` on the training split (first 60 %, its first `cfg.fraction`) of `data`
    with windows of the data type's protocol (or `context` / `horizon`), and write the result as the release
    `out` (LoRA merged). The release is loaded back and must reproduce the tuned model's forecast of a
    training window. Returns (the release folder, the record: losses, parameters, check)."""
    if weights_dtype not in WEIGHT_DTYPES:
        raise ReleaseError(f"weights_dtype={weights_dtype!r} unknown: use one of {sorted(WEIGHT_DTYPES)}")
    base = load_release(UniST, checkpoint, device=device)
    policy = release_policy(base.config, f"{base.path}/config.json")
    series = load_target(data)
    p = protocol_for(series, context, horizon)
    train = split_series(series)["train"]
    tuned, record = finetune(Forecaster(base.model, policy), train, p.context, p.horizon, cfg)
    probe, _ = split_context_target(next(iter(sliding_windows(train, p.context, p.horizon))))
    before = tuned.forecast(probe, p.horizon, allow_long=True)  # [H, *sp, C]: the tuned model, adapters unmerged
    merged = merge_lora(tuned.model) if cfg.mode == "lora" else []
    training = copy.deepcopy(base.config.get("training") or {})
    training["finetune"] = {**record, "base": load_name(base.path), "data": data, "context": p.context,
                            "horizon": p.horizon, "merged_lora_modules": len(merged), "command": command,
                            "finetuned": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    path = write_release(out, tuned.model.state_dict(), base.config["model_name"], base.config["model_config"],
                         forecast_policy=policy.to_dict(), training=training,
                         training_data=_finetuned_training_data(base.training_data, series, data, train, record),
                         normalization=base.normalization, card=model_card, weights_dtype=weights_dtype,
                         inference_changes=base.config.get("inference_changes"))
    after = Forecaster.from_pretrained(path, device=device).forecast(probe, p.horizon, allow_long=True)
    scale = float(np.nanmax(np.abs(before))) or 1.0
    diff = float(np.nanmax(np.abs(after - before))) / scale
    tol = 1e-4 if weights_dtype == "float32" else 2e-2
    if not np.isfinite(diff) or diff > tol:
        raise ReleaseError(f"the written release {path} forecasts differently from the fine-tuned model (max "
                           f"relative difference {diff:.2e} > {tol:g}); this is a bug, please report it")
    return path, {**record, "release_check_max_rel_diff": diff, "merged_lora_modules": len(merged)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """`python -m unist.evaluation.finetune` flags, typed so a bad value stops before any work."""
    ap = argparse.ArgumentParser(prog="python -m unist.evaluation.finetune", description=(
        "Fine-tune a unist release on a dataset's training split (first 60 %) and write the result as a "
        "release folder (LoRA adapters merged into the weights)."))
    ap.add_argument("--checkpoint", required=True, help="release folder or name (e.g. unist-tiny)")
    ap.add_argument("--data", required=True, help="registered dataset name, unist .npz or video file")
    ap.add_argument("--out", required=True, help="folder of the new release (replaced if it exists)")
    ap.add_argument("--lora-rank", type=positive_int, help="LoRA with this rank (default: full fine-tuning)")
    ap.add_argument("--lora-alpha", type=positive_float, help="LoRA scale numerator (default: 2 x rank)")
    ap.add_argument("--steps", type=positive_int, default=50, help="optimizer steps (default 50)")
    ap.add_argument("--batch-size", type=positive_int, default=8, help="windows per step (default 8)")
    ap.add_argument("--lr", type=positive_float, help="learning rate (default 1e-4 full, 1e-3 LoRA)")
    ap.add_argument("--fraction", type=fraction, default=1.0, help="first fraction of the training split (1.0)")
    ap.add_argument("--context", type=positive_int, help="context steps (default: the data type's protocol)")
    ap.add_argument("--horizon", type=positive_int, help="forecast steps (default: the protocol)")
    ap.add_argument("--weights-dtype", choices=sorted(WEIGHT_DTYPES), default="float32")
    ap.add_argument("--device", type=device, default="cpu")
    ap.add_argument("--threads", type=positive_int, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Exit code 0 (prints the release folder and a summary), or 2 with one line on stderr for refused input."""
    a = parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    command = "python -m unist.evaluation.finetune " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        lora = a.lora_rank is not None
        cfg = FinetuneConfig(a.fraction, "lora" if lora else "full", a.steps, a.batch_size, a.lr, seed=a.seed,
                             **({"lora_rank": a.lora_rank, "lora_alpha": a.lora_alpha or 2.0 * a.lora_rank}
                                if lora else {}))
        path, rec = finetune_release(a.checkpoint, a.data, a.out, cfg, a.context, a.horizon, a.weights_dtype,
                                     a.device, command)
    except USER_ERRORS as e:
        return report_error(e)
    print(f"{rec['mode']} fine-tuning, {rec['steps']} steps, {rec['trainable_params']:,} trainable parameters: loss "
          f"{rec['loss_first']:.4f} -> {rec['loss_last']:.4f} (last 10 mean {rec['loss_last10_mean']:.4f}); release "
          f"reloaded, forecast max rel diff {rec['release_check_max_rel_diff']:.1e}")
    print(path)
    return 0


__all__ = ["FinetuneConfig", "LoRALinear", "MODES", "add_lora", "finetune", "finetune_release", "forecasting_masking",
           "main", "merge_lora", "training_windows"]
