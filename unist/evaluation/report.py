"""Outputs of a run: the JSON file, a markdown table next to it (results.md) and a forecast plot.

The table has one row per model with the averaged metrics, MAE at the protocol's headline horizon
steps, whether the model used target data, and seconds; under it one line says whether the
zero-shot model beats the best baseline, so a reader sees at a glance if it earns its cost.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .protocols import Protocol
from .runner import DatasetRun


def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}g}" if abs(x) >= 1e4 else f"{x:.{digits}f}"


def _flags(entry: dict[str, Any]) -> str:
    flags = [entry["kind"]]
    if entry["uses_target_data"]:
        flags.append("uses target data")
    if entry["contaminated"]:
        flags.append("**CONTAMINATED**")
    return ", ".join(flags)


def verdict(result: dict[str, Any], metric: str = "mae") -> str:
    """One line: zero-shot unist vs the best baseline on `metric` (lower is better)."""
    models = result["models"]
    base = {k: v["metrics"][metric]["avg"] for k, v in models.items() if v["kind"] == "baseline"}
    base = {k: v for k, v in base.items() if v is not None}
    ours = models["unist"]["metrics"][metric]["avg"]
    if not base or ours is None:
        return "no baseline to compare with"
    best = min(base, key=base.get)
    rel = (ours - base[best]) / abs(base[best]) * 100 if base[best] else float("inf")
    word = "beats" if ours < base[best] else "does NOT beat"
    return (f"unist zero-shot {word} the best baseline on {metric.upper()}: {_fmt(ours)} vs {_fmt(base[best])} "
            f"({models[best]['label']}, {rel:+.1f}%)")


def markdown(results: dict[str, Any]) -> str:
    """The markdown report of a whole run (every dataset)."""
    ck = results["checkpoint"]
    lines = [f"# unist evaluation: {ck['source']}" + (" (RANDOM INIT)" if ck["random_init"] else ""), ""]
    for res in results["results"]:
        p, w, d = res["protocol"], res["windows"], res["dataset"]
        steps = Protocol(**p).steps_shown
        any_prob = any("crps" in m["metrics"] for m in res["models"].values())
        cols = ["MAE", "RMSE"] + (["MAPE %"] if p["mape_min"] is not None else []) + (["PSNR"] if p["video"] else []) \
            + [f"MAE@{s}" for s in steps] + (["CRPS", "cov80"] if any_prob else []) + ["flags", "s"]
        split = w.get("targets_in", "test")
        lines += [f"## {d['name']} ({d['layout']}, {d['domain']}) - protocol {p['name']}: "
                  f"{w.get('context_used', p['context'])} in / {p['horizon']} out, stride {p['stride']}; {w['count']} of "
                  f"{w['available']} windows with targets in the {split} split, "
                  f"{w['points_scored']} points" + (" - CONTAMINATED" if res["contaminated"] else ""), "",
                  "| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for entry in res["models"].values():
            m = entry["metrics"]
            row = [_fmt(m["mae"]["avg"]), _fmt(m["rmse"]["avg"])]
            row += [_fmt(m["mape"]["avg"], 2)] if "mape" in m else []
            row += [_fmt(m["psnr"]["avg"], 2)] if "psnr" in m else []
            row += [_fmt(m["mae"]["per_step"][s - 1]) for s in steps]
            if any_prob:
                row += [_fmt(m["crps"]["avg"]), _fmt(m["coverage_80"]["avg"], 2)] if "crps" in m else ["-", "-"]
            label = entry["label"]
            if "reference_unist_same_locations" in entry:
                label += f" [unist on the same locations: MAE {_fmt(entry['reference_unist_same_locations']['mae']['avg'])}]"
            lines.append(f"| {label} | " + " | ".join(row + [_flags(entry), f"{entry['seconds']:.1f}"]) + " |")
        lines += ["", verdict(res)] + ([not_scored(res)] if not_scored(res) else []) + [""]
    return "\n".join(lines)


def not_scored(result: dict[str, Any]) -> str:
    """One line on what could not be scored (windows skipped or without a scored point, window-locations
    with an observed target but no scored point); "" when everything was scored."""
    w = result["windows"]
    if not (w["unscored"] or w["locations_unscored"]):
        return ""
    return (f"Not scored: {w['unscored']} of {w['count']} windows ({w['skipped']} with no observed context value "
            f"to forecast from), and {w['locations_unscored']} of {w['locations']} window-locations that have an "
            "observed target but where some model gave no forecast (e.g. last value, with no observed context value "
            f"there); {w['points_scored']} points scored.")


def plot(run: DatasetRun, path: str | Path, num_locations: int = 3) -> Path:
    """Forecast vs truth: the middle test window; graphs/grids: the `num_locations` locations with the most
    variance (context, truth, every model, the 80% band with samples); video: frames, truth vs models."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w, p = run.windows, run.protocol
    b = w.num_windows // 2
    shown = [r for r in run.models if r.locations is None]
    if p.video:
        frames = sorted({0, p.horizon // 2, p.horizon - 1})
        rows = [("truth", w.target[b])] + [(r.name, np.clip(r.pred[b], 0, 1)) for r in shown[:3]]
        fig, axes = plt.subplots(len(rows), len(frames), figsize=(2.4 * len(frames), 2.0 * len(rows)), squeeze=False)
        for i, (name, seq) in enumerate(rows):
            for j, f in enumerate(frames):
                img = np.nan_to_num(seq[f])
                axes[i, j].imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
                axes[i, j].set_xticks([]), axes[i, j].set_yticks([])
                axes[i, j].set_title(f"{name} t+{f + 1}", fontsize=8)
    else:
        c, h = w.context.shape[1], p.horizon
        ctx = w.context[b].reshape(c, -1, w.context.shape[-1])[..., 0]       # (C, N) first channel
        tgt = w.target[b].reshape(h, -1, w.target.shape[-1])[..., 0]
        locs = np.argsort(-np.nan_to_num(np.nanvar(np.concatenate([ctx, tgt]), axis=0)))[:num_locations]
        fig, axes = plt.subplots(len(locs), 1, figsize=(8, 2.4 * len(locs)), squeeze=False)
        tc, th = np.arange(-c + 1, 1), np.arange(1, h + 1)
        for ax, loc in zip(axes[:, 0], locs):
            ax.plot(tc, ctx[:, loc], color="0.5", label="context")
            ax.plot(th, tgt[:, loc], "k-o", ms=3, label="truth")
            for r in shown:
                y = r.pred[b].reshape(h, -1, r.pred.shape[-1])[:, loc, 0]
                ax.plot(th, y, lw=2 if r.name.startswith("unist") else 1, label=r.name)
                if r.samples is not None:
                    s = r.samples[:, b].reshape(len(r.samples), h, -1, r.pred.shape[-1])[:, :, loc, 0]
                    lo, hi = np.quantile(s, [0.1, 0.9], axis=0)
                    ax.fill_between(th, lo, hi, alpha=0.2, label=f"{r.name} 80%")
            ax.set_title(f"{w.series.name}: location {loc}, window start {w.starts[b]}", fontsize=9)
            ax.axvline(0.5, color="0.8", lw=1)
        axes[0, 0].legend(fontsize=7, ncol=4)
        axes[-1, 0].set_xlabel("step (0 = forecast origin)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_paths(path: str | Path, runs: list[DatasetRun]) -> list[Path]:
    """One plot per dataset: `path` itself for one dataset, `<stem>_<dataset><suffix>` for several."""
    path = Path(path)
    if len(runs) == 1:
        return [path]
    return [path.with_name(f"{path.stem}_{i}_{r.windows.series.name}{path.suffix}") for i, r in enumerate(runs)]


def write_outputs(results: dict[str, Any], runs: list[DatasetRun], out: str | Path,
                  plot_path: str | Path | None = None) -> dict[str, Path]:
    """results JSON at `out`, results.md next to it, plots if asked; returns the written paths."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    md = out.with_name("results.md") if out.name != "results.md" else out.with_suffix(".table.md")
    md.write_text(markdown(results))
    written = {"json": out, "markdown": md}
    if plot_path:
        for i, (r, pth) in enumerate(zip(runs, plot_paths(plot_path, runs))):
            written[f"plot{i}"] = plot(r, pth)
    return written


__all__ = ["markdown", "not_scored", "plot", "plot_paths", "verdict", "write_outputs"]
