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

. scripts/stage.sh
HYBRID=(--preset hybrid --epochs "$EPOCHS" --snapshot-epochs 1)

stage hybrid "${HYBRID[@]}"
stage abl-convstem "${HYBRID[@]}" --patch-embed convstem
stage abl-no-paste "${HYBRID[@]}" --paste 0
stage abl-ce "${HYBRID[@]}" --loss ce
python -m vitviz.experiments --out checkpoints/experiments "$RUNS"/hybrid "$RUNS"/abl-*
