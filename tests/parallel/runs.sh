# Sourced by the equivalence scripts: `run NAME NP P ARGS...` trains the caller's COMMON config
# (plus ARGS) into $T/NAME on NP ranks with parallel.expert_parallel = P (NP = 1: one process,
# no mpirun), its output in $T/NAME.log; a failed run prints its tail and ends the script.
# Needs SOME, T and COMMON set by the caller.
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
