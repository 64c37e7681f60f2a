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
(JSON + safetensors only), and it refuses a release whose config and weights disagree (unknown
format version or model name, missing/unexpected keys, shape mismatches, checksum mismatch,
corrupt safetensors) with a `ReleaseError` that says what is wrong.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
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
CHECKPOINTS_DIR = REPO_ROOT / "checkpoints"


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
    model unless `from_pretrained(dtype=...)` says otherwise). The folder is built next to `out_dir`
    and renamed into place, so a crash never leaves a half release under the final name."""
    if weights_dtype not in WEIGHT_DTYPES:
        raise ReleaseError(f"weights_dtype={weights_dtype!r} unknown: use one of {sorted(WEIGHT_DTYPES)}")
    from safetensors.torch import save_file

    from unist.train.checkpoint import STATE, CheckpointManager, verify_checkpoint

    ckpt_dir, out_dir = Path(ckpt_dir), Path(out_dir)
    tag = CheckpointManager(ckpt_dir, 1, 0, 1).resolve(tag)
    verify_checkpoint(ckpt_dir / tag)
    state = _read_json(ckpt_dir / tag / STATE, f"{STATE} (written by unist.train at every checkpoint)")
    sd = consolidate(ckpt_dir, tag)
    _check_against_config(sd, state["model_name"], state["model_config"], where=str(ckpt_dir / tag))

    sd = {k: v.to(WEIGHT_DTYPES[weights_dtype]) if v.is_floating_point() else v for k, v in sd.items()}
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(sd, str(tmp / WEIGHTS), metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
    config = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "model_name": state["model_name"], "model_config": state["model_config"],
        "patcher_config": state["model_config"]["patch"],
        "weights": {"file": WEIGHTS, "sha256": sha256_file(tmp / WEIGHTS), "bytes": (tmp / WEIGHTS).stat().st_size,
                    "dtype": weights_dtype, "num_params": sum(v.numel() for v in sd.values())},
        "training": {"step": state["step"], "tokens_seen": state.get("tokens_seen"), "checkpoint_tag": tag,
                     "git": state.get("git") or git_commit(), "versions": state.get("versions", {}),
                     "exported": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                     "run_config": state.get("run_config", {})},
    }
    data = state.get("training_data", {})
    normalization = {r["name"]: r["normalizer"] for r in data.get("datasets", []) if "normalizer" in r}
    (tmp / "config.json").write_text(json.dumps(config, indent=1))
    (tmp / "normalization.json").write_text(json.dumps(normalization, indent=1))
    (tmp / "training_data.json").write_text(json.dumps(data, indent=1))
    (tmp / "MODEL_CARD.md").write_text(model_card(config, data))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir


def model_card(config: dict[str, Any], data: dict[str, Any]) -> str:
    mc, tr = config["model_config"], config["training"]
    rows = "\n".join(f"| {r['name']} | {r.get('layout', '')} | {r.get('split', '')} | {r.get('weight', 0):.3f} |"
                     for r in data.get("datasets", []))
    heldout = ", ".join(data.get("heldout", [])) or "none"
    return f"""# {config['model_name']} (unist release, format v{config['format_version']})

A spatio-temporal foundation model for grids, graphs and video: patched tokens -> MoE Transformer
(d_model {mc['d_model']}, depth {mc['depth']}, {mc['moe']['num_experts']} experts top-{mc['moe']['top_k']}),
pretrained jointly on masked reconstruction, contrastive and diffusion objectives.

- parameters: {config['weights']['num_params']:,} (stored as {config['weights']['dtype']}, loaded as fp32; `{WEIGHTS}`, sha256 `{config['weights']['sha256'][:16]}...`)
- trained for {tr['step']} optimizer steps, {tr.get('tokens_seen') or 'unknown'} tokens
- source: git {tr['git'].get('commit')} (uncommitted changes: {tr['git'].get('dirty')})
- patcher: {config['patcher_config']}

## Training data (training splits only: the first 60% of each series in time)

| dataset | type | split | mixture weight |
|---|---|---|---|
{rows}

Held out (never read during training): {heldout}.

## How it was made

`python train/pretrain.py {_run_args(tr.get('run_config') or {})}` (the `tiny` preset plus these
`key=value` overrides; `deepspeed train/pretrain.py ...` on several GPUs), then
`python -m unist.release export RUN/checkpoints OUT`.

{_inference_changes(config)}## Use

```python
import unist
model = unist.from_pretrained("{config['model_name'].replace('_', '-')}")  # or a path to this folder
pred = model.forecast(window, horizon=12)        # window: a unist.data.STSeries in raw units
```

The model normalises every context window by itself (per location and channel), so raw values go in
and come out. `normalization.json` holds the training datasets' train-split statistics, used only to
reproduce training.

## Limitations

Pretrained on a small corpus (a few public datasets plus a synthetic corpus); evaluate on your own
data against simple baselines (`python eval/zeroshot.py`) before relying on it.
"""


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
    config = _read_json(root / "config.json", "config.json")
    data = _read_json(root / "training_data.json", "training_data.json") if (root / "training_data.json").exists() else {}
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
    for name, text in (("config.json", json.dumps(config, indent=1)), ("MODEL_CARD.md", model_card(config, data))):
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
    """The `key=value` overrides of a run's config against the default (tiny) preset, i.e. its command line."""
    from unist.train.config import PretrainConfig  # late: the training package is only needed here

    if not run_config:
        return "(run configuration not recorded)"
    base, run = _flat(PretrainConfig().to_dict()), _flat(run_config)
    skip = {"name", "out_dir", "resume", "data.data_dir", "model.overrides"}
    fmt = lambda v: ",".join(map(str, v)) if isinstance(v, (list, tuple)) else json.dumps(v) if isinstance(v, dict) else str(v).lower() if isinstance(v, bool) else str(v)  # noqa: E731
    args = [f"{k}={fmt(v)}" for k, v in run.items() if k not in skip and base.get(k) != v]
    args += [f"model.{k}={fmt(v)}" for k, v in (run_config.get("model", {}).get("overrides") or {}).items()]
    return " ".join(args)


# ---------------------------------------------------------------------------------- load
def resolve_release(path_or_name: str | Path) -> Path:
    """A release folder from a path (folder or its config.json) or a name like 'unist-tiny'
    (-> <repo>/checkpoints/unist-tiny/)."""
    p = Path(path_or_name)
    if p.is_file() and p.name == "config.json":
        return p.parent
    if p.is_dir():
        return p
    name = str(path_or_name)
    if "/" not in name and os.sep not in name:
        for cand in (name, name.replace("_", "-")):
            if (CHECKPOINTS_DIR / cand).is_dir():
                return CHECKPOINTS_DIR / cand
        shipped = sorted(q.name for q in CHECKPOINTS_DIR.iterdir() if q.is_dir()) if CHECKPOINTS_DIR.is_dir() else []
        raise ReleaseError(f"no release named {name!r}: looked for {CHECKPOINTS_DIR / name}; shipped releases: "
                           f"{shipped or 'none'}. Pass a path to a release folder (e.g. runs/tiny/release)")
    raise ReleaseError(f"release folder {p} does not exist")


def _check_against_config(sd: dict[str, torch.Tensor], model_name: str, model_config: dict[str, Any],
                          where: str) -> torch.nn.Module:
    """Build the model the config describes (on the meta device) and compare keys and shapes with `sd`."""
    from unist.model import UniSTConfig, list_models
    from unist.model.unist import UniST

    if model_name not in list_models():
        raise ReleaseError(f"{where}: unknown model name {model_name!r}; this unist knows {list_models()} (is the "
                           "release from a newer unist?)")
    try:
        cfg = UniSTConfig.from_dict(model_config).validate()
    except (TypeError, ValueError) as e:
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
    return cfg


def load_release(path_or_name: str | Path, device: str | torch.device | None = None,
                 dtype: torch.dtype | None = None, verify: bool = True) -> Release:
    """Load a release folder (see module docstring). verify: check the weights' sha256 first."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from unist.model.unist import UniST

    root = resolve_release(path_or_name)
    config = _read_json(root / "config.json", "config.json")
    if config.get("format") != FORMAT:
        raise ReleaseError(f"{root}/config.json is not a unist release (format {config.get('format')!r}, expected "
                           f"{FORMAT!r})")
    if config.get("format_version") != FORMAT_VERSION:
        raise ReleaseError(f"{root}: release format version {config.get('format_version')!r} is not supported by "
                           f"this unist (reads version {FORMAT_VERSION}); use the unist version that wrote it")
    for key in ("model_name", "model_config", "weights"):
        if key not in config:
            raise ReleaseError(f"{root}/config.json has no {key!r}: re-export the release")
    wpath = root / config["weights"].get("file", WEIGHTS)
    if not wpath.is_file():
        raise ReleaseError(f"{wpath} is missing: the release has no weights")
    if verify and "sha256" in config["weights"]:
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
    cfg = _check_against_config(sd, config["model_name"], config["model_config"], where=str(root))
    model = UniST(cfg)
    model.load_state_dict(sd, strict=True)  # copies (and upcasts float16/bfloat16-stored weights) into fp32
    model = model.to(device=device or "cpu", dtype=dtype).eval()
    norm = _read_json(root / "normalization.json", "normalization.json") if (root / "normalization.json").exists() else {}
    data = _read_json(root / "training_data.json", "training_data.json") if (root / "training_data.json").exists() else {}
    return Release(model=model, path=root, config=config, normalization=norm, training_data=data)


def from_pretrained(path_or_name: str | Path, device: str | torch.device | None = None,
                    dtype: torch.dtype | None = None) -> torch.nn.Module:
    """The model of a release (eval mode) on `device` (default CPU), e.g. `from_pretrained("unist-tiny")`
    or `from_pretrained("runs/tiny/release")`. `load_release` also returns the metadata."""
    return load_release(path_or_name, device=device, dtype=dtype).model


def describe(path_or_name: str | Path) -> dict[str, Any]:
    """config.json of a release (cheap: no weights loaded)."""
    return _read_json(resolve_release(path_or_name) / "config.json", "config.json")


__all__ = ["FORMAT_VERSION", "WEIGHT_DTYPES", "Release", "ReleaseError", "describe", "export_release", "from_pretrained",
           "load_release"]


def main(argv: list[str] | None = None) -> None:
    """`python -m unist.release export CKPT_DIR OUT_DIR [--tag T] [--weights-dtype float16]` | `describe PATH`
    | `set PATH FIELD=VALUE ...` (inference-only fields, e.g. self_check=true)."""
    import argparse
    import sys

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
            print(export_release(args.ckpt_dir, args.out_dir, args.tag, args.weights_dtype))
        elif args.cmd == "set":
            print(set_inference(args.path, dict(_parse_setting(t) for t in args.settings)))
        else:
            print(json.dumps(describe(args.path), indent=1))
    except ReleaseError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
