"""The evaluation harness end to end on real data with a tiny random model: batched forecasts, the CLI (JSON
schema, markdown, plot), the contamination audit, zero-shot purity (no parameter update, no training-split
statistic) and few-shot fine-tuning. Real-data tests fail (not skip) under CI=true without the data."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tests.conftest import require_data
from tests.model_testing import mixed_windows, single_thread, tiny_model  # noqa: F401  (fixture)
from unist.data import Normalizer, load_series, save_npz
from unist.evaluation import ContaminationError, EvalConfig, FinetuneConfig, markdown, run
from unist.evaluation.checkpoints import Checkpoint, load_checkpoint
from unist.evaluation.finetune import finetune
from unist.evaluation.forecasters import temporal_forecast
from unist.evaluation.protocols import protocol_for
from unist.evaluation.windows import make_windows
from unist.release import FORMAT, FORMAT_VERSION, sha256_file

from eval.zeroshot import main as cli_main

POX = "chickenpox_hungary"


def write_release(model, path, trained_on=(), heldout=()):
    """A release folder in unist.release's format (what export_release writes), for a model we already have."""
    path.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path / "model.safetensors"))
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "model_name": "unist_tiny",
              "model_config": model.config.to_dict(),
              "weights": {"file": "model.safetensors", "sha256": sha256_file(path / "model.safetensors")}}
    (path / "config.json").write_text(json.dumps(config))
    data = {"datasets": [{"name": n, "shape": list(load_series(n).values.shape)} for n in trained_on]
            + [{"name": "synthetic"}], "heldout": list(heldout)}
    (path / "training_data.json").write_text(json.dumps(data))
    return path


def params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_params(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def model():
    return tiny_model()


def test_forecast_batch_equals_one_window_at_a_time(model, single_thread):
    windows = mixed_windows()
    batched = model.forecast_batch(windows, horizon=3)
    for w, b in zip(windows, batched):
        np.testing.assert_allclose(b, model.forecast(w, horizon=3), atol=1e-5)
    samples = model.forecast_batch(windows, horizon=3, num_samples=2)
    assert [s.shape for s in samples] == [(2, 3) + w.values.shape[1:] for w in windows]


def test_cli_end_to_end_schema_markdown_plot(tmp_path, model, single_thread):
    require_data(POX)
    rel = write_release(model, tmp_path / "rel", heldout=[POX])
    out = tmp_path / "out" / "results.json"
    rc = cli_main(["--checkpoint", str(rel), "--dataset", POX, "--max-windows", "6", "--num-samples", "4",
                   "--temporal-locations", "5", "--out", str(out), "--plot", str(tmp_path / "out" / "f.png")])
    assert rc == 0
    r = json.loads(out.read_text())
    assert set(r) == {"schema_version", "checkpoint", "settings", "results"}
    assert r["checkpoint"]["random_init"] is False and r["checkpoint"]["heldout"] == [POX]
    res = r["results"][0]
    assert {"dataset", "protocol", "split", "windows", "contamination", "contaminated", "models"} <= set(res)
    assert res["protocol"]["name"] == "epidemic-weekly" and res["windows"]["count"] == 6
    assert res["contaminated"] is False and res["contamination"]["heldout"] is True
    models = res["models"]
    assert set(models) == {"unist", "unist_network", "unist_anchor", "unist_temporal", "last_value",
                           "seasonal_naive", "historical_average", "ridge"}
    assert models["unist"]["self_check"] is True and models["unist_network"]["kind"] == "ablation"
    for name, m in models.items():
        assert {"label", "kind", "uses_target_data", "few_shot", "contaminated", "metrics", "seconds"} <= set(m)
        assert len(m["metrics"]["mae"]["per_step"]) == 1 and np.isfinite(m["metrics"]["mae"]["avg"])
    assert not models["unist"]["uses_target_data"] and models["ridge"]["uses_target_data"]
    assert models["historical_average"]["uses_target_data"] and not models["seasonal_naive"]["uses_target_data"]
    assert {"crps", "coverage_50", "coverage_80"} <= set(models["unist"]["metrics"])
    assert len(models["unist_temporal"]["locations"]) == 5
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| ridge AR [target train] |" in md and "baseline" in md
    assert (tmp_path / "out" / "f.png").stat().st_size > 1000


def test_contaminated_dataset_is_refused_or_flagged(tmp_path, model, single_thread):
    require_data(POX)
    rel = write_release(model, tmp_path / "rel", trained_on=[POX])
    ckpt = load_checkpoint(str(rel))
    assert ckpt.training_datasets == [POX]
    cfg = dict(checkpoint=str(rel), datasets=(POX,), max_windows=2, temporal_locations=0, baselines=False)
    with pytest.raises(ContaminationError, match="--allow-contaminated"):
        run(EvalConfig(**cfg), ckpt)
    assert cli_main(["--checkpoint", str(rel), "--dataset", POX, "--out", str(tmp_path / "x.json")]) == 2
    results, _ = run(EvalConfig(**cfg, allow_contaminated=True), ckpt)
    res = results["results"][0]
    assert res["contaminated"] is True and res["models"]["unist"]["contaminated"] is True
    assert "CONTAMINATED" in markdown(results)
    save_npz(replace(load_series(POX), name="mine"), tmp_path / "renamed.npz")  # a renamed copy: caught by shape
    with pytest.raises(ContaminationError, match="renamed copy"):
        run(EvalConfig(**{**cfg, "datasets": (str(tmp_path / "renamed.npz"),)}), ckpt)


def test_zero_shot_updates_no_parameter_and_reads_no_training_statistic(tmp_path, model, monkeypatch, single_thread):
    require_data(POX)
    clean = load_series(POX)
    poisoned = clean.slice_time(0, clean.num_steps)
    n_train = int(round(0.6 * clean.num_steps))
    poisoned.values = poisoned.values.copy()
    poisoned.values[:n_train] = 1e6                     # the training split only
    save_npz(clean, tmp_path / "clean.npz")
    save_npz(poisoned, tmp_path / "poisoned.npz")

    def no_fit(*a, **k):
        raise AssertionError("Normalizer.fit called during zero-shot evaluation")

    monkeypatch.setattr(Normalizer, "fit", no_fit)
    before = params(model)
    ckpt = Checkpoint(model, "test", "tiny", random_init=True, training_datasets=[])
    cfg = dict(checkpoint="test", max_windows=5, temporal_locations=0)
    a, _ = run(EvalConfig(datasets=(str(tmp_path / "clean.npz"),), **cfg), ckpt)
    b, _ = run(EvalConfig(datasets=(str(tmp_path / "poisoned.npz"),), **cfg), ckpt)
    assert same_params(before, params(model))
    ma, mb = a["results"][0]["models"], b["results"][0]["models"]
    assert ma["unist"]["metrics"] == mb["unist"]["metrics"]          # the training split is never read
    assert ma["ridge"]["metrics"] != mb["ridge"]["metrics"]          # ...while the target-data baselines do read it


def test_few_shot_full_and_lora_change_a_copy_only(model, single_thread):
    require_data(POX)
    train = make_windows(load_series(POX), protocol_for(load_series(POX)), 2).train
    before = params(model)
    tuned, rec = finetune(model, train, 4, 1, FinetuneConfig(0.3, "full", steps=3, batch_size=4))
    assert same_params(before, params(model))                       # the original is untouched
    after = params(tuned)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert rec["steps"] == 3 and rec["trainable_params"] == sum(p.numel() for p in model.parameters())

    lora, rec = finetune(model, train, 4, 1, FinetuneConfig(0.3, "lora", steps=3, batch_size=4, lora_rank=2))
    lp = params(lora)
    orig = {k: k.replace(".base.", ".") for k in lp}                # LoRALinear keeps the wrapped Linear as .base
    changed = {k for k in lp if orig[k] not in before or not torch.equal(lp[k], before[orig[k]])}
    assert changed and all("lora_" in k for k in changed)         # only the adapters moved
    assert rec["trainable_params"] < sum(p.numel() for p in model.parameters()) // 10
    with pytest.raises(ValueError, match="fraction"):
        FinetuneConfig(0.0)


def test_few_shot_in_a_run_is_labelled(model, single_thread):
    require_data(POX)
    ckpt = Checkpoint(model, "test", "tiny", random_init=True, training_datasets=[])
    cfg = EvalConfig("test", (POX,), max_windows=3, temporal_locations=0, baselines=False,
                     finetune=FinetuneConfig(0.2, "lora", steps=2, batch_size=2))
    results, _ = run(cfg, ckpt)
    fs = results["results"][0]["models"]["unist_fewshot"]
    assert fs["few_shot"] and fs["uses_target_data"] and fs["kind"] == "few-shot" and fs["mode"] == "lora"


def test_temporal_only_and_video_protocol(model, single_thread):
    root = require_data("metr_la_week", "videos")
    s = load_series("metr_la_week")
    w = make_windows(s, protocol_for(s, context=4, horizon=2), max_windows=2)
    pred = temporal_forecast(model, w, 2, np.array([3, 100]))
    assert pred.shape == w.target.shape
    assert np.isfinite(pred[:, :, [3, 100]]).all() and np.isnan(np.delete(pred, [3, 100], axis=2)).all()
    ckpt = Checkpoint(model, "test", "tiny", random_init=True, training_datasets=[])
    results, _ = run(EvalConfig("test", (str(root / "videos" / "mmaction2_test.avi"),), max_windows=2), ckpt)
    res = results["results"][0]
    assert res["protocol"]["video"] and res["dataset"]["shape"][1] == 64           # decoded at 64 px
    assert "psnr" in res["models"]["unist"]["metrics"] and "unist_temporal" not in res["models"]


def test_validation_split_windows_for_model_selection(tmp_path, model, single_thread):
    require_data(POX)
    s = load_series(POX)
    p = protocol_for(s)
    val, test = make_windows(s, p, split="val"), make_windows(s, p)
    v0, t0 = val.splits["val"].meta["split_start"], test.splits["test"].meta["split_start"]
    assert val.starts.min() >= v0 and val.origins.max() + p.horizon <= t0  # inside the validation split
    assert test.starts.min() >= t0
    with pytest.raises(ValueError, match="split"):
        EvalConfig("random:unist_tiny", (POX,), split="train")
    rel = write_release(model, tmp_path / "rel", trained_on=[POX])
    res, _ = run(EvalConfig(str(rel), (POX,), max_windows=3, temporal_locations=0, allow_contaminated=True,
                            split="val"))
    assert res["settings"]["split"] == "val" and res["results"][0]["windows"]["starts"][0] >= v0


def test_checkpoint_selection_table():
    from eval.select_checkpoint import describe
    sel = {"criterion": "mean MAE ratio", "chosen": "step_00000500", "tags": [
        {"tag": t, "score": sc, "datasets": {"a": {"unist": 1.0, "last_value": 2.0}}}
        for t, sc in (("step_00000250", 0.6), ("step_00000500", 0.5))]}
    table = describe(sel)
    assert "| step_00000500 **chosen** | 1.000 (2.000) | 0.5000 |" in table


def test_anchor_study_scripts_run(capsys, single_thread):
    require_data("metr_la_week")
    from eval.anchor_study import main as study
    assert study(["mixes", "--dataset", "metr_la_week", "--max-windows", "2"]) == 0
    assert study(["beta", "--dataset", "metr_la_week", "--max-windows", "2"]) == 0
    out = capsys.readouterr().out
    assert "50/50 mix" in out and out.count("beta ") == 3
