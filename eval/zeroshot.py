"""Cross-domain zero-shot evaluation of a unist checkpoint against classical baselines.

  python eval/zeroshot.py --checkpoint unist-tiny-6 --dataset metr_la_week --out runs/eval/results.json
  python eval/zeroshot.py --checkpoint random:unist_tiny --dataset metr_la_week --max-windows 50 \
      --out runs/eval/results.json --plot runs/eval/forecast.png --allow-contaminated

Writes the JSON (schema in docs/evaluation.md), results.md next to it, and the plot; prints the table.
Defaults per data type (context / horizon / season) come from unist/evaluation/protocols.py.
"""
from __future__ import annotations

import argparse
import sys

import torch

from unist.evaluation import EvalConfig, FinetuneConfig, markdown, run, write_outputs
from unist.evaluation.cli import (USER_ERRORS, add_peer_flags, device, fraction, non_negative_int, peer_settings,
                                  positive_float, positive_int, report_error, sample_count)
from unist.evaluation.finetune import MODES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags, each typed so a bad value stops here (usage + one error line, exit code 2)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="release folder or name (unist-tiny-6), or random:<model>")
    ap.add_argument("--dataset", action="append", required=True,
                    help="registered name, unist .npz file or video file; repeat for several")
    ap.add_argument("--context", type=positive_int, help="context steps (default: the data type's protocol)")
    ap.add_argument("--horizon", type=positive_int, help="forecast steps (default: the protocol)")
    ap.add_argument("--stride", type=positive_int, help="steps between test windows (default: the protocol)")
    ap.add_argument("--max-windows", type=positive_int, help="evenly spaced subset of at most this many test windows")
    ap.add_argument("--num-samples", type=sample_count, default=0,
                    help="probabilistic forecast: draws per window (CRPS); 0 or >= 2")
    ap.add_argument("--batch-size", type=positive_int, default=32, help="windows per forward pass")
    ap.add_argument("--temporal-locations", type=non_negative_int, default=32,
                    help="locations for the temporal-only ablation (0 = skip it)")
    ap.add_argument("--no-baselines", action="store_true", help="skip the baselines")
    add_peer_flags(ap)
    ap.add_argument("--allow-contaminated", action="store_true",
                    help="evaluate datasets the checkpoint was trained on (flagged contaminated)")
    ap.add_argument("--finetune-fraction", type=fraction, help="few-shot: fine-tune on this first fraction of train")
    ap.add_argument("--finetune-mode", choices=MODES, default="full")
    ap.add_argument("--finetune-steps", type=positive_int, default=50)
    ap.add_argument("--finetune-lr", type=positive_float)
    ap.add_argument("--device", type=device, default="cpu")
    ap.add_argument("--threads", type=positive_int,
                    help="torch CPU threads (on a busy shared CPU, 1 is often much faster)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", choices=("test", "val"), default="test",
                    help="windows over the test split (reporting) or the validation split (model selection)")
    ap.add_argument("--out", default="results.json", help="JSON path (results.md is written next to it)")
    ap.add_argument("--plot", help="PNG path for forecast-vs-truth plots")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Exit code 0, or 2 with one line on stderr for a refused input (bad flag, unknown dataset or checkpoint,
    contamination, windows or channels the model cannot take)."""
    a = parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        ft = None if a.finetune_fraction is None else FinetuneConfig(a.finetune_fraction, a.finetune_mode,
                                                                      a.finetune_steps, lr=a.finetune_lr, seed=a.seed)
        cfg = EvalConfig(a.checkpoint, tuple(a.dataset), a.context, a.horizon, a.stride, a.max_windows,
                         a.num_samples, a.batch_size, a.temporal_locations, a.allow_contaminated, ft,
                         not a.no_baselines, a.device, a.seed, a.split, **peer_settings(a))
        results, runs = run(cfg)
    except USER_ERRORS as e:
        return report_error(e)
    written = write_outputs(results, runs, a.out, a.plot)
    print(markdown(results))
    print("wrote " + ", ".join(str(p) for p in written.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
