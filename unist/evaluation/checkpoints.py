"""The model under evaluation and its contamination audit.

`load_checkpoint(spec)`: a release folder or name (`unist.model.hub.load_release`, e.g. "unist-tiny-6" ->
<repo>/checkpoints/unist-tiny-6/, with the release's forecasting policy), or `random:<model>` (e.g. `random:unist_tiny`) for a randomly
initialised model, which is how the harness itself is tested before a checkpoint exists (flagged
`random_init` in every output).

The audit compares a dataset with the release's training-data list (`training_data.json`,
written by the training job): a dataset the model was pretrained on (even only its training
split) is not a zero-shot target. It matches by name, and by array shape to catch a renamed copy
(e.g. a registered dataset saved to an .npz under another name). It is refused with `ContaminationError` unless the caller allows
it, in which case the result is flagged `contaminated`. A release without a training-data list is
"unknown" and treated the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from unist.data.registry import canonical_name
from unist.forecast import Forecaster
from unist.forecast.policy import release_policy
from unist.model import UniST, create_model, list_models
from unist.model.hub import load_release
from unist.release import ReleaseError


class ContaminationError(RuntimeError):
    """The dataset was in the checkpoint's pretraining data: not a zero-shot evaluation."""


def dataset_key(name: str) -> str:
    """Comparable dataset name: the registered name when there is one, else lower case with '_' for '-'."""
    return canonical_name(name) or name.strip().lower().replace("-", "_")


@dataclass
class Checkpoint:
    """model (eval mode); training_datasets None = the release does not say what it was trained on."""

    model: Forecaster
    source: str
    model_name: str
    random_init: bool
    training_datasets: list[str] | None = None
    heldout: list[str] = field(default_factory=list)
    path: str | None = None
    training_shapes: dict[str, list[int]] = field(default_factory=dict)  # full-series shape per training dataset

    def audit(self, *names: str, shape: tuple[int, ...] | None = None) -> dict[str, Any]:
        """{"contaminated": True | False | None (unknown), "heldout", "matched", "reason"} for a dataset known under
        `names` (its registry name, file name, series name) with full-series `shape`."""
        keys = {dataset_key(n) for n in names if n}
        heldout = bool(keys & {dataset_key(n) for n in self.heldout})
        if self.training_datasets is None:
            return {"contaminated": None, "heldout": heldout, "matched": [],
                    "reason": "the checkpoint has no training-data list (training_data.json)"}
        matched = sorted(n for n in self.training_datasets if dataset_key(n) in keys)
        same_shape = sorted(n for n, sh in self.training_shapes.items()
                            if shape is not None and tuple(sh) == tuple(shape) and n not in matched)
        reason = "not in the training data"
        if matched:
            reason = f"in the checkpoint's training data as {matched}"
        elif same_shape:
            reason = f"same shape {list(shape)} as training dataset(s) {same_shape} (a renamed copy?)"
        return {"contaminated": bool(matched or same_shape), "heldout": heldout, "matched": matched + same_shape,
                "reason": reason}

    def require_zero_shot(self, source: str, series, allow_contaminated: bool = False) -> dict[str, Any]:
        """`audit` of `series` (read from `source`); ContaminationError when the checkpoint trained on it, unless
        allow_contaminated (then the caller flags its results)."""
        audit = self.audit(source, series.name, Path(source).stem, shape=series.values.shape)
        if audit["contaminated"] is not False and not allow_contaminated:
            raise ContaminationError(
                f"dataset {source!r}: {audit['reason']} ({self.source}), so a zero-shot score would be contaminated. "
                "Evaluate on a held-out dataset, or pass --allow-contaminated to run anyway (results flagged "
                "contaminated)")
        return audit

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "path": self.path, "model_name": self.model_name, "random_init": self.random_init,
                "training_datasets": self.training_datasets, "heldout": self.heldout,
                "num_params": sum(p.numel() for p in self.model.model.parameters())}


def load_checkpoint(spec: str, device: str | torch.device = "cpu") -> Checkpoint:
    """`random:<model name>` or a release path/name (see module docstring)."""
    if spec.startswith("random:"):
        name = spec.split(":", 1)[1]
        if name not in list_models():
            raise ReleaseError(f"--checkpoint {spec!r}: no model architecture named {name!r}; random:<name> takes "
                               f"one of {list_models()} (e.g. random:unist_tiny)")
        model = Forecaster(create_model(name).to(device).eval())
        return Checkpoint(model, spec, name, random_init=True, training_datasets=[])
    try:
        rel = load_release(UniST, spec, device=device)
    except ReleaseError as e:
        hint = (f" ({spec!r} is a model architecture: pass --checkpoint random:{spec} to evaluate it with random "
                "weights)") if spec.replace("-", "_") in list_models() else ""
        raise ReleaseError(f"{e}{hint}") from None
    data = rel.training_data or {}
    records = [r for r in data.get("datasets", []) if r.get("name") and r["name"] != "synthetic"]
    model = Forecaster(rel.model.eval(), release_policy(rel.config, f"{rel.path}/config.json"))
    return Checkpoint(model, spec, rel.config.get("model_name", "?"), random_init=False,
                      training_datasets=[r["name"] for r in records] if "datasets" in data else None,
                      heldout=list(data.get("heldout", [])), path=str(Path(rel.path)),
                      training_shapes={r["name"]: r["shape"] for r in records if "shape" in r})


__all__ = ["Checkpoint", "ContaminationError", "dataset_key", "load_checkpoint"]
