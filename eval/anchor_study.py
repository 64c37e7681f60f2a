"""Reproduces the anchor study of docs/LOG.md (session 2): what each part of the forecast is worth.

    python eval/anchor_study.py mixes                        # fixed mixes of last value / seasonal naive
    python eval/anchor_study.py beta                         # untrained anchor, gate sharpness 2 / 4 / 8
    python eval/anchor_study.py parts --checkpoint unist-tiny    # switch the network's parts off
    python eval/anchor_study.py selfcheck --checkpoint unist-tiny  # network trusted as trained / self-checked
    python eval/anchor_study.py selfcheck --split val --dataset nyc_bike1 ...   # same, validation split

All on 40 evenly spaced test windows per dataset (`--max-windows`; `--split val` for the validation
split), CPU, one thread. `mixes` needs no
model; `beta` uses a random-init `unist_tiny` (its forecast is exactly its anchor); `parts` zeroes the
head's residual and/or the decoder term of the candidate weights of a trained release.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

import unist
from unist.data import load_series
from unist.evaluation.baselines import last_value, seasonal_naive
from unist.evaluation.forecasters import anchor_forecast, unist_forecast
from unist.evaluation.protocols import protocol_for
from unist.evaluation.windows import make_windows
from unist.model import create_model
from unist.model.anchor import gate_init

HELDOUT = ("metr_la_week", "nyc_bike2", "era5_t2m_uk")


def mae(pred: np.ndarray, w) -> float:
    m = w.target_mask
    return float(np.abs(np.where(m, pred - np.nan_to_num(w.target), 0)).sum() / m.sum())


def windows(name: str, max_windows: int, split: str = "test"):
    s = load_series(name)
    p = protocol_for(s)
    return s, p, make_windows(s, p, max_windows, split)


def mixes(datasets, max_windows):
    for name in datasets:
        s, p, w = windows(name, max_windows)
        lv = last_value(w.context, w.context_mask, p.horizon)
        sn, _ = seasonal_naive(s.values, s.mask, w.origins, p.horizon, p.season, lv)
        row = {"last value": mae(lv, w), "seasonal naive": mae(sn, w), "50/50 mix": mae(0.5 * lv + 0.5 * sn, w)}
        c = np.nan_to_num(w.context)
        T, S, H = c.shape[1], p.season, p.horizon
        if T >= S + 4:  # seasonal naive + level shift of the last 4 steps, damped 0.9^h
            d = c[:, T - 4:].mean(1) - c[:, T - 4 - S:T - S].mean(1)
            damp = (0.9 ** np.arange(1, H + 1)).reshape((1, H) + (1,) * (lv.ndim - 2))
            row["seasonal + damped level"] = mae(sn + damp * d[:, None], w)
        row["0.5 last + 0.5 mean(last 3)"] = mae(0.5 * lv + 0.5 * c[:, -3:].mean(1, keepdims=True), w)
        print(name, f"{p.context} in", {k: round(v, 3) for k, v in row.items()})


def beta(datasets, max_windows):
    for b in (2.0, 4.0, 8.0):
        model = create_model("unist_tiny", lag_candidates=0, self_check=True)  # the four-candidate anchor
        gate_init(model.anchor_gate_feats.weight, model.anchor_gate_feats.bias, beta=b)
        res = {}
        for name in datasets:
            _, p, w = windows(name, max_windows)
            res[name] = round(mae(unist_forecast(model, w, p.horizon, batch_size=8)[0], w), 3)
        print(f"beta {b}:", res)


def parts(datasets, max_windows, checkpoint):
    model = unist.from_pretrained(checkpoint)
    head, gate = model.head.forward, model.anchor_gate.forward
    zero_head = lambda h, rel, c=None: torch.zeros(h.shape[0], rel.shape[1], c, dtype=h.dtype)  # noqa: E731
    zero_gate = lambda h: torch.zeros(h.shape[0], model.anchor_gate.out_features, dtype=h.dtype)  # noqa: E731
    for name in datasets:
        _, p, w = windows(name, max_windows)
        res = {}
        for label, no_head, no_gate in (("full", 0, 0), ("no head residual", 1, 0), ("no decoder term", 0, 1),
                                        ("anchor only", 1, 1)):
            model.head.forward = zero_head if no_head else head
            model.anchor_gate.forward = zero_gate if no_gate else gate
            res[label] = round(mae(unist_forecast(model, w, p.horizon, batch_size=8)[0], w), 3)
        model.head.forward, model.anchor_gate.forward = head, gate
        print(name, res)


def selfcheck(datasets, max_windows, checkpoint, split):
    model = unist.from_pretrained(checkpoint)
    for name in datasets:
        _, p, w = windows(name, max_windows, split)
        res = {"anchor only": round(mae(anchor_forecast(model, w, p.horizon, batch_size=8), w), 3)}
        for label, on in (("network as trained", False), ("self-checked", True)):
            model.config.self_check = on
            res[label] = round(mae(unist_forecast(model, w, p.horizon, batch_size=8)[0], w), 3)
        print(name, split, res, flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("study", choices=("mixes", "beta", "parts", "selfcheck"))
    ap.add_argument("--dataset", action="append", help=f"default: {', '.join(HELDOUT)}")
    ap.add_argument("--max-windows", type=int, default=40)
    ap.add_argument("--checkpoint", default="unist-tiny", help="release for `parts` and `selfcheck`")
    ap.add_argument("--split", default="test", choices=("test", "val"))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    ds = tuple(a.dataset or HELDOUT)
    {"mixes": lambda: mixes(ds, a.max_windows), "beta": lambda: beta(ds, a.max_windows),
     "parts": lambda: parts(ds, a.max_windows, a.checkpoint),
     "selfcheck": lambda: selfcheck(ds, a.max_windows, a.checkpoint, a.split)}[a.study]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
