"""Validation-split study of the lag copy's forecasting policy: network as trained, self-checked, rule only, last value.

    python eval/lag_study.py --checkpoint checkpoints/unist-tiny-4 --dataset metr_la_week --dataset era5_t2m_uk \
        --dataset de_pm10_rural --dataset paris_bikehire_daily
    python eval/lag_study.py --checkpoint checkpoints/unist-tiny-2 --smooth --dataset de_pm10_rural
    python eval/lag_study.py --checkpoint checkpoints/unist-tiny-4 --lag-error mae --dataset runs/bursty_counts.npz

Windows have their targets in the validation split (steps 60-80 %, `make_windows(split="val")`), never the test
split: this is where the policy (ForecastPolicy.correction, lag_smooth) is chosen (docs/LOG.md). --smooth switches the smoothed
candidates on for a release trained without them; --lag-error sets the backtest error that weights the candidates
(`UniSTConfig.lag_error`; releases up to unist-tiny-4 were trained with "rmse") and --lag-dip how deep a period's
dip must be (`UniSTConfig.lag_dip`; up to unist-tiny-4: 1, any dip), --lag-cycles how many times the context must
hold a lag and --lag-edge-dip whether the longest such lag is always a dip (`UniSTConfig.lag_cycles`,
`lag_edge_dip`; up to unist-tiny-5: 1.5 and true). A dataset may be a unist .npz file,
e.g. the synthetic bursty counts of eval/bursty_counts.py. Prints one line of MAE per dataset.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from unist.evaluation.checkpoints import load_checkpoint
from unist.evaluation.forecasters import forecast_windows
from unist.evaluation.protocols import load_target, protocol_for
from unist.evaluation.windows import make_windows
from unist.forecast import Forecaster


def study(model: Forecaster, name: str, windows: int) -> dict[str, float]:
    s = load_target(name)
    p = protocol_for(s)
    w = make_windows(s, p, windows, "val")

    def mae(pred: np.ndarray) -> float:
        ok = w.target_mask & np.isfinite(pred)
        return float(np.abs(pred - w.target)[ok].mean())

    last = np.stack([np.repeat(c.values[-1:], p.horizon, 0) for c in w.contexts])  # last step (NaN where missing)
    return {"net": mae(forecast_windows(model.with_policy(correction="full"), w.contexts, p.horizon, 8)),
            "checked": mae(forecast_windows(model.with_policy(correction="checked"), w.contexts, p.horizon, 8)),
            "rule": mae(forecast_windows(model.with_policy(correction="none"), w.contexts, p.horizon, 8)),
            "last_step": mae(last)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--dataset", action="append", required=True)
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--smooth", action="store_true", help="switch the smoothed-level candidates on (lag_smooth)")
    ap.add_argument("--lag-error", choices=("mae", "rmse"), default=None,
                    help="the lag copy's backtest error (default: the release's own)")
    ap.add_argument("--lag-dip", type=float, default=None,
                    help="how deep a period's dip must be (UniSTConfig.lag_dip; default: the release's own)")
    ap.add_argument("--lag-cycles", type=float, default=None,
                    help="how many times the context must hold a lag (UniSTConfig.lag_cycles; up to unist-tiny-5: 1.5)")
    ap.add_argument("--lag-edge-dip", choices=("true", "false"), default=None,
                    help="whether the longest valid lag is always a dip (UniSTConfig.lag_edge_dip; up to unist-tiny-5: "
                         "true)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_checkpoint(args.checkpoint).model  # a Forecaster; each column sets its own policy
    if args.smooth:
        model.model.config.lag_smooth = True
    if args.lag_error:
        model.model.config.lag_error = args.lag_error
    if args.lag_dip is not None:
        model.model.config.lag_dip = args.lag_dip
    if args.lag_cycles is not None:
        model.model.config.lag_cycles = args.lag_cycles
    if args.lag_edge_dip is not None:
        model.model.config.lag_edge_dip = args.lag_edge_dip == "true"
    model.model.config.validate()
    for name in args.dataset:
        print(name, {k: round(v, 4) for k, v in study(model, name, args.windows).items()}, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
