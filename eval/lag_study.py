"""Validation-split study of the lag copy's forecasting policy: network as trained, self-checked, rule only, last value.

    python eval/lag_study.py --checkpoint checkpoints/unist-tiny-4 --dataset metr_la_week --dataset era5_t2m_uk \
        --dataset de_pm10_rural --dataset paris_bikehire_daily
    python eval/lag_study.py --checkpoint checkpoints/unist-tiny-2 --smooth --dataset de_pm10_rural
    python eval/lag_study.py --checkpoint checkpoints/unist-tiny-4 --lag-error mae --dataset runs/bursty_counts.npz

Windows have their targets in the validation split (steps 60-80 %, `make_windows(split="val")`), never the test
split: this is where the policy (ForecastPolicy.correction, lag_smooth) is chosen (docs/LOG.md). --smooth switches the smoothed
candidates on for a release trained without them; --lag-error sets the backtest error that weights the candidates
(`UniSTConfig.lag_error`; releases up to unist-tiny-4 were trained with "rmse") and --lag-dip how deep a period's
dip must be (`UniSTConfig.lag_dip`; up to unist-tiny-4: 1, any dip), --ets true|false switches the exponential-smoothing candidates (`UniSTConfig.lag_ets`), --lag-cycles how many times
the context must hold a lag and --lag-edge-dip whether the longest such lag is always a dip (`UniSTConfig.lag_cycles`,
`lag_edge_dip`; up to unist-tiny-5: 1.5 and true). --residual true|false sets whether the network's prediction includes the
patch head's residual (`ForecastPolicy.residual`; unist-tiny-6 ships false), --beta the self-check's sharpness
(`ForecastPolicy.beta`; 4 in every release so far). A dataset may be a unist .npz file,
e.g. the synthetic bursty counts of eval/bursty_counts.py. Prints one line of MAE per dataset; --candidates adds
each candidate's MAE alone, the rule's and the network's mean weight on each over the forecast tokens, the lags most often copied, and
the MAE of the network's parts alone: the decoder's weights without the head's residual (also with the decoder's
projection pooled over the batch's tokens: the scorer's learned feature rule without the token's context), the rule
plus the residual; --network-split prints those parts only.
"""
from __future__ import annotations

import argparse
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np
import torch

from unist.evaluation.checkpoints import load_checkpoint
from unist.evaluation.forecasters import forecast_windows
from unist.evaluation.protocols import Protocol, load_target, protocol_for
from unist.evaluation.windows import EvalWindows, make_windows
from unist.forecast import Forecaster
from unist.model import UniST
from unist.model.heads import LagScorer
from unist.model.ets import ETS_PARAMS
from unist.model.lags import SMOOTH_WINDOWS, LagParts


def val_windows(name: str, windows: int) -> tuple[Protocol, EvalWindows, Callable[[np.ndarray], float]]:
    """The protocol of dataset `name`, its validation-split windows and their MAE scorer."""
    s = load_target(name)
    p = protocol_for(s)
    w = make_windows(s, p, windows, "val")

    def mae(pred: np.ndarray) -> float:
        ok = w.target_mask & np.isfinite(pred)
        return float(np.abs(pred - w.target)[ok].mean())

    return p, w, mae


def study(model: Forecaster, name: str, windows: int) -> dict[str, float]:
    p, w, mae = val_windows(name, windows)
    last = np.stack([np.repeat(c.values[-1:], p.horizon, 0) for c in w.contexts])  # last step (NaN where missing)
    return {"net": mae(forecast_windows(model.with_policy(correction="full"), w.contexts, p.horizon, 8)),
            "checked": mae(forecast_windows(model.with_policy(correction="checked"), w.contexts, p.horizon, 8)),
            "rule": mae(forecast_windows(model.with_policy(correction="none"), w.contexts, p.horizon, 8)),
            "last_step": mae(last)}


def candidate_names(cfg) -> list[str]:
    """The lag copy's candidates in `LagParts` order: last value, the K + 1 lag copies (the K found in the values and
    the clock's day / week), their level-corrected copies, the smoothed levels, the fill candidates."""
    k = cfg.lag_candidates + 1
    names = ["last"] + [f"lag{i}" for i in range(k)] + [f"level{i}" for i in range(k)]
    names += [f"mean{w}tau" for w in SMOOTH_WINDOWS] if cfg.lag_smooth else []
    names += [f"ets{a}" for a, _ in ETS_PARAMS] if cfg.lag_ets else []
    return names + (["interp", "cross"] if cfg.lag_fill else [])


@contextmanager
def scored_by(net: UniST, logits: Callable[..., torch.Tensor], with_h: bool = False) -> Iterator[None]:
    """Within the block the model's lag copy mixes its candidates by `logits(parts)` (L, Q) instead of the scorer
    (with_h: `logits(parts, h)`, h the decoder features (L, dd))."""
    net.lag_copy = lambda copy, h=None: copy.combine(logits(copy, h) if with_h else logits(copy))
    try:
        yield
    finally:
        del net.lag_copy  # the class's method again


@contextmanager
def no_residual(net: UniST) -> Iterator[None]:
    """Within the block the patch head's residual is 0: the network forecasts its lag copy alone."""
    net.head.forward = lambda h, rel_pos, channels: h.new_zeros(h.shape[0], rel_pos.shape[1], channels)
    try:
        yield
    finally:
        del net.head.forward


def pooled_logits(scorer: LagScorer, copy: LagParts, h: torch.Tensor) -> torch.Tensor:
    """The scorer's logits with every token's decoder projection replaced by its mean over the batch's tokens: the
    learned nonlinear rule on the candidates' features, without what the decoder says of this token's context."""
    f = copy.features.to(scorer.rule.weight.dtype)
    p = scorer.proj(h.to(f.dtype)).mean(0)[None, None].expand(f.shape[0], f.shape[1], -1)
    return scorer.rule(f).squeeze(-1) + scorer.mlp(torch.cat([f, p], -1)).squeeze(-1)


def network_split(model: Forecaster, name: str, windows: int) -> dict[str, float]:
    """What of the network moves its forecast away from the rule (validation split, MAE): the decoder's say in the
    candidates' weights without the head's residual ("weights"), the same with the decoder's projection pooled over
    the batch's tokens ("weights_pooled_h": the scorer's learned feature rule without the token's context), and the
    rule's weights plus the residual ("residual"); the network as trained has the first and the last, the rule
    neither."""
    p, w, mae = val_windows(name, windows)
    net, full = model.model, model.with_policy(correction="full")

    with no_residual(net):
        weights = mae(forecast_windows(full, w.contexts, p.horizon, 8))
        with scored_by(net, lambda copy, h: pooled_logits(net.lag_scorer, copy, h), with_h=True):
            pooled = mae(forecast_windows(full, w.contexts, p.horizon, 8))
    with scored_by(net, lambda copy: net.lag_scorer(copy.features, None)):
        residual = mae(forecast_windows(full, w.contexts, p.horizon, 8))
    return {"weights": weights, "weights_pooled_h": pooled, "residual": residual}


def candidate_study(model: Forecaster, name: str, windows: int
                    ) -> tuple[dict[str, float], dict[str, float], dict[str, float], str]:
    """MAE of each candidate alone (last value where it is missing), the rule's and the network's (the decoder-weighted
    scorer) mean weight on each over the forecast tokens, and the copied lags: why the rule forecasts what it does, and
    where the network moves it (validation split)."""
    p, w, mae = val_windows(name, windows)
    net, names = model.model, candidate_names(model.model.config)
    rule = model.with_policy(correction="none")

    weights, net_weights, lags = [], [], []

    def mean_weights(copy: LagParts, lg: torch.Tensor, into: list) -> torch.Tensor:
        """Append the softmax weights of the forecast tokens to `into`; -> which tokens those are (L,)."""
        future = copy.features[:, 0, 6] > 0  # log1p(lead) > 0: tokens after their last-value token
        any_ok = copy.available.any(2).any(2)
        into.append(torch.softmax(lg.float().masked_fill(~any_ok, -1e4), -1)[future])
        return future

    def rule_logits(copy: LagParts) -> torch.Tensor:
        lg = net.lag_scorer(copy.features, None)
        lags.append(copy.lags[mean_weights(copy, lg, weights)])
        return lg

    def net_logits(copy: LagParts, h: torch.Tensor) -> torch.Tensor:
        lg = net.lag_scorer(copy.features, h)
        mean_weights(copy, lg, net_weights)
        return lg

    with scored_by(net, rule_logits):
        forecast_windows(rule, w.contexts, p.horizon, 8)
    with scored_by(net, net_logits, with_h=True):
        forecast_windows(model.with_policy(correction="full"), w.contexts, p.horizon, 8)
    alone = {}
    for q, cand in enumerate(names):
        def only(copy: LagParts, q=q) -> torch.Tensor:
            lg = torch.full(copy.values.shape[:2], -1e4, device=copy.values.device)
            lg[:, 0] = -10.0  # last value where candidate q is missing
            lg[:, q] = 0.0
            return lg
        with scored_by(net, only):
            alone[cand] = mae(forecast_windows(rule, w.contexts, p.horizon, 8))
    mean_w, net_w = torch.cat(weights).mean(0).tolist(), torch.cat(net_weights).mean(0).tolist()
    found, n = torch.unique(torch.cat(lags)[:, :-1], return_counts=True)  # the lags found in the values
    top = ", ".join(f"{int(l) or 'none'} ({int(c)})" for l, c in sorted(zip(found.tolist(), n.tolist()), key=lambda t: -t[1])[:8])
    return alone, dict(zip(names, mean_w)), dict(zip(names, net_w)), top


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--dataset", action="append", required=True)
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--smooth", action="store_true", help="switch the smoothed-level candidates on (lag_smooth)")
    ap.add_argument("--ets", choices=("true", "false"), default=None,
                    help="the exponential-smoothing candidates on or off (UniSTConfig.lag_ets; default: the release's own)")
    ap.add_argument("--lag-error", choices=("mae", "rmse"), default=None,
                    help="the lag copy's backtest error (default: the release's own)")
    ap.add_argument("--lag-dip", type=float, default=None,
                    help="how deep a period's dip must be (UniSTConfig.lag_dip; default: the release's own)")
    ap.add_argument("--lag-cycles", type=float, default=None,
                    help="how many times the context must hold a lag (UniSTConfig.lag_cycles; up to unist-tiny-5: 1.5)")
    ap.add_argument("--lag-edge-dip", choices=("true", "false"), default=None,
                    help="whether the longest valid lag is always a dip (UniSTConfig.lag_edge_dip; up to unist-tiny-5: "
                         "true)")
    ap.add_argument("--residual", choices=("true", "false"), default=None,
                    help="whether the network's prediction includes the patch head's residual (ForecastPolicy.residual; "
                         "default: the release's policy)")
    ap.add_argument("--beta", type=float, default=None,
                    help="sharpness of the self-check's trust (ForecastPolicy.beta; default: the release's policy)")
    ap.add_argument("--mlp-scale", type=float, default=None,
                    help="scale the scorer MLP's learned logit correction by this factor (its output layer, in memory): "
                         "0 leaves the decoder no say in the weights, 1 is the release")
    ap.add_argument("--candidates", action="store_true",
                    help="also print each candidate's MAE alone, the rule's and the network's mean weight on it, the copied lags and the "
                         "network's two parts (decoder weights alone, head residual on the rule alone)")
    ap.add_argument("--network-split", action="store_true",
                    help="print only the network's parts (what --candidates ends with), not each candidate alone")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_checkpoint(args.checkpoint).model  # a Forecaster; each column sets its own policy
    if args.smooth:
        model.model.config.lag_smooth = True
    if args.lag_error:
        model.model.config.lag_error = args.lag_error
    if args.ets is not None:
        model.model.config.lag_ets = args.ets == "true"
    if args.lag_dip is not None:
        model.model.config.lag_dip = args.lag_dip
    if args.lag_cycles is not None:
        model.model.config.lag_cycles = args.lag_cycles
    if args.lag_edge_dip is not None:
        model.model.config.lag_edge_dip = args.lag_edge_dip == "true"
    model.model.config.validate()
    if args.residual is not None:
        model = model.with_policy(residual=args.residual == "true")
    if args.beta is not None:
        model = model.with_policy(beta=args.beta)
    if args.mlp_scale is not None:
        with torch.no_grad():
            out_layer = model.model.lag_scorer.mlp[-1]
            out_layer.weight.mul_(args.mlp_scale)
            out_layer.bias.mul_(args.mlp_scale)
    for name in args.dataset:
        print(name, {k: round(v, 4) for k, v in study(model, name, args.windows).items()}, flush=True)
        if args.candidates:
            alone, weight, net_weight, top = candidate_study(model, name, args.windows)
            print("  alone", {k: round(v, 4) for k, v in alone.items()}, flush=True)
            print("  rule weight", {k: round(v, 3) for k, v in weight.items()}, flush=True)
            print("  network weight", {k: round(v, 3) for k, v in net_weight.items()}, flush=True)
            print("  lags found (tokens)", top or "none", flush=True)
        if args.candidates or args.network_split:
            print("  network split", {k: round(v, 4) for k, v in network_split(model, name, args.windows).items()},
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
