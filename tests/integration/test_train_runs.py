"""End-to-end pretraining runs on CPU (subprocesses): the near-default run, exact resume, 2-process gloo
runs under ZeRO-2 and ZeRO-3 with the `deepspeed` launcher, export -> from_pretrained, and the errors a
truncated or tampered checkpoint / release gives. Every run is a few steps of a small model."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from conftest import REPO, require_data
from unist.forecast import Forecaster
from unist.release import ReleaseError, read_release
from unist.train.config import RELEASE_HELDOUT
from unist.train.distributed import free_port
from unist.train.metrics import read_jsonl

SMALL_MODEL = ["model.d_model=32", "model.heads=2", "model.depth=1", "model.decoder_dim=32", "model.decoder_depth=1",
               "model.decoder_heads=2", "model.diffusion_dim=32", "model.diffusion_depth=1", "model.patch_embed_dim=16"]
QUICK = ["logging.progress=false", "data.num_workers=0"]


def _run(args: list[str], launcher: list[str] | None = None, ok: bool = True, timeout: int = 300):
    cmd = (launcher or [sys.executable]) + [str(REPO / "train" / "pretrain.py")] + args
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if ok and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def _losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_jsonl(run_dir / "metrics.jsonl")}


@pytest.fixture(scope="module")
def default_run(tmp_path_factory) -> Path:
    """The no-argument command, shortened to 4 steps (default preset, model, data mixture and workers)."""
    require_data()
    out = tmp_path_factory.mktemp("runs")
    proc = _run([f"out_dir={out}", "train.steps=4", "checkpoint.every=2", "logging.progress=false"])
    (out / "console.txt").write_text(proc.stdout + proc.stderr)
    return out / "tiny"


def test_default_run_writes_checkpoints_metrics_plot_and_release(default_run):
    s = json.loads((default_run / "summary.json").read_text())
    assert s["steps"] == 4 and s["world_size"] == 1 and s["tokens_per_s"] > 0
    assert s["export_check"]["max_rel_diff"] <= 1e-5  # the release reproduces the engine's losses
    for name in ("metrics.jsonl", "metrics.csv", "loss.png", "release/model.safetensors", "release/MODEL_CARD.md"):
        assert (default_run / name).is_file(), name
    rec = read_jsonl(default_run / "metrics.jsonl")[-1]
    for key in ("loss", "masked", "contrastive", "diffusion", "moe_aux", "tokens_per_s", "lr", "load/grid/e0"):
        assert key in rec, key
    ckpt = default_run / "checkpoints"
    assert (ckpt / "latest").read_text() == "step_00000004"
    assert sorted(p.name for p in ckpt.iterdir() if p.is_dir()) == ["step_00000002", "step_00000004"]
    state = json.loads((ckpt / "step_00000004" / "unist_state.json").read_text())
    trained = [d["name"] for d in state["training_data"]["datasets"]]
    assert {"synthetic", "prior", "montevideo_bus", "chickenpox_hungary", "nyc_bike2"} <= set(trained)
    assert not set(RELEASE_HELDOUT) & set(trained)  # the default holds out README's zero-shot sets
    assert state["training_data"]["heldout"] == list(RELEASE_HELDOUT)
    release = json.loads((default_run / "release" / "training_data.json").read_text())
    assert [d["name"] for d in release["datasets"]] == trained
    assert all("train" in d["split"] for d in release["datasets"] if d["name"] not in ("synthetic", "prior"))
    cfg = json.loads((default_run / "release" / "config.json").read_text())
    assert cfg["model_name"] == "unist_tiny" and cfg["training"]["step"] == 4 and cfg["training"]["git"]["commit"]
    assert cfg["format_version"] == 2 and cfg["forecast_policy"] == {"correction": "full", "beta": 4.0, "residual": True}  # the default
    # the training checkpoint holds the Pretrainer (keys "net.*"); the release holds the bare network
    module = torch.load(ckpt / "step_00000004" / "mp_rank_00_model_states.pt", map_location="cpu",
                        weights_only=False)["module"]
    with safe_open(str(default_run / "release" / "model.safetensors"), "pt") as f:
        released = set(f.keys())
    assert module and all(k.startswith("net.") for k in module)
    assert released == {k[len("net."):] for k in module}
    assert "unable to detect" not in (default_run.parent / "console.txt").read_text()  # DS_ACCELERATOR=cpu set


def test_resume_continues_exactly(default_run, tmp_path):
    """Stop after step 2, resume: steps 3-4 have the losses of the uninterrupted run."""
    args = [f"out_dir={tmp_path}", "train.steps=4", "checkpoint.every=2", "logging.progress=false"]
    _run(args + ["train.stop_at=2"])
    assert not (tmp_path / "tiny" / "release").exists()  # unfinished runs are not exported
    # changed settings are refused from the saved config, before any weight is loaded
    refused = ((["train.steps=5"], "train.steps: checkpoint 4, now 5"),
               (["model.depth=2"], "model differs from the checkpoint's (model.depth: checkpoint 4, now 2)"))
    for extra, needle in refused:
        proc = _run(args + extra + ["--resume"], ok=False)
        assert proc.returncode != 0 and needle in proc.stderr and "loading state_dict" not in proc.stderr
    _run(args + ["--resume"])
    full, resumed = _losses(default_run), _losses(tmp_path / "tiny")
    assert sorted(resumed) == [1, 2, 3, 4]
    assert [resumed[s] for s in (3, 4)] == [full[s] for s in (3, 4)]

    # a truncated checkpoint file is reported as such, not as an unpickling error
    bad = tmp_path / "tiny" / "checkpoints" / "step_00000004" / "mp_rank_00_model_states.pt"
    bad.write_bytes(bad.read_bytes()[:1000])
    proc = _run(args + ["--resume"], ok=False)
    assert proc.returncode != 0 and "truncated or was modified" in proc.stderr


def test_non_finite_loss_stops_without_saving(tmp_path):
    """optim.lr=1e30 passes validation (finite) but blows the weights up: the run stops at the first
    non-finite loss, names it and the fixes, and saves nothing from the broken weights."""
    proc = _run([f"out_dir={tmp_path}", "train.steps=3", "checkpoint.every=2", "optim.lr=1e30", "optim.warmup_steps=0",
                 "data.datasets=synthetic", *SMALL_MODEL, *QUICK], ok=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr  # one clear line, no traceback
    assert "training stopped: non-finite loss=nan" in proc.stderr and "at step 2" in proc.stderr
    assert "Nothing was saved" in proc.stderr and "lower optim.lr (now 1e+30)" in proc.stderr
    run = tmp_path / "tiny"
    assert not (run / "checkpoints" / "latest").exists() and not (run / "release").exists()
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl")] == [1]


@pytest.mark.parametrize("stage, extra", [
    (2, []),
    (3, []),  # contrastive on: the encoder runs twice per step, MoE layers are not ZeRO-3 leaves
    (3, ["model.objectives.contrastive=0", "model.activation_checkpointing=true"]),  # MoE as ZeRO-3 leaf
], ids=["zero2", "zero3", "zero3-leaf-actckpt"])
def test_two_process_gloo_loss_falls_and_export_matches(tmp_path, stage, extra):
    require_data("metr_la_week", "nyc_bike1")
    launcher = [str(Path(sys.executable).parent / "deepspeed"), "--num_gpus", "2", "--master_port", str(free_port())]
    _run([f"out_dir={tmp_path}", "name=dist", f"zero.stage={stage}", "train.steps=5", "data.repeat_batches=1",
          "optim.lr=3e-3", "optim.warmup_steps=1", "data.datasets=metr_la_week,nyc_bike1", "data.heldout=",
          "data.window=8",
          "data.tokens_per_batch=256", *SMALL_MODEL, *QUICK, *extra], launcher=launcher)
    run = tmp_path / "dist"
    s = json.loads((run / "summary.json").read_text())
    losses = _losses(run)
    assert s["world_size"] == 2 and losses[5] < losses[1]
    assert s["export_check"]["max_rel_diff"] <= 1e-5
    files = [p.name for p in (run / "checkpoints" / "step_00000005").iterdir()]
    assert sum(f.endswith("optim_states.pt") for f in files) == 2


def _config_for_weights(config_text: str, weights: Path) -> str:
    """config.json text whose weights size and sha256 match `weights` (so only the file's content is bad)."""
    cfg = json.loads(config_text)
    data = weights.read_bytes()
    cfg["weights"].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    return json.dumps(cfg)


def test_from_pretrained_without_deepspeed_and_refuses_bad_releases(default_run, tmp_path):
    rel = tmp_path / "release"
    shutil.copytree(default_run / "release", rel)
    code = (f"import sys, unist; m = unist.from_pretrained({str(rel)!r}); "
            "assert 'deepspeed' not in sys.modules and not m.model.training; print(type(m).__name__)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "Forecaster"
    r = read_release(rel)
    assert "montevideo_bus" in r.normalization and r.training_data["heldout"] == list(RELEASE_HELDOUT)

    weights, config = rel / "model.safetensors", rel / "config.json"
    good_w, good_c = weights.read_bytes(), config.read_text()
    cases = {
        "truncated": lambda: weights.write_bytes(good_w[: len(good_w) // 2]),
        "sha256": lambda: weights.write_bytes(good_w[:-1] + bytes([good_w[-1] ^ 1])),
        "not a readable safetensors": lambda: (weights.write_bytes(good_w[: len(good_w) // 2]),
                                               config.write_text(_config_for_weights(good_c, weights))),
        "shape mismatches": lambda: config.write_text(good_c.replace('"d_model": 128', '"d_model": 64', 1)),
        "unknown model name": lambda: config.write_text(good_c.replace('"unist_tiny"', '"unist_huge"')),
        "format version": lambda: config.write_text(good_c.replace('"format_version": 2', '"format_version": 99')),
    }
    for needle, damage in cases.items():
        weights.write_bytes(good_w)
        config.write_text(good_c)
        damage()
        assert (weights.read_bytes(), config.read_text()) != (good_w, good_c), needle  # the damage did happen
        with pytest.raises(ReleaseError, match=needle):
            Forecaster.from_pretrained(rel)
    with pytest.raises(ReleaseError, match="no release named 'unist-nonexistent'"):
        Forecaster.from_pretrained("unist-nonexistent")
