"""Zero-shot imputation of a unist checkpoint against linear interpolation, spatial mean, k-NN mean and LOCF.

  python eval/imputation.py --checkpoint unist-tiny-6 --dataset metr_la_week --dataset era5_t2m_uk \
      --out runs/impute/results.json

Hides observed values of windows of the test split (scattered points, and blocks: one span at a quarter of the
locations), fills them with every method and scores MAE / RMSE there (unist/evaluation/imputation.py).
Writes the JSON and results.md next to it (one table per scenario: rows = datasets, columns = methods, MAE (RMSE));
prints the tables. Datasets the checkpoint was trained on are refused unless --allow-contaminated; videos are
skipped with a note (imputation is evaluated on grids and graphs).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from unist.evaluation.checkpoints import Checkpoint, load_checkpoint
from unist.evaluation.cli import USER_ERRORS, device, fraction, positive_int, report_error
from unist.evaluation.imputation import evaluate_imputation, markdown
from unist.evaluation.protocols import _is_video, load_target
from unist.forecast.policy import CORRECTIONS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags, each typed so a bad value stops here (usage + one error line, exit code 2)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="release folder or name (unist-tiny-6), or random:<model>")
    ap.add_argument("--dataset", action="append", required=True,
                    help="registered name or unist .npz file; repeat for several")
    ap.add_argument("--split", choices=("test", "val"), default="test",
                    help="windows from the test split (reporting) or the validation split (model selection)")
    ap.add_argument("--window", type=positive_int,
                    help="steps per window (default: two days for sub-daily data, else the protocol's context; "
                         "16..288)")
    ap.add_argument("--max-windows", type=positive_int, default=16, help="evenly spaced windows per dataset")
    ap.add_argument("--point-rate", type=fraction, default=0.2, help="fraction of observed values hidden (points)")
    ap.add_argument("--no-block", action="store_true", help="skip the block (sensor outage) scenario")
    ap.add_argument("--allow-contaminated", action="store_true",
                    help="evaluate datasets the checkpoint was trained on (flagged contaminated)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fill", choices=("release", "on", "off"), default="release",
                    help="the lag copy's fill candidates (model.lag_fill): as the release was trained (default), or "
                         "switched on/off, e.g. on for a release trained without them (unist-tiny-3)")
    ap.add_argument("--residual", choices=("release", "true", "false"), default="release",
                    help="fill with the network's prediction with the patch head's residual or without it "
                         "(ForecastPolicy.residual; default: the release's policy)")
    ap.add_argument("--correction", choices=("release",) + CORRECTIONS, default="release",
                    help="fill with the network (full), the lag copy's rule alone (none) or as the release's policy "
                         "says (ForecastPolicy.correction)")
    ap.add_argument("--device", type=device, default="cpu")
    ap.add_argument("--threads", type=positive_int, help="torch CPU threads (on a busy shared CPU, 1 is often faster)")
    ap.add_argument("--out", default="results.json", help="JSON path (results.md is written next to it)")
    return ap.parse_args(argv)


def evaluate_source(ckpt: Checkpoint, source: str, a: argparse.Namespace) -> dict[str, Any]:
    """One dataset: skipped (video), refused (contaminated, as runner.evaluate_dataset does) or evaluated."""
    if _is_video(source):
        return {"source": source, "skipped": "video: imputation is evaluated on grids and graphs"}
    series = load_target(source)
    audit = ckpt.require_zero_shot(source, series, a.allow_contaminated)
    result = evaluate_imputation(ckpt.model, series, split=a.split, window=a.window, max_windows=a.max_windows,
                                 point_rate=a.point_rate, block=not a.no_block, seed=a.seed)
    return {"source": source, **result, "contamination": audit, "contaminated": audit["contaminated"] is not False}


def main(argv: list[str] | None = None) -> int:
    """Exit code 0, or 2 with one line on stderr for a refused input (bad flag, unknown dataset or checkpoint,
    contamination, a window that does not fit)."""
    a = parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        ckpt = load_checkpoint(a.checkpoint, a.device)
        if a.fill != "release":  # weights untouched: the candidates have no parameters of their own
            ckpt.model.model.config.lag_fill = a.fill == "on"
        if a.residual != "release":
            ckpt = replace(ckpt, model=ckpt.model.with_policy(residual=a.residual == "true"))
        if a.correction != "release":
            ckpt = replace(ckpt, model=ckpt.model.with_policy(correction=a.correction))
        results = {"checkpoint": ckpt.describe(), "settings": {k: v for k, v in vars(a).items() if k != "out"},
                   "results": [evaluate_source(ckpt, src, a) for src in a.dataset]}
    except USER_ERRORS as e:
        return report_error(e)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    md = out.with_name("results.md") if out.name != "results.md" else out.with_suffix(".table.md")
    table = markdown(results)
    md.write_text(table)
    print(table)
    print(f"wrote {out}, {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
