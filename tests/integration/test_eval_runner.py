"""The evaluation harness end to end on real data with a tiny random model: batched forecasts, the CLI (JSON
schema, markdown, plot), the contamination audit, zero-shot purity (no parameter update, no training-split
statistic) and few-shot fine-tuning. Real-data tests fail (not skip) under CI=true without the data."""
from __future__ import annotations

import ast
import copy
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tests.conftest import REPO, require_data
from tests.model_testing import mixed_windows, single_thread, tiny_model  # noqa: F401  (fixture)
from unist.data import Normalizer, load_series, save_npz
from unist.evaluation import ContaminationError, EvalError, FinetuneConfig, markdown, run
from unist.evaluation import EvalConfig as _EvalConfig
from unist.evaluation.checkpoints import Checkpoint, load_checkpoint
from unist.evaluation.finetune import finetune
from unist.evaluation.forecasters import sample_locations, temporal_forecast
from unist.evaluation.protocols import protocol_for
from unist.evaluation.windows import make_windows
from unist.forecast import Forecaster, ForecastPolicy, horizon_limit
from unist.model import UniST, get_config
from unist.model.hub import load_release
from unist.release import FORMAT, FORMAT_VERSION, sha256_file

from eval.bursty_counts import main as write_counts
from eval.lag_study import main as lag_study
from eval.zeroshot import main as cli_main_full


def EvalConfig(*args, **kwargs):  # noqa: N802  (the runner's config; the statsforecast peers are tests/test_peers.py's)
    return _EvalConfig(*args, **{"peers": False, **kwargs})


def cli_main(argv: list[str]) -> int:
    return cli_main_full([*argv, "--no-peers"])

POX = "chickenpox_hungary"


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def write_release(fc, path, trained_on=(), heldout=()):
    """A release folder in unist.release's format (what export_release writes), for a forecaster we already have;
    its network's differences from the registry's unist_tiny are recorded as the run's model.* overrides."""
    model = fc.model
    path.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path / "model.safetensors"))
    ours, preset = _flat(model.config.to_dict()), _flat(get_config("unist_tiny").to_dict())
    overrides = {k: v for k, v in ours.items() if preset.get(k) != v}
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "model_name": "unist_tiny",
              "model_config": model.config.to_dict(),
              "forecast_policy": fc.policy.to_dict(),
              "weights": {"file": "model.safetensors", "sha256": sha256_file(path / "model.safetensors")},
              "training": {"run_config": {"model": {"name": "unist_tiny", "overrides": overrides}}}}
    (path / "config.json").write_text(json.dumps(config))
    data = {"datasets": [{"name": n, "shape": list(load_series(n).values.shape)} for n in trained_on]
            + [{"name": "synthetic"}], "heldout": list(heldout)}
    (path / "training_data.json").write_text(json.dumps(data))
    return path


def params(fc: Forecaster) -> dict[str, torch.Tensor]:
    """The network's parameters of a Forecaster (copied)."""
    return {k: v.detach().clone() for k, v in fc.model.state_dict().items()}


def same_params(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def model() -> Forecaster:
    return Forecaster(tiny_model())  # policy "full": the network as trained


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
    assert set(models) == {"unist", "unist_anchor", "unist_temporal", "last_value", "ensemble4",
                           "seasonal_naive", "historical_average", "ridge"}
    assert models["unist"]["self_check"] is False and models["unist_anchor"]["kind"] == "ablation"
    assert models["ensemble4"]["kind"] == "baseline" and res["windows"]["context_used"] == 104
    for name, m in models.items():
        assert {"label", "kind", "uses_target_data", "few_shot", "contaminated", "metrics", "seconds"} <= set(m)
        assert len(m["metrics"]["mae"]["per_step"]) == 4 and np.isfinite(m["metrics"]["mae"]["avg"])
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
    assert rec["steps"] == 3 and rec["trainable_params"] == sum(p.numel() for p in model.model.parameters())
    assert isinstance(tuned, Forecaster) and tuned.policy == model.policy

    lora, rec = finetune(model, train, 4, 1, FinetuneConfig(0.3, "lora", steps=3, batch_size=4, lora_rank=2))
    lp = params(lora)
    orig = {k: k.replace(".base.", ".") for k in lp}                # LoRALinear keeps the wrapped Linear as .base
    changed = {k for k in lp if orig[k] not in before or not torch.equal(lp[k], before[orig[k]])}
    assert changed and all("lora_" in k for k in changed)         # only the adapters moved
    assert rec["trainable_params"] < sum(p.numel() for p in model.model.parameters()) // 10
    with pytest.raises(ValueError, match="fraction"):
        FinetuneConfig(0.0)


def test_few_shot_in_a_run_is_labelled(model, single_thread):
    require_data(POX)
    ckpt = Checkpoint(model, "test", "tiny", random_init=True, training_datasets=[])
    cfg = EvalConfig("test", (POX,), context=4, horizon=1, max_windows=3, temporal_locations=0, baselines=False,
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
    assert val.origins.min() == v0 and val.origins.max() + p.horizon <= t0  # targets inside the validation split
    assert test.origins.min() == t0 and val.context_used == p.context  # contexts reach back before the split
    with pytest.raises(ValueError, match="split"):
        EvalConfig("random:unist_tiny", (POX,), split="train")
    rel = write_release(model, tmp_path / "rel", trained_on=[POX])
    res, _ = run(EvalConfig(str(rel), (POX,), max_windows=3, temporal_locations=0, allow_contaminated=True,
                            split="val"))
    win = res["results"][0]["windows"]
    assert res["settings"]["split"] == "val" and win["starts"][0] + win["context_used"] >= v0


def test_checkpoint_selection_table():
    from eval.select_checkpoint import describe
    sel = {"criterion": "mean MAE ratio", "chosen": "step_00000500", "tags": [
        {"tag": t, "score": sc, "datasets": {"a": {"unist": 1.0, "last_value": 2.0}}}
        for t, sc in (("step_00000250", 0.6), ("step_00000500", 0.5))]}
    table = describe(sel)
    assert "| step_00000500 **chosen** | 1.000 (2.000) | 0.5000 |" in table


# ---------------------------------------------------------------------------------- no silent failures
PM10 = "de_pm10_rural"


def test_outages_are_skipped_and_counted_not_fatal(tmp_path, model, single_thread):
    """A whole-network outage in the test split (windows with no observed context value) and one station's
    outage: every other window and location is scored, and the skipped ones are counted."""
    require_data(POX)
    s = load_series(POX)
    t0 = int(round(0.8 * s.num_steps))
    mask = s.mask.copy()
    mask[t0 + 10:t0 + 30] = False          # everything missing: 17 windows have an empty 4-step context
    mask[t0 + 50:t0 + 70, 3] = False       # station 3 only
    save_npz(replace(s, mask=mask, values=np.where(mask, s.values, np.nan).astype(np.float32)), tmp_path / "out.npz")
    ckpt = Checkpoint(model, "test", "tiny", random_init=True, training_datasets=[])
    results, _ = run(EvalConfig("test", (str(tmp_path / "out.npz"),), context=4, horizon=1), ckpt)
    w, models = results["results"][0]["windows"], results["results"][0]["models"]
    assert w["skipped"] == 17 and w["unscored"] >= 16 and w["locations_unscored"] > 0
    assert w["points_scored"] == models["unist"]["points_scored"] > 0
    assert models["unist"]["unpredicted_points"] > 0 and np.isfinite(models["unist"]["metrics"]["mae"]["avg"])
    assert models["unist_temporal"]["unpredicted_points"] > 0        # its own skipped one-location windows
    table = markdown(results)
    assert "Not scored: " in table and f"({w['skipped']} with no observed context value" in table


def test_real_dataset_with_missing_values_runs_at_defaults(tmp_path, single_thread, capsys):
    """de_pm10_rural (51 % missing): at the CLI's defaults the temporal-only ablation meets one-location contexts
    with nothing observed; the run scores the rest and reports them."""
    root = require_data(PM10)
    src = str(root / PM10 / f"{PM10}.npz")
    s = load_series(src)
    w = make_windows(s, protocol_for(s), 8)
    sampled = sample_locations(s.num_nodes, 32, 0)                  # the temporal-only ablation's locations
    empty = ~w.context_mask.reshape(8, w.context.shape[1], -1).any(1)[:, sampled]
    assert empty.any()                                             # one-location windows that used to stop the run
    out = tmp_path / "r.json"
    assert cli_main(["--checkpoint", "unist-tiny-3", "--dataset", src, "--max-windows", "8", "--out", str(out)]) == 0
    res = json.loads(out.read_text())["results"][0]
    temporal = res["models"]["unist_temporal"]
    assert res["models"]["unist"]["self_check"] is True          # unist-tiny-3's policy: correction "checked"
    assert {"unist_network", "unist_anchor"} <= set(res["models"])  # ...so both ablations run
    assert res["windows"]["locations_unscored"] > 0 and np.isfinite(temporal["metrics"]["mae"]["avg"])
    assert temporal["points_scored"] > 0
    assert "Not scored: " in capsys.readouterr().out


@pytest.mark.parametrize("argv, match", [
    (["--checkpoint", "random:unist_huge"], "no model architecture named 'unist_huge'"),
    (["--checkpoint", "no-such-release"], "no release named 'no-such-release': looked in"),
    (["--checkpoint", "random:unist_tiny", "--horizon", "1000"], "horizon 1000 is more than the model forecasts"),
    (["--checkpoint", "random:unist_tiny", "--dataset", "india_city_aq_daily.npz"], "13 channels, the model takes"),
])
def test_cli_refused_input_is_one_line_and_exit_2(tmp_path, capsys, argv, match):
    require_data(POX, "india_city_aq_daily")
    argv = [a.replace("india_city_aq_daily.npz", str(_npz_of("india_city_aq_daily"))) for a in argv]
    if "--dataset" not in argv:
        argv += ["--dataset", POX]
    assert cli_main(argv + ["--allow-contaminated", "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and re.search(match, err)


def _npz_of(name: str) -> Path:
    """The unist npz file of a real dataset folder."""
    return require_data(name) / name / f"{name}.npz"


@pytest.mark.parametrize("flag", [["--batch-size", "0"], ["--num-samples", "-1"], ["--num-samples", "1"],
                                  ["--max-windows", "0"], ["--finetune-fraction", "1.5"], ["--threads", "x"],
                                  ["--device", "cuda:9"]])
def test_cli_bad_flags_stop_before_any_work(tmp_path, capsys, flag):
    with pytest.raises(SystemExit) as e:
        cli_main(["--checkpoint", "unist-tiny-3", "--dataset", POX, *flag, "--out", str(tmp_path / "x.json")])
    assert e.value.code == 2 and f"argument {flag[0]}" in capsys.readouterr().err
    with pytest.raises(EvalError, match="batch_size"):
        EvalConfig("random:unist_tiny", (POX,), batch_size=0)


def test_select_checkpoint_refuses_with_one_line(tmp_path, capsys):
    from eval.select_checkpoint import main as select
    assert select([str(tmp_path / "absent"), "--dataset", POX]) == 2
    (tmp_path / "sel.json").write_text("[1]")
    assert select(["--describe", str(tmp_path / "sel.json")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "does not exist" in err[0] and "not a selection file" in err[1]
    with pytest.raises(SystemExit) as e:
        select([str(tmp_path), "--dataset", POX, "--max-windows", "0"])
    assert e.value.code == 2


def test_long_horizons_are_bounded_unless_allowed(model):
    w = mixed_windows()[1]                                   # a graph window; the test model has tau = 2
    limit = horizon_limit(w.num_steps - w.num_steps % 2)
    with pytest.raises(ValueError, match=r"horizon 100000 is too long .*forecast in chunks.*allow_long=True"):
        model.forecast(w, horizon=100000)
    with pytest.raises(ValueError, match="too long"):
        model.forecast_batch([w], limit + 1)
    assert model.forecast(w, horizon=limit).shape[0] == limit
    assert model.forecast(w, horizon=limit + 3, allow_long=True).shape[0] == limit + 3


def _graph_npz(path: Path, t: int = 600, n: int = 6) -> Path:
    """An hourly 6-station series (daily cycle + noise): the 'hourly' protocol, 168 in / 24 out."""
    rng = np.random.default_rng(0)
    hours = np.arange(t)
    v = 10 + 3 * np.sin(2 * np.pi * hours / 24)[:, None, None] + rng.normal(0, 0.3, (t, n, 1))
    ts = np.datetime64("2024-01-01T00:00") + hours * np.timedelta64(60, "m")
    np.savez(path, data=v, timestamps=ts, interval_minutes=60.0, name=np.array("my_sensors"))
    return path


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_finetune_command_writes_a_release_that_loads_and_forecasts(tmp_path, capsys, single_thread, lora):
    from unist.evaluation.finetune import main as finetune_main

    data = _graph_npz(tmp_path / "my.npz")
    out = tmp_path / "my_release"
    argv = ["--checkpoint", "unist-tiny-3", "--data", str(data), "--steps", "2", "--batch-size", "2", "--out", str(out)]
    assert finetune_main(argv + (["--lora-rank", "4"] if lora else [])) == 0
    assert capsys.readouterr().out.strip().endswith(str(out))
    rel, base = load_release(UniST, out), load_release(UniST, "unist-tiny-3")
    assert rel.model.state_dict().keys() == base.model.state_dict().keys()        # LoRA merged: same format
    changed = [k for k, v in rel.model.state_dict().items() if not torch.equal(v, base.model.state_dict()[k])]
    assert changed and (not lora or all(k.endswith((".qkv.weight", ".proj.weight", ".fc1.weight", ".fc2.weight"))
                                        for k in changed))
    ft = rel.config["training"]["finetune"]
    assert ft["mode"] == ("lora" if lora else "full") and ft["steps"] == 2 and ft["base"] == "unist-tiny-3"
    policies = [ForecastPolicy.from_dict(r.config["forecast_policy"]) for r in (rel, base)]
    assert policies == [ForecastPolicy(correction="checked", beta=4.0)] * 2
    s = load_series(data)
    fc = Forecaster.from_pretrained(out)                                          # the base's policy carried over
    assert fc.policy.correction == "checked"
    pred = fc.forecast(s.slice_time(200, 212), horizon=12)
    assert pred.shape == (12, 6, 1) and np.isfinite(pred).all()
    card = (out / "MODEL_CARD.md").read_text()
    assert f'from_pretrained("{out}")' in card and "python -m unist.evaluation.finetune --checkpoint unist-tiny-3" in card
    assert "my_sensors" in [d["name"] for d in rel.training_data["datasets"]]      # no longer a zero-shot target
    with pytest.raises(ContaminationError):
        run(EvalConfig(str(out), (str(data),), max_windows=2, temporal_locations=0, baselines=False))


def test_lora_merge_reproduces_the_adapted_model(model):
    from unist.evaluation.finetune import add_lora, merge_lora

    adapted = copy.deepcopy(model.model)
    add_lora(adapted, rank=2, alpha=4.0)
    for name, p in adapted.named_parameters():
        if "lora_b" in name:
            torch.nn.init.normal_(p, std=0.05)                                    # a non-trivial update
    w = mixed_windows()[1]
    before = Forecaster(adapted).embed(w)                                         # the encoder's output
    assert not torch.allclose(before, model.embed(w), atol=1e-4)
    assert len(merge_lora(adapted)) > 0 and adapted.state_dict().keys() == model.model.state_dict().keys()
    torch.testing.assert_close(Forecaster(adapted).embed(w), before, rtol=1e-4, atol=1e-5)


def test_lag_study_scores_the_validation_split(capsys):
    import importlib.util
    spec = importlib.util.spec_from_file_location("lag_study", REPO / "eval" / "lag_study.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--checkpoint", "random:unist_tiny", "--dataset", POX, "--windows", "2", "--threads", "1"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(POX) and all(k in line for k in ("'net'", "'checked'", "'rule'", "'last_step'"))


def test_lag_study_switches_the_backtest_error_on_synthetic_bursty_counts(tmp_path, capsys):
    path = tmp_path / "bursty.npz"
    assert write_counts([str(path)]) == 0
    assert "82% zeros" in capsys.readouterr().out
    s = load_series(path)
    assert s.domain == "epidemic" and s.interval_minutes == 10080 and 0.7 < (s.values == 0).mean() < 0.9
    rows = {}
    for error in ("rmse", "mae"):
        assert lag_study(["--checkpoint", "random:unist_tiny", "--dataset", str(path), "--windows", "2",
                          "--threads", "1", "--lag-error", error]) == 0
        rows[error] = ast.literal_eval(capsys.readouterr().out.strip().splitlines()[-1].split(" ", 1)[1])
    assert rows["rmse"]["last_step"] == rows["mae"]["last_step"]  # same windows
    assert rows["rmse"]["rule"] != rows["mae"]["rule"]  # the untrained rule weights by the chosen error
    # a trained release: a random model's scorer MLP and head start at 0, so its parts equal its rule
    assert lag_study(["--checkpoint", "unist-tiny-5", "--dataset", str(path), "--windows", "2", "--threads", "1",
                      "--candidates"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    alone = ast.literal_eval(out[-5].split("alone", 1)[1].strip())
    weight = ast.literal_eval(out[-4].split("rule weight", 1)[1].strip())
    net_weight = ast.literal_eval(out[-3].split("network weight", 1)[1].strip())
    assert list(alone) == list(weight) == list(net_weight) and list(alone)[:2] == ["last", "lag0"] and "mean4tau" in alone
    assert sum(net_weight.values()) == pytest.approx(1, abs=0.01) and net_weight != weight  # the decoder moves them
    main_row = ast.literal_eval(out[-6].split(" ", 1)[1])
    assert alone["last"] == pytest.approx(main_row["last_step"], rel=1e-3)
    assert sum(weight.values()) == pytest.approx(1, abs=0.01) and out[-2].startswith("  lags found (tokens)")
    split = ast.literal_eval(out[-1].split("network split", 1)[1].strip())
    assert set(split) == {"weights", "weights_pooled_h", "residual"}
    assert split["weights"] != split["residual"] and main_row["net"] not in split.values()  # each part moves it
    assert split["weights_pooled_h"] != split["weights"]  # the token's own decoder features move its weights
    # --network-split: the same parts, without the per-candidate lines
    assert lag_study(["--checkpoint", "unist-tiny-5", "--dataset", str(path), "--windows", "2", "--threads", "1",
                      "--network-split"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and ast.literal_eval(out[1].split("network split", 1)[1].strip()) == split
    # --ets true: the Holt-Winters candidates join after the smoothed levels (tiny-5 finds "periods" in bursty counts:
    # its longest valid lag is always a dip); on these two windows the rule gives them no weight (its MAE is the same
    # to four digits)
    assert lag_study(["--checkpoint", "unist-tiny-5", "--dataset", str(path), "--windows", "2", "--threads", "1",
                      "--candidates", "--ets", "true"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    with_ets = ast.literal_eval(out[-5].split("alone", 1)[1].strip())
    assert list(with_ets)[-4:] == ["ets0.1", "ets0.5", "interp", "cross"]
    assert with_ets["ets0.1"] != with_ets["last"] and with_ets["ets0.1"] != with_ets["ets0.5"]
    ets_row = ast.literal_eval(out[-6].split(" ", 1)[1])
    assert ets_row["last_step"] == main_row["last_step"] and ets_row["rule"] == main_row["rule"]
    # --residual false: the network as trained is its decoder weights alone (the split's "weights"), the rule stays
    assert lag_study(["--checkpoint", "unist-tiny-5", "--dataset", str(path), "--windows", "2", "--threads", "1",
                      "--residual", "false"]) == 0
    row = ast.literal_eval(capsys.readouterr().out.strip().splitlines()[-1].split(" ", 1)[1])
    assert row["net"] == pytest.approx(split["weights"], rel=1e-5) and row["rule"] == main_row["rule"]
    # --beta: only the self-checked forecast moves (a sharper trust), the network and the rule stay
    assert lag_study(["--checkpoint", "unist-tiny-5", "--dataset", str(path), "--windows", "2", "--threads", "1",
                      "--beta", "64"]) == 0
    sharp = ast.literal_eval(capsys.readouterr().out.strip().splitlines()[-1].split(" ", 1)[1])
    assert sharp["checked"] != main_row["checked"]
    assert (sharp["net"], sharp["rule"], sharp["last_step"]) == (main_row["net"], main_row["rule"], main_row["last_step"])
    # --mlp-scale 0: the scorer's MLP has no say, so the network without its residual is the rule
    assert lag_study(["--checkpoint", "unist-tiny-5", "--dataset", str(path), "--windows", "2", "--threads", "1",
                      "--residual", "false", "--mlp-scale", "0"]) == 0
    rule_only = ast.literal_eval(capsys.readouterr().out.strip().splitlines()[-1].split(" ", 1)[1])
    assert rule_only["net"] == pytest.approx(main_row["rule"], rel=1e-5) and rule_only["rule"] == main_row["rule"]
