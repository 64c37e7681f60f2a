#!/usr/bin/env bash
# gpu_check.sh: one bounded GPU run (<= ~8 min on one H200) that gives the project its first table.
#
#   bash scripts/gpu_check.sh                          # from anywhere; results under $OUT or gpu_check_out/<stamp>
#   GPU_CHECK_ALLOW_CPU=1 bash scripts/gpu_check.sh    # smoke-test the whole script on a CPU machine
#
# Stages (each under its own timeout: tests 100 s, attention 140 s, each step run 50 s; a failed stage is
# recorded and the next one runs):
#   env        nvidia-smi, python / torch / CUDA / triton versions, which optional packages import;
#              installs missing python deps from .gpu_wheels/ (scripts/gpu_wheels.sh builds it) into a
#              scratch folder on PYTHONPATH; makes `import unist.kernels` work without installing
#   tests      the gpu-marked kernel tests: bf16 at every head dim, fp16/fp32 at head dims 32 and 64,
#              and the torch.compile test (pytest -m gpu)
#   attention  benchmarks/bench_attention.py: Triton vs pinned SDPA (flash, cuDNN, efficient), padded
#              SDPA, FlexAttention (document mask), torch/flash-attn varlen, xformers where importable,
#              on the real stream packs (benchmarks/results/attention_stream_packs.json) and synthetic
#              shapes, head dims 32/64/128, bf16; its own --budget-s stops it in time
#   step_*     benchmarks/bench_step.py: tokens/s, values/s and MFU of unist_small and unist_base
#              training steps (AdamW, bf16 autocast, no DeepSpeed), attention backend triton vs sdpa
#   pretrain   only if deepspeed imports and >= 100 s are left: 20 steps of train/pretrain.py --config small
# Results: env.txt, pytest.txt, attention_<gpu>.csv, step_<gpu>.csv, stages.csv, summary.json, gpu_check.log.
# Knobs: BUDGET_S (total seconds, default 470), OUT, PY (a python with CUDA torch), UNIST_DATA_DIR
#   (default: ../shared/data, else .gpu_data/ if present, else the synthetic corpus only),
#   GPU_CHECK_ALLOW_CPU=1 (CPU smoke test: small shapes, unist_tiny, fp32), UNIST_COMMIT (the commit to
#   key results by, where the tree is a copy without .git). Downloads nothing.
set -u
REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"
BUDGET_S="${BUDGET_S:-470}"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="${OUT:-$REPO/gpu_check_out/$STAMP}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
T0=$(date +%s)
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
CPU_SMOKE="${GPU_CHECK_ALLOW_CPU:-0}"
export TRITON_CACHE_DIR="${TRITON_CACHE_DIR:-$WORK/triton_cache}"
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-$WORK/inductor_cache}"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 TRITON_DEFAULT_FP_FUSION=1
unset TRITON_INTERPRET
if [ -z "${UNIST_DATA_DIR:-}" ]; then
  if [ -d "$REPO/../shared/data" ]; then UNIST_DATA_DIR="$(cd "$REPO/../shared/data" && pwd)"
  elif [ -d "$REPO/.gpu_data" ]; then UNIST_DATA_DIR="$REPO/.gpu_data"; fi
fi
[ -n "${UNIST_DATA_DIR:-}" ] && export UNIST_DATA_DIR
# the benchmarks key their CSV rows by commit; a copied tree without .git names it through UNIST_COMMIT
UNIST_COMMIT="${UNIST_COMMIT:-$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)}"
export UNIST_COMMIT
echo "stage,rc,seconds,limit_s" > "$OUT/stages.csv"

left() { echo $(( BUDGET_S - ($(date +%s) - T0) )); }
stage() {  # stage NAME LIMIT_S CMD... : run CMD under min(LIMIT_S, budget left); record rc and time
  local name=$1 limit=$2; shift 2
  local l; l=$(left)
  if [ "$l" -lt 20 ]; then
    echo "=== SKIP $name: budget spent"; echo "$name,skipped,0,0" >> "$OUT/stages.csv"; return 0
  fi
  [ "$limit" -gt "$l" ] && limit=$l
  echo "=== $name (limit ${limit}s, ${l}s of budget left)"
  local s; s=$(date +%s)
  timeout --kill-after=10 "$limit" "$@"; local rc=$?
  echo "=== $name rc=$rc ($(( $(date +%s) - s ))s)"
  echo "$name,$rc,$(( $(date +%s) - s )),$limit" >> "$OUT/stages.csv"
}

# ------------------------------------------------------------------ env: python, deps, import
if [ -z "${PY:-}" ]; then
  for cand in python3 python "$REPO/.venv/bin/python"; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c "import torch" 2>/dev/null; then PY=$cand; break; fi
  done
fi
[ -n "${PY:-}" ] || { echo "gpu_check: no python with torch found; set PY=..."; exit 3; }
if [ "$CPU_SMOKE" != "1" ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: $PY sees no CUDA device; set PY to a CUDA build of torch (GPU_CHECK_ALLOW_CPU=1: CPU smoke test)"
  exit 3
fi
missing=$("$PY" - <<'EOF'
import importlib.util
print(" ".join(m for m in ("numpy", "scipy", "einops", "tqdm", "pytest") if importlib.util.find_spec(m) is None))
EOF
)
if [ -n "$missing" ]; then
  if [ -d "$REPO/.gpu_wheels" ]; then
    echo "gpu_check: installing from .gpu_wheels: $missing"
    "$PY" -m pip install -q --disable-pip-version-check --no-index --find-links "$REPO/.gpu_wheels" \
      --target "$WORK/site" $missing || echo "gpu_check: pip install from .gpu_wheels failed"
    export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
  else
    echo "gpu_check: missing python modules: $missing, and no .gpu_wheels/ (build it: bash scripts/gpu_wheels.sh)"
  fi
fi
if ! "$PY" -c "import unist.kernels" 2>/dev/null; then  # not installed: a shim package unist/ = unist/* + kernels/
  mkdir -p "$WORK/shim/unist"
  for f in "$REPO"/unist/*; do ln -s "$f" "$WORK/shim/unist/$(basename "$f")"; done
  ln -s "$REPO/kernels" "$WORK/shim/unist/kernels"
  export PYTHONPATH="$WORK/shim${PYTHONPATH:+:$PYTHONPATH}"
  export PYTHONSAFEPATH=1  # else the repo root (the cwd) comes first on sys.path and its unist/ lacks kernels
fi
"$PY" -c "import unist.kernels, unist.model, unist.train.data_mix" || { echo "gpu_check: cannot import unist (see above)"; exit 3; }
{
  echo "date_utc $STAMP"
  echo "repo $REPO commit $UNIST_COMMIT"
  echo "python $PY ($("$PY" -c 'import sys; print(sys.version.split()[0])'))"
  echo "data ${UNIST_DATA_DIR:-none (synthetic corpus only)}"
  echo "budget_s $BUDGET_S"
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv 2>&1 | head -3
  else
    echo "nvidia-smi: not found"
  fi
  "$PY" - <<'EOF'
import importlib, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("device", torch.cuda.get_device_name(), "cc", torch.cuda.get_device_capability(), "sms",
          p.multi_processor_count, "memory_gib", round(p.total_memory / 2**30, 1))
for m in ("triton", "numpy", "scipy", "einops", "tqdm", "pytest", "deepspeed", "flash_attn", "xformers", "decord", "av"):
    try:
        print(m, getattr(importlib.import_module(m), "__version__", "?"))
    except Exception as e:  # noqa: BLE001  (report, never stop: the stages say what they need)
        print(m, "MISSING", type(e).__name__)
EOF
} | tee "$OUT/env.txt"
echo "env,0,$(( $(date +%s) - T0 )),0" >> "$OUT/stages.csv"

# ------------------------------------------------------------------ stages
if [ "$CPU_SMOKE" = "1" ]; then  # CPU: same plumbing, small work
  TEST_K="compiled"; STEP_RUNS="unist_tiny:sdpa"; STEP_ARGS=(--precision fp32 --steps 2 --tokens 1024)
  ATTN_ARGS=(--smoke)
else
  TEST_K="bf16 or d32 or d64 or compiled"; STEP_RUNS="unist_small:triton unist_small:sdpa unist_base:triton unist_base:sdpa"
  STEP_ARGS=(--precision bf16 --steps 10); ATTN_ARGS=()
fi
run_tests() {
  "$PY" -m pytest -q -p no:cacheprovider -o addopts="" tests/kernels/test_kernels.py -m gpu -k "$TEST_K" --maxfail=10 -rfEs \
    > "$OUT/pytest.txt" 2>&1
  local rc=$?
  tail -25 "$OUT/pytest.txt"
  return $rc
}
export -f run_tests; export PY OUT TEST_K
stage tests 100 bash -c run_tests
ATTN_LIMIT=140
[ "$(left)" -lt "$ATTN_LIMIT" ] && ATTN_LIMIT=$(left)
# the benchmark's own budget ends its timing loop in time to write every row (the rest as skipped)
stage attention $ATTN_LIMIT "$PY" benchmarks/bench_attention.py --budget-s $(( ATTN_LIMIT > 40 ? ATTN_LIMIT - 25 : 15 )) \
  --out-dir "$OUT" "${ATTN_ARGS[@]}"
for run in $STEP_RUNS; do
  model=${run%%:*}; backend=${run##*:}
  stage "step_${model}_${backend}" 50 "$PY" benchmarks/bench_step.py --model "$model" --backend "$backend" \
    "${STEP_ARGS[@]}" --out-dir "$OUT"
done
if [ "$CPU_SMOKE" != "1" ] && "$PY" -c "import deepspeed" 2>/dev/null && [ "$(left)" -ge 100 ]; then
  stage pretrain $(( $(left) - 15 )) "$PY" train/pretrain.py --config small "out_dir=$WORK/runs" name=gpu_check \
    train.steps=20 checkpoint.every=1000 logging.every=1 logging.print_every=5 logging.tensorboard=false \
    logging.plot=false
  [ -f "$WORK/runs/gpu_check/metrics.csv" ] && cp "$WORK/runs/gpu_check/metrics.csv" "$OUT/pretrain_small_metrics.csv"
else
  echo "=== pretrain not run (CPU smoke, no deepspeed, or under 100 s left)"
fi

# ------------------------------------------------------------------ summary
TOTAL=$(( $(date +%s) - T0 ))
OUT="$OUT" TOTAL="$TOTAL" BUDGET_S="$BUDGET_S" "$PY" - <<'EOF'
import csv, glob, json, os
out = os.environ["OUT"]
stages = list(csv.DictReader(open(os.path.join(out, "stages.csv"))))
summary = {"total_s": int(os.environ["TOTAL"]), "budget_s": int(os.environ["BUDGET_S"]),
           "stages": stages, "failed": [s["stage"] for s in stages if s["rc"] not in ("0", "skipped")],
           "skipped": [s["stage"] for s in stages if s["rc"] == "skipped"]}
pytest_txt = os.path.join(out, "pytest.txt")
if os.path.exists(pytest_txt):
    lines = [l for l in open(pytest_txt).read().splitlines() if " passed" in l or " failed" in l or " skipped" in l]
    summary["pytest"] = lines[-1].strip("= ") if lines else "no result line"
for path in glob.glob(os.path.join(out, "attention_*.csv")):
    rows = list(csv.DictReader(open(path)))
    summary["attention"] = {"csv": os.path.basename(path), "rows": len(rows),
                            "status": {s: sum(r["status"] == s for r in rows) for s in {r["status"] for r in rows}},
                            "best_fwdbwd_tflops": {}}
    for r in rows:
        if r["status"] == "ok" and r["fwdbwd_tflops"]:
            key = f"{r['shape']} d={r['head_dim']}"
            best = summary["attention"]["best_fwdbwd_tflops"].get(key)
            if best is None or float(r["fwdbwd_tflops"]) > best[1]:
                summary["attention"]["best_fwdbwd_tflops"][key] = (r["method"], float(r["fwdbwd_tflops"]))
for path in glob.glob(os.path.join(out, "step_*.csv")):
    summary["steps"] = [{k: r[k] for k in ("model", "backend", "precision", "tokens_per_s", "values_per_s", "mfu",
                                           "step_ms", "peak_mem_gib", "syncs_per_step")}
                        for r in csv.DictReader(open(path))]
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=1)
print(json.dumps({k: summary[k] for k in ("total_s", "failed", "skipped")}), "pytest:", summary.get("pytest"))
for s in summary.get("steps", []):
    print("step", s)
EOF
echo "=== gpu_check done in ${TOTAL}s (budget ${BUDGET_S}s); results in $OUT"
cat "$OUT/stages.csv"
