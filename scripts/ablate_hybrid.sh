#!/usr/bin/env bash
# The hybrid recipe's three changes measured one at a time (README "Experiments"), at 40 epochs so the
# four runs fit in about an hour of one CPU core:
#   hybrid          the `hybrid` preset at 40 epochs (the baseline of this table)
#   abl-convstem    one conv per resolution in the stem instead of two (patch_embed=convstem)
#   abl-no-paste    without pasted small photos (paste=0)
#   abl-ce          cross-entropy alone instead of cross-entropy + Dice (loss=ce)
# then `python -m vitviz.experiments` copies their metrics to checkpoints/experiments.
# Usage: bash scripts/ablate_hybrid.sh DATA_ROOT [RUNS_DIR]; rerun to resume after a stop.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:?usage: bash scripts/ablate_hybrid.sh DATA_ROOT [RUNS_DIR]}
RUNS=${2:-runs/ablation}
THREADS=${THREADS:-2}
EPOCHS=${EPOCHS:-40}
. .venv/bin/activate

stage() {  # stage NAME TRAIN-FLAGS...: train a run, or resume it, or skip it when finished
  local name=$1; shift
  if [ -f "$RUNS/$name/metrics.json" ]; then return; fi
  if [ -f "$RUNS/$name/train_state.safetensors" ]; then
    python -m vitviz.train --resume "$RUNS/$name" --threads "$THREADS" --workers 0
  else
    rm -rf "${RUNS:?}/$name"
    python -m vitviz.train --preset hybrid --epochs "$EPOCHS" --snapshot-epochs 1 "$@" --data-root "$DATA" \
      --runs-dir "$RUNS" --name "$name" --threads "$THREADS" --workers 0
  fi
}

stage hybrid
stage abl-convstem --patch-embed convstem
stage abl-no-paste --paste 0
stage abl-ce --loss ce
python -m vitviz.experiments --out checkpoints/experiments "$RUNS"/hybrid "$RUNS"/abl-*
