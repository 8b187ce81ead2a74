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
skip() { echo "SKIPPED: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }

# ---- a Slurm to submit to (the only reasons to skip) ---------------------------------------
SLURM_LOCAL="$SRC/../shared/slurm-local.sh"
[ -f "$SLURM_LOCAL" ] || skip "no local Slurm launcher at $SLURM_LOCAL"
[ "$(id -u)" -eq 0 ] || skip "starting the local Slurm needs root (slurmctld/slurmd/munge); running as $(id -un)"
# A munge socket left behind by a munged that is gone (a /run kept across a machine restart)
# makes slurm-local.sh skip starting munged; every Slurm client call then retries for ~20 s
# and the start-up wait alone outlasts the CTest timeout. Remove it so munged starts again.
# "Gone" is tested by asking it for a credential: a killed munged may linger as a zombie.
if [ -S /run/munge/munge.socket.2 ] && ! timeout 10 munge -n >/dev/null 2>&1; then
  echo "removing the stale munge socket (munged does not answer)"
  rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock /run/munge/munged.pid
  # a slurmd that came up without munge never registered: restart it with the new munged
  if [ -f /run/slurmd.pid ] && kill -0 "$(cat /run/slurmd.pid)" 2>/dev/null; then
    kill "$(cat /run/slurmd.pid)" || true; sleep 1
  fi
fi
# Leave the machine as found: daemons this test starts are stopped again at exit (so no stale
# munge socket outlives them), a Slurm that was already up is left running.
SLURM_WAS_UP=0
if pgrep -x slurmctld >/dev/null && timeout 10 munge -n >/dev/null 2>&1; then SLURM_WAS_UP=1; fi
MUNGE_WAS_UP=0
timeout 10 munge -n >/dev/null 2>&1 && MUNGE_WAS_UP=1
stop_slurm() {
  [ "$SLURM_WAS_UP" -eq 1 ] || timeout 30 bash "$SLURM_LOCAL" stop >/dev/null 2>&1 || true
  if [ "$MUNGE_WAS_UP" -eq 0 ] && [ -f /run/munge/munged.pid ]; then
    kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
  fi
}
trap stop_slurm EXIT
if ! START_LOG=$(timeout "$START_SECONDS" bash "$SLURM_LOCAL" start 2>&1); then
  echo "$START_LOG" | tail -n 20
  skip "the local Slurm did not start within ${START_SECONDS} s ($SLURM_LOCAL start failed, output above)"
fi
command -v sbatch >/dev/null || skip "slurm-local.sh ran but sbatch is not on PATH"
slurm() { timeout "$CLIENT_SECONDS" "$@"; }  # no Slurm client call may hang the test
STATES=""
for _ in $(seq 20); do  # ReturnToService=2 brings a node back once its slurmd registers
  STATES=$(slurm sinfo -h -o %T 2>/dev/null || true)
  echo "$STATES" | grep -qE '^(idle|mixed|allocated)' && break
  sleep 1
done
echo "$STATES" | grep -qE '^(idle|mixed|allocated)' ||
  skip "the local Slurm has no usable node (sinfo states: ${STATES:-none}; see /var/log/slurm/)"
echo "slurm up: $(slurm sinfo -h -o '%P %D %T %c' | head -n 1)"

# ---- dataset ------------------------------------------------------------------------------
T=$(mktemp -d)
JOB=""
cleanup() {
  if [ -n "$JOB" ] && timeout 30 squeue -h -j "$JOB" 2>/dev/null | grep -q .; then timeout 30 scancel "$JOB" || true; fi
  rm -rf "$T"
  stop_slurm
}
trap cleanup EXIT
bash "$SRC/tests/make_test_dataset.sh" "$SOME" "$T"

# ---- the job ----------------------------------------------------------------------------------
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export SOME_BIN="$SOME"
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
