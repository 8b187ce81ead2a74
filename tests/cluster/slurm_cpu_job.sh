#!/usr/bin/env bash
# slurm.cpu_job_completes: start the real one-node Slurm of ../shared/slurm-local.sh, submit
# slurm/train-cpu.sbatch with NTASKS MPI ranks on the tiny config and a generated corpus, wait
# for it, and check that the job completed (exit 0, state COMPLETED) and wrote metrics.jsonl
# ending in the "done" event. Exit 77 (skipped) only where Slurm itself cannot start: no
# slurm-local.sh, not root, or its daemons do not come up. Anything after that is a failure.
#   usage: slurm_cpu_job.sh SOME_BINARY SOURCE_DIR
set -euo pipefail
NTASKS=${SOME_SLURM_TEST_NTASKS:-2}   # MPI ranks of the submitted job
JOB_MINUTES=8                         # Slurm time limit of the job (the CTest timeout is 600 s)
SOME=$(realpath "$1")
SRC=$(realpath "$2")
skip() { echo "SKIPPED: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }

# ---- a Slurm to submit to (the only reasons to skip) ---------------------------------------
SLURM_LOCAL="$SRC/../shared/slurm-local.sh"
[ -f "$SLURM_LOCAL" ] || skip "no local Slurm launcher at $SLURM_LOCAL"
[ "$(id -u)" -eq 0 ] || skip "starting the local Slurm needs root (slurmctld/slurmd/munge); running as $(id -un)"
if ! START_LOG=$(bash "$SLURM_LOCAL" start 2>&1); then
  echo "$START_LOG" | tail -n 20
  skip "the local Slurm did not start ($SLURM_LOCAL start failed, output above)"
fi
command -v sbatch >/dev/null || skip "slurm-local.sh ran but sbatch is not on PATH"
STATES=$(sinfo -h -o %T 2>/dev/null || true)
echo "$STATES" | grep -qE '^(idle|mixed|allocated)' ||
  skip "the local Slurm has no usable node (sinfo states: ${STATES:-none}; see /var/log/slurm/)"
echo "slurm up: $(sinfo -h -o '%P %D %T %c' | head -n 1)"

# ---- dataset ------------------------------------------------------------------------------
T=$(mktemp -d)
JOB=""
cleanup() {
  if [ -n "$JOB" ] && squeue -h -j "$JOB" 2>/dev/null | grep -q .; then scancel "$JOB" || true; fi
  rm -rf "$T"
}
trap cleanup EXIT
bash "$SRC/tests/make_test_dataset.sh" "$SOME" "$T"

# ---- the job ----------------------------------------------------------------------------------
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export SOME_BIN="$SOME"
cd "$SRC"
echo "submitting slurm/train-cpu.sbatch with $NTASKS task(s)"
set +e
SUBMIT=$(sbatch --parsable --wait --ntasks="$NTASKS" --time="$JOB_MINUTES" --job-name=some-ctest \
                --output="$T/job.out" slurm/train-cpu.sbatch \
                --config configs/tiny.toml --data "$T/data" --run-dir "$T/run" 2>"$T/sbatch.err")
RC=$?
set -e
JOB=$(echo "$SUBMIT" | head -n 1 | cut -d';' -f1)
echo "job ${JOB:-?}: sbatch --wait returned $RC"
show_job() {
  echo "---- job output ($T/job.out) ----"; cat "$T/job.out" 2>/dev/null || true
  echo "---- sbatch stderr ----"; cat "$T/sbatch.err"
}
[ -n "$JOB" ] || { show_job; fail "sbatch did not submit the job"; }
[ "$RC" -eq 0 ] || { show_job; fail "job $JOB did not complete cleanly (sbatch --wait exit $RC)"; }

# The controller's record of the job (sacct needs accounting storage, which this Slurm lacks).
INFO=$(scontrol show job "$JOB" 2>/dev/null || true)
if [ -n "$INFO" ]; then
  echo "$INFO" | grep -q 'JobState=COMPLETED' || { show_job; echo "$INFO"; fail "job $JOB state is not COMPLETED"; }
  echo "$INFO" | grep -q 'ExitCode=0:0' || { show_job; echo "$INFO"; fail "job $JOB exit code is not 0:0"; }
  echo "job $JOB: $(echo "$INFO" | grep -oE 'JobState=[A-Z]+|ExitCode=[0-9:]+|NumTasks=[0-9]+|RunTime=[0-9:]+' | tr '\n' ' ')"
fi

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
