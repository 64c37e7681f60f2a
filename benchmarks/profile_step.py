"""Per-module forward time of one UniST training step on real mixture batches (the figures in docs/LOG.md 2026-12-03).

  python benchmarks/profile_step.py [key=value ...]     # pretrain overrides, e.g. model.patch_codec=pointset
Wraps module forwards with timers (forward only; backward is reported as a total).
"""
import os, sys, time, torch, collections
from unist.train.config import load_config
from unist.train.data_mix import build_sources, Mixture
from unist.model import UniST
from unist.objectives import Pretrainer
torch.set_num_threads(2)
cfg = load_config("tiny", sys.argv[1:])
mcfg = cfg.model_config()
mix = Mixture(build_sources(cfg.data, 0), cfg.data, mcfg.patch, 0)
batches = [mix.batch(0, j)[0] for j in range(8)]
model = UniST(mcfg)
objective = Pretrainer(model)  # the training step's losses
T = collections.defaultdict(float)
def wrap(name, mod):
    f = mod.forward
    def g(*a, **k):
        t = time.perf_counter(); r = f(*a, **k); T[name] += time.perf_counter() - t; return r
    mod.forward = g
wrap("patch_embed", model.patch_embed); wrap("encoder", model.encoder); wrap("decoder", model.decoder)
wrap("head", model.head); wrap("flow", model.flow); wrap("pos", model.pos)
for i, blk in enumerate(model.encoder.blocks): wrap("enc_attn", blk.attn); wrap("enc_ffn", blk.ffn)
orig_cc = model.copy_candidates  # the lag copy's candidates and backtest features (the history rule)
def cc(*a, **k):
    t = time.perf_counter(); r = orig_cc(*a, **k); T["lag_copy"] += time.perf_counter() - t; return r
model.copy_candidates = cc
orig_ns = model.normalise_batch
def ns(*a, **k):
    t = time.perf_counter(); r = orig_ns(*a, **k); T["norm"] += time.perf_counter() - t; return r
model.normalise_batch = ns
fw = bw = 0
for i, b in enumerate(batches):
    if i == 2: T.clear(); fw = bw = 0
    t0 = time.perf_counter(); out = objective(b); t1 = time.perf_counter(); out["loss"].backward(); t2 = time.perf_counter()
    fw += t1 - t0; bw += t2 - t1; model.zero_grad()
n = 6
print(f"fwd {fw/n*1000:.0f} ms bwd {bw/n*1000:.0f} ms")
for k, v in sorted(T.items(), key=lambda x: -x[1]): print(f"  {k:12s} {v/n*1000:7.1f} ms")
