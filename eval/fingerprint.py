"""Fingerprint of a release's outputs, to check that a code change leaves them bit for bit as they were.

    python eval/fingerprint.py save OUT.npz [--checkpoint unist-tiny-6] [--windows 3]
    python eval/fingerprint.py compare A.npz B.npz          # exit 1 when any array differs

On the VALIDATION split (never the test split) of every evaluation dataset: the point forecast under the
release's policy, the lag copy's rule alone (correction="none"), the network as trained ("full"), flow samples
(seed 0), the imputation of a context with every third step hidden, embeddings, and the four-candidate
ensemble baseline; plus every loss term and the gradient of one `unist_tiny` training step on 6 synthetic
samples. docs/LOG.md (issue 15) compares 94277b6 with the refactored tree this way (the ensemble and training
arrays were added after; the same checks were run then with scratch copies of this code).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace

import numpy as np
import torch

import unist
from unist.data import SyntheticCorpus
from unist.evaluation.ensemble import ClassicalEnsemble
from unist.evaluation.protocols import load_target, protocol_for
from unist.evaluation.windows import make_windows
from unist.model import create_model
from unist.objectives import Pretrainer

DATASETS = ("metr_la_week", "era5_t2m_uk", "de_pm10_rural", "paris_bikehire_daily", "beijing_air_12site", "flu_bybw",
            "us_climdiv_precip", "nyc_bike1", "flipping_a_pancake")


def save(out: str, checkpoint: str, windows: int) -> None:
    fc = unist.from_pretrained(checkpoint)
    res = {}
    for ds in DATASETS:
        s = load_target(ds)
        p = protocol_for(s)
        ctx = make_windows(s, p, windows, "val").contexts
        res[ds + "/point"] = np.stack(fc.forecast_batch(ctx, p.horizon))
        res[ds + "/rule"] = np.stack(fc.with_policy(correction="none").forecast_batch(ctx, p.horizon))
        res[ds + "/net"] = np.stack(fc.with_policy(correction="full").forecast_batch(ctx, p.horizon))
        torch.manual_seed(0)
        res[ds + "/samples"] = np.stack(fc.forecast_batch(ctx[:2], p.horizon, num_samples=4))
        c = ctx[0]
        m = c.mask.copy()
        m[::3] = False
        res[ds + "/impute"] = fc.impute(replace(c, values=np.where(m, c.values, np.nan).astype(np.float32), mask=m)).values
        res[ds + "/embed"] = fc.embed(ctx[:2]).numpy()
        if not p.video:
            res[ds + "/ensemble4"] = np.stack(ClassicalEnsemble(fc.config.patch).forecast_batch(ctx, p.horizon))
        print(ds, flush=True)
    res.update(training_step())
    np.savez(out, **res)
    print(f"wrote {out} ({len(res)} arrays)")


def training_step() -> dict[str, np.ndarray]:
    """Loss terms and the flattened gradient of one unist_tiny step (masks seeded) on 6 synthetic samples."""
    model = create_model("unist_tiny")
    batch = model.patcher.patchify([SyntheticCorpus(seed=0).sample(i) for i in range(6)])
    torch.manual_seed(0)
    out = Pretrainer(model)(batch)
    out["loss"].backward()
    grad = torch.cat([p.grad.flatten() for _, p in sorted(model.named_parameters()) if p.grad is not None])
    return {**{f"train/{k}": v.detach().numpy() for k, v in out.items()}, "train/grad": grad.numpy()}


def compare(a_path: str, b_path: str) -> int:
    a, b = np.load(a_path), np.load(b_path)
    bad = 0
    for k in a.files:
        if k not in b.files:
            print("missing", k)
            bad += 1
        elif a[k].shape != b[k].shape or not np.array_equal(a[k], b[k], equal_nan=True):
            d = np.nanmax(np.abs(a[k] - b[k])) if a[k].shape == b[k].shape else "shape"
            print("DIFF", k, d)
            bad += 1
    print("identical" if not bad else f"{bad} differ", len(a.files), "arrays")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("save")
    s.add_argument("out")
    s.add_argument("--checkpoint", default="unist-tiny-6")
    s.add_argument("--windows", type=int, default=3)
    s.add_argument("--threads", type=int, default=2)
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    args = ap.parse_args(argv)
    if args.cmd == "save":
        torch.set_num_threads(args.threads)
        save(args.out, args.checkpoint, args.windows)
        return 0
    return compare(args.a, args.b)


if __name__ == "__main__":
    sys.exit(main())
