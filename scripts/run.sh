#!/usr/bin/env bash
# One entry point for the README quick start: sets up .venv (once) and runs a job.
#   bash scripts/run.sh pretrain [key=value ...]   # set up, then pretrain on the embedded default
#   bash scripts/run.sh test [pytest args]         # set up (with dev + eval extras), then run the tests
# Without an NVIDIA GPU the install uses constraints-cpu.txt (torch 2.13.0 CPU build), because a
# torch range would otherwise pull several GB of CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
job="${1:-}"; shift || true
PY="${UNIST_PYTHON:-python3}"
VENV="${UNIST_VENV:-.venv}"
# (2.4 GB installed, measured with `du -sh .venv`; the set-up took 66 s from a local package cache on
# the 2-core dev machine, 2026-12-03, and takes longer when the wheels are downloaded)
if [ ! -x "$VENV/bin/python" ]; then
  echo "run.sh: creating $VENV (first run only)" >&2
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.unist-installed-$(cat setup.py constraints-cpu.txt | cksum | cut -d' ' -f1)"
if [ ! -f "$stamp" ]; then
  cons=()
  if ! command -v nvidia-smi >/dev/null 2>&1; then cons=(-c constraints-cpu.txt); fi
  echo "run.sh: setting up $VENV (first run, or setup.py changed): installing torch, DeepSpeed, Triton and" \
       "the other dependencies, about 2.4 GB: ~1 min from a local package cache, longer when the wheels are" \
       "downloaded (pip prints only errors)." >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${cons[@]}" torch
  echo "run.sh: torch installed; installing unist and the rest..." >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${cons[@]}" -e ".[dev,eval]"
  touch "$stamp"
  echo "run.sh: $VENV is ready" >&2
fi
export UNIST_DATA_DIR="${UNIST_DATA_DIR:-$(cd .. && pwd)/shared/data}"
# No NVIDIA GPU: tell DeepSpeed so (its launcher and every rank otherwise warn that they "were unable
# to detect" an accelerator, although CPU is what we want here).
if ! command -v nvidia-smi >/dev/null 2>&1; then export DS_ACCELERATOR="${DS_ACCELERATOR:-cpu}"; fi
case "$job" in
  test)     exec "$VENV/bin/python" -m pytest -q "$@" ;;
  pretrain) exec "$VENV/bin/python" train/pretrain.py "$@" ;;
  *) echo "usage: bash scripts/run.sh {pretrain|test} [args...]" >&2; exit 2 ;;
esac
