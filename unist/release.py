"""The release format: a plain folder that a model is saved to and loaded from, without DeepSpeed.

A release folder (the Hugging Face model-repo layout: `config.json` + `model.safetensors`, card beside) holds
  model.safetensors    the weights (fp32, or fp16/bf16 to halve the file; loaded as fp32)
  config.json          format + version, model name, full UniSTConfig (incl. the patcher config), the
                       forecasting policy (`unist.forecast.ForecastPolicy`), sha256 and size of the
                       weights, training provenance (step, tokens, git commit, versions, run config)
  normalization.json   per-dataset z-score statistics of the training splits (optional)
  training_data.json   the datasets (and synthetic corpus) trained on, their splits and weights, plus the
                       held-out datasets that were never read (optional)
  MODEL_CARD.md        a human-readable summary (optional; `unist.train.export.model_card`)

This module is the format only: `write_release` writes a folder atomically, `read_release` reads one back
(JSON + safetensors: nothing is unpickled) and verifies it, `resolve_release` finds one by name. Nothing
in config.json is trusted: it is checked field by field (`validate_config`: types, known fields, a weights
file inside the folder), the weights against their size and sha256 and for NaN/inf; any problem is a
`ReleaseError` that names the field or tensor and the fix. Building the model from a release is
`unist.model.hub`; exporting a training checkpoint, the model card and the CLI are `unist.train.export`.
A name (e.g. "unist-tiny-6") is looked up in `release_search_path()`: $UNIST_HOME/checkpoints, the installed
package's releases (package data), then the source checkout's checkpoints/.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

FORMAT = "unist-release"
FORMAT_VERSION = 2  # 2: the forecasting policy is its own section (v1 kept it in model_config.self_check)
WEIGHTS = "model.safetensors"
CARD = "MODEL_CARD.md"
REPO_ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS_DIR = REPO_ROOT / "checkpoints"                     # the source checkout's releases
PACKAGE_RELEASES = Path(__file__).resolve().parent / "checkpoints"  # the same, installed as package data (setup.py)
WEIGHT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class ReleaseError(RuntimeError):
    """A release folder that cannot be written or loaded as is: the message names the problem and the fix."""


@dataclass
class ReleaseFiles:
    """What `read_release` returns: the verified contents of a release folder."""

    path: Path
    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    normalization: dict[str, Any] = field(default_factory=dict)
    training_data: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------- helpers
def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise ReleaseError(f"{path} is missing: a release folder needs {what}; re-export it with "
                           "`python -m unist.train.export`")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReleaseError(f"{path} is not valid JSON ({e}); re-export the release") from None


def _json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for error messages ('a list', 'a string', ...)."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON file that must hold an object (a release's config/metadata files)."""
    value = _read_json(path, what)
    if not isinstance(value, dict):
        raise ReleaseError(f"{path} must hold a JSON object, it holds {_json_type(value)}; re-export the release")
    return value


def require_finite(sd: dict[str, torch.Tensor], where: str, fix: str) -> None:
    """Refuse a state dict with NaN/inf in any floating tensor, naming the first such tensor."""
    for name, t in sd.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise ReleaseError(f"{where}: tensor {name!r} has {bad} non-finite value(s) (NaN/inf) of {t.numel()}; "
                               f"a model with them forecasts NaN. {fix}")


# ---------------------------------------------------------------------------------- config.json schema
# field -> (JSON types accepted, required). Anything else in config.json is refused.
CONFIG_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "format": ((str,), True), "format_version": ((int,), True), "model_name": ((str,), True),
    "model_config": ((dict,), True), "weights": ((dict,), True), "patcher_config": ((dict,), False),
    "training": ((dict,), False), "forecast_policy": ((dict,), False),
    "inference_changes": ((list,), False),
}
WEIGHTS_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "file": ((str,), True), "sha256": ((str,), True), "bytes": ((int,), False), "dtype": ((str,), False),
    "num_params": ((int,), False),
}
def _check_fields(obj: dict[str, Any], spec: dict[str, tuple[tuple[type, ...], bool]], where: str,
                  prefix: str = "") -> None:
    """Every field of `obj` known to `spec`, of its type, the required ones present."""
    unknown = sorted(set(obj) - set(spec))
    if unknown:
        raise ReleaseError(f"{where}: unknown field(s) {[prefix + k for k in unknown]} (this unist reads "
                           f"{[prefix + k for k in spec]}); is the release from a newer unist? Re-export it")
    for key, (types, required) in spec.items():
        if key not in obj:
            if required:
                raise ReleaseError(f"{where}: field {prefix + key!r} is missing; re-export the release")
            continue
        value = obj[key]
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            want = " or ".join(_json_type(t()) for t in types)
            raise ReleaseError(f"{where}: field {prefix + key!r} must be {want}, got {_json_type(value)} "
                               f"({json.dumps(value)[:60]}); re-export the release")


def validate_config(config: Any, root: Path) -> dict[str, Any]:
    """`config` (parsed config.json of the release at `root`) checked before anything is built from it.

    Types and known fields (`CONFIG_FIELDS`, `WEIGHTS_FIELDS`), format and version, the patcher config
    equal to the model's, a sha256 of 64 hex digits, a weights dtype of `WEIGHT_DTYPES`, and a weights
    file that is a plain path resolving inside `root` (a config must not load a file from elsewhere)."""
    where = f"{root}/config.json"
    if not isinstance(config, dict):
        raise ReleaseError(f"{where} must hold a JSON object, it holds {_json_type(config)}; re-export the release")
    if config.get("format") != FORMAT:
        raise ReleaseError(f"{where} is not a unist release (format {config.get('format')!r}, expected {FORMAT!r})")
    version = config.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise ReleaseError(f"{root}: release format version {version!r} is not supported by this unist (reads "
                           f"version {FORMAT_VERSION}); use the unist version that wrote it")
    _check_fields(config, CONFIG_FIELDS, where)
    w = config["weights"]
    _check_fields(w, WEIGHTS_FIELDS, where, prefix="weights.")
    if not re.fullmatch(r"[0-9a-f]{64}", w["sha256"]):
        raise ReleaseError(f"{where}: weights.sha256 {w['sha256'][:70]!r} is not a sha256 (64 lower-case hex "
                           "digits); re-export the release")
    if "dtype" in w and w["dtype"] not in WEIGHT_DTYPES:
        raise ReleaseError(f"{where}: weights.dtype {w['dtype']!r} is unknown: one of {sorted(WEIGHT_DTYPES)}")
    if "patcher_config" in config and config["patcher_config"] != config["model_config"].get("patch"):
        raise ReleaseError(f"{where}: patcher_config {config['patcher_config']} differs from model_config.patch "
                           f"{config['model_config'].get('patch')}; the model uses model_config.patch: make "
                           "patcher_config equal to it (or re-export)")
    weights_path(root, w["file"])
    return config


def weights_path(root: Path, name: str) -> Path:
    """The weights file `name` of the release at `root`; refused unless it resolves inside `root`."""
    path = (root / name).resolve()
    if Path(name).is_absolute() or not path.is_relative_to(root.resolve()):
        raise ReleaseError(f"{root}/config.json: weights.file {name!r} points outside the release folder "
                           f"({path}); a release loads only its own weights: put the file in the folder and set "
                           f"weights.file to its name (e.g. {WEIGHTS!r})")
    return path


# ---------------------------------------------------------------------------------- write
def write_release(out_dir: str | Path, sd: dict[str, torch.Tensor], model_name: str, model_config: dict[str, Any], *,
                  forecast_policy: dict[str, Any] | None = None, training: dict[str, Any] | None = None,
                  training_data: dict[str, Any] | None = None, normalization: dict[str, Any] | None = None,
                  card: Callable[[dict[str, Any], dict[str, Any], str], str] | None = None,
                  weights_dtype: str = "float32", inference_changes: list[dict[str, Any]] | None = None) -> Path:
    """Write the release folder `out_dir` from a state dict, atomically: it is built as `<out_dir>.tmp` and
    renamed into place, so a crash never leaves a half release under the final name. card(config,
    training_data, load_name) -> the MODEL_CARD.md text (none without). Refuses weights with NaN/inf, also
    after the cast to `weights_dtype`."""
    if weights_dtype not in WEIGHT_DTYPES:
        raise ReleaseError(f"weights_dtype={weights_dtype!r} unknown: use one of {sorted(WEIGHT_DTYPES)}")
    require_finite(sd, f"weights for {out_dir}", "Refusing to write a release that cannot forecast")
    out_dir = Path(out_dir)
    sd = {k: v.detach().to("cpu", WEIGHT_DTYPES[weights_dtype]).contiguous() if v.is_floating_point()
          else v.detach().cpu().contiguous() for k, v in sd.items()}
    require_finite(sd, f"weights for {out_dir} cast to {weights_dtype}",
                   f"They exceed {weights_dtype}'s range: store them as float32 (--weights-dtype float32)")
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(sd, str(tmp / WEIGHTS), metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
    config: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "model_name": model_name, "model_config": model_config,
        "patcher_config": model_config["patch"], "forecast_policy": dict(forecast_policy or {}),
        "weights": {"file": WEIGHTS, "sha256": sha256_file(tmp / WEIGHTS), "bytes": (tmp / WEIGHTS).stat().st_size,
                    "dtype": weights_dtype, "num_params": sum(v.numel() for v in sd.values())},
        "training": dict(training or {}),
    }
    if inference_changes:
        config["inference_changes"] = inference_changes
    (tmp / "config.json").write_text(json.dumps(config, indent=1))
    (tmp / "normalization.json").write_text(json.dumps(normalization or {}, indent=1))
    (tmp / "training_data.json").write_text(json.dumps(training_data or {}, indent=1))
    if card is not None:
        (tmp / CARD).write_text(card(config, training_data or {}, load_name(out_dir)))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir


def rewrite_config(root: Path, config: dict[str, Any], card: str | None) -> None:
    """Replace config.json (and MODEL_CARD.md when `card` is given) of the release at `root`, each atomically;
    the weights are untouched."""
    validate_config(config, root)
    files = [("config.json", json.dumps(config, indent=1))] + ([(CARD, card)] if card is not None else [])
    for name, text in files:
        tmp = root / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, root / name)


# ---------------------------------------------------------------------------------- read
def release_search_path() -> list[Path]:
    """Where a release name (e.g. "unist-tiny-6") is looked up, in order: $UNIST_HOME/checkpoints (when
    UNIST_HOME is set), the installed package's releases (`PACKAGE_RELEASES`, shipped as package data)
    and the source checkout's `checkpoints/` (`CHECKPOINTS_DIR`)."""
    dirs = [Path(os.environ["UNIST_HOME"]).expanduser() / "checkpoints"] if os.environ.get("UNIST_HOME") else []
    return dirs + [PACKAGE_RELEASES, CHECKPOINTS_DIR]


def resolve_release(path_or_name: str | Path) -> Path:
    """A release folder from a path (folder or its config.json) or a name like 'unist-tiny-6' (or 'unist_tiny_3'),
    looked up in `release_search_path()`."""
    p = Path(path_or_name)
    if p.is_file() and p.name == "config.json":
        return p.parent
    if p.is_dir():
        return p
    name = str(path_or_name)
    if "/" not in name and os.sep not in name:
        search = release_search_path()
        for d in search:
            for cand in (name, name.replace("_", "-")):
                if (d / cand).is_dir():
                    return d / cand
        found = sorted({q.name for d in search if d.is_dir() for q in d.iterdir() if (q / "config.json").is_file()})
        label = {PACKAGE_RELEASES: "installed package", CHECKPOINTS_DIR: "source checkout"}
        where = ", ".join(f"{d} ({label.get(d, '$UNIST_HOME')})" for d in search)
        home = "" if os.environ.get("UNIST_HOME") else " (set UNIST_HOME to also look in $UNIST_HOME/checkpoints)"
        raise ReleaseError(f"no release named {name!r}: looked in {where}{home}; releases found there: "
                           f"{found or 'none'}. Pass a path to a release folder (e.g. runs/tiny/release), or put "
                           "the folder in $UNIST_HOME/checkpoints/")
    raise ReleaseError(f"release folder {p} does not exist")


def load_name(folder: str | Path) -> str:
    """What to pass to `from_pretrained` for the release at `folder`: its name when the folder lies in a
    directory of `release_search_path()` (e.g. "unist-tiny-6"), else the path itself."""
    folder = Path(folder)
    if any(folder.resolve().parent == d.resolve() for d in release_search_path()):
        return folder.name
    return str(folder)


def read_release(path_or_name: str | Path, verify: bool = True) -> ReleaseFiles:
    """Read and verify a release folder (see module docstring). verify: check the weights' sha256 first."""
    root = resolve_release(path_or_name)
    config = validate_config(_read_json(root / "config.json", "config.json"), root)
    wpath = weights_path(root, config["weights"]["file"])
    if not wpath.is_file():
        raise ReleaseError(f"{wpath} is missing: the release has no weights")
    size = config["weights"].get("bytes")
    if size is not None and wpath.stat().st_size != size:
        raise ReleaseError(f"{wpath} has {wpath.stat().st_size} bytes, config.json says {size}: the file is truncated "
                           "or was replaced; download or export it again")
    if verify:
        got = sha256_file(wpath)
        if got != config["weights"]["sha256"]:
            raise ReleaseError(f"{wpath} does not match the sha256 in config.json ({got[:12]}... vs "
                               f"{config['weights']['sha256'][:12]}...): the file is corrupt, truncated or was "
                               "modified; download or export it again")
    try:
        sd = load_file(str(wpath), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise ReleaseError(f"{wpath} is not a readable safetensors file ({e}): it is corrupt or truncated; "
                           "download or export it again") from None
    require_finite(sd, str(wpath), "The exported run had diverged: export an earlier checkpoint")
    norm = _read_json_object(root / "normalization.json", "normalization.json") \
        if (root / "normalization.json").exists() else {}
    return ReleaseFiles(path=root, config=config, state_dict=sd, normalization=norm,
                        training_data=_read_training_data(root))


def _read_training_data(root: Path) -> dict[str, Any]:
    """training_data.json ({} when absent): `datasets` a list of objects with a string `name`, `heldout` a list
    of names (what the contamination audit of eval/zeroshot.py reads)."""
    path = root / "training_data.json"
    if not path.exists():
        return {}
    data = _read_json_object(path, "training_data.json")
    datasets, heldout = data.get("datasets", []), data.get("heldout", [])
    if not isinstance(datasets, list) or not all(isinstance(r, dict) and isinstance(r.get("name"), str)
                                                 for r in datasets):
        raise ReleaseError(f"{path}: 'datasets' must be a list of objects with a string 'name'; re-export the release")
    if not isinstance(heldout, list) or not all(isinstance(n, str) for n in heldout):
        raise ReleaseError(f"{path}: 'heldout' must be a list of dataset names; re-export the release")
    return data


def describe(path_or_name: str | Path) -> dict[str, Any]:
    """config.json of a release (cheap: no weights loaded)."""
    return _read_json(resolve_release(path_or_name) / "config.json", "config.json")


__all__ = ["CARD", "FORMAT_VERSION", "WEIGHT_DTYPES", "ReleaseError", "ReleaseFiles", "describe", "load_name",
           "read_release", "release_search_path", "require_finite", "resolve_release", "rewrite_config",
           "validate_config", "write_release"]
