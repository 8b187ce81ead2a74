# Sourced by the equivalence scripts after `SOME=$1 SRC=$2 PY=$3`: makes the scratch folder T
# (removed on exit) with the test dataset in $T/data, enters SRC, and defines
# `run NAME NP P ARGS...`, which trains the caller's COMMON config (plus ARGS) into $T/NAME on NP
# ranks with parallel.expert_parallel = P (NP = 1: one process, no mpirun), its output in
# $T/NAME.log; a failed run prints its tail and ends the script.
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"  # fail, T (removed at exit), on_exit
cd "$SRC"
bash "$SRC/tests/make_test_dataset.sh" "$SOME" "$T"

run() {
  local name=$1 np=$2 p=$3
  shift 3
  if [ "$np" = 1 ]; then
    "$SOME" train "${COMMON[@]}" "$@" --run-dir "$T/$name" > "$T/$name.log" 2>&1
  else
    mpirun --oversubscribe --bind-to none -np "$np" "$SOME" train "${COMMON[@]}" --set parallel.expert_parallel="$p" \
        "$@" --run-dir "$T/$name" > "$T/$name.log" 2>&1
  fi || { tail -n 20 "$T/$name.log"; echo "FAIL: run $name (np $np, P $p) failed"; exit 1; }
}
