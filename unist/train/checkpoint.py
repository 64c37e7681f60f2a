"""Crash-safe DeepSpeed checkpoints: write to a temp tag, verify, rename, then atomically move `latest`.

Layout of `ckpt_dir` (a folder every rank can reach, as DeepSpeed assumes):
  step_00000050/            one finished checkpoint (DeepSpeed files + unist_state.json + MANIFEST.json)
  step_00000100/
  latest                    the tag of the newest good checkpoint (DeepSpeed's own format)
  zero_to_fp32.py           DeepSpeed's consolidation script
A save goes: every rank writes `step_N.tmp/` -> barrier -> rank 0 checks that every rank's files are
there, records their sizes in MANIFEST.json, renames the folder to `step_N`, writes `latest.tmp` and
`os.replace`s it over `latest`, and only then deletes checkpoints beyond `keep_last`. A crash at any
moment therefore leaves `latest` naming a complete checkpoint. `load` checks the manifest (sizes) and
the zip structure and CRC of every file before DeepSpeed unpickles anything, so a truncated or
tampered checkpoint is reported as such instead of as an obscure unpickling error.
"""
from __future__ import annotations

import json
import os
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

import torch.distributed as dist

MANIFEST = "MANIFEST.json"
STATE = "unist_state.json"  # model config, data list, normalisation, step: read by export without unpickling
TAG_PREFIX = "step_"
# What a run writes into out_dir/name/ (see PretrainConfig); a fresh start moves these aside.
RUN_OUTPUTS = ("checkpoints", "metrics.jsonl", "metrics.csv", "loss.png", "summary.json", "release", "tensorboard")
PREVIOUS = "previous"


class CheckpointError(RuntimeError):
    """A missing, incomplete or corrupt checkpoint: the message names the file and what to do."""


def tag_for(step: int) -> str:
    return f"{TAG_PREFIX}{step:08d}"


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def expected_files(names: list[str], world_size: int, zero_stage: int) -> list[str]:
    """Problems with the file list of a tag folder written by `world_size` ranks at `zero_stage`."""
    problems = []
    if not any(n.endswith("model_states.pt") for n in names):
        problems.append("no *model_states.pt file")
    if zero_stage >= 1:
        optim = [n for n in names if n.endswith("optim_states.pt")]
        if len(optim) != world_size:
            problems.append(f"{len(optim)} *optim_states.pt files for {world_size} ranks")
    return problems


def verify_checkpoint(tag_dir: Path, deep: bool = True) -> dict[str, Any]:
    """Check a finished checkpoint against its manifest; return the manifest or raise CheckpointError.

    deep: also read every file's zip directory and CRCs (catches truncation and flipped bytes)."""
    tag_dir = Path(tag_dir)
    man_path = tag_dir / MANIFEST
    if not man_path.is_file():
        raise CheckpointError(f"checkpoint {tag_dir} has no {MANIFEST}: it was not finished (crash during save?) "
                              "or not written by unist; resume from an earlier tag")
    try:
        manifest = json.loads(man_path.read_text())
        files = manifest["files"]
    except (json.JSONDecodeError, KeyError) as e:
        raise CheckpointError(f"{man_path} is corrupt ({e}); resume from an earlier tag") from None
    for name, size in files.items():
        p = tag_dir / name
        if not p.is_file():
            raise CheckpointError(f"checkpoint {tag_dir} is incomplete: {name} is missing")
        if p.stat().st_size != size:
            raise CheckpointError(f"checkpoint file {p} has {p.stat().st_size} bytes, the manifest says {size}: "
                                  "it is truncated or was modified; resume from an earlier tag")
        if deep and name.endswith(".pt"):
            try:
                with zipfile.ZipFile(p) as z:
                    bad = z.testzip()
            except (zipfile.BadZipFile, OSError) as e:
                raise CheckpointError(f"checkpoint file {p} is corrupt ({e}); resume from an earlier tag") from None
            if bad is not None:
                raise CheckpointError(f"checkpoint file {p} is corrupt (CRC mismatch in {bad}); resume from an "
                                      "earlier tag")
    return manifest


def read_state(tag_dir: Path) -> dict[str, Any]:
    """The checkpoint's `unist_state.json` (model config, run config, data list), read without
    unpickling anything, so resume can compare settings before DeepSpeed loads a weight."""
    path = Path(tag_dir) / STATE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {tag_dir} has no {STATE}: it was not written by unist.train; start a "
                              "new run instead of resume=true") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is corrupt ({e}); resume from an earlier tag") from None


def archive_previous_run(run_dir: Path, stamp: str | None = None) -> Path | None:
    """Move a previous run's outputs (RUN_OUTPUTS) out of `run_dir` into run_dir/previous/<stamp>/
    (default stamp: local time YYYYmmdd-HHMMSS, made unique), so a fresh start never deletes a
    finished run's checkpoints or release. Returns that folder, or None when there was nothing."""
    run_dir = Path(run_dir)
    found = [name for name in RUN_OUTPUTS if (run_dir / name).exists()]
    if not found:
        return None
    stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
    dest, n = run_dir / PREVIOUS / stamp, 1
    while dest.exists():
        dest, n = run_dir / PREVIOUS / f"{stamp}-{n}", n + 1
    dest.mkdir(parents=True)
    for name in found:
        os.replace(run_dir / name, dest / name)
    _fsync_dir(run_dir)
    return dest


class CheckpointManager:
    """Periodic, crash-safe DeepSpeed checkpoints under `ckpt_dir`, keeping the last `keep_last`."""

    def __init__(self, ckpt_dir: str | Path, keep_last: int, rank: int, world_size: int):
        self.dir, self.keep_last = Path(ckpt_dir), keep_last
        self.rank, self.world_size = rank, world_size

    # ------------------------------------------------------------------ queries
    def latest_tag(self) -> str | None:
        p = self.dir / "latest"
        return p.read_text().strip() if p.is_file() else None

    def tags(self) -> list[str]:
        """Finished checkpoints (named step_N, no suffix), oldest first."""
        if not self.dir.is_dir():
            return []
        return sorted(p.name for p in self.dir.iterdir()
                      if p.is_dir() and p.name.startswith(TAG_PREFIX) and p.name[len(TAG_PREFIX):].isdigit())

    # ------------------------------------------------------------------ save
    def save(self, engine, step: int, client_state: dict[str, Any], state: dict[str, Any]) -> Path:
        """Collective: every rank must call it. `client_state` goes into DeepSpeed's files (restored by
        `load`); `state` (JSON) is written next to them for `unist.release.export_release`.
        Returns the finished tag folder."""
        tag = tag_for(step)
        tmp = f"{tag}.tmp"
        if self.rank == 0:
            self.dir.mkdir(parents=True, exist_ok=True)
            for p in self.dir.glob(f"{TAG_PREFIX}*.tmp"):  # leftovers of a crashed save
                shutil.rmtree(p, ignore_errors=True)
        _barrier()
        engine.save_checkpoint(str(self.dir), tag=tmp, client_state=client_state, save_latest=False)
        _barrier()
        if self.rank == 0:
            _write_atomic(self.dir / tmp / STATE, json.dumps(state, indent=1))
            self._finish(tmp, tag, step, engine.zero_optimization_stage())
        _barrier()
        return self.dir / tag

    def _finish(self, tmp: str, tag: str, step: int, zero_stage: int) -> None:
        src, dst = self.dir / tmp, self.dir / tag
        names = sorted(p.name for p in src.iterdir() if p.is_file())
        problems = expected_files(names, self.world_size, zero_stage)
        if problems:
            raise CheckpointError(f"checkpoint {src} is incomplete after saving: {'; '.join(problems)}. Is "
                                  f"{self.dir} on a filesystem shared by all ranks?")
        manifest = {"tag": tag, "step": step, "world_size": self.world_size, "zero_stage": zero_stage,
                    "files": {n: (src / n).stat().st_size for n in names}}
        _write_atomic(src / MANIFEST, json.dumps(manifest, indent=1))
        verify_checkpoint(src, deep=False)
        if dst.exists():  # the same step saved again (e.g. resumed from an earlier tag): replace it
            if self.latest_tag() == tag:  # never leave `latest` naming a folder that is being replaced
                prev = [t for t in self.tags() if t < tag]
                _write_atomic(self.dir / "latest", prev[-1] if prev else "")
            old = self.dir / f"{tag}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(dst, old)
            shutil.rmtree(old)
        os.replace(src, dst)
        _fsync_dir(self.dir)
        _write_atomic(self.dir / "latest", tag)
        _fsync_dir(self.dir)
        for old in self.tags()[:-self.keep_last]:
            if old != tag:
                shutil.rmtree(self.dir / old)

    # ------------------------------------------------------------------ load
    def resolve(self, tag: str | None = None, deep: bool = True) -> str:
        """The tag to resume from (default: `latest`), verified; CheckpointError if there is none.
        deep=False checks the manifest and file sizes only (cheap: used before anything is loaded)."""
        tag = tag or self.latest_tag()
        if not tag:
            raise CheckpointError(f"no checkpoint to resume from in {self.dir} (no 'latest' file): start without "
                                  "resume=true, or point out_dir/name at the run to continue")
        if not (self.dir / tag).is_dir():
            raise CheckpointError(f"'latest' in {self.dir} names {tag!r}, which does not exist")
        verify_checkpoint(self.dir / tag, deep=deep)
        return tag

    def load(self, engine, tag: str | None = None) -> tuple[str, dict[str, Any]]:
        """Collective: restore model, optimizer and scheduler; return (tag, client_state).

        Rank 0 verifies the files (deep) and shares the verdict, so every rank raises the same error
        instead of some ranks waiting forever in DeepSpeed's collective load."""
        verdict: list[Any] = [None, None]
        if self.rank == 0:
            try:
                verdict = [self.resolve(tag), None]
            except CheckpointError as e:
                verdict = [None, str(e)]
        if dist.is_available() and dist.is_initialized():
            dist.broadcast_object_list(verdict, src=0)
        if verdict[1] is not None:
            raise CheckpointError(verdict[1])
        tag = verdict[0]
        manifest = verify_checkpoint(self.dir / tag, deep=False)
        if manifest["world_size"] != self.world_size and engine.zero_optimization_stage() >= 1:
            raise CheckpointError(f"checkpoint {tag} was written by {manifest['world_size']} ranks, this run has "
                                  f"{self.world_size}: ZeRO checkpoints resume on the same number of ranks (export "
                                  "a release and start a new run to change it)")
        path, client_state = engine.load_checkpoint(str(self.dir), tag=tag, load_optimizer_states=True,
                                                    load_lr_scheduler_states=True)
        if path is None:
            raise CheckpointError(f"DeepSpeed could not load checkpoint {self.dir / tag}")
        return tag, client_state or {}
