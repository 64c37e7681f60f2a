"""Time of the lag copy's candidates (`UniST.copy_candidates`) on real `tiny` training batches, and an exact A/B.

    python benchmarks/bench_lag_copy.py                                  # ms per batch of this tree
    python benchmarks/bench_lag_copy.py --against OTHER/lags.py          # interleaved A/B with another lags.py
    python benchmarks/bench_lag_copy.py --against-steps OTHER/steps.py   # A/B with another steps.py (this lags.py)
    python benchmarks/bench_lag_copy.py --against OLD/lags.py --against-steps OLD/steps.py model.lag_fill=false

The A/B loads the other `lags.py` as a second module in the same process (its `from .x import` lines resolve
to this tree's `unist.model.x`), runs both on the same 8 masked, normalised batches, alternating, and checks
every output with `torch.equal` (and prints the largest difference where they are not equal; an exact
change must print "bit-identical: True"). `--against-steps` runs this tree's `lags.py` over another `steps.py`
(the FFT backtests). Used for the lag-copy speed-ups of docs/LOG.md (issue 12, 2026-12-04), with
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


def batches(n: int, overrides: list[str] = ()):
    cfg = load_config("tiny", list(overrides))
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


def load_other(path: str, steps: str | None = None):
    """The other file's `lag_parts` (over another `steps.py` when given), dropping keyword arguments it does not
    take yet (newer ones such as `counts` only spare host syncs)."""
    subs = {"steps": _load(steps, "steps_other", {}).__name__} if steps else {}
    fn = _load(path, "lags_other", subs).lag_parts
    params = inspect.signature(fn).parameters
    as_tensor = "Tensor" in str(params["channels"].annotation) if "channels" in params else False

    def call(*args, **kw):
        if as_tensor and isinstance(kw.get("channels"), list):  # lags.py before 2026-12-07 took a tensor
            kw["channels"] = torch.tensor(kw["channels"])
        return fn(*args, **{k: v for k, v in kw.items() if k in params})
    return call


def _load(path: str, name: str, subs: dict[str, str]) -> types.ModuleType:
    """Module `unist.model.<name>` from a file; `from .x import` resolves to this tree's `unist.model.x`, or to
    subs[x] (a module loaded by this function before)."""
    src = re.sub(r"^from \.(\w+) import", lambda m: f"from {subs.get(m[1], 'unist.model.' + m[1])} import",
                 open(path).read(), flags=re.M)
    mod = types.ModuleType(f"unist.model.{name}")
    sys.modules[mod.__name__] = mod
    exec(compile(src, path, "exec"), mod.__dict__)
    return mod


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--against", help="another lags.py to compare with (A = it, B = this tree)")
    ap.add_argument("--against-steps", help="another steps.py under this tree's lags.py (A = it, B = this tree)")
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("overrides", nargs="*", help="pretrain key=value overrides, e.g. model.lag_fill=false to "
                    "compare with a lags.py that has no fill candidates")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    model, prep = batches(a.batches, a.overrides)
    variants = {"this tree": lags.lag_parts}
    if a.against or a.against_steps:
        other = load_other(a.against or lags.__file__, a.against_steps)
        variants = {"other": other, **variants}
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
    if len(variants) == 2:
        pairs = [(getattr(p, f), getattr(q, f)) for p, q in zip(outs["other"], outs["this tree"])
                 for f in ("values", "available", "features", "lags")]
        same = all(torch.equal(u, v) for u, v in pairs)
        ratio = statistics.median(times["other"]) / statistics.median(times["this tree"])
        print(f"speed-up {ratio:.2f}x; outputs bit-identical: {same}")
        if not same:
            worst = max(float((u.double() - v.double()).abs().max()) for u, v in pairs if u.is_floating_point())
            flips = sum(int((u != v).sum()) for u, v in pairs if not u.is_floating_point())
            print(f"largest difference of a float output: {worst:.3g}; differing lag/mask entries: {flips}")


if __name__ == "__main__":
    main()
