"""Guards of the pretraining job against silent failures (no DeepSpeed process): non-finite config
values, a missing data folder, misspelled mixture weights, bring-your-own .npz datasets, the default
held-out list, resume with changed settings, non-finite losses / weights, a fresh start over an old
run, the loss figure and DeepSpeed's accelerator probe. End-to-end checks are in test_train_runs.py."""
from __future__ import annotations

import json
import math
import os
import re

import matplotlib.image
import numpy as np
import pytest
import torch

from conftest import REPO
from unist.data import DataError, STSeries, save_npz
from unist.train import data_mix
from unist.train.checkpoint import PREVIOUS, CheckpointError, archive_previous_run
from unist.train.config import RELEASE_HELDOUT, ConfigError, load_config
from unist.train.data_mix import build_sources
from unist.train.distributed import quiet_cpu_accelerator_probe
from unist.train.metrics import ema, plot_losses
from unist.train.resume import RESUME_FIXED_KEYS, check_resume_settings, check_training_data
from unist.train.trainer import LOSS_KEYS, nonfinite_parameters, nonfinite_terms


# ---------------------------------------------------------------------------------- config values
@pytest.mark.parametrize("arg", [
    "optim.lr=nan", "optim.lr=inf", "optim.lr=-inf", "optim.weight_decay=nan", "optim.beta1=nan", "optim.beta2=nan",
    "optim.eps=nan", "optim.grad_clip=nan", "optim.min_lr_ratio=nan", "data.video_fps=nan",
    "data.synthetic_weight=nan", "data.type_weights=grid:nan", "data.dataset_weights=nyc_bike1:inf",
    "logging.peak_tflops=nan", "model.moe.aux_loss_weight=nan", "model.objectives.temperature=inf",
])
def test_non_finite_values_are_refused(arg):
    key = arg.split("=")[0].split(":")[0]
    with pytest.raises(ConfigError, match=re.escape(key) + r".*is not a finite number"):
        load_config("tiny", [arg])


@pytest.mark.parametrize("arg, rule", [
    ("optim.beta2=1", "in [0, 1)"), ("optim.eps=0", "> 0"), ("optim.grad_clip=-1", ">= 0"),
    ("optim.weight_decay=-0.1", ">= 0"), ("optim.lr=0", "> 0"), ("logging.peak_tflops=-1", ">= 0"),
])
def test_out_of_range_values_name_the_rule(arg, rule):
    with pytest.raises(ConfigError, match=re.escape(arg.split("=")[0]) + ".*must be " + re.escape(rule)):
        load_config("tiny", [arg])
    load_config("tiny", ["optim.grad_clip=0"])  # 0 = no clipping


# ---------------------------------------------------------------------------------- default held-out list
def test_default_heldout_is_the_release_s():
    """The default run holds out what README's zero-shot table evaluates (the shipped release's list)."""
    release = json.loads((REPO / "checkpoints" / "unist-tiny-6" / "training_data.json").read_text())
    script = (REPO / "scripts" / "release_unist.sh").read_text()
    in_script = re.search(r"^HELDOUT=(\S+)$", script, re.M).group(1).split(",")
    assert load_config("tiny").data.heldout == RELEASE_HELDOUT
    assert list(RELEASE_HELDOUT) == release["heldout"] == in_script
    with pytest.raises(ConfigError, match="default data.heldout holds out the release's zero-shot sets"):
        load_config("tiny", ["data.datasets=metr_la_week"])
    assert load_config("tiny", ["data.datasets=metr_la_week", "data.heldout="]).data.heldout == ()


# ---------------------------------------------------------------------------------- data mixture
def _grid(t: int, name: str) -> STSeries:
    v = np.random.default_rng(0).normal(size=(t, 6, 5, 2)).astype(np.float32)
    return STSeries(values=v, mask=np.ones_like(v, bool), layout="grid", name=name, domain="test")


def _recording_loader(calls: list[str]):
    def load(name, **_):
        calls.append(str(name))
        return _grid(100, str(name))
    return load


def test_auto_without_data_is_an_error_naming_the_path(tmp_path, monkeypatch):
    missing = tmp_path / "no_such_dir"
    monkeypatch.setenv("UNIST_DATA_DIR", str(missing))
    with pytest.raises(DataError, match=re.escape(str(missing)) + r" \(UNIST_DATA_DIR\) does not exist.*"
                                        "data.datasets=synthetic"):
        build_sources(load_config("tiny").data, seed=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="data.data_dir.*holds none of the dataset folders"):
        build_sources(load_config("tiny", [f"data.data_dir={tmp_path / 'empty'}"]).data, seed=0)
    monkeypatch.setenv("UNIST_DATA_DIR", str(missing))
    only = build_sources(load_config("tiny", ["data.datasets=synthetic"]).data, seed=0)  # the explicit opt-in
    assert [s.name for s in only] == ["synthetic", "prior"] and sum(s.weight for s in only) == pytest.approx(1.0)


def test_misspelled_dataset_weight_fails_before_reading_data(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(data_mix, "load_series", _recording_loader(calls))
    base = ["data.datasets=nyc_bike2,geolife_sample"]
    with pytest.raises(DataError, match="'nyc_bik2', which is not a dataset of this run. Did you mean nyc_bike2"):
        build_sources(load_config("tiny", base + ["data.dataset_weights=nyc_bik2:2"]).data, seed=0)
    with pytest.raises(DataError, match="'metr_la_week'.*It is held out"):
        build_sources(load_config("tiny", base + ["data.dataset_weights=metr_la_week:2"]).data, seed=0)
    with pytest.raises(DataError, match="use data.synthetic_weight"):
        build_sources(load_config("tiny", base + ["data.dataset_weights=synthetic:2"]).data, seed=0)
    assert calls == []
    w = {s.name: s.weight for s in build_sources(load_config("tiny", base + ["data.dataset_weights=NYC-Bike2:3", "data.prior_weight=0",
                                                                           "data.synthetic_weight=0"]).data, 0)}
    assert w == pytest.approx({"nyc_bike2": 0.75, "geolife_sample": 0.25})  # aliases / case resolve


def test_npz_paths_are_datasets_with_their_own_layout(tmp_path):
    v = np.random.default_rng(0).normal(size=(50, 12, 1)).astype(np.float32)
    path = save_npz(STSeries(values=v, mask=np.ones_like(v, bool), layout="graph", name="mine", domain="test"),
                    tmp_path / "my_sensors.npz")
    cfg = load_config("tiny", [f"data.datasets={path},synthetic", "data.window=8"])
    sources = {s.name: s for s in build_sources(cfg.data, seed=0)}
    mine = sources["my_sensors"]
    assert set(sources) == {"my_sensors", "synthetic", "prior"} and mine.layout == "graph"
    assert mine.series.num_steps == 30 and mine.record["path"] == str(path.resolve())  # train split 6:2:2
    dup = tmp_path / "sub" / "my_sensors.npz"
    dup.parent.mkdir()
    dup.write_bytes(path.read_bytes())
    with pytest.raises(DataError, match="more than once"):  # both would train (and normalise) as my_sensors
        build_sources(load_config("tiny", [f"data.datasets={path},{dup}"]).data, seed=0)
    with pytest.raises(DataError, match="does not exist"):
        build_sources(load_config("tiny", [f"data.datasets={tmp_path / 'nope.npz'}"]).data, seed=0)


# ---------------------------------------------------------------------------------- resume settings
def _saved(cfg) -> dict:
    return {"model_config": cfg.model_config().to_dict(), "run_config": cfg.to_dict(),
            "training_data": {"datasets": [{"name": "synthetic", "weight": 1.0}]}}


def test_resume_refuses_changed_model_schedule_and_ranks():
    cfg = load_config("tiny")
    saved = _saved(cfg)
    check_resume_settings(saved, 1, load_config("tiny", ["train.stop_at=5", "logging.every=3"]),
                          cfg.model_config(), 1)  # not fixed for a run: fine
    deeper = load_config("tiny", ["model.depth=2", "model.moe.num_experts=8"])
    with pytest.raises(CheckpointError, match=r"model differs.*model.depth: checkpoint \d+, now 2; "
                                              r"model.moe.num_experts: checkpoint \d+, now 8"):
        check_resume_settings(saved, 1, deeper, deeper.model_config(), 1)
    for arg in ("train.steps=301", "optim.lr=2e-3", "optim.warmup_steps=5", "optim.min_lr_ratio=0.5",
                "train.grad_accum=2", "data.tokens_per_batch=2048"):
        key = arg.split("=")[0]
        assert key in RESUME_FIXED_KEYS
        changed = load_config("tiny", [arg])
        with pytest.raises(CheckpointError, match=re.escape(key) + ": checkpoint .*, now .*fixed for a run"):
            check_resume_settings(saved, 1, changed, changed.model_config(), 1)
    with pytest.raises(CheckpointError, match="written by 2 ranks, this run has 1"):
        check_resume_settings(saved, 2, cfg, cfg.model_config(), 1)
    with pytest.raises(CheckpointError, match="data mixture differs"):
        check_training_data(saved["training_data"], {"datasets": [{"name": "nyc_bike1", "weight": 1.0}]})


# ---------------------------------------------------------------------------------- non-finite training
def test_non_finite_losses_grad_norm_and_weights_are_found():
    rec = {"step": 3, "loss": math.nan, "masked": 1.0, "diffusion": math.inf, "grad_norm": math.inf, "lr": 1e-3}
    assert set(LOSS_KEYS) >= {"loss", "diffusion"}
    assert nonfinite_terms(rec) == {"loss": rec["loss"], "diffusion": math.inf, "grad_norm": math.inf}
    assert nonfinite_terms({"loss": 1.0, "grad_norm": None}) == {}
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    assert nonfinite_parameters(model) == []
    with torch.no_grad():
        model[1].bias.fill_(math.nan)
        model[0].weight[0, 0] = math.inf
    assert nonfinite_parameters(model) == ["0.weight", "1.bias"]


# ---------------------------------------------------------------------------------- fresh start
def test_fresh_start_moves_the_previous_run_aside(tmp_path):
    run = tmp_path / "tiny"
    (run / "checkpoints" / "step_00000004").mkdir(parents=True)
    (run / "checkpoints" / "latest").write_text("step_00000004")
    (run / "release").mkdir()
    (run / "metrics.jsonl").write_text("{}\n")
    moved = archive_previous_run(run, stamp="20260101-000000")
    assert moved == run / PREVIOUS / "20260101-000000"
    assert (moved / "checkpoints" / "latest").read_text() == "step_00000004" and (moved / "release").is_dir()
    assert sorted(p.name for p in run.iterdir()) == [PREVIOUS]
    (run / "summary.json").write_text("{}")
    assert archive_previous_run(run, stamp="20260101-000000") == run / PREVIOUS / "20260101-000000-1"
    assert archive_previous_run(run) is None  # nothing left to move


# ---------------------------------------------------------------------------------- loss figure
def test_loss_figure_is_a_grid_against_tokens_seen(tmp_path):
    assert ema(np.array([2.0, 2.0, 2.0]), span=5).tolist() == pytest.approx([2.0, 2.0, 2.0])  # no pull to 0
    rng = np.random.default_rng(0)
    records = [{"step": s, "tokens_seen": 900 * s, "tokens_per_s": 1500 + rng.normal(),
                **{k: float(3 * np.exp(-s / 30) + 0.1 * rng.random()) for k in LOSS_KEYS}} for s in range(1, 101)]
    records[10]["loss"] = math.nan  # left out, not a crash
    png = plot_losses(records, tmp_path / "loss.png", LOSS_KEYS, title="tiny")
    h, w = matplotlib.image.imread(png).shape[:2]
    assert h >= 600 and w / h < 2  # a grid of panels (7 here: 6 losses + tokens/s), not a 1920x300 strip
    assert plot_losses([{"step": 1}], tmp_path / "none.png", LOSS_KEYS) is None


# ---------------------------------------------------------------------------------- DeepSpeed probe
def test_cpu_runs_tell_deepspeed_its_accelerator(monkeypatch):
    monkeypatch.delenv("DS_ACCELERATOR", raising=False)
    quiet_cpu_accelerator_probe()
    assert os.environ.get("DS_ACCELERATOR") == (None if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv("DS_ACCELERATOR", "cuda")
    quiet_cpu_accelerator_probe()
    assert os.environ["DS_ACCELERATOR"] == "cuda"  # a user's choice wins
