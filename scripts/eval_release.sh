#!/usr/bin/env bash
# The zero-shot evaluation of a release on its held-out datasets (docs/evaluation.md "Development protocol"):
#   bash scripts/eval_release.sh [checkpoints/unist-tiny-6]
# Writes <release>/eval/{test,validation}/results.{json,md} + plots, the imputation table, the model card's
# evaluation section and README's table (scripts/readme_table.py). The test sets are scored once per release.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
REL="${1:-checkpoints/unist-tiny-6}"
OUT=$REL/eval
COMMON=(--checkpoint "$REL" --threads "${THREADS:-2}" --max-windows "${WINDOWS:-16}" --num-samples 8 --peer-max-series "${PEER_SERIES:-240}")
TEST=(beijing_air_12site flu_bybw us_climdiv_precip nyc_bike1)          # blind: once per release
VAL=(metr_la_week era5_t2m_uk de_pm10_rural paris_bikehire_daily flipping_a_pancake)  # tuning sets
$PY eval/zeroshot.py "${COMMON[@]}" $(printf -- "--dataset %s " "${TEST[@]}") --out $OUT/test/results.json \
  --plot $OUT/test/forecast.png
# realshort has 36 frames: its test split (7) is shorter than the video protocol's 8-frame horizon, so it is
# scored 8 in / 4 out (fixed from its length before any result was seen)
$PY eval/zeroshot.py "${COMMON[@]}" --dataset realshort --horizon 4 --out $OUT/test_video/results.json
$PY eval/zeroshot.py "${COMMON[@]}" $(printf -- "--dataset %s " "${VAL[@]}") --out $OUT/validation/results.json \
  --plot $OUT/validation/forecast.png
$PY eval/imputation.py --checkpoint "$REL" --threads "${THREADS:-2}" --max-windows 8 \
  --dataset metr_la_week --dataset era5_t2m_uk --dataset beijing_air_12site --dataset nyc_bike1 \
  --out $OUT/imputation/results.json
$PY scripts/readme_table.py "$REL"
