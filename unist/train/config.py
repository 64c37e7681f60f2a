"""Typed pretraining configuration: nested dataclasses, named presets, `key=value` overrides.

`load_config("tiny", ["train.steps=3", "zero.stage=3"])` returns a validated `PretrainConfig`.
Sections: model, data, optim, zero, train, checkpoint, logging. Keys under `model.` that are not
fields of `ModelSection` address the model architecture itself (`UniSTConfig`, nested:
`model.depth=2`, `model.moe.num_experts=8`, `model.patch.patch_size=2`); they are type-checked
against `UniSTConfig` and applied on top of the registry's config for `model.name`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

from unist.model.config import UniSTConfig
from unist.model.registry import get_config

from .overrides import ConfigError, apply_override, field_type, leaf_keys, parse_value, replace_dotted, \
    split_assignment, unknown_key_error

LAYOUT_NAMES = ("grid", "graph", "video")
PRECISIONS = ("auto", "fp32", "bf16")
# The datasets the current release holds out (checkpoints/unist-tiny-6/training_data.json "heldout",
# scripts/release_unist.sh HELDOUT; tests/integration/test_train_guards.py keeps the three equal): the default
# `data.heldout`, so the default run never trains on what README's zero-shot table evaluates.
# docs/evaluation.md: the first five are the validation sets (tuning), the last five the blind test sets.
VALIDATION_SETS = ("metr_la_week", "era5_t2m_uk", "de_pm10_rural", "paris_bikehire_daily", "flipping_a_pancake")
TEST_SETS = ("beijing_air_12site", "flu_bybw", "us_climdiv_precip", "nyc_bike1", "realshort")
RELEASE_HELDOUT = VALIDATION_SETS + TEST_SETS


@dataclass
class ModelSection:
    """name: a `unist.model` registry name; activation_checkpointing: recompute each encoder block in
    backward (torch.utils.checkpoint); overrides: UniSTConfig fields set with `model.<field>=value`."""

    name: str = "unist_tiny"
    activation_checkpointing: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataSection:
    """What one micro-batch is made of.

    datasets: what to train on: "auto" = every registered dataset with a series found in data_dir
      (an error when there is none: a wrong UNIST_DATA_DIR must not train on synthetic data alone),
      registered names, paths to .npz files in the unist npz format (named by the file's stem,
      layout read from the file), and "synthetic" = the synthetic corpus (so `datasets=synthetic`
      trains on it alone; it is in every mixture while synthetic_weight > 0). heldout: never read
      (not even loaded); default: the shipped release's held-out sets (RELEASE_HELDOUT). Real series
      are cut 6:2:2 in time and only the train part is used; it is z-scored with statistics of that part.
    synthetic_weight / type_weights / dataset_weights: mixture weights. A real dataset's share is
      type_weights[its layout] split over the datasets of that layout (times dataset_weights[name],
      default 1); the synthetic corpus is one more source with weight synthetic_weight.
    window / min_window: time steps per training window: half the draws take `window` steps (or all a
      source has), the others a log-uniform length in [min(min_window, window), window], so the model learns to
      forecast from long contexts (periods are read from the values) and from short ones. max_cells:
      larger grids / video frames are cropped to a random rectangle of at most this many cells, larger
      graphs to the nodes nearest a random node; a long window is cropped further so one window stays
      within tokens_per_batch. prior_weight: weight of the synthetic forecasting prior
      (`unist.data.PriorCorpus`: random periods, trends, level shifts, counts, spatial correlation).
      video_size / video_fps: short side (pixels) and frame rate videos are decoded at.
    tokens_per_batch: token budget of one packed micro-batch per rank (samples are added while they
      fit; one sample alone may not exceed it). num_workers: DataLoader worker processes (0 = main).
    repeat_batches: 0 = an endless fresh stream; N = cycle over the first N micro-batches (an
      overfitting / debugging check: the loss must fall).
    """

    data_dir: str = ""
    datasets: tuple[str, ...] = ("auto",)
    heldout: tuple[str, ...] = RELEASE_HELDOUT
    synthetic_weight: float = 0.5
    prior_weight: float = 1.5
    type_weights: dict[str, float] = field(default_factory=lambda: {"grid": 1.0, "graph": 1.0, "video": 1.0})
    dataset_weights: dict[str, float] = field(default_factory=dict)
    window: int = 512
    min_window: int = 32
    max_cells: int = 1024
    video_size: int = 32
    video_fps: float = 4.0
    video_max_frames: int = 64
    tokens_per_batch: int = 1024
    num_workers: int = 1
    repeat_batches: int = 0


@dataclass
class OptimSection:
    """AdamW (torch implementation, no compiled op) with linear warmup then cosine decay to
    lr * min_lr_ratio at train.steps; weight decay skips biases and norm weights. grad_clip: max
    global gradient norm (0 = no clipping)."""

    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 20
    weight_decay: float = 0.05
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0


@dataclass
class ZeroSection:
    """stage: ZeRO 0/1/2/3. precision: auto (bf16 on GPU, fp32 on CPU), fp32 or bf16.
    offload_optimizer: keep optimizer states on CPU (DeepSpeedCPUAdam; compiles an op once)."""

    stage: int = 2
    precision: str = "auto"
    offload_optimizer: bool = False
    overlap_comm: bool = False
    bucket_size: int = 50_000_000


@dataclass
class TrainSection:
    """steps: optimizer steps of the whole run (sets the LR schedule); grad_accum: micro-batches per
    step; seed: data order and the model's masks/noise (the init comes from model.seed);
    stop_at: end this invocation after that step with a checkpoint (0 = run to `steps`), for job
    time limits: `resume=true` continues exactly where it stopped."""

    steps: int = 300
    grad_accum: int = 1
    seed: int = 0
    stop_at: int = 0


@dataclass
class CheckpointSection:
    """every: save every N steps (and at the end); keep_last: checkpoints kept; export: write a
    release folder (run_dir/release) at the end of the run."""

    every: int = 100
    keep_last: int = 2
    export: bool = True


@dataclass
class LoggingSection:
    """every: write a metrics record every N steps; print_every: a console line every N steps;
    progress: rank-0 tqdm bar; tensorboard: also write TensorBoard
    events when `tensorboard` is installed; plot: loss-curve PNG at the end; peak_tflops: peak
    FLOP/s per device for MFU (0 = look the GPU up in the table of docs/training.md; CPU: n/a)."""

    every: int = 1
    print_every: int = 10
    progress: bool = True
    tensorboard: bool = True
    plot: bool = True
    peak_tflops: float = 0.0


@dataclass
class PretrainConfig:
    """The whole job. Runs write to out_dir/name/ (checkpoints/, metrics.jsonl, metrics.csv,
    loss.png, release/). resume: continue from the run dir's latest checkpoint. ds_config: a
    DeepSpeed JSON file used instead of the generated one."""

    name: str = "tiny"
    out_dir: str = "runs"
    resume: bool = False
    ds_config: str = ""
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    zero: ZeroSection = field(default_factory=ZeroSection)
    train: TrainSection = field(default_factory=TrainSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    logging: LoggingSection = field(default_factory=LoggingSection)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PretrainConfig":
        secs = {f.name: f.type for f in dataclasses.fields(cls)}
        kw = {}
        for k, v in d.items():
            if k not in secs:
                raise ConfigError(f"unknown config section {k!r}; valid: {sorted(secs)}")
            sub = _SECTIONS.get(k)
            kw[k] = sub(**{sk: tuple(sv) if isinstance(sv, list) else sv for sk, sv in v.items()}) if sub else v
        return cls(**kw)

    def validate(self) -> "PretrainConfig":
        """Raise ConfigError naming the first bad key; return self.

        Every float must be finite before any range check: NaN compares False with everything, so a
        `v <= 0` test alone would let `optim.lr=nan` through (and train on NaN losses)."""
        for key, v in float_leaves(self):
            if not math.isfinite(v):
                raise ConfigError(f"{key}={v} is not a finite number: give a finite value (defaults: "
                                  "`python train/pretrain.py --keys`, docs/training.md)")
        d, o, z, t, c = self.data, self.optim, self.zero, self.train, self.checkpoint
        positive = {"data.window": d.window, "data.min_window": d.min_window, "data.max_cells": d.max_cells, "data.video_size": d.video_size,
                    "data.video_max_frames": d.video_max_frames, "data.tokens_per_batch": d.tokens_per_batch,
                    "train.steps": t.steps, "train.grad_accum": t.grad_accum, "checkpoint.every": c.every,
                    "checkpoint.keep_last": c.keep_last, "logging.every": self.logging.every,
                    "logging.print_every": self.logging.print_every}
        for k, v in positive.items():
            if v < 1:
                raise ConfigError(f"{k}={v} must be >= 1")
        if t.stop_at < 0:
            raise ConfigError(f"train.stop_at={t.stop_at} must be >= 0 (0 = train to train.steps)")
        if d.prior_weight < 0:
            raise ConfigError(f"data.prior_weight={d.prior_weight} must be >= 0 (0 = no synthetic prior)")
        if d.repeat_batches < 0:
            raise ConfigError(f"data.repeat_batches={d.repeat_batches} must be >= 0 (0 = fresh batches)")
        if d.num_workers < 0:
            raise ConfigError(f"data.num_workers={d.num_workers} must be >= 0 (0 = load in the main process)")
        if o.warmup_steps < 0:
            raise ConfigError(f"optim.warmup_steps={o.warmup_steps} must be >= 0")
        ranges = {"data.video_fps": (d.video_fps, "> 0", d.video_fps > 0),
                  "optim.lr": (o.lr, "> 0", o.lr > 0),
                  "optim.min_lr_ratio": (o.min_lr_ratio, "in [0, 1]", 0 <= o.min_lr_ratio <= 1),
                  "optim.weight_decay": (o.weight_decay, ">= 0", o.weight_decay >= 0),
                  "optim.beta1": (o.beta1, "in [0, 1)", 0 <= o.beta1 < 1),
                  "optim.beta2": (o.beta2, "in [0, 1)", 0 <= o.beta2 < 1),
                  "optim.eps": (o.eps, "> 0", o.eps > 0),
                  "optim.grad_clip": (o.grad_clip, ">= 0 (0 = no clipping)", o.grad_clip >= 0),
                  "logging.peak_tflops": (self.logging.peak_tflops, ">= 0 (0 = look the GPU up)",
                                          self.logging.peak_tflops >= 0)}
        for k, (v, rule, ok) in ranges.items():
            if not ok:
                raise ConfigError(f"{k}={v} must be {rule}")
        bad_types = set(d.type_weights) - set(LAYOUT_NAMES)
        if bad_types:
            raise ConfigError(f"data.type_weights has unknown data types {sorted(bad_types)}: use {LAYOUT_NAMES}")
        weights = {"data.synthetic_weight": d.synthetic_weight, **{f"data.type_weights.{k}": v for k, v in
                   d.type_weights.items()}, **{f"data.dataset_weights.{k}": v for k, v in d.dataset_weights.items()}}
        neg = {k: v for k, v in weights.items() if not v >= 0}
        if neg:
            raise ConfigError(f"mixture weights must be >= 0, got {neg}")
        both = set(d.datasets) & set(d.heldout)
        if both:
            default = " (the default data.heldout holds out the release's zero-shot sets)" \
                if tuple(d.heldout) == RELEASE_HELDOUT else ""
            raise ConfigError(f"datasets {sorted(both)} are both in data.datasets and data.heldout{default}: a "
                              "held-out dataset is never trained on; remove it from one list (data.heldout= "
                              "holds out nothing)")
        if z.stage not in (0, 1, 2, 3):
            raise ConfigError(f"zero.stage={z.stage}: choose 0, 1, 2 or 3")
        if z.precision not in PRECISIONS:
            raise ConfigError(f"zero.precision={z.precision!r}: choose one of {PRECISIONS}")
        if self.name in ("", ".", "..") or "/" in self.name:
            raise ConfigError(f"name={self.name!r} must be a plain folder name (the run goes to out_dir/name)")
        self.model_config()  # a bad model.* setting fails here, before any process group or data loading
        return self

    def model_config(self) -> UniSTConfig:
        """The registry's UniSTConfig for model.name with model.* overrides applied, validated."""
        cfg = get_config(self.model.name)
        for key, value in self.model.overrides.items():
            cfg = replace_dotted(cfg, key, value)
        return cfg.validate()


def float_leaves(cfg: PretrainConfig) -> Iterator[tuple[str, float]]:
    """(dotted key, value) of every float in `cfg`: fields, dict entries (mixture weights) and
    model.* architecture overrides (reported under their command-line key, e.g. model.moe.aux_weight)."""
    def walk(obj: Any, prefix: str) -> Iterator[tuple[str, float]]:
        for f in dataclasses.fields(obj):
            v, key = getattr(obj, f.name), prefix + f.name
            if dataclasses.is_dataclass(v):
                yield from walk(v, key + ".")
            elif isinstance(v, float):
                yield key, v
            elif isinstance(v, dict):
                sub = "model." if key == "model.overrides" else key + "."
                yield from ((sub + k, x) for k, x in v.items() if isinstance(x, float))
    return walk(cfg, "")


_SECTIONS = {"model": ModelSection, "data": DataSection, "optim": OptimSection, "zero": ZeroSection,
             "train": TrainSection, "checkpoint": CheckpointSection, "logging": LoggingSection}


# ---------------------------------------------------------------------------------- presets
def _tiny() -> PretrainConfig:
    return PretrainConfig()


def _gpu_preset(name: str, model: str, steps: int, tokens: int, lr: float, stage: int = 2) -> PretrainConfig:
    return PretrainConfig(
        name=name, model=ModelSection(name=model),
        data=DataSection(window=1024, max_cells=4096, video_size=64, video_fps=8.0, video_max_frames=256,
                         tokens_per_batch=tokens, num_workers=4),
        optim=OptimSection(lr=lr, warmup_steps=max(100, steps // 50), min_lr_ratio=0.1),
        zero=ZeroSection(stage=stage, overlap_comm=True, bucket_size=200_000_000),
        train=TrainSection(steps=steps),
        checkpoint=CheckpointSection(every=1000, keep_last=3),
        logging=LoggingSection(every=10, print_every=100))


PRESETS = {
    "tiny": _tiny,
    "small": lambda: _gpu_preset("small", "unist_small", 20_000, 16_384, 6e-4),
    "base": lambda: _gpu_preset("base", "unist_base", 50_000, 32_768, 4e-4),
    "large": lambda: _gpu_preset("large", "unist_large", 100_000, 32_768, 3e-4, stage=3),
}


def valid_keys() -> list[str]:
    """Every key `load_config` accepts (model.* also takes any UniSTConfig field)."""
    keys = [k for k in leaf_keys(PretrainConfig) if k != "model.overrides"]
    return keys + ["model." + k for k in leaf_keys(UniSTConfig)]


def load_config(preset: str = "tiny", overrides: list[str] | tuple[str, ...] = ()) -> PretrainConfig:
    """Preset `preset` with `key=value` overrides applied in order, validated."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}: choose one of {sorted(PRESETS)}")
    cfg = PRESETS[preset]()
    for arg in overrides:
        key, text = split_assignment(arg)
        cfg = set_key(cfg, key, text)
    return cfg.validate()


def set_key(cfg: PretrainConfig, key: str, text: str) -> PretrainConfig:
    """Apply one override; model architecture keys go to model.overrides (typed by UniSTConfig)."""
    if key == "model.overrides":
        raise unknown_key_error(key, valid_keys())
    head, _, rest = key.partition(".")
    if head == "model" and rest and rest not in {f.name for f in dataclasses.fields(ModelSection)}:
        try:
            tp = field_type(UniSTConfig, rest)
        except ConfigError:
            raise unknown_key_error(key, valid_keys()) from None
        overrides = {**cfg.model.overrides, rest: parse_value(text, tp, key)}
        return replace_dotted(cfg, "model.overrides", overrides)
    try:
        return apply_override(cfg, key, text)
    except ConfigError as e:
        if str(e).startswith("unknown config key"):
            raise unknown_key_error(key, valid_keys()) from None
        raise
