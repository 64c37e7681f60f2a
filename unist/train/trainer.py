"""The pretraining loop: data mixture -> DeepSpeed engine -> metrics, checkpoints and a release.

`run(cfg)` trains `cfg.train.steps` optimizer steps of `cfg.train.grad_accum` packed micro-batches
per rank, then saves a final checkpoint and exports a release to out_dir/name/release.
Exact resume: micro-batch j of rank r depends only on (seed, r, j) (see data_mix), and the torch
RNG that draws the model's masks and noise is reseeded from (seed, r, j) before every micro-batch,
so the checkpoint only needs the step and the next micro-batch index (stored in client_state); on
CPU a resumed run reproduces the uninterrupted run's losses.
Guards: resume compares the checkpoint's saved settings (unist_state.json) with the new ones before
any weight is loaded; a non-finite loss term or gradient norm stops the run at that step, and
non-finite weights stop it before a save, so broken weights never reach a checkpoint or a release;
a fresh start moves the previous run's outputs aside instead of deleting them.
"""
from __future__ import annotations

import json
import logging
import math
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

import unist
from unist.model import UniST
from unist.objectives import Pretrainer

from . import distributed
from .checkpoint import CheckpointError, CheckpointManager, archive_previous_run, read_state, verify_checkpoint
from .config import PretrainConfig
from .data_mix import Mixture, build_sources, make_loader
from .ds_config import build_ds_config, load_ds_config
from .engine import build_engine, build_model
from .export import export_release, git_commit
from .metrics import FlopCounter, MetricsLogger, expert_load_by_type, peak_flops, plot_losses
from .resume import check_resume_settings, check_training_data

LOSS_KEYS = ("loss", "masked", "contrastive", "diffusion", "moe_aux", "moe_z")
SKIP_SCALARS = ("num_hidden_tokens", "num_visible_tokens")
NONFINITE_FIXES = ("lower optim.lr (now {lr:g}) or raise optim.warmup_steps, keep optim.grad_clip > 0 (now "
                   "{clip:g}), and check the data (`python -m unist.data info NAME` for a dataset with huge or "
                   "infinite values)")


class NonFiniteError(RuntimeError):
    """Training produced a non-finite loss, gradient norm or weight; the run stopped without saving."""


@dataclass
class RunState:
    """Where the run is: optimizer steps done, next micro-batch index of the data stream, tokens seen."""

    step: int = 0
    next_batch: int = 0
    tokens_seen: int = 0


def step_seed(seed: int, rank: int, batch_index: int) -> int:
    """Seed of the model's randomness (masks, noise) for micro-batch `batch_index` of `rank`."""
    return (seed * 1_000_003 + rank) * 1_000_000_007 + batch_index & 0x7FFF_FFFF_FFFF_FFFF


class StepAccumulator:
    """Sums one optimizer step's micro-batch statistics on the device; `reduce` all-reduces them once."""

    def __init__(self) -> None:
        self.scalars: dict[str, torch.Tensor] = {}
        self.layout_load: torch.Tensor | None = None
        self.tokens = self.samples = self.micro = self.values = 0
        self.flops = 0.0

    def add(self, out: dict[str, torch.Tensor], num_tokens: int, num_samples: int, flops: float,
            num_values: int = 0) -> None:
        for k, v in out.items():
            if isinstance(v, torch.Tensor) and v.ndim == 0 and k not in SKIP_SCALARS:
                self.scalars[k] = self.scalars.get(k, 0) + v.detach().double()
        load = out.get("moe_layout_load")
        if load is not None:
            load = load.detach().double()
            self.layout_load = load if self.layout_load is None else self.layout_load + load
        self.tokens += num_tokens
        self.values += num_values
        self.samples += num_samples
        self.flops += flops
        self.micro += 1

    def reduce(self, device: torch.device) -> dict[str, Any]:
        keys = sorted(self.scalars)
        parts = [torch.stack([self.scalars[k] for k in keys]).to(device) if keys else torch.zeros(0, device=device,
                                                                                                  dtype=torch.float64),
                 torch.tensor([self.tokens, self.samples, self.flops, self.micro, self.values], dtype=torch.float64,
                              device=device)]
        shape = None
        if self.layout_load is not None:
            shape = self.layout_load.shape
            parts.append(self.layout_load.flatten().to(device))
        flat = distributed.all_reduce_sum(torch.cat(parts)).cpu()
        n = len(keys)
        micro_total = float(flat[n + 3])
        out: dict[str, Any] = {k: float(flat[i]) / micro_total for i, k in enumerate(keys)}
        out.update(tokens=int(flat[n]), samples=int(flat[n + 1]), flops=float(flat[n + 2]), micro=int(micro_total),
                   values=int(flat[n + 4]))
        if shape is not None:
            out["layout_load"] = flat[n + 5:].view(shape)
        return out


def resumed_run_state(client_state: dict[str, Any]) -> RunState:
    """The run state stored in a checkpoint's DeepSpeed client_state."""
    if "run_state" not in client_state:
        raise CheckpointError("the checkpoint has no unist run_state in its client_state: it was not written by "
                              "unist.train; start a new run instead of resume=true")
    return RunState(**client_state["run_state"])


def nonfinite_terms(rec: dict[str, Any]) -> dict[str, float]:
    """The loss terms and gradient norm of a step record that are NaN or infinite."""
    keys = [k for k in LOSS_KEYS if k in rec] + ["grad_norm"]
    return {k: rec[k] for k in keys if isinstance(rec.get(k), float) and not math.isfinite(rec[k])}


def nonfinite_parameters(module: torch.nn.Module) -> list[str]:
    """Names of parameters with a NaN or infinite entry (under ZeRO-3 this rank's partition, `ds_tensor`)."""
    named = [(n, p.ds_tensor if hasattr(p, "ds_tensor") else p) for n, p in module.named_parameters()]
    named = [(n, t) for n, t in named if t.numel()]
    if not named:
        return []
    ok = torch.stack([torch.isfinite(t).all() for _, t in named]).cpu()  # one device sync
    return [n for (n, _), good in zip(named, ok.tolist()) if not good]


def _versions() -> dict[str, str]:
    import deepspeed  # the heavy dependency is imported where the engine is used

    return {"torch": torch.__version__, "deepspeed": deepspeed.__version__, "unist": unist.__version__}


class Trainer:
    """One pretraining run (use `run(cfg)`)."""

    def __init__(self, cfg: PretrainConfig):
        self.cfg = cfg
        self.t_init = time.perf_counter()
        self.rank, self.world, _, self.device = distributed.init()
        logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
        self.run_dir = Path(cfg.out_dir) / cfg.name
        self.ckpt = CheckpointManager(self.run_dir / "checkpoints", cfg.checkpoint.keep_last, self.rank, self.world)
        self.model_cfg = cfg.model_config()
        saved = None
        if cfg.resume:  # fail before loading data and model if there is nothing good to resume, or it differs
            tag_dir = self.ckpt.dir / self.ckpt.resolve(deep=False)
            saved = read_state(tag_dir)
            check_resume_settings(saved, verify_checkpoint(tag_dir, deep=False)["world_size"], cfg, self.model_cfg,
                                  self.world)
        on_gpu = self.device.type == "cuda"
        self.ds_config = load_ds_config(cfg.ds_config, cfg, self.world) if cfg.ds_config else \
            build_ds_config(cfg, self.world, on_gpu)
        sources = build_sources(cfg.data, cfg.train.seed)
        self.training_data = {"datasets": [s.record for s in sources], "heldout": list(cfg.data.heldout),
                              "window": cfg.data.window, "seed": cfg.train.seed}
        if saved is not None:
            check_training_data(saved.get("training_data", {}), self.training_data)
        self.mixture = Mixture(sources, cfg.data, self.model_cfg.patch, cfg.train.seed)
        zero_stage = int(self.ds_config.get("zero_optimization", {}).get("stage", 0))
        self.engine = build_engine(cfg, build_model(cfg, self.model_cfg, zero_stage), self.ds_config)
        self.state = RunState()
        if cfg.resume:
            tag, client_state = self.ckpt.load(self.engine)
            self.state = resumed_run_state(client_state)
            self._print(f"resumed from {self.ckpt.dir / tag} at step {self.state.step}")
        elif self.rank == 0:
            moved = archive_previous_run(self.run_dir)
            if moved is not None:
                self._print(f"starting a fresh run in {self.run_dir}: moved the previous run's checkpoints, metrics "
                            f"and release to {moved} (delete it when no longer needed; pass resume=true to "
                            "continue a run instead)")
        self.flops = FlopCounter(self.model_cfg)
        self.peak = peak_flops(self.device, cfg.logging.peak_tflops)
        self.logger = MetricsLogger(self.run_dir, self.rank == 0, cfg.logging.tensorboard, self.state.step)

    def _print(self, msg: str) -> None:
        if self.rank == 0:
            tqdm.write(msg)

    # ------------------------------------------------------------------ checkpoint state
    def _save(self) -> Path:
        """Checkpoint the engine (collective), unless a weight is non-finite: then NonFiniteError, on every rank."""
        bad = nonfinite_parameters(self.engine.module)
        n_bad = distributed.all_reduce_sum(torch.tensor([float(len(bad))], dtype=torch.float64, device=self.device))
        if float(n_bad[0]) > 0:
            raise NonFiniteError(self._nonfinite_message(
                f"{int(n_bad[0])} parameter tensors hold NaN or inf values after the update of step "
                f"{self.state.step} (this rank: {', '.join(bad[:3]) or 'none'}{', ...' if len(bad) > 3 else ''}), "
                "although the step's losses were finite"))
        state = {"model_name": self.cfg.model.name, "model_config": self.model_cfg.to_dict(),
                 "step": self.state.step, "tokens_seen": self.state.tokens_seen,
                 "training_data": self.training_data, "run_config": self.cfg.to_dict(), "versions": _versions()}
        if self.rank == 0:
            state["git"] = git_commit()
        client = {"run_state": asdict(self.state), "model_config": self.model_cfg.to_dict(),
                  "training_data": self.training_data, "world_size": self.world, "config": self.cfg.to_dict()}
        return self.ckpt.save(self.engine, self.state.step, client, state)

    # ------------------------------------------------------------------ loop
    def _record(self, r: dict[str, Any], dt: float, elapsed: float) -> dict[str, Any]:
        flops_per_s = r["flops"] / dt
        rec: dict[str, Any] = {"step": self.state.step, "time_s": round(elapsed, 3), "lr": self.engine.get_lr()[0]}
        rec.update({k: r[k] for k in LOSS_KEYS if k in r})
        rec.update({k: v for k, v in r.items() if k not in rec and isinstance(v, float) and k != "flops"})
        norm = self.engine.get_global_grad_norm()
        rec["grad_norm"] = float(norm) if norm is not None else None
        rec.update(tokens=r["tokens"], samples=r["samples"], tokens_seen=self.state.tokens_seen,
                   tokens_per_s=r["tokens"] / dt, values=r["values"], values_per_s=r["values"] / dt,
                   steps_per_s=1.0 / dt,
                   pack_efficiency=r["tokens"] / (r["micro"] * self.cfg.data.tokens_per_batch),
                   tflops_per_device=flops_per_s / self.world / 1e12,
                   mfu=flops_per_s / (self.peak * self.world) if self.peak else None)
        if "layout_load" in r:
            rec.update(expert_load_by_type(r["layout_load"]))
        return rec

    def train(self) -> dict[str, Any]:
        cfg, st = self.cfg, self.state
        loader = make_loader(self.mixture, self.rank, st.next_batch, cfg.data.num_workers)
        batches = iter(loader)
        bar = tqdm(total=cfg.train.steps, initial=st.step, desc=cfg.name, dynamic_ncols=True,
                   disable=self.rank != 0 or not cfg.logging.progress)
        t0 = self._t_last = time.perf_counter()
        self._train_s, self._saved_at, first, rec = 0.0, -1, None, None
        start_step, start_tokens = st.step, st.tokens_seen
        end = min(cfg.train.stop_at or cfg.train.steps, cfg.train.steps)
        try:
            while st.step < end:
                rec = self._step(batches, bar, end, t0)
                first = first or rec
        finally:
            bar.close()
            del batches, loader  # stop the DataLoader workers now, also on errors and Ctrl-C
        if self._saved_at != st.step and st.step > start_step:
            self._save()
        done = {"steps": st.step - start_step, "tokens": st.tokens_seen - start_tokens, "train_s": self._train_s}
        return self._finish(first, rec, done, time.perf_counter() - t0)

    def _tail_median(self, n: int) -> dict[str, float]:
        """Median of each loss over the last `n` logged steps (one step is noisy: every batch is a new mix)."""
        tail = self.logger.records[-n:]
        return {k: statistics.median(r[k] for r in tail) for k in LOSS_KEYS if tail and all(k in r for r in tail)}

    def _step(self, batches, bar, end: int, t0: float) -> dict[str, Any]:
        """One optimizer step (grad_accum micro-batches): its record, logging and checkpointing."""
        cfg, st = self.cfg, self.state
        acc = StepAccumulator()
        drawn: list[str] = []  # sources of this step's windows on this rank, for the non-finite message
        for _ in range(cfg.train.grad_accum):
            batch, meta = next(batches)
            drawn += meta["sources"]
            if meta["index"] != st.next_batch:
                raise RuntimeError(f"data stream out of order: got micro-batch {meta['index']}, expected "
                                   f"{st.next_batch}")
            torch.manual_seed(step_seed(cfg.train.seed, self.rank, self.mixture.data_index(st.next_batch)))
            out = self.engine(batch.to(self.device))
            self.engine.backward(out["loss"])
            self.engine.step()
            acc.add(out, batch.num_tokens, batch.num_samples, self.flops(batch), meta["values"])
            st.next_batch += 1
        st.step += 1
        r = acc.reduce(self.device)
        st.tokens_seen += r["tokens"]
        now = time.perf_counter()
        dt, self._t_last = now - self._t_last, now
        self._train_s += dt
        rec = self._record(r, dt, now - t0)
        bad = nonfinite_terms(rec)
        if bad:
            finite = ", ".join(f"{k}={rec[k]:.4g}" for k in LOSS_KEYS if k in rec and k not in bad)
            raise NonFiniteError(self._nonfinite_message(
                f"non-finite {', '.join(f'{k}={v}' for k, v in bad.items())} at step {st.step} "
                f"({'finite: ' + finite + '; ' if finite else ''}this rank's windows came from {sorted(set(drawn))})"))
        if st.step % cfg.logging.every == 0 or st.step == end:
            self.logger.log(rec)
        bar.update(1)
        bar.set_postfix(loss=f"{rec['loss']:.4f}", tok_s=f"{rec['tokens_per_s']:.0f}", val_s=f"{rec['values_per_s']:.0f}")
        if st.step % cfg.logging.print_every == 0:
            self._print(self._line(rec))
        if st.step % cfg.checkpoint.every == 0 or st.step == end:
            self._save()
            self._saved_at = st.step
            self._t_last = time.perf_counter()  # checkpoint time is not training throughput
        return rec

    def _nonfinite_message(self, what: str) -> str:
        """`what` went wrong + what was (not) saved + the likely fixes."""
        latest = self.ckpt.latest_tag()
        kept = f"the last good checkpoint {self.ckpt.dir / latest} is kept" if latest else \
            "there is no earlier checkpoint"
        fixes = NONFINITE_FIXES.format(lr=self.cfg.optim.lr, clip=self.cfg.optim.grad_clip)
        return (f"training stopped: {what}. Nothing was saved from these weights (no checkpoint, no release); "
                f"{kept}. Likely fixes, in a new run: {fixes}")

    # ------------------------------------------------------------------ export check
    def _autocast(self):
        bf16 = self.ds_config.get("torch_autocast", {}).get("enabled", False)
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16)

    def _losses(self, model, batch) -> dict[str, float]:
        """Losses of `model` on `batch` with the masks/noise of a fixed seed (eval mode, no grad)."""
        was_training = model.training
        model.eval()
        torch.manual_seed(step_seed(self.cfg.train.seed, self.rank, -1))
        with torch.no_grad(), self._autocast():
            out = model(batch)
        model.train(was_training)
        return {k: float(out[k]) for k in LOSS_KEYS if k in out}

    def _check_release(self, release: str, batch, reference: dict[str, float]) -> dict[str, Any]:
        """Load the release without DeepSpeed and compare its losses with the engine's on `batch`."""
        model = Pretrainer(UniST.from_pretrained(release, device=self.device))
        got = self._losses(model, batch)
        diff = max(abs(got[k] - reference[k]) / max(1.0, abs(reference[k])) for k in reference)
        tol = 2e-2 if self.ds_config.get("torch_autocast", {}).get("enabled") else 1e-5
        if not diff <= tol:
            raise RuntimeError(f"the exported release does not reproduce the engine: relative loss difference "
                               f"{diff:.3g} > {tol} (engine {reference}, release {got})")
        return {"max_rel_diff": diff, "tolerance": tol, "engine": reference, "release": got}

    @staticmethod
    def _line(rec: dict[str, Any]) -> str:
        losses = " ".join(f"{k} {rec[k]:.4f}" for k in LOSS_KEYS if k in rec)
        mfu = "n/a" if rec["mfu"] is None else f"{100 * rec['mfu']:.1f}%"
        return f"step {rec['step']:>6} | {losses} | {rec['tokens_per_s']:.0f} tok/s | {rec['values_per_s']:.0f} values/s | MFU {mfu}"

    def _finish(self, first: dict | None, last: dict | None, done: dict[str, float], wall: float) -> dict[str, Any]:
        t = done["train_s"]
        summary: dict[str, Any] = {"name": self.cfg.name, "steps": self.state.step, "world_size": self.world,
                                   "device": str(self.device), "train_s": round(t, 3),
                                   "tokens_seen": self.state.tokens_seen,
                                   "tokens_per_s": done["tokens"] / t if t else None,
                                   "steps_per_s": done["steps"] / t if t else None}
        export = self.cfg.checkpoint.export and self.state.step >= self.cfg.train.steps
        check_batch = self.mixture.batch(self.rank, 0)[0].to(self.device) if export else None
        reference = self._losses(self.engine, check_batch) if export else None  # collective under ZeRO-3
        if self.rank == 0:
            release = None
            if export:
                release = str(export_release(self.ckpt.dir, self.run_dir / "release"))
                summary["export_check"] = self._check_release(release, check_batch, reference)
            png = plot_losses(self.logger.records, self.run_dir / "loss.png", LOSS_KEYS, title=self.cfg.name) \
                if self.cfg.logging.plot else None
            self.logger.close()
            summary.update(
                wall_s=round(wall, 3), first={k: first[k] for k in LOSS_KEYS if first and k in first},
                final={k: last[k] for k in LOSS_KEYS if last and k in last},
                final_median_last10=self._tail_median(10),
                checkpoint=str(self.ckpt.dir / (self.ckpt.latest_tag() or "")), release=release,
                plot=str(png) if png else None)
            summary["total_s"] = round(time.perf_counter() - self.t_init, 3)
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
            self._print(f"done: {summary['steps']} steps in {summary['total_s']:.1f} s | loss {summary['first'].get('loss', 0):.4f} "
                        f"-> {summary['final'].get('loss', 0):.4f} | release {release}")
        return summary


def run(cfg: PretrainConfig) -> dict[str, Any]:
    """Train with `cfg` (inside an initialised or launchable process group); returns the run summary."""
    return Trainer(cfg).train()
