#!/usr/bin/env bash
# One device call's training (GPU-BACKLOG items 1-2): RECIPE at WIDTH on the GPU, its schedule sized so that
# training and the verifier's certification end within BUDGET seconds.
#   bash benchmarks/gpu_train.sh RECIPE WIDTH BUDGET       e.g.  bash benchmarks/gpu_train.sh mnist-0.3 1440 470
# The datasets travel in the git-ignored .gpu-data/ (carry it; DATA overrides). A probe of PROBE_EPOCHS epochs
# times an epoch at finite p, its evaluation included (the first epoch, which compiles and autotunes the
# kernels, left out); the run then takes the recipe's schedule scaled to the epochs that fit (`--epochs`, every
# phase in proportion), at most the recipe's own. If the budget still runs out, SIGINT saves a checkpoint in
# .gpu/runs/ and the next call on the same warm machine resumes it. What comes back under $OUT: train.log and
# run.tar.part-NN (the run folder without its checkpoint, the certified model folder and its card included, in
# parts of 15 MiB: `cat run.tar.part-* | tar x`).
set -u
RECIPE=$1 WIDTH=$2 BUDGET=$3
OUT=${OUT:-/tmp/linfdist-gpu}
DATA=${DATA:-.gpu-data}
DEVICE=${DEVICE:-cuda}
PROBE_EPOCHS=${PROBE_EPOCHS:-5}
CERTIFY_SECONDS=${CERTIFY_SECONDS:-90}  # the verifier on the full test split, on the host's CPU cores
PY=python3
export PYTHONUNBUFFERED=1
START=$(date +%s)
elapsed() { echo $(( $(date +%s) - START )); }
left() {  # seconds of the budget left, less $1; never 0 (timeout's "no limit")
  local n=$(( BUDGET - ${1:-0} - $(elapsed) )); [ "$n" -ge 1 ] && echo "$n" || echo 1
}
mkdir -p "$OUT" .gpu/runs
RUN=.gpu/runs/$RECIPE-$WIDTH
LOG=$OUT/train.log

timeout 90 $PY -m pip install -q --no-deps --no-build-isolation --no-index -e . > "$OUT/install.log" 2>&1 \
  || { echo "pip install -e . failed: see install.log"; tail -20 "$OUT/install.log"; exit 1; }
{ date -u +%Y-%m-%dT%H:%M:%SZ; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } 2>&1 | tee "$LOG"

if [ -f "$RUN/checkpoint.pt" ] && [ ! -f "$RUN/model/config.json" ]; then
  echo "== resuming $RUN" | tee -a "$LOG"
  timeout -s INT "$(left)" \
    $PY -m linfdist train "$RUN" --resume --device "$DEVICE" --quiet --data-dir "$DATA" 2>&1 | tee -a "$LOG"
elif [ ! -f "$RUN/model/config.json" ]; then
  PROBE=.gpu/probe-$RECIPE-$WIDTH
  rm -rf "$PROBE"
  $PY -m linfdist train --recipe "$RECIPE" --width "$WIDTH" --epochs "$PROBE_EPOCHS" --set p_warm_epochs=0 \
    --set p_inf_epochs=0 --set checkpoint_minutes=60 --out "$PROBE" --device "$DEVICE" --quiet --data-dir "$DATA" \
    >> "$LOG" 2>&1 &
  PROBE_PID=$!
  # the probe's own certification is not waited for: its epochs' log lines are the measurement
  while [ "$(cat "$PROBE/metrics.jsonl" 2>/dev/null | wc -l)" -lt "$PROBE_EPOCHS" ]; do
    kill -0 $PROBE_PID 2>/dev/null || { echo "the probe ended before $PROBE_EPOCHS epochs: see train.log"; tail -20 "$LOG"; exit 1; }
    sleep 1
  done
  kill $PROBE_PID 2>/dev/null; wait $PROBE_PID 2>/dev/null
  read -r EPOCH_SECONDS EPOCHS < <($PY benchmarks/epochs_that_fit.py "$PROBE/metrics.jsonl" "$RECIPE" \
                                     "$(left "$CERTIFY_SECONDS")")
  echo "== probe: $EPOCH_SECONDS s an epoch at finite p; training $EPOCHS epochs" | tee -a "$LOG"
  [ "${EPOCHS:-0}" -ge 1 ] || { echo "not one epoch fits in the budget"; exit 1; }
  timeout -s INT "$(left)" \
    $PY -m linfdist train --recipe "$RECIPE" --width "$WIDTH" --epochs "$EPOCHS" --out "$RUN" --device "$DEVICE" \
    --quiet --data-dir "$DATA" 2>&1 | tee -a "$LOG"
fi
# the epochs were sized to leave CERTIFY_SECONDS, and the timeouts above give `linfdist train` the whole rest of
# the budget, its certification after the last epoch included; an interrupted run keeps its checkpoint
echo "== $(elapsed) s; model: $([ -f "$RUN/model/config.json" ] && echo written || echo "not yet (checkpoint kept in $RUN)")" | tee -a "$LOG"
tar c --exclude=checkpoint.pt -C .gpu/runs "$(basename "$RUN")" | split -b 15M -d - "$OUT/run.tar.part-"
ls -l "$OUT" | tee -a "$LOG"
