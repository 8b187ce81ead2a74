#!/usr/bin/env bash
# A failing rank ends the job promptly, never a hang:
#  1. SIGKILL one rank of a 4-rank run: every process is gone within 60 s, exit code non-zero;
#  2. a rank that throws (injected fault) logs its reason and the job ends non-zero.
set -uo pipefail
SOME=$1 SRC=$2
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"  # fail, T (removed at exit), on_exit
set +e  # the runs below fail on purpose; their exit codes are checked by hand
on_exit 'pkill -9 -f "$T" 2>/dev/null'
cd "$SRC"
bash "$SRC/tests/make_test_dataset.sh" "$SOME" "$T" || exit 1
COMMON=(--config configs/tiny.toml --data "$T/data" --set train.max_steps=100000 --set train.micro_batch=2
        --set train.threads=1 --set train.sample_tokens=0 --set parallel.expert_parallel=4)

mpirun --oversubscribe --bind-to none -np 4 "$SOME" train "${COMMON[@]}" --run-dir "$T/killed" > "$T/killed.log" 2>&1 &
MPIRUN=$!
for _ in $(seq 120); do [ -s "$T/killed/metrics.jsonl" ] && break; sleep 0.5; done
[ -s "$T/killed/metrics.jsonl" ] || { cat "$T/killed.log"; echo "FAIL: the 4-rank run never started training"; exit 1; }
VICTIM=$(pgrep -f "run-dir $T/killed" | grep -v "^$MPIRUN\$" | while read -r p; do
  [ "$(ps -o comm= -p "$p")" = some ] && echo "$p"; done | tail -n 1)
[ -n "$VICTIM" ] || { echo "FAIL: no rank process found"; exit 1; }
echo "killing rank process $VICTIM with SIGKILL"
START=$(date +%s)
kill -9 "$VICTIM"
for _ in $(seq 120); do kill -0 "$MPIRUN" 2>/dev/null || break; sleep 0.5; done
wait "$MPIRUN"; RC=$?
LEFT=$(pgrep -f "run-dir $T/killed" | wc -l)
ELAPSED=$(( $(date +%s) - START ))
echo "mpirun exit code $RC after ${ELAPSED}s, $LEFT process(es) left"
[ "$RC" -ne 0 ] && [ "$LEFT" -eq 0 ] && [ "$ELAPSED" -le 60 ] || { tail -n 20 "$T/killed.log"; echo "FAIL: SIGKILL"; exit 1; }

START=$(date +%s)
SOME_INJECT_FAULT=2:3 timeout 120 mpirun --oversubscribe --bind-to none -np 4 -x SOME_INJECT_FAULT \
  "$SOME" train "${COMMON[@]}" --run-dir "$T/thrown" > "$T/thrown.log" 2>&1
RC=$?
ELAPSED=$(( $(date +%s) - START ))
echo "injected fault: exit code $RC after ${ELAPSED}s"
grep -q "injected fault on rank 2 at step 3" "$T/thrown.log" || { tail -n 20 "$T/thrown.log"; echo "FAIL: reason not logged"; exit 1; }
[ "$RC" -ne 0 ] && [ "$RC" -ne 124 ] || { echo "FAIL: a throwing rank did not end the job (rc $RC)"; exit 1; }
echo "rank failures end the job: ok"
