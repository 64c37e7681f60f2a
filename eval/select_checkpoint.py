"""Early stopping for a pretraining run: pick the checkpoint that forecasts best on VALIDATION data.

    python eval/select_checkpoint.py RUN/checkpoints --dataset nyc_bike1 --dataset montevideo_bus \
        --out RUN/selection.json          # prints the chosen tag (e.g. step_00000750) on stdout
    python eval/select_checkpoint.py --describe RUN/selection.json   # the table, as markdown

Every checkpoint tag of the run (`step_*`) is exported to a temporary release and evaluated zero-shot
on the validation split (steps 60-80 %, never trained on: training reads the first 60 %) of the
given datasets, with their protocols. The score of a tag is its mean over datasets of
MAE(unist) / MAE(last value); the lowest wins (the earliest on a tie). Datasets are expected to be
training datasets (their validation split is the run's own validation data), so they are evaluated
with `allow_contaminated`; held-out datasets must never be used here, or the held-out evaluation is
no longer blind. Progress and the table go to stderr, the tag alone to stdout (for scripts).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path

import torch

from unist.evaluation import EvalConfig, EvalError, run
from unist.evaluation.cli import USER_ERRORS, positive_int, report_error
from unist.train.export import export_release


def _tags(ckpt_dir: Path) -> list[str]:
    """The checkpoint tags (step_*) of a run's checkpoint folder, oldest first (EvalError if there are none)."""
    if not ckpt_dir.is_dir():
        raise EvalError(f"checkpoint folder {ckpt_dir} does not exist: point at RUN/checkpoints of a training run")
    tags = sorted(p.name for p in ckpt_dir.glob("step_*") if p.is_dir())
    if not tags:
        raise EvalError(f"no checkpoint tags (step_*) in {ckpt_dir}: point at RUN/checkpoints of a training run")
    return tags


def evaluate_tag(ckpt_dir: Path, tag: str, datasets: list[str], max_windows: int) -> dict:
    """Validation MAE of unist, its anchor alone and last value per dataset, and the tag's score."""
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):  # stdout: the tag only
        rel = export_release(ckpt_dir, Path(tmp) / "release", tag=tag)
        cfg = EvalConfig(str(rel), tuple(datasets), max_windows=max_windows, temporal_locations=0,
                         allow_contaminated=True, split="val")
        results, _ = run(cfg)
    per = {}
    for res in results["results"]:
        m = res["models"]
        mae = {k: m[k]["metrics"]["mae"]["avg"] for k in ("unist", "unist_anchor", "last_value") if k in m}
        per[res["dataset"]["name"]] = {**mae, "ratio": mae["unist"] / mae["last_value"]}
    return {"tag": tag, "datasets": per, "score": sum(d["ratio"] for d in per.values()) / len(per)}


def describe(sel: dict) -> str:
    names = list(sel["tags"][0]["datasets"])
    head = "| checkpoint | " + " | ".join(f"{n} MAE (last value)" for n in names) + " | score |"
    lines = [f"Criterion: {sel['criterion']}. Chosen: **{sel['chosen']}**.", "", head,
             "|" + "---|" * (len(names) + 2)]
    for t in sel["tags"]:
        cells = [f"{t['datasets'][n]['unist']:.3f} ({t['datasets'][n]['last_value']:.3f})" for n in names]
        mark = " **chosen**" if t["tag"] == sel["chosen"] else ""
        lines.append(f"| {t['tag']}{mark} | " + " | ".join(cells) + f" | {t['score']:.4f} |")
    return "\n".join(lines)


def _read_selection(path: str) -> dict:
    """A selection JSON written by --out (EvalError naming the file if it is not one)."""
    try:
        sel = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EvalError(f"--describe {path}: cannot read it as JSON ({e}); give a file written by --out") from None
    if not isinstance(sel, dict) or not sel.get("tags") or "chosen" not in sel:
        raise EvalError(f"--describe {path}: not a selection file (no 'tags'/'chosen'); give a file written by --out")
    return sel


def main(argv: list[str] | None = None) -> int:
    """Exit code 0, or 2 with one line on stderr for refused input (no such folder or tags, bad flags, data)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ckpt_dir", nargs="?", help="RUN/checkpoints of a training run")
    ap.add_argument("--dataset", action="append", default=[], help="training dataset whose val split scores; repeat")
    ap.add_argument("--max-windows", type=positive_int, default=40, help="evenly spaced validation windows per dataset")
    ap.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    ap.add_argument("--out", help="write the selection (every tag's scores and the choice) to this JSON")
    ap.add_argument("--describe", metavar="JSON", help="print a selection JSON as a markdown table and exit")
    a = ap.parse_args(argv)
    if not a.describe and (not a.ckpt_dir or not a.dataset):
        ap.error("give RUN/checkpoints and at least one --dataset (a training dataset)")
    try:
        if a.describe:
            print(describe(_read_selection(a.describe)))
            return 0
        torch.set_num_threads(a.threads)
        ckpt_dir = Path(a.ckpt_dir)
        scored = []
        for tag in _tags(ckpt_dir):
            scored.append(evaluate_tag(ckpt_dir, tag, a.dataset, a.max_windows))
            print(f"{tag}: score {scored[-1]['score']:.4f}", file=sys.stderr)
    except USER_ERRORS as e:
        return report_error(e)
    best = min(scored, key=lambda t: t["score"])  # min keeps the first (earliest) on a tie
    sel = {"criterion": "mean over datasets of MAE(unist) / MAE(last value) on the validation split (60-80 %), "
                        f"{a.max_windows} evenly spaced windows each",
           "datasets": a.dataset, "chosen": best["tag"], "tags": scored}
    print(describe(sel), file=sys.stderr)
    if a.out:
        Path(a.out).write_text(json.dumps(sel, indent=1))
    print(best["tag"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
