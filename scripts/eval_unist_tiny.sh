#!/usr/bin/env bash
# The zero-shot evaluation table of the shipped checkpoint checkpoints/unist-tiny/ (~12 min on 2 CPU cores).
#   bash scripts/eval_unist_tiny.sh     # writes checkpoints/unist-tiny/eval/ and the card's evaluation section
# Held out (never read in training): metr_la_week (graph), nyc_bike2 and era5_t2m_uk (grids),
# flipping_a_pancake (video). Called by scripts/release_unist_tiny.sh after training and export.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
REL=checkpoints/unist-tiny
OUT=$REL/eval
$PY eval/zeroshot.py --checkpoint $REL --threads 1 --num-samples 8 \
  --dataset metr_la_week --dataset nyc_bike2 --dataset era5_t2m_uk --dataset flipping_a_pancake \
  --out $OUT/results.json --plot $OUT/forecast.png
$PY - "$REL/MODEL_CARD.md" <<'PYEOF'  # re-running replaces the section
import sys, pathlib
card = pathlib.Path(sys.argv[1])
card.write_text(card.read_text().split("\n## Zero-shot evaluation")[0].rstrip() + "\n")
PYEOF
{ echo; echo "## Zero-shot evaluation (held-out datasets)"; echo
  echo "Made by \`bash scripts/eval_unist_tiny.sh\` (\`python eval/zeroshot.py --checkpoint checkpoints/unist-tiny ...\`)."
  echo; cat $OUT/results.md; } >> $REL/MODEL_CARD.md
du -sh $REL
