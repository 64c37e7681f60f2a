#!/usr/bin/env bash
# Transfer across data types (docs/evaluation.md "Transfer"): three small pretraining runs on REAL data only,
# identical but for the data types they see, then each scored zero-shot on held-out graphs and grids.
#   STEPS=500 bash scripts/transfer_ablation.sh     # ~3 x 6 min train, then the table (validation splits)
#   SKIP_TRAIN=1 bash scripts/transfer_ablation.sh  # the table only, from runs already made
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
STEPS="${STEPS:-500}"
OUT="${RUN_DIR:-runs}/transfer"
HELDOUT=metr_la_week,era5_t2m_uk,de_pm10_rural,paris_bikehire_daily,flipping_a_pancake,beijing_air_12site,flu_bybw,us_climdiv_precip,nyc_bike1,realshort
for variant in full:1,1,1 no_graph:1,0,1 no_grid:0,1,1; do
  [ -n "${SKIP_TRAIN:-}" ] && break
  name=${variant%%:*}; w=${variant#*:}; IFS=, read -r grid graph video <<< "$w"
  $PY train/pretrain.py name=$name out_dir="$OUT" train.steps="$STEPS" data.synthetic_weight=0 data.prior_weight=0 \
    data.type_weights=grid:$grid,graph:$graph,video:$video data.heldout=$HELDOUT \
    model.masking.strategies=temporal,temporal,random,tube,block checkpoint.every=$STEPS checkpoint.export=true \
    logging.progress=false logging.print_every=100
done
for name in full no_graph no_grid; do
  $PY eval/zeroshot.py --checkpoint "$OUT/$name/release" --threads "${THREADS:-2}" --max-windows 8 --no-peers \
    --temporal-locations 16 --dataset metr_la_week --dataset de_pm10_rural --dataset paris_bikehire_daily \
    --dataset era5_t2m_uk --split val --out "$OUT/eval/$name/results.json"
done
$PY - "$OUT" <<'PYEOF'  # one table: MAE per held-out dataset (validation split) for each variant
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
runs = {n: json.loads((out / "eval" / n / "results.json").read_text()) for n in ("full", "no_graph", "no_grid")}
rows = ["| dataset | layout | full | no graph data | no grid data | full, temporal-only (same locations) | last value |",
        "|---|---|---|---|---|---|---|"]
for i, r in enumerate(runs["full"]["results"]):
    mae = lambda n, m="unist": runs[n]["results"][i]["models"][m]["metrics"]["mae"]["avg"]  # noqa: E731
    t = r["models"].get("unist_temporal")
    temporal = f"{t['metrics']['mae']['avg']:.4g} (unist {t['reference_unist_same_locations']['mae']['avg']:.4g})" if t else "-"
    rows.append(f"| {r['dataset']['name']} | {r['dataset']['layout']} | {mae('full'):.4g} | {mae('no_graph'):.4g} | "
                f"{mae('no_grid'):.4g} | {temporal} | {mae('full', 'last_value'):.4g} |")
(out / "eval" / "transfer.md").write_text("\n".join(rows) + "\n")
print("\n".join(rows))
PYEOF
