"""Models from and to release folders: `save_pretrained` / `from_pretrained` / `push_to_hub` (mixed into `UniST`).

The folder layout is the release format (`unist.release`: config.json + model.safetensors, the Hugging
Face model-repo layout); this module builds the network from it. Before a single weight is copied the
config is checked against the architecture: the weights' keys and shapes against a model built on the
meta device, and the model name against the registry's config with the run's recorded `model.*`
overrides (an edited name or config is refused, naming the field).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from unist.errors import ConfigError
from unist.release import CARD, ReleaseError, read_release, write_release

from .config import UniSTConfig
from .registry import get_config, list_models

COMPUTE_DTYPE = torch.float32  # unist models take float32 inputs and compute in float32 (reduced precision: autocast)
# Fields that make a model the architecture its name stands for (compared with the registry's config).
ARCHITECTURE_FIELDS = ("d_model", "depth", "heads", "mlp_ratio", "decoder_dim", "decoder_depth", "decoder_heads",
                       "diffusion_dim", "diffusion_depth", "patch_embed_dim", "max_channels", "moe.num_experts",
                       "moe.top_k", "patch.patch_size", "patch.time_patch")


@dataclass
class Release:
    """What `load_release` returns: the model (eval mode) and the release's metadata."""

    model: torch.nn.Module
    path: Path
    config: dict[str, Any]
    normalization: dict[str, Any] = field(default_factory=dict)
    training_data: dict[str, Any] = field(default_factory=dict)


def _dotted(d: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


def run_overrides(config: dict[str, Any], where: str) -> dict[str, Any]:
    """The training run's `model.*` overrides recorded in config.json ({} when none are)."""
    run = (config.get("training") or {}).get("run_config") or {}
    overrides = run.get("model", {}).get("overrides") if isinstance(run.get("model"), dict) else {}
    if not isinstance(overrides or {}, dict):
        raise ReleaseError(f"{where}: training.run_config.model.overrides must be an object; re-export the release")
    return overrides or {}


def check_model_name(model_name: str, model_config: dict[str, Any], overrides: dict[str, Any], where: str) -> None:
    """The config's architecture (`ARCHITECTURE_FIELDS`) is the registry's `model_name` with the training run's
    recorded `model.*` overrides; anything else means the name or the config was edited."""
    expected = get_config(model_name).to_dict()
    for key, value in overrides.items():
        head, _, leaf = key.rpartition(".")
        parent = _dotted(expected, head) if head else expected
        if isinstance(parent, dict) and leaf in parent:
            parent[leaf] = value
    diffs = [f"{k} {_dotted(model_config, k)!r} vs {_dotted(expected, k)!r}" for k in ARCHITECTURE_FIELDS
             if _dotted(model_config, k) != _dotted(expected, k)]
    if diffs:
        said = f"{model_name} " + (f"with the recorded overrides {overrides}" if overrides else "(no overrides recorded)")
        raise ReleaseError(f"{where}: model_name {model_name!r} does not match model_config: {'; '.join(diffs)} "
                           f"(config vs {said}). The name or the config was edited: restore config.json (re-export) "
                           "or set model_name to the architecture the config describes")


def check_against_config(model_cls: type, sd: dict[str, torch.Tensor], model_name: str, model_config: dict[str, Any],
                         where: str, overrides: dict[str, Any] | None = None) -> UniSTConfig:
    """Build `model_cls` for the config on the meta device, compare keys and shapes with `sd`, then the config with
    `model_name` (when `overrides`, the run's model.* overrides, are given). Returns the UniSTConfig."""
    if model_name not in list_models():
        raise ReleaseError(f"{where}: unknown model name {model_name!r}; this unist knows {list_models()} (is the "
                           "release from a newer unist?)")
    try:
        cfg = UniSTConfig.from_dict(model_config).validate()
    except (TypeError, ValueError, AttributeError) as e:
        raise ReleaseError(f"{where}: model_config does not describe a valid UniSTConfig: {e}") from None
    with torch.device("meta"):
        ref = model_cls(cfg).state_dict()
    missing = sorted(set(ref) - set(sd))
    unexpected = sorted(set(sd) - set(ref))
    shapes = [f"{k}: weights {tuple(sd[k].shape)} vs config {tuple(ref[k].shape)}"
              for k in sorted(set(ref) & set(sd)) if tuple(sd[k].shape) != tuple(ref[k].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {missing[:3]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches (e.g. {shapes[:3]})")
    if problems:
        raise ReleaseError(f"{where}: the weights do not match the config ({model_name}): " + "; ".join(problems)
                           + ". The config.json and model.safetensors belong to different models; re-export.")
    if overrides is not None:
        check_model_name(model_name, model_config, overrides, where)
    return cfg


def check_dtype(dtype: torch.dtype | None, device: str | torch.device | None) -> torch.dtype:
    """The dtype to load in: float32 (`COMPUTE_DTYPE`); anything else is refused with the way to get it."""
    if dtype is None or dtype == COMPUTE_DTYPE:
        return COMPUTE_DTYPE
    dev = torch.device(device or "cpu").type
    extra = (" Half precision has no fast path on CPU." if dev == "cpu" else
             f" For reduced precision on {dev}, load in float32 and forecast under "
             f"torch.autocast({dev!r}, dtype=torch.bfloat16).")
    raise ReleaseError(f"dtype={dtype}: unist models compute in float32 (their inputs are float32, so {dtype} "
                       f"weights fail in the first matmul).{extra} Load without dtype (weights stored as "
                       "float16/bfloat16 are upcast to float32 at load)")


def load_release(model_cls: type, path_or_name: str | Path, device: str | torch.device | None = None,
                 dtype: torch.dtype | None = None, verify: bool = True) -> Release:
    """`model_cls` built and loaded from a release folder (eval mode), with the release's metadata."""
    dtype = check_dtype(dtype, device)
    files = read_release(path_or_name, verify=verify)
    config, root = files.config, files.path
    cfg = check_against_config(model_cls, files.state_dict, config["model_name"], config["model_config"],
                               where=str(root), overrides=run_overrides(config, f"{root}/config.json"))
    model = model_cls(cfg)
    model.load_state_dict(files.state_dict, strict=True)  # copies (and upcasts fp16/bf16-stored weights) into fp32
    model = model.to(device=device or "cpu", dtype=dtype).eval()
    return Release(model=model, path=root, config=config, normalization=files.normalization,
                   training_data=files.training_data)


class PretrainedMixin:
    """`save_pretrained` / `from_pretrained` / `push_to_hub` in the shape of huggingface_hub's ModelHubMixin,
    over the unist release format. Needs `self.config` (a UniSTConfig) and a registered model name."""

    config: UniSTConfig

    @classmethod
    def from_pretrained(cls, path_or_name: str | Path, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None, verify: bool = True):
        """The network of a release (eval mode) on `device` (default CPU): a folder, or a name such as
        "unist-tiny-6" (`unist.release.resolve_release`). For forecasting with the release's policy use
        `unist.from_pretrained` (a `unist.forecast.Forecaster`)."""
        return load_release(cls, path_or_name, device=device, dtype=dtype, verify=verify).model

    def save_pretrained(self, folder: str | Path, model_name: str | None = None,
                        forecast_policy: dict[str, Any] | None = None, weights_dtype: str = "float32",
                        **metadata: Any) -> Path:
        """Write this model as a release folder (`unist.release.write_release`). model_name: the registry name
        whose architecture this is (found from the config when omitted); metadata: training, training_data,
        normalization, card (see `write_release`)."""
        name = model_name or self._registry_name()
        return write_release(folder, self.state_dict(), name, self.config.to_dict(), forecast_policy=forecast_policy,
                             weights_dtype=weights_dtype, **metadata)

    def push_to_hub(self, repo_id: str, folder: str | Path, token: str | None = None, **save_kw: Any) -> str:
        """save_pretrained into `folder`, then upload it as the Hugging Face model repo `repo_id` (needs
        `pip install huggingface_hub` and a reachable hub). Returns the commit URL."""
        try:
            from huggingface_hub import HfApi  # optional dependency: only this method needs it
        except ImportError:
            raise ConfigError("push_to_hub needs huggingface_hub: pip install huggingface_hub (or copy the folder "
                              "written by save_pretrained yourself)") from None
        path = self.save_pretrained(folder, **save_kw)
        api = HfApi(token=token)
        api.create_repo(repo_id, exist_ok=True)
        url = str(api.upload_folder(repo_id=repo_id, folder_path=str(path)))
        if (path / CARD).is_file():  # the hub shows README.md as the model card
            url = str(api.upload_file(path_or_fileobj=str(path / CARD), path_in_repo="README.md", repo_id=repo_id))
        return url

    def _registry_name(self) -> str:
        mine = self.config.to_dict()
        for name in list_models():
            ref = get_config(name).to_dict()
            if all(_dotted(mine, k) == _dotted(ref, k) for k in ARCHITECTURE_FIELDS):
                return name
        raise ConfigError("save_pretrained: this model's architecture matches no registered size; pass model_name= "
                          f"one of {list_models()} whose architecture fields {ARCHITECTURE_FIELDS} it has, or "
                          "register it (unist.model.register_model)")


__all__ = ["ARCHITECTURE_FIELDS", "COMPUTE_DTYPE", "PretrainedMixin", "Release", "check_against_config",
           "check_dtype", "check_model_name", "load_release", "run_overrides"]
