#!/usr/bin/env bash
# slurm.sweep_array: start the real one-node Slurm of ../shared/slurm-local.sh, submit a 2-run
# sweep (a 2-value grid on the tiny config, a generated corpus) with `some sweep --slurm`: one
# job array of slurm/sweep.sbatch (task i runs `some sweep ... --only i`) and a summary job that
# depends on it (afterany). Waits for both (every wait bounded) and checks: each array task
# ended COMPLETED with exit 0 and wrote its output, each run directory ends with the done event,
# and summary.csv / summary.md were written by the summary job, with both runs done and the
# values of their metrics.jsonl. Exit 77 (skipped) only where Slurm itself cannot start: no
# slurm-local.sh, not root, or its daemons do not come up. Anything after that is a failure.
#   usage: slurm_sweep_array.sh SOME_BINARY SOURCE_DIR
set -euo pipefail
JOB_MINUTES=5                         # Slurm time limit of each job (the CTest timeout is 900 s)
START_SECONDS=300                     # for slurm-local.sh start (it may apt-get install Slurm)
CLIENT_SECONDS=30                     # for any one sinfo/squeue/scontrol/sbatch call
PENDING_SECONDS=120                   # a job still pending after this (and nothing ran) is a failure
SOME=$(realpath "$1")
SRC=$(realpath "$2")
# ---- a Slurm to submit to (the only reasons to skip), the dataset, cleanup at exit -----------
# shellcheck source=slurm_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/slurm_common.sh"
start_local_slurm && job_workspace
SUMMARY_JOB=""
cleanup_sweep() {  # the summary job too, then the workspace (job_workspace's cleanup)
  if [ -n "$SUMMARY_JOB" ] && timeout 30 squeue -h -j "$SUMMARY_JOB" 2>/dev/null | grep -q .; then
    timeout 30 scancel "$SUMMARY_JOB" || true
  fi
  cleanup
}
trap cleanup_sweep EXIT

cat > "$T/sweep.toml" <<EOF
name = "array"
description = "slurm.sweep_array: two runs as a Slurm job array"
base = "$SRC/configs/tiny.toml"
[set]
"train.max_steps" = 30
"train.eval_every" = 10
"train.checkpoint_every" = 10
"train.sample_tokens" = 0
"train.eval_sample_tokens" = 0
[grid]
"gravity.alpha" = [0.01, 0.1]
EOF
DIR="$T/out/array"
NAMES=("alpha=0.01" "alpha=0.1")

# ---- submit ----------------------------------------------------------------------------------
cd "$T"  # the submit directory: the jobs start here
timeout 120 "$SOME" sweep "$T/sweep.toml" --out out --data "$T/data" --slurm \
  --sbatch-arg=--time="$JOB_MINUTES" 2>&1 | tee "$T/submit.log" || fail "some sweep --slurm failed"
JOB=$(grep -oE '^submitted array job [0-9]+' "$T/submit.log" | grep -oE '[0-9]+$' || true)
SUMMARY_JOB=$(grep -oE '^submitted summary job [0-9]+' "$T/submit.log" | grep -oE '[0-9]+$' || true)
[ -n "$JOB" ] && [ -n "$SUMMARY_JOB" ] || fail "some sweep --slurm printed no job ids"
echo "array job $JOB, summary job $SUMMARY_JOB"
show_jobs() {
  local f
  for f in "$DIR"/slurm/*.out; do [ -f "$f" ] && { echo "---- $f ----"; cat "$f"; }; done
  for n in "${NAMES[@]}"; do echo "---- $DIR/$n/stdout.log (tail) ----"; tail -n 5 "$DIR/$n/stdout.log" 2>/dev/null || true; done
  slurm scontrol show job "$JOB" 2>/dev/null || true
  slurm scontrol show job "$SUMMARY_JOB" 2>/dev/null || true
  slurm_log_lines "$JOB"
  slurm_log_lines "$SUMMARY_JOB"
}

# ---- wait for the array and the summary job to leave the queue ------------------------------
# Poll instead of `sbatch --wait`: a job that never leaves PENDING must fail with its reason.
START=$SECONDS
while :; do
  STATES=$(slurm squeue -h -j "$JOB,$SUMMARY_JOB" -o '%i %T' 2>/dev/null || true)
  [ -n "$STATES" ] || break
  ELAPSED=$(( SECONDS - START ))
  if ! grep -qv PENDING <<<"$STATES" && [ "$ELAPSED" -gt "$PENDING_SECONDS" ] && [ ! -d "$DIR/${NAMES[0]}" ]; then
    show_jobs; fail "nothing started after ${ELAPSED} s: $(tr '\n' ' ' <<<"$STATES")"
  fi
  [ "$ELAPSED" -le $(( 2 * JOB_MINUTES * 60 + 60 )) ] || { show_jobs; fail "jobs still queued after ${ELAPSED} s: $STATES"; }
  sleep 1
done
echo "the array and the summary job left the queue after $(( SECONDS - START )) s"

# ---- each array task: the controller's record (kept MinJobAge = 300 s after the end) -----------
INFO=$(slurm scontrol show job -o "$JOB" 2>/dev/null || true)
[ "$(grep -c 'ArrayTaskId=' <<<"$INFO")" -eq 2 ] || { show_jobs; fail "scontrol does not show 2 array tasks of job $JOB"; }
for i in 0 1; do
  line=$(grep -E "ArrayTaskId=$i( |$)" <<<"$INFO" || true)
  grep -q 'JobState=COMPLETED' <<<"$line" || { show_jobs; fail "array task $i is not COMPLETED"; }
  grep -q 'ExitCode=0:0' <<<"$line" || { show_jobs; fail "array task $i exit code is not 0:0"; }
  out="$DIR/slurm/${JOB}_$i.out"
  [ -f "$out" ] || { show_jobs; fail "array task $i wrote no $out"; }
  grep -q -- "--only $i" "$out" || { show_jobs; fail "array task $i did not run --only $i"; }
  grep -q "run $(( i + 1 ))/2 ${NAMES[$i]}: done in" "$out" || { show_jobs; fail "array task $i did not train run $i"; }
done
SINFO=$(slurm scontrol show job -o "$SUMMARY_JOB" 2>/dev/null || true)
grep -q 'JobState=COMPLETED' <<<"$SINFO" && grep -q 'ExitCode=0:0' <<<"$SINFO" ||
  { show_jobs; fail "summary job $SUMMARY_JOB did not complete with exit 0"; }
# afterany: the summary job started only once every array task had ended (ISO times compare as text).
SUMMARY_START=$(grep -oE 'StartTime=[^ ]+' <<<"$SINFO" | cut -d= -f2)
LAST_END=$(grep -oE 'EndTime=[^ ]+' <<<"$INFO" | cut -d= -f2 | sort | tail -n 1)
[ -n "$SUMMARY_START" ] && [ -n "$LAST_END" ] && ! [[ "$SUMMARY_START" < "$LAST_END" ]] ||
  { show_jobs; fail "summary job started at $SUMMARY_START, before the array's last task ended ($LAST_END)"; }

# ---- what they wrote ----------------------------------------------------------------------------
grep -q "summary of 2 run(s) (2 done, 0 failed, 0 missing)" "$DIR/slurm/summary-$SUMMARY_JOB.out" ||
  { show_jobs; fail "the summary job did not summarise 2 finished runs"; }
python3 - "$DIR" "${NAMES[@]}" <<'PY' || { show_jobs; fail "run directories or summary wrong"; }
import csv, json, sys
d, names = sys.argv[1], sys.argv[2:]
rows = list(csv.DictReader(open(f"{d}/summary.csv")))
assert [r["run"] for r in rows] == names, [r["run"] for r in rows]
for r, n in zip(rows, names):
    lines = [json.loads(l) for l in open(f"{d}/{n}/metrics.jsonl")]
    assert lines[-1].get("event") == "done", f"{n}: last line {lines[-1]}"
    ev = [l for l in lines if l.get("event") == "eval"][-1]
    assert r["status"] == "done" and float(r["val_ppl"]) == ev["val_ppl"], (n, r)
assert "2 done, 0 failed, 0 missing" in open(f"{d}/summary.md").read()
print(f"runs done and summary.csv matches: {[(r['run'], r['val_ppl']) for r in rows]}")
PY
echo "slurm sweep array: ok"
