#!/usr/bin/env bash
# The one prepared command for a lent GPU (README, "Commands"): the self-training recipe at the
# scale a GPU allows, then the GPU part of the benchmarks, everything brought back under OUT_DIR.
#
#   bash scripts/gpu_recipe.sh pack DATA_ROOT   here: the trainval photos and trimaps into data-pack/
#                                               (git-ignored, ~24 MB; test photos never travel, so none
#                                               can reach training there either)
#   VITVIZ_COMMIT=<commit> bash scripts/gpu_recipe.sh run OUT_DIR
#                                               there, with data-pack carried (the copy there has no git
#                                               history: the commit is passed in, for the records;
#                                               give the device command timeout_s 590, BUDGET_S is 560):
#     1. soft pseudo-labels of the shipped default (the teacher trained on this CPU; three sizes, mirrored)
#     2. a student from scratch on the 400 labeled + 3,280 soft-labeled photos: a three-epoch probe
#        measures the pace, then as many epochs as fit STUDENT_S seconds (the CPU's run had 35)
#     3. the student continued on the 400 labels like the default (100 epochs, lr 2e-4)
#     4. both exported as one checkpoint (every stage's command, commit, device, wall time), tarred
#     5. python -m vitviz.bench on the GPU, in the time left (BENCH=0 skips it)
# The curves are scored on trainval (no test photo is there); score the test split back here:
#   tar -xf OUT/gpu-student.tar -C runs && python -m vitviz.evaluate --checkpoint runs/gpu-student-shipped \
#     --data-root ../shared/data --split test --json --small-pets
# Every stage is resumable (scripts/stage.sh): rerun the same command on a machine still warm.
set -euo pipefail
cd "$(dirname "$0")/.."
PACK=${PACK:-data-pack}  # where the photos are packed, and read from there

if [ "${1:-}" = pack ]; then
  SRC=${2:?usage: pack DATA_ROOT}
  if [ -d "$SRC/oxford-iiit-pet" ]; then SRC=$SRC/oxford-iiit-pet; fi  # the dataset's folder or its parent
  rm -rf "$PACK" && mkdir -p "$PACK/oxford-iiit-pet/images" "$PACK/oxford-iiit-pet/annotations/trimaps"
  cp "$SRC"/annotations/{trainval,test}.txt "$PACK/oxford-iiit-pet/annotations/"  # the split lists: names only
  grep -v '^#' "$SRC/annotations/trainval.txt" | cut -d' ' -f1 | while read -r name; do
    [ -n "$name" ] || continue
    cp "$SRC/images/$name.jpg" "$PACK/oxford-iiit-pet/images/"
    if [ -f "$SRC/annotations/trimaps/$name.png" ]; then cp "$SRC/annotations/trimaps/$name.png" "$PACK/oxford-iiit-pet/annotations/trimaps/"; fi
  done
  # What travels to the device: the tracked files and the pack, 64 MiB at most.
  total=$(( $(git ls-files -z | xargs -0 cat | wc -c) + $(find "$PACK" -type f -print0 | xargs -0 cat | wc -c) ))
  echo "$PACK: $(find "$PACK" -name '*.jpg' | wc -l) photos; with the tracked files $((total / 1048576)) MiB travel (64 at most)"
  [ "$total" -le $((64 * 1048576)) ] || { echo "too much to travel: carry less" >&2; exit 1; }
  exit 0
fi

[ "${1:-}" = run ] || { echo "usage: bash scripts/gpu_recipe.sh pack DATA_ROOT | run OUT_DIR" >&2; exit 2; }
OUT=${2:?usage: run OUT_DIR}
DATA=$PACK
RUNS=${RUNS:-runs/gpu}
THREADS=${THREADS:-4}
TEACHER=${TEACHER:-checkpoints/default}
PRESET=${PRESET:-hybrid}
STUDENT_S=${STUDENT_S:-240}
BUDGET_S=${BUDGET_S:-560}  # the whole command, bench included (a device command may run 600 s)
STARTED=$SECONDS
mkdir -p "$OUT" "$RUNS"
exec > >(tee -a "$OUT/gpu-recipe.log") 2>&1
export PYTHONPATH=. PYTHON=${PYTHON:-python3}  # there, python3 is the interpreter that holds PyTorch
. scripts/stage.sh
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')"

PSEUDO="$RUNS/pseudo-soft.safetensors"
if [ ! -f "$PSEUDO" ]; then
  "$PYTHON" -m vitviz.pseudo --teacher "$TEACHER" --data-root "$DATA" --soft --scales 0.75 1 1.25 --out "$PSEUDO"
fi
STUDENT=(--preset "$PRESET" --pseudo-labels "$PSEUDO" --warmup-epochs 2 --val-split trainval --val-every 5)
stage gpu-probe "${STUDENT[@]}" --epochs 3 --snapshot-epochs 1 --val-masks 0
EPOCHS=$("$PYTHON" - "$RUNS/gpu-probe/metrics.json" "$STUDENT_S" <<'EOF'
import json, sys
curve = json.load(open(sys.argv[1]))["curve"]
pace = min(row["seconds"] for row in curve)  # the first epoch also pays for warming up
print(max(3, int(float(sys.argv[2]) / pace)))
EOF
)
echo "student: $EPOCHS epochs in about ${STUDENT_S} s"
stage gpu-student "${STUDENT[@]}" --epochs "$EPOCHS" --snapshot-epochs 1 3 8 35
stage gpu-student-continued --preset "$PRESET" --init-from "$RUNS/gpu-student" --epochs 100 --warmup-epochs 2 \
  --lr 2e-4 --snapshot-epochs 1 --val-split trainval --val-every 5
rm -rf "$RUNS/gpu-student-shipped"
"$PYTHON" -m vitviz.export "$RUNS/gpu-student-continued" "$RUNS/gpu-student-shipped" --after "$RUNS/gpu-student" \
  --teacher "$TEACHER" --int8-snapshots --snapshots 1 3 8
tar -cf "$OUT/gpu-student.tar" -C "$RUNS" gpu-student-shipped
echo "recipe done after $((SECONDS - STARTED)) s"

LEFT=$((BUDGET_S - (SECONDS - STARTED)))
if [ "${BENCH:-1}" = 1 ] && [ "$LEFT" -gt 60 ]; then
  timeout "$LEFT" "$PYTHON" -m vitviz.bench --data-root "$DATA" --out "$OUT/bench-gpu.json" || echo "bench stopped after ${LEFT} s"
fi
