"""Time of the lag copy's candidates (`UniST.copy_candidates`) on real `tiny` training batches, and an exact A/B.

    python benchmarks/bench_lag_copy.py                                  # ms per batch of this tree
    python benchmarks/bench_lag_copy.py --against OTHER/lags.py          # interleaved A/B with another lags.py

The A/B loads the other `lags.py` as a second module in the same process (its `from .x import` lines resolve
to this tree's `unist.model.x`), runs both on the same 8 masked, normalised batches, alternating, and checks
every output with `torch.equal`. Used for the lag-copy speed-ups of docs/LOG.md (issue 12, 2026-12-04), with
`git show REV:unist/model/lags.py > /tmp/lags_old.py`. The machine is shared: compare medians of one run.
"""
from __future__ import annotations

import argparse
import inspect
import re
import statistics
import sys
import time
import types

import torch

import unist.model.lags as lags
import unist.model.unist as network
from unist.model import UniST
from unist.objectives import masking
from unist.train.config import load_config
from unist.train.data_mix import Mixture, build_sources


def batches(n: int):
    cfg = load_config("tiny")
    mcfg = cfg.model_config()
    mix = Mixture(build_sources(cfg.data, 0), cfg.data, mcfg.patch, 0)
    model = UniST(mcfg)
    out = []
    for j in range(n):
        b = model.prepare(mix.batch(0, j)[0])
        keep = ~masking.sample_mask(b, mcfg.masking.strategies, mcfg.masking.ratio)
        seen = b.mask & keep[:, None, None]
        out.append((model.normalise_batch(b, seen)[0], seen, keep))
    return model, out


def load_other(path: str):
    """The other file's `lag_parts`, dropping keyword arguments it does not take yet (newer ones such as
    `counts` only spare host syncs)."""
    fn = _load(path).lag_parts
    params = inspect.signature(fn).parameters
    return lambda *args, **kw: fn(*args, **{k: v for k, v in kw.items() if k in params})


def _load(path: str) -> types.ModuleType:
    src = re.sub(r"^from \.(\w+) import", r"from unist.model.\1 import", open(path).read(), flags=re.M)
    mod = types.ModuleType("unist.model.lags_other")
    sys.modules[mod.__name__] = mod
    exec(compile(src, path, "exec"), mod.__dict__)
    return mod


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--against", help="another lags.py to compare with (A = it, B = this tree)")
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    model, prep = batches(a.batches)
    variants = {"this tree": lags.lag_parts}
    if a.against:
        variants = {"other": load_other(a.against), **variants}
    times = {k: [] for k in variants}
    outs = {}
    for r in range(a.repeats + 1):  # the first round warms up
        for name, fn in variants.items():
            network.lag_parts = fn
            t = time.perf_counter()
            outs[name] = [model.copy_candidates(*x) for x in prep]
            if r:
                times[name].append((time.perf_counter() - t) / len(prep))
    network.lag_parts = lags.lag_parts
    for name, ts in times.items():
        print(f"{name}: {1e3 * statistics.median(ts):.1f} ms per batch (median of {a.repeats})")
    if a.against:
        same = all(torch.equal(getattr(p, f), getattr(q, f)) for p, q in zip(outs["other"], outs["this tree"])
                   for f in ("values", "available", "features", "lags"))
        ratio = statistics.median(times["other"]) / statistics.median(times["this tree"])
        print(f"speed-up {ratio:.2f}x; outputs bit-identical: {same}")


if __name__ == "__main__":
    main()
