# Shared by the checkpoint tests: a tiny dataset, the common training flags and small helpers.
#   source common.sh SOME_BINARY SOURCE_DIR PYTHON   (sets SOME, SRC, PY, T, COMMON, MPI)
set -euo pipefail
SOME=$(realpath "$1") SRC=$(realpath "$2") PY=$3
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"  # fail, T (removed at exit), on_exit
cd "$SRC"
bash "$SRC/tests/make_test_dataset.sh" "$SOME" "$T"
COMMON=(--config configs/tiny.toml --data "$T/data" --set train.log_every=1 --set train.sample_tokens=0
        --set train.max_steps=20 --set train.micro_batch=2 --set train.threads=1 --set train.eval_batches=2)
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
MPI=(mpirun --oversubscribe --bind-to none)
# launch NP ARGS...: one plain process for NP=1, else mpirun -np NP (output to $T/last.log)
launch() {
  local np=$1; shift
  if [ "$np" -eq 1 ]; then "$SOME" train "$@" > "$T/last.log" 2>&1
  else "${MPI[@]}" -np "$np" "$SOME" train "$@" > "$T/last.log" 2>&1; fi
}
# run NP ARGS...: launch, which must succeed
run() { launch "$@" || { tail -n 30 "$T/last.log"; fail "some train $* exited non-zero"; }; }
export PYTHONPATH="$SRC/tests${PYTHONPATH:+:$PYTHONPATH}"
