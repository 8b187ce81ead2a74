#!/usr/bin/env bash
# Preemption (docs/design.md §7): a real SIGTERM to a single process, and SIGUSR1 (Slurm's warning
# signal) to mpirun with 2 ranks, at an arbitrary moment: the step finishes, a checkpoint is
# written, the process exits 0; `--resume auto` then finishes the run, every step logged once
# and every loss bit-identical to an uninterrupted run.
#   usage: preempt.sh SOME SOURCE_DIR PYTHON
source "$(dirname "$0")/common.sh" "$1" "$2" "$3"
STEPS=150
LONG=("${COMMON[@]}" --set train.max_steps=$STEPS --set train.eval_every=0)
for case in "1 TERM" "2 USR1"; do
  set -- $case
  NP=$1 SIG=$2 R="$T/np$1"
  P=(--set parallel.expert_parallel="$NP")
  run "$NP" "${LONG[@]}" "${P[@]}" --run-dir "$R-straight"
  if [ "$NP" -eq 1 ]; then "$SOME" train "${LONG[@]}" "${P[@]}" --run-dir "$R" > "$T/sig.log" 2>&1 &
  else "${MPI[@]}" -np "$NP" "$SOME" train "${LONG[@]}" "${P[@]}" --run-dir "$R" > "$T/sig.log" 2>&1 & fi
  PID=$!
  WANT=$(( 10 + RANDOM % 40 ))  # signal once this many steps are logged
  for _ in $(seq 600); do
    [ -f "$R/metrics.jsonl" ] && [ "$(wc -l < "$R/metrics.jsonl")" -ge "$WANT" ] && break
    kill -0 $PID 2>/dev/null || break
    sleep 0.05
  done
  kill -"$SIG" $PID || fail "the run ended before it could be signalled"
  set +e; wait $PID; rc=$?; set -e
  [ $rc -eq 0 ] || { tail -n 20 "$T/sig.log"; fail "SIG$SIG on $NP rank(s): exit $rc, not 0"; }
  STOPPED=$(tail -n 1 "$R/metrics.jsonl" | "$PY" -c 'import json,sys; l=json.loads(sys.stdin.read()); assert l["event"]=="preempted", l; print(l["step"])') ||
    fail "SIG$SIG: the last metrics line is not the preempted event"
  [ "$(cat "$R/checkpoints/latest")" = "$(printf 'step_%08d' "$STOPPED")" ] || fail "SIG$SIG: latest is not the step it stopped at"
  "$SOME" checkpoint info "$R" | grep -q "reason signal" || fail "SIG$SIG: the checkpoint is not marked as written for the signal"
  echo "ok   SIG$SIG to $NP rank(s) after ~$WANT logged steps: stopped after step $STOPPED with a checkpoint, exit 0"
  run "$NP" "${LONG[@]}" "${P[@]}" --run-dir "$R" --resume auto
  "$PY" - "$R" "$R-straight" $STEPS <<'PY'
import json, sys
def lines(run): return [json.loads(l) for l in open(f"{run}/metrics.jsonl")]
got = [(l["step"], l["loss"]) for l in lines(sys.argv[1]) if "event" not in l]
ref = [(l["step"], l["loss"]) for l in lines(sys.argv[2]) if "event" not in l]
assert [s for s, _ in got] == list(range(1, int(sys.argv[3]) + 1)), "steps not logged exactly once each"
assert got == ref, f"losses differ from the uninterrupted run: {[(a, b) for a, b in zip(got, ref) if a != b][:3]}"
assert lines(sys.argv[1])[-1]["event"] == "done"
print(f"ok   resumed to step {sys.argv[3]}: every loss bit-identical to the uninterrupted run")
PY
done
echo "preempt: ok"
