"""Training metrics: FLOPs and MFU, expert load per data type, JSONL + CSV (+ TensorBoard) logs, loss plot.

MFU = achieved model FLOP/s / (peak FLOP/s per device x devices). Achieved FLOPs of a micro-batch are
sum over its samples of n_i * flops_per_token(config, n_i, C) (unist.model.flops: forward + backward,
6N + attention); flops_per_token is affine in the sequence length, so it is evaluated twice per
channel count and cached. Peak: `PEAK_TFLOPS` (dense bf16 tensor-core numbers from the vendors'
data sheets, also in docs/training.md) matched on the CUDA device name, or `logging.peak_tflops`;
on CPU MFU is reported as n/a unless a peak is given.
"""
from __future__ import annotations

import csv
import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unist.model import UniSTConfig, flops_per_token
from unist.patching import TokenBatch

LAYOUTS = ("grid", "graph", "video")

# Dense (no sparsity) bf16 tensor-core peak, TFLOP/s per device. First match on the device name wins,
# so more specific names come first.
PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("GB200", 2500.0), ("B200", 2250.0), ("B100", 1750.0),
    ("GH200", 989.5), ("H200 NVL", 835.0), ("H200", 989.5), ("H100 PCIe", 756.0), ("H100 NVL", 835.0),
    ("H100", 989.5), ("H800", 989.5), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("L40", 181.0),
    ("L4", 121.0), ("MI300X", 1307.4), ("MI250X", 383.0),
)


def peak_flops(device: torch.device, override_tflops: float = 0.0) -> float | None:
    """Peak FLOP/s of one device: the override, the table entry for the GPU, or None (unknown / CPU)."""
    if override_tflops > 0:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_TFLOPS:
        if key.lower() in name.lower():
            return tflops * 1e12
    return None


class FlopCounter:
    """Training FLOPs of packed micro-batches for one model config."""

    def __init__(self, config: UniSTConfig):
        self.config = config
        self._affine = lru_cache(maxsize=None)(self._coeffs)

    def _coeffs(self, channels: int) -> tuple[float, float]:
        f1 = flops_per_token(self.config, 1, channels)
        f2 = flops_per_token(self.config, 2, channels)
        return f1 - (f2 - f1), f2 - f1  # flops_per_token(n) = a + b * n

    def __call__(self, batch: TokenBatch) -> float:
        a, b = self._affine(int(batch.values.shape[-1]))
        n = torch.diff(batch.cu_seqlens.long()).double()  # (B,) tokens per sample
        return float(a * n.sum() + b * (n * n).sum())


def expert_load_by_type(layout_load: torch.Tensor) -> dict[str, float]:
    """(3, E) assignments per data type and expert -> share of each type's assignments per expert
    (`load/<type>/e<k>`) and its imbalance max/mean (`load/<type>/max_over_mean`, 1 = balanced)."""
    out = {}
    for i, name in enumerate(LAYOUTS):
        row = layout_load[i].double()
        total = float(row.sum())
        if total <= 0:
            continue
        share = row / total
        for e, v in enumerate(share.tolist()):
            out[f"load/{name}/e{e}"] = v
        out[f"load/{name}/max_over_mean"] = float(share.max() * share.numel())
    return out


class MetricsLogger:
    """Rank-0 writer of metrics.jsonl, metrics.csv and (when installed) TensorBoard events.

    `start_step` > 0 (resume): records with a later step, written by the interrupted run after its
    last checkpoint, are dropped so the files read as one uninterrupted run."""

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool = True, start_step: int = 0):
        self.enabled = enabled
        self.jsonl, self.csv = run_dir / "metrics.jsonl", run_dir / "metrics.csv"
        self.records: list[dict[str, Any]] = []
        self.tb = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        if start_step > 0 and self.jsonl.exists():
            self.records = [r for r in read_jsonl(self.jsonl) if r["step"] <= start_step]
        self.jsonl.write_text("".join(json.dumps(r) + "\n" for r in self.records))
        self._fields: list[str] = []
        self._rewrite_csv()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step + 1 if start_step else None)
            except ImportError:  # tensorboard is optional
                self.tb = None

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.records.append(record)
        with self.jsonl.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if set(record) - set(self._fields):
            self._rewrite_csv()
        else:
            with self.csv.open("a", newline="") as f:
                csv.DictWriter(f, self._fields).writerow(record)
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step" and math.isfinite(v):
                    self.tb.add_scalar(k, v, record["step"])

    def _rewrite_csv(self) -> None:
        fields: list[str] = []
        for r in self.records:
            fields += [k for k in r if k not in fields]
        self._fields = fields
        with self.csv.open("w", newline="") as f:
            w = csv.DictWriter(f, fields)
            w.writeheader()
            w.writerows(self.records)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


PLOT_UNITS = {"tokens_per_s": "tokens / s"}  # y label of a panel (loss terms: "loss")
PLOT_COLS = 3


def ema(values: np.ndarray, span: int) -> np.ndarray:
    """Bias-corrected exponential moving average (alpha = 2 / (span + 1)), as TensorBoard smooths:
    the first points are not dragged towards 0."""
    alpha, acc, norm, out = 2.0 / (span + 1), 0.0, 0.0, np.empty(len(values))
    for i, v in enumerate(values):
        acc, norm = (1 - alpha) * acc + alpha * v, (1 - alpha) * norm + alpha
        out[i] = acc / norm
    return out


def plot_losses(records: list[dict[str, Any]], path: Path, keys: tuple[str, ...], title: str = "") -> Path | None:
    """A grid of panels, one per logged loss term in `keys` plus throughput (tokens/s), against tokens
    seen: each step thin and light, an EMA over ~5 % of the steps (at least 5) bold; log y when the
    smoothed curve spans more than 10x. Non-finite values are left out. Returns `path` (or None when
    there is nothing to plot)."""
    panels = [k for k in (*keys, "tokens_per_s") if any(k in r for r in records)]
    if not records or not any(k in keys for k in panels):
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    x_key = "tokens_seen" if all("tokens_seen" in r for r in records) else "step"
    span = max(5, len(records) // 20)
    rows = -(-len(panels) // PLOT_COLS)
    fig, axes = plt.subplots(rows, PLOT_COLS, figsize=(4.4 * PLOT_COLS, 3.1 * rows), squeeze=False)
    for ax, key in zip(axes.flat, panels):
        pts = [(r[x_key], r[key]) for r in records if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        if not pts:
            ax.set_visible(False)
            continue
        xs, ys = map(np.asarray, zip(*pts))
        smooth = ema(ys, span)
        ax.plot(xs, ys, lw=0.6, alpha=0.35, color="tab:blue", label="per step")
        ax.plot(xs, smooth, lw=1.8, color="tab:blue", label=f"EMA (span {span} steps)")
        if smooth.min() > 0 and smooth.max() > 10 * smooth.min():
            ax.set_yscale("log")
        ax.set_title(key)
        ax.set_ylabel(PLOT_UNITS.get(key, "loss"))
        ax.set_xlabel("tokens seen" if x_key == "tokens_seen" else "step")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    axes[0][0].legend(fontsize=8)
    last = records[-1]
    fig.suptitle(f"{title + ': ' if title else ''}{last['step']} steps, {last.get('tokens_seen', 0):,} tokens seen",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
