#!/usr/bin/env bash
# Build checkpoints/unist-tiny-6/ (lag copy whose lags the context holds twice, with MAE backtests and the dip rule +
# smoothed levels + fill candidates), end to end. unist-tiny-5 was built by the same recipe before the two-cycle rule
# (model.lag_cycles=1.5 model.lag_edge_dip=true), unist-tiny-4 also before the MAE backtests and the dip rule (model.lag_error=rmse
# model.lag_dip=1), unist-tiny-3 also before the fill candidates (model.lag_fill), unist-tiny-2 also before the
# smoothed candidates (model.lag_smooth).
#   STEPS=4500 bash scripts/release_unist.sh          # train (~62-72 min on 2 CPU cores), export
#   STEPS=100 RUN_DIR=/tmp/r bash scripts/release_unist.sh   # a quick rehearsal
# Held out (never read in training): the validation sets (tuning) and the blind test sets of
# docs/evaluation.md (unist/train/config.py VALIDATION_SETS + TEST_SETS).
# The release is the last checkpoint. Evaluation: bash scripts/eval_release.sh checkpoints/$NAME.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
STEPS="${STEPS:-4500}"
NAME="${NAME:-unist-tiny-6}"
RUN="${RUN_DIR:-runs}/$NAME-release"
REL="${RELEASE:-checkpoints/$NAME}"
HELDOUT=metr_la_week,era5_t2m_uk,de_pm10_rural,paris_bikehire_daily,flipping_a_pancake,beijing_air_12site,flu_bybw,us_climdiv_precip,nyc_bike1,realshort
$PY train/pretrain.py name=$NAME-release out_dir="${RUN_DIR:-runs}" train.steps="$STEPS" \
  data.tokens_per_batch=1536 optim.warmup_steps=100 data.type_weights=grid:1,graph:1,video:0.5 \
  data.heldout=$HELDOUT model.masking.strategies=temporal,temporal,random,tube,block \
  checkpoint.every=250 checkpoint.export=false logging.progress=false logging.print_every=50
$PY -m unist.train.export export "$RUN/checkpoints" "$REL" --weights-dtype float16
# The forecasting policy, chosen on the validation splits with eval/lag_study.py and eval/imputation.py --split val
# (docs/LOG.md): unist-tiny-4 to unist-tiny-6 forecast with the self-check, unist-tiny-6 without the head's residual
# (set after its export, session 12) and with the exponential-smoothing candidates (lag_ets, untrained; session 13).
# POLICY=full keeps the network as trained, RESIDUAL=true the residual, LAG_ETS=false no Holt-Winters candidates (the
# export's defaults).
$PY -m unist.train.export policy "$REL" correction="${POLICY:-checked}" residual="${RESIDUAL:-false}" \
  lag_ets="${LAG_ETS:-true}"
