#!/usr/bin/env bash
# slurm.cpu_job_completes: start the real one-node Slurm of ../shared/slurm-local.sh, submit
# slurm/train-cpu.sbatch with NTASKS MPI ranks on the tiny config and a generated corpus, wait
# for it, and check that the job completed (exit 0, state COMPLETED) and wrote metrics.jsonl
# ending in the "done" event. Exit 77 (skipped) only where Slurm itself cannot start: no
# slurm-local.sh, not root, or its daemons do not come up. Anything after that is a failure.
#   usage: slurm_cpu_job.sh SOME_BINARY SOURCE_DIR
set -euo pipefail
NTASKS=${SOME_SLURM_TEST_NTASKS:-2}   # MPI ranks of the submitted job
JOB_MINUTES=5                         # Slurm time limit of the job (the CTest timeout is 900 s)
START_SECONDS=300                     # for slurm-local.sh start (it may apt-get install Slurm)
CLIENT_SECONDS=30                     # for any one sinfo/squeue/scontrol/sbatch call
PENDING_SECONDS=120                   # a job still pending after this is a failure
SOME=$(realpath "$1")
SRC=$(realpath "$2")
# ---- a Slurm to submit to (the only reasons to skip), the dataset, cleanup at exit -----------
# shellcheck source=slurm_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/slurm_common.sh"
start_local_slurm && job_workspace

# ---- the job ----------------------------------------------------------------------------------
cd "$SRC"
echo "submitting slurm/train-cpu.sbatch with $NTASKS task(s)"
JOB=$(slurm sbatch --parsable --ntasks="$NTASKS" --time="$JOB_MINUTES" --job-name=some-ctest \
             --output="$T/job.out" slurm/train-cpu.sbatch \
             --config configs/tiny.toml --data "$T/data" --run-dir "$T/run" 2>"$T/sbatch.err" |
      head -n 1 | cut -d';' -f1) || true
show_job() {
  echo "---- job output ($T/job.out) ----"; cat "$T/job.out" 2>/dev/null || true
  echo "---- sbatch stderr ----"; cat "$T/sbatch.err"
  [ -z "$JOB" ] || slurm scontrol show job "$JOB" 2>/dev/null || true
  [ -z "$JOB" ] || slurm_log_lines "$JOB"  # e.g. a start that slurmd refused
}
[ -n "$JOB" ] || { show_job; fail "sbatch did not submit the job"; }
echo "job $JOB submitted"
# Poll instead of `sbatch --wait`: a job that never leaves PENDING must fail with its reason,
# not run into the CTest timeout.
START=$SECONDS
while :; do
  STATE=$(slurm squeue -h -j "$JOB" -o %T 2>/dev/null || true)
  [ -n "$STATE" ] || break  # no longer queued or running
  ELAPSED=$(( SECONDS - START ))
  if [ "$STATE" = PENDING ] && [ "$ELAPSED" -gt "$PENDING_SECONDS" ]; then
    show_job; fail "job $JOB still PENDING after ${ELAPSED} s"
  fi
  [ "$ELAPSED" -le $(( JOB_MINUTES * 60 + 60 )) ] || { show_job; fail "job $JOB still $STATE after ${ELAPSED} s"; }
  sleep 1
done
echo "job $JOB left the queue after $(( SECONDS - START )) s"

# The controller's record of the job (sacct needs accounting storage, which this Slurm lacks;
# scontrol keeps a finished job for MinJobAge = 300 s).
INFO=$(slurm scontrol show job "$JOB" 2>/dev/null || true)
[ -n "$INFO" ] || { show_job; fail "scontrol has no record of job $JOB"; }
echo "$INFO" | grep -q 'JobState=COMPLETED' || { show_job; fail "job $JOB state is not COMPLETED"; }
echo "$INFO" | grep -q 'ExitCode=0:0' || { show_job; fail "job $JOB exit code is not 0:0"; }
echo "job $JOB: $(echo "$INFO" | grep -oE 'JobState=[A-Z]+|ExitCode=[0-9:]+|NumTasks=[0-9]+|RunTime=[0-9:]+' | tr '\n' ' ')"

# ---- what it wrote ------------------------------------------------------------------------------
[ -f "$T/run/metrics.jsonl" ] || { show_job; fail "the job wrote no $T/run/metrics.jsonl"; }
python3 - "$T/run/metrics.jsonl" "$NTASKS" <<'PY' || { show_job; fail "metrics.jsonl check failed"; }
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert lines, "metrics.jsonl is empty"
assert lines[-1].get("event") == "done", f"last line is not the done event: {lines[-1]}"
train = [l for l in lines if "event" not in l]
assert train, "no training lines"
print(f"metrics ok: {len(lines)} lines, {len(train)} training lines, last step {train[-1].get('step')}, "
      f"loss {train[0]['loss']:.3f} -> {train[-1]['loss']:.3f}")
PY
grep -qF "| $NTASKS rank(s)" "$T/job.out" || { show_job; fail "the job did not run $NTASKS rank(s)"; }
tail -n 5 "$T/job.out"
echo "slurm cpu job ($NTASKS ranks): ok"
