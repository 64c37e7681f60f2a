"""Release format: export a DeepSpeed checkpoint to a plain folder, and load it without DeepSpeed.

A release folder holds
  model.safetensors    fp32 weights, consolidated from the ZeRO shards
  config.json          format + version, model name, full UniSTConfig (incl. the patcher config),
                       the patcher settings, sha256 and size of the weights, training provenance
                       (step, tokens, git commit, versions, run config)
  normalization.json   per-dataset z-score statistics of the training splits
  training_data.json   the datasets (and synthetic corpus) trained on, their splits and weights,
                       plus the held-out datasets that were never read
  MODEL_CARD.md        a human-readable summary

`from_pretrained(path_or_name)` loads it on CPU or GPU: no DeepSpeed import, nothing unpickled
(JSON + safetensors only). Nothing in config.json is trusted: it is checked field by field
(`validate_config`: types, known fields, a weights file inside the folder, a model name whose
architecture the config has), the weights against their size and sha256, the safetensors against the
config (keys, shapes) and for NaN/inf; any problem is a `ReleaseError` that names the field or tensor
and the fix. A name (e.g. "unist-tiny") is looked up in `release_search_path()`: $UNIST_HOME/checkpoints,
the installed package's releases (package data), then the source checkout's checkpoints/.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

FORMAT = "unist-release"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
REPO_ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS_DIR = REPO_ROOT / "checkpoints"                     # the source checkout's releases
PACKAGE_RELEASES = Path(__file__).resolve().parent / "checkpoints"  # the same, installed as package data (setup.py)
COMPUTE_DTYPE = torch.float32  # unist models take float32 inputs and compute in float32 (reduced precision: autocast)


class ReleaseError(RuntimeError):
    """A release folder that cannot be loaded as is: the message names the problem and the fix."""


@dataclass
class Release:
    """What `load_release` returns: the model (eval mode) and the release's metadata."""

    model: torch.nn.Module
    path: Path
    config: dict[str, Any]
    normalization: dict[str, Any] = field(default_factory=dict)
    training_data: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------- helpers
def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def git_commit(repo: Path = REPO_ROOT) -> dict[str, Any]:
    """{'commit': sha or 'unknown', 'dirty': bool or None} of the source tree that trained the model."""
    try:
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=10).stdout.strip())
        return {"commit": sha, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown (not a git checkout, or no commit yet)", "dirty": None}


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise ReleaseError(f"{path} is missing: a release folder needs {what}; re-export it with "
                           "unist.release.export_release")
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


def _require_finite(sd: dict[str, torch.Tensor], where: str, fix: str) -> None:
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
    "training": ((dict,), False), "inference_changes": ((list,), False),
}
WEIGHTS_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "file": ((str,), True), "sha256": ((str,), True), "bytes": ((int,), False), "dtype": ((str,), False),
    "num_params": ((int,), False),
}
# Fields that make a model the architecture its name stands for (compared with the registry's config).
ARCHITECTURE_FIELDS = ("d_model", "depth", "heads", "mlp_ratio", "decoder_dim", "decoder_depth", "decoder_heads",
                       "diffusion_dim", "diffusion_depth", "patch_embed_dim", "max_channels", "moe.num_experts",
                       "moe.top_k", "patch.patch_size", "patch.time_patch")


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


# ---------------------------------------------------------------------------------- export
def consolidate(ckpt_dir: Path, tag: str) -> dict[str, torch.Tensor]:
    """fp32 state dict from a DeepSpeed checkpoint: ZeRO 1/2/3 shards are merged by DeepSpeed's
    `get_fp32_state_dict_from_zero_checkpoint`; a ZeRO-0 checkpoint already holds the whole module."""
    tag_dir = Path(ckpt_dir) / tag
    if any(tag_dir.glob("*optim_states.pt")) and any("zero_pp_rank" in p.name for p in tag_dir.iterdir()):
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
        sd = get_fp32_state_dict_from_zero_checkpoint(str(ckpt_dir), tag=tag)
    else:  # ZeRO-0: DeepSpeed's own model file of this run (trusted: written by the training job)
        sd = torch.load(tag_dir / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=False)["module"]
    return {k: v.detach().float().contiguous().clone() for k, v in sd.items()}


WEIGHT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def export_release(ckpt_dir: str | Path, out_dir: str | Path, tag: str | None = None,
                   weights_dtype: str = "float32") -> Path:
    """Write a release folder at `out_dir` from checkpoint `tag` (default: latest) of `ckpt_dir`.

    weights_dtype: how the weights are stored ("float16" halves the file; they load into an fp32
    model). Refuses weights with NaN/inf (a diverged run), also after the cast to `weights_dtype`."""
    if weights_dtype not in WEIGHT_DTYPES:
        raise ReleaseError(f"weights_dtype={weights_dtype!r} unknown: use one of {sorted(WEIGHT_DTYPES)}")
    from unist.train.checkpoint import STATE, CheckpointManager, verify_checkpoint

    ckpt_dir, out_dir = Path(ckpt_dir), Path(out_dir)
    tag = CheckpointManager(ckpt_dir, 1, 0, 1).resolve(tag)
    verify_checkpoint(ckpt_dir / tag)
    state = _read_json(ckpt_dir / tag / STATE, f"{STATE} (written by unist.train at every checkpoint)")
    sd = consolidate(ckpt_dir, tag)
    _require_finite(sd, f"checkpoint {ckpt_dir / tag}", "The run diverged at or before this step: export an "
                    "earlier checkpoint (--tag step_...) and lower the learning rate for the next run")
    training = {"step": state["step"], "tokens_seen": state.get("tokens_seen"), "checkpoint_tag": tag,
                "git": state.get("git") or git_commit(), "versions": state.get("versions", {}),
                "exported": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "run_config": state.get("run_config", {})}
    _check_against_config(sd, state["model_name"], state["model_config"], where=str(ckpt_dir / tag),
                          overrides=_run_overrides({"training": training}, str(ckpt_dir / tag / STATE)))
    data = state.get("training_data", {})
    normalization = {r["name"]: r["normalizer"] for r in data.get("datasets", []) if "normalizer" in r}
    return write_release(sd, out_dir, state["model_name"], state["model_config"], training, data, normalization,
                         weights_dtype)


def write_release(sd: dict[str, torch.Tensor], out_dir: str | Path, model_name: str, model_config: dict[str, Any],
                  training: dict[str, Any], training_data: dict[str, Any], normalization: dict[str, Any],
                  weights_dtype: str = "float32", inference_changes: list[dict[str, Any]] | None = None) -> Path:
    """Write the release folder `out_dir` (every file of the format) from a state dict, atomically: it is
    built as `<out_dir>.tmp` and renamed into place, so a crash never leaves a half release under the final
    name. Shared by `export_release` and fine-tuning (`python -m unist.evaluation.finetune`), which passes on
    the base release's `inference_changes`."""
    from safetensors.torch import save_file

    if weights_dtype not in WEIGHT_DTYPES:
        raise ReleaseError(f"weights_dtype={weights_dtype!r} unknown: use one of {sorted(WEIGHT_DTYPES)}")
    _require_finite(sd, f"weights for {out_dir}", "Refusing to write a release that cannot forecast")
    out_dir = Path(out_dir)
    sd = {k: v.detach().to("cpu", WEIGHT_DTYPES[weights_dtype]).contiguous() if v.is_floating_point()
          else v.detach().cpu().contiguous() for k, v in sd.items()}
    _require_finite(sd, f"weights for {out_dir} cast to {weights_dtype}",
                    f"They exceed {weights_dtype}'s range: store them as float32 (--weights-dtype float32)")
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(sd, str(tmp / WEIGHTS), metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
    config = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "model_name": model_name, "model_config": model_config,
        "patcher_config": model_config["patch"],
        "weights": {"file": WEIGHTS, "sha256": sha256_file(tmp / WEIGHTS), "bytes": (tmp / WEIGHTS).stat().st_size,
                    "dtype": weights_dtype, "num_params": sum(v.numel() for v in sd.values())},
        "training": training,
    }
    if inference_changes:
        config["inference_changes"] = inference_changes
    (tmp / "config.json").write_text(json.dumps(config, indent=1))
    (tmp / "normalization.json").write_text(json.dumps(normalization, indent=1))
    (tmp / "training_data.json").write_text(json.dumps(training_data, indent=1))
    (tmp / "MODEL_CARD.md").write_text(model_card(config, training_data, load_name(out_dir)))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir


def load_name(folder: str | Path) -> str:
    """What to pass to `from_pretrained` for the release at `folder`: its name when the folder lies in a
    directory of `release_search_path()` (e.g. "unist-tiny"), else the path itself."""
    folder = Path(folder)
    if any(folder.resolve().parent == d.resolve() for d in release_search_path()):
        return folder.name
    return str(folder)


def model_card(config: dict[str, Any], data: dict[str, Any], location: str) -> str:
    """MODEL_CARD.md of a release; `location` is what loads it (`load_name`: a name or the folder's path)."""
    mc, tr = config["model_config"], config.get("training") or {}
    rows = "\n".join(f"| {r['name']} | {r.get('layout', '')} | {r.get('split', '')} | "
                     f"{'-' if r.get('weight') is None else format(r['weight'], '.3f')} |"
                     for r in data.get("datasets", []))
    heldout = ", ".join(data.get("heldout", [])) or "none"
    git = tr.get("git") or {}
    return f"""# {config['model_name']} (unist release, format v{config['format_version']})

A spatio-temporal foundation model for grids, graphs and video: patched tokens -> MoE Transformer
(d_model {mc['d_model']}, depth {mc['depth']}, {mc['moe']['num_experts']} experts top-{mc['moe']['top_k']}),
pretrained jointly on masked reconstruction, contrastive and diffusion objectives.

- parameters: {config['weights']['num_params']:,} (stored as {config['weights']['dtype']}, loaded as fp32; `{WEIGHTS}`, sha256 `{config['weights']['sha256'][:16]}...`)
- trained for {tr.get('step', 'an unrecorded number of')} optimizer steps, {tr.get('tokens_seen') or 'unknown'} tokens
- source: git {git.get('commit', 'unknown')} (uncommitted changes: {git.get('dirty')})
- patcher: {config['patcher_config']}

## Training data (training splits only: the first 60% of each series in time)

| dataset | type | split | mixture weight |
|---|---|---|---|
{rows}

Held out (never read during training): {heldout}.

## How it was made

{_how_made(tr)}

{_inference_changes(config)}## Use

```python
import unist
model = unist.from_pretrained({json.dumps(location)})
pred = model.forecast(window, horizon=12)        # window: a unist.data.STSeries in raw units
```

The model normalises every context window by itself (per location and channel), so raw values go in
and come out. `normalization.json` holds the training datasets' train-split statistics, used only to
reproduce training.

## Limitations

Pretrained on a small corpus (a few public datasets plus a synthetic corpus); evaluate on your own
data against simple baselines (`python eval/zeroshot.py`) before relying on it.
"""


def _how_made(training: dict[str, Any]) -> str:
    """The model card's account of the commands that made the release (pretraining, then any fine-tuning)."""
    run_config = training.get("run_config") or {}
    if not run_config:
        text = "The pretraining run's configuration was not recorded."
    else:
        args = _run_args(run_config)
        text = (f"`python train/pretrain.py {args}` (the `tiny` preset plus these `key=value` overrides; "
                if args else "`python train/pretrain.py` (the `tiny` preset, no overrides; ")
        text += ("`deepspeed train/pretrain.py ...` on several GPUs), then "
                 "`python -m unist.release export RUN/checkpoints OUT`.")
    ft = training.get("finetune")
    if ft:
        text += (f"\n\nThen fine-tuned ({ft['mode']}, {ft['steps']} steps on the first {ft['fraction']:.0%} of the "
                 f"training split of `{ft['data']}`) from `{ft['base']}`: `{ft['command']}`.")
    return text


def _inference_changes(config: dict[str, Any]) -> str:
    """The model card's account of `set_inference` changes (empty when there were none)."""
    changes = config.get("inference_changes") or []
    if not changes:
        return ""
    lines = "\n".join(f"- `{c['field']}`: {json.dumps(c['old'])} -> {json.dumps(c['new'])} ({c['changed']}, "
                      f"`python -m unist.release set PATH {c['field']}={json.dumps(c['new'])}`)" for c in changes)
    return f"""## Inference settings changed after export (weights untouched)

{lines}

"""


# Config fields that change how a trained model forecasts, not what it learned: `set_inference` may edit them.
INFERENCE_FIELDS: dict[str, type] = {"self_check": bool}


def _parse_setting(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or key not in INFERENCE_FIELDS:
        raise ReleaseError(f"{text!r}: give FIELD=VALUE with FIELD one of {sorted(INFERENCE_FIELDS)} (fields that "
                           "change inference only; anything else needs a new training run)")
    if INFERENCE_FIELDS[key] is bool:
        if raw.lower() not in ("true", "false"):
            raise ReleaseError(f"{text!r}: {key} takes true or false")
        return key, raw.lower() == "true"
    return key, INFERENCE_FIELDS[key](raw)


def set_inference(path_or_name: str | Path, settings: dict[str, Any]) -> Path:
    """Change inference-only fields (`INFERENCE_FIELDS`) of a release's model config in place.

    The weights are untouched; each change is recorded in config.json (`inference_changes`) and the
    model card is rewritten from the config (its evaluation section is dropped: re-run the evaluation,
    whose numbers no longer hold). config.json and MODEL_CARD.md are replaced atomically."""
    root = resolve_release(path_or_name)
    config = validate_config(_read_json(root / "config.json", "config.json"), root)
    data = _read_json_object(root / "training_data.json", "training_data.json") \
        if (root / "training_data.json").exists() else {}
    mc = dict(config["model_config"])
    from unist.model.config import LEGACY_DEFAULTS

    changes = list(config.get("inference_changes") or [])
    when = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    for key, value in settings.items():
        if key not in INFERENCE_FIELDS or not isinstance(value, INFERENCE_FIELDS[key]):
            raise ReleaseError(f"{key}={value!r}: only {sorted(INFERENCE_FIELDS)} can be changed after training, "
                               "with values of their type")
        old = mc.get(key, LEGACY_DEFAULTS.get(key))
        if old != value:
            changes.append({"field": key, "old": old, "new": value, "changed": when})
        mc[key] = value
    config["model_config"] = mc
    config["inference_changes"] = changes
    card = model_card(config, data, load_name(root))
    for name, text in (("config.json", json.dumps(config, indent=1)), ("MODEL_CARD.md", card)):
        tmp = root / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, root / name)
    return root


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "overrides" and not (prefix and k.endswith("weights")):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return out


def _run_args(run_config: dict[str, Any]) -> str:
    """The `key=value` overrides of a run's config against the default (tiny) preset, i.e. its command line
    ("" when the run used the preset as is)."""
    from unist.train.config import PretrainConfig  # late: the training package is only needed here

    base, run = _flat(PretrainConfig().to_dict()), _flat(run_config)
    skip = {"name", "out_dir", "resume", "data.data_dir", "model.overrides"}
    fmt = lambda v: ",".join(map(str, v)) if isinstance(v, (list, tuple)) else json.dumps(v) if isinstance(v, dict) else str(v).lower() if isinstance(v, bool) else str(v)  # noqa: E731
    args = [f"{k}={fmt(v)}" for k, v in run.items() if k not in skip and base.get(k) != v]
    args += [f"model.{k}={fmt(v)}" for k, v in (run_config.get("model", {}).get("overrides") or {}).items()]
    return " ".join(args)


# ---------------------------------------------------------------------------------- load
def release_search_path() -> list[Path]:
    """Where a release name (e.g. "unist-tiny") is looked up, in order: $UNIST_HOME/checkpoints (when
    UNIST_HOME is set), the installed package's releases (`PACKAGE_RELEASES`, shipped as package data)
    and the source checkout's `checkpoints/` (`CHECKPOINTS_DIR`)."""
    dirs = [Path(os.environ["UNIST_HOME"]).expanduser() / "checkpoints"] if os.environ.get("UNIST_HOME") else []
    return dirs + [PACKAGE_RELEASES, CHECKPOINTS_DIR]


def resolve_release(path_or_name: str | Path) -> Path:
    """A release folder from a path (folder or its config.json) or a name like 'unist-tiny' (or 'unist_tiny'),
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


def _dotted(d: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


def _check_model_name(model_name: str, model_config: dict[str, Any], overrides: dict[str, Any], where: str) -> None:
    """The config's architecture (`ARCHITECTURE_FIELDS`) is the registry's `model_name` with the training run's
    recorded `model.*` overrides; anything else means the name or the config was edited."""
    from unist.model import get_config

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


def _check_against_config(sd: dict[str, torch.Tensor], model_name: str, model_config: dict[str, Any],
                          where: str, overrides: dict[str, Any] | None = None) -> Any:
    """Build the model the config describes (on the meta device), compare keys and shapes with `sd`, then the
    config with `model_name` (when `overrides`, the run's model.* overrides, are given). Returns the UniSTConfig."""
    from unist.model import UniSTConfig, list_models
    from unist.model.unist import UniST

    if model_name not in list_models():
        raise ReleaseError(f"{where}: unknown model name {model_name!r}; this unist knows {list_models()} (is the "
                           "release from a newer unist?)")
    try:
        cfg = UniSTConfig.from_dict(model_config).validate()
    except (TypeError, ValueError, AttributeError) as e:
        raise ReleaseError(f"{where}: model_config does not describe a valid UniSTConfig: {e}") from None
    with torch.device("meta"):
        ref = UniST(cfg).state_dict()
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
        _check_model_name(model_name, model_config, overrides, where)
    return cfg


def _run_overrides(config: dict[str, Any], where: str) -> dict[str, Any]:
    """The training run's `model.*` overrides recorded in config.json ({} when none are)."""
    run = (config.get("training") or {}).get("run_config") or {}
    overrides = run.get("model", {}).get("overrides") if isinstance(run.get("model"), dict) else {}
    if not isinstance(overrides or {}, dict):
        raise ReleaseError(f"{where}: training.run_config.model.overrides must be an object, got "
                           f"{_json_type(overrides)}; re-export the release")
    return overrides or {}


def _check_dtype(dtype: torch.dtype | None, device: str | torch.device | None) -> torch.dtype:
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


def load_release(path_or_name: str | Path, device: str | torch.device | None = None,
                 dtype: torch.dtype | None = None, verify: bool = True) -> Release:
    """Load a release folder (see module docstring). verify: check the weights' sha256 first.
    dtype: None or torch.float32 (the compute dtype; anything else is refused, see `_check_dtype`)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from unist.model.unist import UniST

    dtype = _check_dtype(dtype, device)
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
    _require_finite(sd, str(wpath), "The exported run had diverged: export an earlier checkpoint")
    cfg = _check_against_config(sd, config["model_name"], config["model_config"], where=str(root),
                                overrides=_run_overrides(config, f"{root}/config.json"))
    model = UniST(cfg)
    model.load_state_dict(sd, strict=True)  # copies (and upcasts float16/bfloat16-stored weights) into fp32
    model = model.to(device=device or "cpu", dtype=dtype).eval()
    norm = _read_json_object(root / "normalization.json", "normalization.json") \
        if (root / "normalization.json").exists() else {}
    data = _read_training_data(root)
    return Release(model=model, path=root, config=config, normalization=norm, training_data=data)


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


def from_pretrained(path_or_name: str | Path, device: str | torch.device | None = None,
                    dtype: torch.dtype | None = None) -> torch.nn.Module:
    """The model of a release (eval mode) on `device` (default CPU), e.g. `from_pretrained("unist-tiny")`
    or `from_pretrained("runs/tiny/release")`. `load_release` also returns the metadata."""
    return load_release(path_or_name, device=device, dtype=dtype).model


def describe(path_or_name: str | Path) -> dict[str, Any]:
    """config.json of a release (cheap: no weights loaded)."""
    return _read_json(resolve_release(path_or_name) / "config.json", "config.json")


__all__ = ["COMPUTE_DTYPE", "FORMAT_VERSION", "WEIGHT_DTYPES", "Release", "ReleaseError", "describe",
           "export_release", "from_pretrained", "load_release", "release_search_path", "validate_config",
           "write_release"]


def main(argv: list[str] | None = None) -> None:
    """`python -m unist.release export CKPT_DIR OUT_DIR [--tag T] [--weights-dtype float16]` | `describe PATH`
    | `set PATH FIELD=VALUE ...` (inference-only fields, e.g. self_check=true). A refused input: one line on
    stderr and exit code 2."""
    import argparse
    import sys

    from unist.train.checkpoint import CheckpointError

    p = argparse.ArgumentParser(prog="python -m unist.release")
    sub = p.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export", help="consolidate a (ZeRO) checkpoint folder into a release folder")
    ex.add_argument("ckpt_dir")
    ex.add_argument("out_dir")
    ex.add_argument("--tag", default=None, help="checkpoint tag (default: latest)")
    ex.add_argument("--weights-dtype", default="float32", choices=sorted(WEIGHT_DTYPES))
    de = sub.add_parser("describe", help="print a release's config summary")
    de.add_argument("path")
    st = sub.add_parser("set", help=f"change inference-only settings of a release ({', '.join(INFERENCE_FIELDS)})")
    st.add_argument("path")
    st.add_argument("settings", nargs="+", metavar="FIELD=VALUE")
    args = p.parse_args(argv)
    try:
        if args.cmd == "export":
            if not Path(args.ckpt_dir).is_dir():
                raise ReleaseError(f"checkpoint folder {args.ckpt_dir} does not exist: give RUN/checkpoints of a "
                                   "training run")
            print(export_release(args.ckpt_dir, args.out_dir, args.tag, args.weights_dtype))
        elif args.cmd == "set":
            print(set_inference(args.path, dict(_parse_setting(t) for t in args.settings)))
        else:
            print(json.dumps(describe(args.path), indent=1))
    except (ReleaseError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
