"""Unit tests of the pretraining job's pieces (no DeepSpeed process): config, DeepSpeed JSON, data
mixture and packing, crash-safe checkpoints, the model the engine trains, metrics. End-to-end runs are in
tests/integration/test_train_runs.py."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from unist.data import STSeries
from unist.model.blocks import Block
from unist.objectives import Pretrainer
from unist.patching import PatcherConfig
from unist.train import data_mix
from unist.train.checkpoint import MANIFEST, CheckpointError, CheckpointManager, verify_checkpoint
from unist.train.config import ConfigError, PretrainConfig, load_config, valid_keys
from unist.train.data_mix import Mixture, PretrainStream, build_sources, make_loader, num_tokens
from unist.train.ds_config import build_ds_config, load_ds_config, lr_lambda
from unist.train.engine import build_model
from unist.model import flops_per_token
from unist.train.metrics import FlopCounter, MetricsLogger, expert_load_by_type, peak_flops

from conftest import require_data


# ---------------------------------------------------------------------------------- config
def test_overrides_are_typed_and_nested():
    cfg = load_config("tiny", ["train.steps=7", "optim.lr=3e-4", "zero.stage=3", "logging.progress=false",
                               "data.datasets=metr_la_week,nyc_bike1", "data.heldout=",
                               "data.type_weights=grid:2,graph:0.5",
                               "model.depth=2", "model.moe.num_experts=8", "model.patch.patch_size=2",
                               "model.attn_backend=none", "resume=yes"])
    assert cfg.train.steps == 7 and cfg.optim.lr == 3e-4 and cfg.zero.stage == 3 and cfg.logging.progress is False
    assert cfg.data.datasets == ("metr_la_week", "nyc_bike1")
    assert cfg.data.type_weights == {"grid": 2.0, "graph": 0.5} and cfg.resume is True
    mc = cfg.model_config()
    assert (mc.depth, mc.moe.num_experts, mc.patch.patch_size, mc.attn_backend) == (2, 8, 2, None)
    assert PretrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.parametrize("arg, needle", [
    ("train.stpes=3", "Did you mean train.steps"),
    ("model.dpeth=3", "Did you mean model.depth"),
    ("nonsense=1", "Valid keys"),
    ("train.steps=three", "train.steps='three'"),
    ("logging.progress=maybe", "not a boolean"),
    ("zero.stage=5", "zero.stage=5"),
    ("zero.precision=fp16", "choose one of"),
    ("train.steps", "key=value"),
    ("data.datasets=nyc_bike2", None),
])
def test_bad_overrides_say_what_is_wrong(arg, needle):
    if needle is None:
        load_config("tiny", [arg])
        return
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(".", r"\.")):
        load_config("tiny", [arg])


def test_presets_and_keys():
    for name in ("tiny", "small", "base", "large"):
        cfg = load_config(name)
        assert cfg.model_config().d_model > 0
    assert load_config("large").zero.stage == 3
    keys = valid_keys()
    assert "train.steps" in keys and "model.moe.top_k" in keys and "model.overrides" not in keys
    with pytest.raises(ConfigError, match="heldout"):
        load_config("tiny", ["data.datasets=metr_la_week"])  # held out by default (the release's list)


# ---------------------------------------------------------------------------------- DeepSpeed JSON
def test_ds_config_follows_the_config(tmp_path):
    cfg = load_config("tiny", ["zero.stage=3", "train.grad_accum=4", "optim.grad_clip=0.5"])
    ds = build_ds_config(cfg, world_size=2, on_gpu=False)
    assert ds["zero_optimization"]["stage"] == 3 and ds["gradient_accumulation_steps"] == 4
    assert ds["train_batch_size"] == 8 and ds["train_micro_batch_size_per_gpu"] == 1
    assert ds["optimizer"]["params"]["torch_adam"] is True  # no JIT-compiled CPU Adam
    assert "torch_autocast" not in ds  # fp32 on CPU
    assert build_ds_config(cfg, 2, on_gpu=True)["torch_autocast"] == {"enabled": True, "dtype": "bfloat16"}
    with pytest.raises(ConfigError, match="unknown key.*expert_parallel|expert_parallel"):
        load_config("tiny", ["zero.expert_parallel=2"])  # the dead knob is gone: an unknown key
    with pytest.raises(ConfigError, match="heads=3 does not divide d_model=128"):
        load_config("tiny", ["model.heads=3"])  # caught before launch, not after the process group starts
    user = tmp_path / "ds.json"
    user.write_text(json.dumps({"train_micro_batch_size_per_gpu": 4}))
    with pytest.raises(ConfigError, match="must be 1"):
        load_ds_config(user, cfg, 2)
    user.write_text(json.dumps({"zero_optimization": {"stage": 1}, "moe": {"ep_size": 2}}))
    with pytest.raises(ConfigError, match="moe.ep_size=2.*not supported.*all-to-all"):
        load_ds_config(user, cfg, 2)
    with pytest.raises(ConfigError, match="does not exist"):
        load_ds_config(tmp_path / "missing.json", cfg, 1)


def test_lr_schedule_warms_up_then_decays():
    f = lr_lambda(load_config("tiny", ["train.steps=100", "optim.warmup_steps=10", "optim.min_lr_ratio=0.1"]))
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(100) == pytest.approx(0.1) and f(10) > f(50) > f(99)


# ---------------------------------------------------------------------------------- data mixture
def _grid(t: int, name: str) -> STSeries:
    v = np.random.default_rng(0).normal(size=(t, 6, 5, 2)).astype(np.float32)
    return STSeries(values=v, mask=np.ones_like(v, bool), layout="grid", name=name, domain="test")


def _graph(t: int, name: str) -> STSeries:
    v = np.random.default_rng(1).normal(size=(t, 40, 1)).astype(np.float32)
    return STSeries(values=v, mask=np.ones_like(v, bool), layout="graph", name=name, domain="test")


def _fake_loader(calls: list[str], forbidden: set[str]):
    def load(name, **_):
        calls.append(name)
        if name in forbidden:
            raise AssertionError(f"held-out dataset {name} was read")
        return _graph(100, name) if name in ("metr_la_week", "montevideo_bus") else _grid(100, name)
    return load


def test_heldout_is_never_read_and_only_train_split_is_used(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(data_mix, "load_series", _fake_loader(calls, {"chickenpox_hungary", "nyc_bike2"}))
    cfg = load_config("tiny", ["data.datasets=metr_la_week,nyc_bike1", "data.window=8",
                               "data.heldout=chickenpox_hungary,nyc_bike2"])
    sources = build_sources(cfg.data, seed=0)
    assert calls == ["metr_la_week", "nyc_bike1"]
    real = [s for s in sources if s.series is not None]
    assert all(s.series.num_steps == 60 and s.series.meta["split"] == "train" for s in real)  # 6:2:2 of 100
    assert all(s.starts.max() + cfg.data.window <= 60 for s in real)
    # "auto" = every registered dataset with a series, minus the held-out ones
    require_data()
    calls.clear()
    auto = load_config("tiny", ["data.heldout=chickenpox_hungary,nyc_bike2,mmaction2_demo"])
    build_sources(auto.data, seed=0)  # the fake loader raises if a held-out dataset is read
    assert calls and not {"chickenpox_hungary", "nyc_bike2", "mmaction2_demo"} & set(calls)
    assert {"metr_la_week", "nyc_bike1", "era5_t2m_uk"} <= set(calls)


def test_mixture_weights_split_type_weight_over_datasets(monkeypatch):
    monkeypatch.setattr(data_mix, "load_series", _fake_loader([], set()))
    cfg = load_config("tiny", ["data.datasets=metr_la_week,montevideo_bus,nyc_bike1", "data.heldout=",
                               "data.synthetic_weight=2", "data.prior_weight=0",
                               "data.type_weights=grid:1,graph:1", "data.dataset_weights=montevideo_bus:3"])
    w = {s.name: s.weight for s in build_sources(cfg.data, seed=0)}
    assert w["nyc_bike1"] == pytest.approx(0.25) and w["synthetic"] == pytest.approx(0.5)
    assert w["montevideo_bus"] == pytest.approx(3 * w["metr_la_week"]) and sum(w.values()) == pytest.approx(1)


@pytest.fixture
def mixture(monkeypatch):
    monkeypatch.setattr(data_mix, "load_series", _fake_loader([], set()))
    cfg = load_config("tiny", ["data.datasets=metr_la_week,nyc_bike1", "data.heldout=", "data.window=8",
                               "data.tokens_per_batch=96",
                               "data.max_cells=48"])
    return Mixture(build_sources(cfg.data, seed=3), cfg.data, PatcherConfig(patch_size=2, time_patch=4), seed=3)


def test_packing_fills_the_token_budget_with_cu_seqlens(mixture):
    for j in range(4):
        tb, meta = mixture.batch(rank=0, j=j)
        assert tb.num_tokens <= 96 and meta["index"] == j and len(meta["sources"]) == tb.num_samples
        lengths = torch.diff(tb.cu_seqlens.long())
        assert int(lengths.sum()) == tb.num_tokens and int(lengths.max()) == tb.max_seqlen
        wins = mixture.windows(0, j)
        assert [num_tokens(w, mixture.patcher.config) for w in wins] == lengths.tolist()


def test_stream_is_deterministic_per_rank_and_independent_of_workers(mixture):
    def first(rank, start, workers, n=4):
        it = iter(make_loader(mixture, rank, start, workers))
        out = [next(it) for _ in range(n)]
        del it
        return out

    a, b = first(0, 0, 0), first(0, 0, 2)
    assert [m["index"] for _, m in b] == [0, 1, 2, 3]
    assert all(torch.equal(x.values, y.values) and x.domains == y.domains for (x, _), (y, _) in zip(a, b))
    resumed = first(0, 2, 2, n=2)  # resuming at micro-batch 2 continues the same stream
    assert all(torch.equal(x.values, y.values) for (x, _), (y, _) in zip(a[2:], resumed))
    other = first(1, 0, 0, n=1)
    assert not torch.equal(other[0][0].values, a[0][0].values) or other[0][1]["sources"] != a[0][1]["sources"]
    assert isinstance(PretrainStream(mixture, 0), torch.utils.data.IterableDataset)


def test_too_large_window_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(data_mix, "load_series", _fake_loader([], set()))
    cfg = load_config("tiny", ["data.datasets=nyc_bike2", "data.synthetic_weight=0", "data.prior_weight=0", "data.tokens_per_batch=4"])
    mix = Mixture(build_sources(cfg.data, seed=0), cfg.data, PatcherConfig(patch_size=2, time_patch=4), seed=0)
    with pytest.raises(ValueError, match="tokens_per_batch=4"):
        mix.batch(0, 0)


# ---------------------------------------------------------------------------------- checkpoints
class FakeEngine:
    """Stands in for a DeepSpeed engine: writes two torch files per save, can crash half way."""

    def __init__(self, crash: bool = False):
        self.crash = crash

    def zero_optimization_stage(self) -> int:
        return 1

    def save_checkpoint(self, save_dir, tag, client_state, save_latest):
        assert save_latest is False
        d = Path(save_dir) / tag
        d.mkdir(parents=True)
        torch.save({"module": torch.arange(1000.0), **client_state}, d / "mp_rank_00_model_states.pt")
        if self.crash:
            raise KeyboardInterrupt("killed during save")
        torch.save({"state": torch.ones(1000)}, d / "zero_pp_rank_0_mp_rank_00_optim_states.pt")


def test_checkpoints_are_atomic_keep_last_and_detect_corruption(tmp_path):
    mgr = CheckpointManager(tmp_path, keep_last=2, rank=0, world_size=1)
    for step in (1, 2, 3):
        mgr.save(FakeEngine(), step, {"step": step}, {"step": step})
    assert mgr.tags() == ["step_00000002", "step_00000003"] and mgr.latest_tag() == "step_00000003"
    assert json.loads((tmp_path / "step_00000003" / "unist_state.json").read_text()) == {"step": 3}

    with pytest.raises(KeyboardInterrupt):  # a crash mid-save leaves the last good checkpoint in place
        mgr.save(FakeEngine(crash=True), 4, {"step": 4}, {"step": 4})
    assert mgr.resolve() == "step_00000003" and (tmp_path / "step_00000004.tmp").exists()
    mgr.save(FakeEngine(), 5, {}, {})
    assert not (tmp_path / "step_00000004.tmp").exists() and mgr.tags() == ["step_00000003", "step_00000005"]

    f = tmp_path / "step_00000005" / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        mgr.resolve()
    raw = bytearray(data)
    raw[len(raw) // 2] ^= 0xFF  # same size, one flipped byte
    f.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupt"):
        verify_checkpoint(tmp_path / "step_00000005")
    (tmp_path / "step_00000003" / MANIFEST).unlink()
    with pytest.raises(CheckpointError, match="not finished"):
        mgr.resolve("step_00000003")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        CheckpointManager(tmp_path / "empty", 1, 0, 1).resolve()


def test_checkpoint_missing_rank_files_is_refused(tmp_path):
    mgr = CheckpointManager(tmp_path, keep_last=1, rank=0, world_size=2)  # 2 ranks, one optimizer file
    with pytest.raises(CheckpointError, match="1 \\*optim_states.pt files for 2 ranks"):
        mgr.save(FakeEngine(), 1, {}, {})
    assert mgr.latest_tag() is None


# ---------------------------------------------------------------------------------- model setup
def test_activation_checkpointing_keeps_losses_and_gradients(mixture):
    tb, _ = mixture.batch(0, 0)
    runs = []
    for ckpt in (False, True):
        cfg = load_config("tiny", ["model.d_model=32", "model.heads=2", "model.depth=2", "model.decoder_dim=32",
                                   "model.decoder_heads=2", "model.patch.patch_size=2",
                                   f"model.activation_checkpointing={str(ckpt).lower()}"])
        step = build_model(cfg, cfg.model_config(), zero_stage=0)
        assert isinstance(step, Pretrainer)
        assert step.net.encoder.activation_checkpointing is ckpt and step.net.decoder.activation_checkpointing is ckpt
        calls = []  # attention calls with gradient: each block's once in forward, once more in backward when recomputed
        blocks = [m for m in step.modules() if isinstance(m, Block)]
        for m in blocks:
            m.attn.register_forward_hook(lambda mod, args, out: calls.append(torch.is_grad_enabled()))
        torch.manual_seed(0)
        out = step(tb)
        out["loss"].backward()
        assert calls.count(True) == len(blocks) * (2 if ckpt else 1)
        runs.append((out["loss"].detach(), [p.grad.clone() for p in step.parameters() if p.grad is not None]))
    assert torch.equal(runs[0][0], runs[1][0])
    assert len(runs[0][1]) == len(runs[1][1])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(runs[0][1], runs[1][1]))


# ---------------------------------------------------------------------------------- metrics
def test_flops_mfu_and_expert_load(tmp_path, mixture):
    cfg = load_config("tiny", ["model.patch.patch_size=2"]).model_config()
    tb, _ = mixture.batch(0, 0)
    n = torch.diff(tb.cu_seqlens.long()).tolist()
    want = sum(k * flops_per_token(cfg, k, tb.values.shape[-1]) for k in n)
    assert FlopCounter(cfg)(tb) == pytest.approx(want, rel=1e-9)
    assert peak_flops(torch.device("cpu")) is None and peak_flops(torch.device("cpu"), 2.0) == 2e12
    load = expert_load_by_type(torch.tensor([[3.0, 1.0], [0.0, 0.0], [2.0, 2.0]]))
    assert load["load/grid/e0"] == 0.75 and load["load/grid/max_over_mean"] == 1.5
    assert "load/graph/e0" not in load and load["load/video/max_over_mean"] == 1.0

    log = MetricsLogger(tmp_path, enabled=True, tensorboard=False)
    for step in (1, 2, 3):
        log.log({"step": step, "loss": 1.0 / step, **({"extra": 1.0} if step == 3 else {})})
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert rows[0] == "step,loss,extra" and len(rows) == 4
    resumed = MetricsLogger(tmp_path, enabled=True, tensorboard=False, start_step=2)  # drops step 3
    assert [r["step"] for r in resumed.records] == [1, 2]
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2
