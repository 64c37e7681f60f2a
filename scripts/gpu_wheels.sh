#!/usr/bin/env bash
# gpu_wheels.sh: build, on this machine, what scripts/gpu_check.sh needs on a GPU machine that has no
# network: a wheelhouse of the Python packages its torch env may lack (for CPython 3.12, manylinux
# x86_64), and optionally a copy of the real data. Both go to ignored folders that travel with the tree.
#
#   bash scripts/gpu_wheels.sh                         # .gpu_wheels/: einops tqdm pytest numpy scipy (~51 MB)
#   bash scripts/gpu_wheels.sh einops tqdm pytest      # only these (numpy + scipy are 51 MB of the default)
#   GPU_DATA=1 bash scripts/gpu_wheels.sh einops       # also copy $UNIST_DATA_DIR to .gpu_data/ (~18 MB)
#
# On the GPU machine gpu_check.sh installs, from .gpu_wheels only (pip --no-index --find-links, into a
# scratch folder on PYTHONPATH, leaving that env untouched), the modules its python cannot import.
# Knobs: PY (python with pip, default .venv/bin/python or python3), WHEELS_DIR, GPU_PY_VERSION (3.12).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
WHEELS_DIR="${WHEELS_DIR:-.gpu_wheels}"
PYV="${GPU_PY_VERSION:-3.12}"
ABI="cp${PYV/./}"
pkgs=("$@")
[ ${#pkgs[@]} -eq 0 ] && pkgs=(einops tqdm pytest numpy scipy)
mkdir -p "$WHEELS_DIR"
echo "gpu_wheels: downloading ${pkgs[*]} for CPython $PYV manylinux x86_64 into $WHEELS_DIR"
"$PY" -m pip download -q --disable-pip-version-check --dest "$WHEELS_DIR" --only-binary=:all: \
  --python-version "$PYV" --implementation cp --abi "$ABI" \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform any "${pkgs[@]}"
ls -1 "$WHEELS_DIR"
size_mb=$(du -sm "$WHEELS_DIR" | cut -f1)
echo "gpu_wheels: $WHEELS_DIR holds ${size_mb} MB"
if [ "${GPU_DATA:-0}" = "1" ]; then
  src="${UNIST_DATA_DIR:-$(cd .. && pwd)/shared/data}"
  [ -d "$src" ] || { echo "gpu_wheels: no data folder at $src (set UNIST_DATA_DIR)"; exit 2; }
  rm -rf .gpu_data && cp -r "$src" .gpu_data
  data_mb=$(du -sm .gpu_data | cut -f1)
  echo "gpu_wheels: copied $src to .gpu_data (${data_mb} MB)"
  size_mb=$(( size_mb + data_mb ))
fi
if [ "$size_mb" -gt 60 ]; then
  echo "gpu_wheels: warning: ${size_mb} MB in all; a device run carries at most 64 MiB: drop numpy/scipy if that env has them"
fi
