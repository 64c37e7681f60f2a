"""Training throughput and loss-vs-data of this tree against a baseline commit, side by side in one run.

Both trees train the same model preset on the SAME packed micro-batches (made once by this tree's data
pipeline and saved), from the same init seed, with the same AdamW and LR schedule as train/pretrain.py
(`unist.train.engine.param_groups`, `unist.train.ds_config.lr_lambda`). Training is interleaved: chunk c
of the baseline, then chunk c of this tree, ... (each tree's model and optimizer state are saved between
chunks), so a load change on this shared machine hits both alike. Every `--eval-every` steps each tree
scores fixed validation batches (the validation split, 60-80 %, of the training datasets; masks from a
fixed seed): `val_masked` (the masked objective, every masking strategy) and `val_forecast` (the masked
objective with temporal masking only: forecasting the last time patches). Throughput is counted in
observed space-time points (cells or nodes x time steps; channels and padding not counted) per second,
so it does not depend on how tokens are cut, and in tokens per second. Timing excludes evaluation and
state saving; the optimizer step is included.

  python benchmarks/bench_throughput.py                         # tiny, 0cf8bd6 vs HEAD, 600 steps (~25 min)
  python benchmarks/bench_throughput.py --steps 60 --eval-every 30 --chunk 30   # a quick look

Writes benchmarks/results/throughput_<host>[_<tag>].csv (one row per tree and chunk: values/s, tokens/s) and
loss_vs_data_<host>[_<tag>].csv / .png (validation losses against observed points seen).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
# held out of training in both trees: those of the first release, unist-tiny (deleted in issue 15; the
# results in benchmarks/results were made with this list)
HELDOUT = ("metr_la_week", "nyc_bike2", "era5_t2m_uk", "flipping_a_pancake")


# ------------------------------------------------------------------ data (made once, by this tree)
def dump_batches(out: Path, preset: str, overrides: list[str], steps: int, val_batches: int) -> dict:
    """Save `steps` training micro-batches and `val_batches` validation batches as TokenBatch state."""
    import dataclasses

    from unist.data import Normalizer, load_series, split_series
    from unist.train.config import load_config
    from unist.train.data_mix import Mixture, Source, build_sources, observed_points, window_starts

    cfg = load_config(preset, overrides)
    mcfg = cfg.model_config()
    train = Mixture(build_sources(cfg.data, cfg.train.seed), cfg.data, mcfg.patch, cfg.train.seed)
    val_sources = []
    for src in train.sources:
        if src.series is None:
            continue  # the synthetic corpus has no validation split
        full = load_series(src.record.get("path", src.name))
        parts = split_series(full)
        s = Normalizer().fit(parts["train"]).transform(parts["val"])
        length, starts = window_starts(s, cfg.data.window)
        if starts.size:
            val_sources.append(Source(src.name, s.layout, weight=1.0, series=s, starts=starts, window=length))
    val = Mixture(val_sources, cfg.data, mcfg.patch, cfg.train.seed + 1)
    info = {"train": [], "val": [], "model": cfg.model.name, "overrides": overrides,
            "datasets": [s.name for s in train.sources], "val_datasets": [s.name for s in val_sources]}
    for kind, mix, n in (("train", train, steps), ("val", val, val_batches)):
        for j in range(n):
            tb = mix.batch(0, j)[0]
            d = {f.name: getattr(tb, f.name) for f in dataclasses.fields(tb) if f.name != "specs"}  # specs: unpatchify only
            torch.save(d, out / f"{kind}_{j:05d}.pt")
            info[kind].append({"tokens": tb.num_tokens, "values": observed_points(tb)})
    (out / "info.json").write_text(json.dumps(info))
    return info


def load_batch(path: Path):
    from unist.patching import TokenBatch

    return TokenBatch(**torch.load(path, weights_only=True))


# ------------------------------------------------------------------ worker (runs inside either tree)
def use_tree_kernels(tree: Path) -> None:
    """Make `unist.kernels` this tree's kernels/ folder. The editable install maps unist.kernels to the
    checkout it was installed from (setup.py package_dir), which PYTHONPATH alone does not override."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("unist.kernels", tree / "kernels" / "__init__.py",
                                                  submodule_search_locations=[str(tree / "kernels")])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["unist.kernels"] = mod
    spec.loader.exec_module(mod)


def worker(args) -> None:
    """Train steps [start, stop) of one tree on the saved batches, resuming from its state file."""
    use_tree_kernels(Path.cwd())
    import unist

    if Path(unist.__file__).resolve().parents[1] != Path.cwd().resolve():
        raise RuntimeError(f"worker in {Path.cwd()} imported unist from {unist.__file__}")
    from unist.model import UniST
    from unist.train.config import load_config
    from unist.train.ds_config import lr_lambda
    from unist.train.engine import param_groups

    torch.set_num_threads(args.threads)
    data, state_path = Path(args.data), Path(args.state)
    info = json.loads((data / "info.json").read_text())
    cfg = load_config(args.preset, info["overrides"] + [f"train.steps={args.total_steps}"])
    model = UniST(cfg.model_config())
    objective = training_objective(model)
    opt = torch.optim.AdamW(param_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr,
                            betas=(cfg.optim.beta1, cfg.optim.beta2), eps=cfg.optim.eps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    if args.start > 0:
        st = torch.load(state_path, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
    val = [load_batch(p) for p in sorted(data.glob("val_*.pt"))]
    records, train_s, tokens, values = [], 0.0, 0, 0
    for j in range(args.start, args.stop):
        batch = load_batch(data / f"train_{j:05d}.pt")
        torch.manual_seed(cfg.train.seed * 1_000_003 + j)
        t0 = time.perf_counter()
        out = objective(batch)
        out["loss"].backward()
        if cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        train_s += time.perf_counter() - t0
        tokens += info["train"][j]["tokens"]
        values += info["train"][j]["values"]
        if (j + 1) % args.eval_every == 0:
            records.append({"step": j + 1, "loss": float(out["loss"]), **evaluate(model, objective, val)})
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}, state_path)
    print(json.dumps({"train_s": train_s, "tokens": tokens, "values": values, "evals": records}))


def training_objective(model):
    """The callable batch -> loss dict of the tree this worker runs in. Trees after the issue-15 refactor
    have `unist.objectives` and the losses live in `Pretrainer(model)(batch)`; older trees (the default
    baseline 0cf8bd6) have none and `model(batch)` itself returns the losses. Same math either way, and the
    state saved between chunks is the network's own (`model.state_dict()`) in both. The test is on the
    tree's files: `importlib.util.find_spec` would answer from the editable install's checkout instead."""
    import unist

    if not (Path(unist.__file__).parent / "objectives" / "__init__.py").is_file():  # old tree: model(batch) = losses
        return model
    from unist.objectives import Pretrainer

    return Pretrainer(model)


def evaluate(model, objective, val: list) -> dict[str, float]:
    """Mean masked loss on the validation batches: every strategy, and temporal (forecasting) only."""
    was, strategies = model.training, model.config.masking.strategies
    model.eval()
    out = {}
    try:
        with torch.no_grad():
            for name, strat in (("val_masked", strategies), ("val_forecast", ("temporal",))):
                model.config.masking.strategies = tuple(strat)
                losses = []
                for i, b in enumerate(val):
                    torch.manual_seed(10_000 + i)
                    losses.append(float(objective(b)["masked"]))
                out[name] = sum(losses) / len(losses)
    finally:
        model.config.masking.strategies = strategies
        model.train(was)
    return out


# ------------------------------------------------------------------ driver
def git_rev(tree: Path) -> str:
    r = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return (r.stdout.strip() or "unknown") + ("+dirty" if dirty else "")


def run_chunk(tree: Path, args, data: Path, state: Path, start: int, stop: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(args.threads)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "_worker", "--data", str(data), "--state", str(state),
           "--preset", args.preset, "--start", str(start), "--stop", str(stop), "--total-steps", str(args.steps),
           "--eval-every", str(args.eval_every), "--threads", str(args.threads)]
    p = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"worker in {tree} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def plot(rows: list[dict], path: Path, labels: dict[str, str]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for ax, key, title in zip(axes, ("val_masked", "val_forecast"),
                              ("validation masked loss (all strategies)", "validation forecast loss (temporal mask)")):
        for tree, label in labels.items():
            pts = [r for r in rows if r["tree"] == tree]
            ax.plot([r["values_seen"] / 1e6 for r in pts], [r[key] for r in pts], marker="o", label=label)
        ax.set_xlabel("observed points seen (millions)")
        ax.set_ylabel("Huber loss (normalised units)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd")
    w = sub.add_parser("_worker")
    for k in ("--data", "--state", "--preset"):
        w.add_argument(k, required=True)
    for k in ("--start", "--stop", "--total-steps", "--eval-every", "--threads"):
        w.add_argument(k, type=int, required=True)
    p.add_argument("--baseline", default="0cf8bd6", help="git commit to compare with (default 0cf8bd6)")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--chunk", type=int, default=50, help="steps per interleaved chunk")
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--val-batches", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--override", action="append", default=[], help="extra key=value for both trees")
    p.add_argument("--tag", default="", help="suffix of the result files (throughput_<host>_<tag>.csv, ...)")
    args = p.parse_args()
    if args.cmd == "_worker":
        return worker(args)
    if args.chunk % args.eval_every:
        p.error("--chunk must be a multiple of --eval-every")
    # the held-out datasets, named explicitly: both trees read the same data whatever their defaults
    overrides = [f"data.heldout={','.join(HELDOUT)}", *args.override]
    host = socket.gethostname().split(".")[0] + (f"_{args.tag}" if args.tag else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = tmp / "baseline"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(base), args.baseline],
                       check=True, capture_output=True)
        try:
            data = tmp / "data"
            data.mkdir()
            t0 = time.perf_counter()
            info = dump_batches(data, args.preset, overrides, args.steps, args.val_batches)
            print(f"made {args.steps} + {args.val_batches} batches in {time.perf_counter() - t0:.0f} s "
                  f"({sum(r['tokens'] for r in info['train']) / args.steps:.0f} tokens/step); datasets "
                  f"{info['datasets']}", flush=True)
            trees = {"baseline": base, "head": REPO}
            labels = {"baseline": f"{args.baseline} (baseline)", "head": f"{git_rev(REPO)} (this tree)"}
            throughput, curve, seen = [], [], {k: 0 for k in trees}
            for start in range(0, args.steps, args.chunk):
                stop = min(args.steps, start + args.chunk)
                for name, tree in trees.items():
                    r = run_chunk(tree, args, data, tmp / f"{name}.pt", start, stop)
                    throughput.append({"tree": name, "commit": labels[name], "steps": f"{start}-{stop}",
                                       "values_per_s": r["values"] / r["train_s"],
                                       "tokens_per_s": r["tokens"] / r["train_s"],
                                       "ms_per_step": 1000 * r["train_s"] / (stop - start)})
                    for e in r["evals"]:
                        vs = sum(x["values"] for x in info["train"][:e["step"]])
                        curve.append({"tree": name, "commit": labels[name], "values_seen": vs,
                                      "tokens_seen": sum(x["tokens"] for x in info["train"][:e["step"]]), **e})
                    seen[name] = stop
                    t = throughput[-1]
                    last = curve[-1] if curve else {}
                    print(f"{name:8s} steps {start:4d}-{stop:4d} | {t['values_per_s']:9.0f} values/s | "
                          f"{t['tokens_per_s']:6.0f} tok/s | {t['ms_per_step']:6.1f} ms/step | val_masked "
                          f"{last.get('val_masked', float('nan')):.4f} val_forecast "
                          f"{last.get('val_forecast', float('nan')):.4f}", flush=True)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], capture_output=True)
    tot = {n: [r for r in throughput if r["tree"] == n] for n in trees}
    ratios = sorted(h["values_per_s"] / b["values_per_s"] for b, h in zip(tot["baseline"], tot["head"]))
    print(f"\nvalues/s per chunk, baseline: {[round(r['values_per_s']) for r in tot['baseline']]}, this tree: "
          f"{[round(r['values_per_s']) for r in tot['head']]}; speed-up per adjacent chunk pair {[round(r, 2) for r in ratios]}"
          f", median {ratios[len(ratios) // 2]:.2f}x (a pair where one side ran under someone else's load is an outlier)")
    for n in trees:
        last = [r for r in curve if r["tree"] == n][-1]
        print(f"{n:8s} final val_masked {last['val_masked']:.4f} val_forecast {last['val_forecast']:.4f}")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    for name, rows in ((f"throughput_{host}.csv", throughput), (f"loss_vs_data_{host}.csv", curve)):
        path = RESULTS / name
        with path.open("w", newline="") as f:
            wr = csv.DictWriter(f, ["date", "host", "preset", *rows[0].keys()])
            wr.writeheader()
            wr.writerows({"date": stamp, "host": host, "preset": args.preset, **r} for r in rows)
        print(f"wrote {path}")
    plot(curve, RESULTS / f"loss_vs_data_{host}.png", labels)
    print(f"wrote {RESULTS / f'loss_vs_data_{host}.png'}")


if __name__ == "__main__":
    main()
