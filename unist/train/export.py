"""Releases from training runs: export a (ZeRO) checkpoint, write the model card, change the forecasting policy.

    python -m unist.train.export export RUN/checkpoints OUT [--tag T] [--weights-dtype float16]
    python -m unist.train.export describe PATH
    python -m unist.train.export policy PATH correction=checked      # forecasting policy only; weights untouched
    python -m unist.train.export policy PATH lag_ets=true            # an inference-only model field (INFERENCE_FIELDS)

The folder format itself is `unist.release`; building a model from it is `unist.model.hub`. A training
checkpoint holds `unist.objectives.Pretrainer`'s state, whose keys are the network's with the prefix "net."
(`NET_PREFIX`): export strips it, the one key rename between training and release.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from unist.forecast.policy import ForecastPolicy, release_policy
from unist.model.config import UniSTConfig
from unist.model.hub import check_against_config, run_overrides
from unist.model.unist import UniST
from unist.release import (REPO_ROOT, WEIGHT_DTYPES, WEIGHTS, ReleaseError, describe, load_name, require_finite,
                           resolve_release, rewrite_config, validate_config, write_release)

from .checkpoint import STATE, CheckpointError, CheckpointManager, verify_checkpoint
from .config import PretrainConfig

NET_PREFIX = "net."


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


def network_state(sd: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """The network's state dict from a Pretrainer's (strip `NET_PREFIX`; any other key is refused)."""
    other = [k for k in sd if not k.startswith(NET_PREFIX)]
    if other:
        raise ReleaseError(f"{where}: keys {other[:3]} are not the network's ({NET_PREFIX}*): the checkpoint was not "
                           "written by unist.train (a Pretrainer); export a unist training run")
    return {k[len(NET_PREFIX):]: v for k, v in sd.items()}


def export_release(ckpt_dir: str | Path, out_dir: str | Path, tag: str | None = None,
                   weights_dtype: str = "float32", policy: ForecastPolicy | None = None) -> Path:
    """Write a release folder at `out_dir` from checkpoint `tag` (default: latest) of `ckpt_dir`.

    weights_dtype: how the weights are stored ("float16" halves the file; they load into an fp32
    model). Refuses weights with NaN/inf (a diverged run), also after the cast to `weights_dtype`.
    policy: the release's forecasting policy (default `ForecastPolicy()`, the network as trained)."""
    if weights_dtype not in WEIGHT_DTYPES:
        raise ReleaseError(f"weights_dtype={weights_dtype!r} unknown: use one of {sorted(WEIGHT_DTYPES)}")
    ckpt_dir, out_dir = Path(ckpt_dir), Path(out_dir)
    tag = CheckpointManager(ckpt_dir, 1, 0, 1).resolve(tag)
    verify_checkpoint(ckpt_dir / tag)
    state = json.loads((ckpt_dir / tag / STATE).read_text())
    sd = network_state(consolidate(ckpt_dir, tag), str(ckpt_dir / tag))
    require_finite(sd, f"checkpoint {ckpt_dir / tag}", "The run diverged at or before this step: export an "
                   "earlier checkpoint (--tag step_...) and lower the learning rate for the next run")
    training = {"step": state["step"], "tokens_seen": state.get("tokens_seen"), "checkpoint_tag": tag,
                "git": state.get("git") or git_commit(), "versions": state.get("versions", {}),
                "exported": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "run_config": state.get("run_config", {})}
    check_against_config(UniST, sd, state["model_name"], state["model_config"], where=str(ckpt_dir / tag),
                         overrides=run_overrides({"training": training}, str(ckpt_dir / tag / STATE)))
    data = state.get("training_data", {})
    normalization = {r["name"]: r["normalizer"] for r in data.get("datasets", []) if "normalizer" in r}
    return write_release(out_dir, sd, state["model_name"], state["model_config"],
                         forecast_policy=(policy or ForecastPolicy()).to_dict(), training=training,
                         training_data=data, normalization=normalization, card=model_card, weights_dtype=weights_dtype)


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

{_policy(config)}## Use

```python
import unist
fc = unist.from_pretrained({json.dumps(location)})   # network + forecasting policy
pred = fc.forecast(window, horizon=12)   # window: a unist.data.STSeries, a numpy array or a pandas long frame
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
                 "`python -m unist.train.export export RUN/checkpoints OUT`.")
    ft = training.get("finetune")
    if ft:
        text += (f"\n\nThen fine-tuned ({ft['mode']}, {ft['steps']} steps on the first {ft['fraction']:.0%} of the "
                 f"training split of `{ft['data']}`) from `{ft['base']}`: `{ft['command']}`.")
    return text


def _policy(config: dict[str, Any]) -> str:
    """The model card's forecasting-policy section, with any change made after export."""
    policy = release_policy(config, "config.json")
    text = (f"## Forecasting policy\n\n`{json.dumps(policy.to_dict())}` (`unist.forecast.ForecastPolicy`: "
            "correction 'checked' scales the network's correction of the lag copy's rule by an in-context "
            "self-check; 'full' trusts the network as trained; 'none' is the rule alone; residual false leaves the "
            "patch head's residual out of the network's forecasts and imputations).\n\n")
    changes = config.get("inference_changes") or []
    if changes:
        text += "Changed after export (weights untouched):\n\n" + "\n".join(
            f"- `{c['field']}`: {json.dumps(c['old'])} -> {json.dumps(c['new'])} ({c['changed']})" for c in changes)
        text += "\n\n"
    return text


# Model fields that only add untrained candidates to the lag copy at inference, so a release may switch them after
# export like a policy field (the scorer weights them by its rule's features; the weights are untouched)
INFERENCE_FIELDS = {"lag_ets": False}


def set_policy(path_or_name: str | Path, changes: dict[str, Any]) -> Path:
    """Change the forecasting policy (`ForecastPolicy` fields, and the model fields of `INFERENCE_FIELDS`) of a
    release in place.

    The weights are untouched; each change is recorded in config.json (`inference_changes`) and the
    model card is rewritten from the config (its evaluation section is dropped: re-run the evaluation,
    whose numbers no longer hold). config.json and MODEL_CARD.md are replaced atomically."""
    root = resolve_release(path_or_name)
    config = validate_config(json.loads((root / "config.json").read_text()), root)
    old = release_policy(config, f"{root}/config.json")
    model_changes = {k: v for k, v in changes.items() if k in INFERENCE_FIELDS}
    try:
        new = old.replace(**{k: v for k, v in changes.items() if k not in INFERENCE_FIELDS})
    except TypeError as e:
        raise ReleaseError(f"{changes}: {e}; the policy's fields are {sorted(old.to_dict())}") from None
    when = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    log = list(config.get("inference_changes") or [])
    log += [{"field": f"forecast_policy.{k}", "old": old.to_dict()[k], "new": v, "changed": when}
            for k, v in new.to_dict().items() if old.to_dict()[k] != v]
    mc = config["model_config"]
    log += [{"field": f"model_config.{k}", "old": mc.get(k, INFERENCE_FIELDS[k]), "new": v, "changed": when}
            for k, v in model_changes.items() if mc.get(k, INFERENCE_FIELDS[k]) != v]
    mc.update(model_changes)
    UniSTConfig.from_dict(mc).validate()  # e.g. lag_ets needs lag_error='mae'
    config["forecast_policy"] = new.to_dict()
    config["inference_changes"] = log
    data = json.loads((root / "training_data.json").read_text()) if (root / "training_data.json").exists() else {}
    rewrite_config(root, config, model_card(config, data, load_name(root)))
    return root


def _parse_setting(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    fields = {**ForecastPolicy().to_dict(), **INFERENCE_FIELDS}
    if not sep or key not in fields:
        raise ReleaseError(f"{text!r}: give FIELD=VALUE with FIELD one of {sorted(fields)} (the forecasting policy "
                           "and the inference-only candidates; anything else needs a new training run)")
    if isinstance(fields[key], bool):  # bool("false") is True: read the words
        if raw.lower() not in ("true", "false"):
            raise ReleaseError(f"{text!r}: {key} takes true or false")
        return key, raw.lower() == "true"
    return key, type(fields[key])(raw)


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
    base, run = _flat(PretrainConfig().to_dict()), _flat(run_config)
    skip = {"name", "out_dir", "resume", "data.data_dir", "model.overrides"}
    fmt = lambda v: ",".join(map(str, v)) if isinstance(v, (list, tuple)) else json.dumps(v) if isinstance(v, dict) else str(v).lower() if isinstance(v, bool) else str(v)  # noqa: E731
    args = [f"{k}={fmt(v)}" for k, v in run.items() if k not in skip and k in base and base[k] != v]  # removed keys: gone
    args += [f"model.{k}={fmt(v)}" for k, v in (run_config.get("model", {}).get("overrides") or {}).items()]
    return " ".join(args)


def main(argv: list[str] | None = None) -> None:
    """The CLI (module docstring). A refused input: one line on stderr and exit code 2."""
    p = argparse.ArgumentParser(prog="python -m unist.train.export")
    sub = p.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export", help="consolidate a (ZeRO) checkpoint folder into a release folder")
    ex.add_argument("ckpt_dir")
    ex.add_argument("out_dir")
    ex.add_argument("--tag", default=None, help="checkpoint tag (default: latest)")
    ex.add_argument("--weights-dtype", default="float32", choices=sorted(WEIGHT_DTYPES))
    de = sub.add_parser("describe", help="print a release's config summary")
    de.add_argument("path")
    st = sub.add_parser("policy", help="change the forecasting policy of a release (weights untouched)")
    st.add_argument("path")
    st.add_argument("settings", nargs="+", metavar="FIELD=VALUE")
    args = p.parse_args(argv)
    try:
        if args.cmd == "export":
            if not Path(args.ckpt_dir).is_dir():
                raise ReleaseError(f"checkpoint folder {args.ckpt_dir} does not exist: give RUN/checkpoints of a "
                                   "training run")
            print(export_release(args.ckpt_dir, args.out_dir, args.tag, args.weights_dtype))
        elif args.cmd == "policy":
            print(set_policy(args.path, dict(_parse_setting(t) for t in args.settings)))
        else:
            print(json.dumps(describe(args.path), indent=1))
    except (ReleaseError, CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
