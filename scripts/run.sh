#!/usr/bin/env bash
# One entry point for the README quick start: sets up .venv (once) and runs a job.
#   bash scripts/run.sh pretrain [key=value ...]   # set up, then pretrain on the embedded default
#   bash scripts/run.sh test [pytest args]         # set up (with dev extras), then run the tests
# Without an NVIDIA GPU the install uses constraints-cpu.txt (torch 2.13.0 CPU build), because a
# torch range would otherwise pull several GB of CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
job="${1:-}"; shift || true
PY="${UNIST_PYTHON:-python3}"
VENV="${UNIST_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.unist-installed-$(cat setup.py constraints-cpu.txt | cksum | cut -d' ' -f1)"
if [ ! -f "$stamp" ]; then
  cons=()
  if ! command -v nvidia-smi >/dev/null 2>&1; then cons=(-c constraints-cpu.txt); fi
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${cons[@]}" torch
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${cons[@]}" -e ".[dev]"
  touch "$stamp"
fi
export UNIST_DATA_DIR="${UNIST_DATA_DIR:-$(cd .. && pwd)/shared/data}"
case "$job" in
  test)     exec "$VENV/bin/python" -m pytest -q "$@" ;;
  pretrain) exec "$VENV/bin/python" train/pretrain.py "$@" ;;
  *) echo "usage: bash scripts/run.sh {pretrain|test} [args...]" >&2; exit 2 ;;
esac
