# `stage NAME TRAIN-FLAGS...`: train the run NAME under $RUNS on $DATA with $THREADS threads, or
# resume it after a stop or a crash, or skip it when it has finished. Sourced by the recipe scripts;
# $PYTHON is the interpreter (default: python).
stage() {
  local name=$1; shift
  if [ -f "$RUNS/$name/metrics.json" ]; then return; fi
  if [ -f "$RUNS/$name/train_state.safetensors" ]; then
    "${PYTHON:-python}" -m vitviz.train --resume "$RUNS/$name" --threads "$THREADS" --workers 0
  else
    rm -rf "${RUNS:?}/$name"  # a config written before the first epoch finished: start over
    "${PYTHON:-python}" -m vitviz.train "$@" --data-root "$DATA" --runs-dir "$RUNS" --name "$name" --threads "$THREADS" --workers 0
  fi
}
