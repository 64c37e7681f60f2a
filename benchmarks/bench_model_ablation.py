"""Short UniST pretraining ablations on real data (CPU): MoE routing variants and objective mixes.

Trains `unist_tiny` variants on random 16-step windows of the train splits of NYC bike (grid) and
METR-LA (graph), then evaluates on fixed validation windows: every loss term (fixed seeds), MoE load
balance, and a 4-step forecast MAE in data units against the last-value baseline. Prints a table and
writes benchmarks/results/model_ablation.json. Numbers are logged in docs/LOG.md.

    .venv/bin/python benchmarks/bench_model_ablation.py --steps 150 [--variants moe_top2 dense]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from unist.data import load_series, sliding_windows, split_series
from unist.forecast import Forecaster
from unist.model import ObjectiveConfig, create_model
from unist.objectives import Pretrainer

VARIANTS = {
    "moe_top2": {},
    "moe_top1": {"moe": {"top_k": 1}},
    "moe_top2_cap1.0": {"moe": {"capacity_factor": 1.0}},
    "dense": {"moe": {"dense": True}},
    "masked_only": {"objectives": ObjectiveConfig(masked=1.0, contrastive=0.0, diffusion=0.0)},
}
TERMS = ("masked", "contrastive", "diffusion", "moe_aux", "moe_dropped")


def windows(split: str, length: int, stride: int):
    out = {}
    for name in ("nyc_bike1", "metr_la_week"):
        part = split_series(load_series(name), (0.7, 0.15, 0.15))[split]
        out[name] = list(sliding_windows(part, context=length, stride=stride))
    return out


def evaluate(model, val, horizon: int = 4) -> dict[str, float]:
    res = {k: [] for k in TERMS}
    objective, forecaster = Pretrainer(model), Forecaster(model)
    model.eval()
    with torch.no_grad():
        for i in range(4):
            batch = model.patcher.patchify([val[n][i * 3] for n in val] + [val[n][i * 3 + 1] for n in val])
            torch.manual_seed(1000 + i)
            out = objective(batch)
            for k in TERMS:
                res[k].append(out[k].item())
    summary = {k: float(np.mean(v)) for k, v in res.items()}
    for name, ws in val.items():
        err, base = [], []
        for w in ws[:8]:
            ctx, truth = w.slice_time(0, 12), w.values[12:12 + horizon]
            torch.manual_seed(0)
            pred = forecaster.forecast(ctx, horizon)
            err.append(np.abs(pred - truth).mean())
            base.append(np.abs(ctx.values[-1:] - truth).mean())
        summary[f"mae_{name}"] = float(np.mean(err))
        summary[f"mae_last_value_{name}"] = float(np.mean(base))
    model.train()
    return summary


def run(name: str, steps: int, train, val, lr: float) -> dict:
    model = create_model("unist_tiny", **VARIANTS[name])
    objective = Pretrainer(model)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    tokens, t0, curve = 0, time.perf_counter(), []
    for step in range(steps):
        picks = [train[n][j] for n in train for j in rng.integers(len(train[n]), size=2)]
        batch = model.patcher.patchify(picks)
        out = objective(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        tokens += batch.num_tokens
        if step % 25 == 0 or step == steps - 1:
            curve.append({"step": step, **{k: round(out[k].item(), 4) for k in ("loss",) + TERMS}})
            print(name, curve[-1], flush=True)
    elapsed = time.perf_counter() - t0
    load = out["moe_load"] / out["moe_load"].sum()
    return {"variant": name, "steps": steps, "tokens_per_s": tokens / elapsed, "train_s": elapsed,
            "final_load_share": [round(x, 3) for x in load.tolist()], "curve": curve, "val": evaluate(model, val)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "model_ablation.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train, val = windows("train", 16, 4), windows("val", 16, 8)
    results = [run(v, args.steps, train, val, args.lr) for v in args.variants]
    cols = ("masked", "contrastive", "diffusion", "moe_aux", "moe_dropped", "mae_nyc_bike1", "mae_metr_la_week")
    print(f"{'variant':<18}{'tok/s':>8}" + "".join(f"{c:>18}" for c in cols))
    for r in results:
        print(f"{r['variant']:<18}{r['tokens_per_s']:>8.0f}" + "".join(f"{r['val'][c]:>18.4f}" for c in cols))
    base = results[0]["val"]
    print(f"last-value baseline MAE: bike {base['mae_last_value_nyc_bike1']:.4f}, "
          f"metr {base['mae_last_value_metr_la_week']:.4f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
