#!/usr/bin/env bash
# slurm.preempt_resume: submit slurm/train-cpu.sbatch (NTASKS MPI ranks, tiny config, STEPS
# steps) to the real one-node Slurm of ../shared/slurm-local.sh; once it has trained a few steps,
# send the batch shell Slurm's time-limit warning by hand (`scancel --signal=USR1 --batch`).
# The job must checkpoint, requeue itself, start again (same job id, restart 1) in the same run
# directory, resume from that checkpoint and complete. Checked: the job ends COMPLETED with exit
# 0 after exactly one restart; metrics.jsonl has the "preempted" event, a "resume" event at the
# same step > 0, the "done" event at step STEPS, every training step 1..STEPS exactly once, and
# the resumed losses continue the run instead of starting over.
# Exit 77 (skipped) only where Slurm itself cannot start (see slurm_common.sh).
#   usage: slurm_preempt_resume.sh SOME_BINARY SOURCE_DIR
set -euo pipefail
NTASKS=${SOME_SLURM_TEST_NTASKS:-2}   # MPI ranks of the submitted job
STEPS=400                             # train.max_steps: ~3-15 s of training on 2 cores
SIGNAL_AT=60                          # signal once this step is logged (after the step-50 checkpoint)
JOB_MINUTES=5                         # Slurm time limit of each start (the CTest timeout is 900 s)
START_SECONDS=300                     # for slurm-local.sh start (it may apt-get install Slurm)
CLIENT_SECONDS=30                     # for any one sinfo/squeue/scontrol/sbatch call
PENDING_SECONDS=120                   # the first start still pending after this is a failure
SIGNAL_SECONDS=180                    # from submission to step SIGNAL_AT
REQUEUE_SECONDS=120                   # from the signal to the job back in the queue
# From the requeue to the end of the job. Slurm holds a requeued job back for CredExpire + 1 s
# (121 s by default: BeginTime); the test moves its start to the second after the requeue (see
# step 3), but allows for the full delay.
# (All the bounds together stay below the CTest timeout, so that the test's own diagnostics show.)
FINISH_SECONDS=240
SOME=$(realpath "$1")
SRC=$(realpath "$2")

# ---- a Slurm to submit to (the only reasons to skip), the dataset, cleanup at exit -----------
# shellcheck source=slurm_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/slurm_common.sh"
start_local_slurm && job_workspace

# ---- the job ----------------------------------------------------------------------------------
# Submitted from $T without --run-dir: the job script's own run directory, runs/slurm-<job id>
# under the submit directory, is what every start of the job must find again.
cd "$T"
echo "submitting slurm/train-cpu.sbatch with $NTASKS task(s), $STEPS steps"
JOB=$(slurm sbatch --parsable --ntasks="$NTASKS" --time="$JOB_MINUTES" --job-name=some-ctest-preempt \
             --output="$T/job.out" "$SRC/slurm/train-cpu.sbatch" \
             --config "$SRC/configs/tiny.toml" --data "$T/data" --set train.max_steps="$STEPS" \
             --set train.log_every=1 --set train.checkpoint_every=50 2>"$T/sbatch.err" |
      head -n 1 | cut -d';' -f1) || true
RUN="$T/runs/slurm-$JOB"
METRICS="$RUN/metrics.jsonl"
show_job() {
  echo "---- job output ($T/job.out) ----"; cat "$T/job.out" 2>/dev/null || true
  echo "---- sbatch stderr ----"; cat "$T/sbatch.err"
  echo "---- metrics.jsonl (events and the last lines) ----"
  grep '"event"' "$METRICS" 2>/dev/null | grep -v '"event":"eval"' || true
  tail -n 3 "$METRICS" 2>/dev/null || true
  echo "---- $RUN/checkpoints ----"; ls -l "$RUN/checkpoints" 2>/dev/null || true
  echo "---- scontrol show job $JOB ----"
  [ -z "$JOB" ] || slurm scontrol show job "$JOB" 2>/dev/null || true
  # A start that slurmd refused never reaches the job output: the daemons' logs tell why.
  [ -z "$JOB" ] || slurm_log_lines "$JOB"
}
[ -n "$JOB" ] || { show_job; fail "sbatch did not submit the job"; }
echo "job $JOB submitted; run directory $RUN"

# One line of the controller's record: JobState, Reason, Restarts (empty once it is forgotten).
job_field() { echo "$INFO" | grep -oE "(^| )$1=[^ ]*" | head -n 1 | cut -d= -f2-; }
poll_job() { INFO=$(slurm scontrol show job -o "$JOB" 2>/dev/null || true); }
last_step() {  # the highest training step metrics.jsonl logged so far (0: none)
  grep -v '"event"' "$METRICS" 2>/dev/null | grep -oE '"step":[0-9]+' | cut -d: -f2 | sort -n | tail -n 1 || true
}

# ---- 1: train until step SIGNAL_AT, then the warning --------------------------------------
# The job trains all its steps in a few seconds: watch metrics.jsonl closely, ask the
# controller about the job only every tenth round.
START=$SECONDS ROUND=0
while :; do
  STEP=$(last_step); STEP=${STEP:-0}
  [ "$STEP" -lt "$SIGNAL_AT" ] || break
  ROUND=$(( ROUND + 1 ))
  if [ $(( ROUND % 10 )) -ne 1 ]; then sleep 0.05; continue; fi
  poll_job
  STATE=$(job_field JobState)
  ELAPSED=$(( SECONDS - START ))
  case "$STATE" in
    PENDING) [ "$ELAPSED" -le "$PENDING_SECONDS" ] || { show_job; fail "job $JOB still PENDING after ${ELAPSED} s"; } ;;
    RUNNING|CONFIGURING) ;;
    *) show_job; fail "job $JOB is $STATE (reason $(job_field Reason)) before reaching step $SIGNAL_AT" ;;
  esac
  [ "$ELAPSED" -le "$SIGNAL_SECONDS" ] || { show_job; fail "job $JOB did not reach step $SIGNAL_AT in ${ELAPSED} s (state $STATE, step $STEP)"; }
  sleep 0.05
done
echo "job $JOB at step $STEP after $(( SECONDS - START )) s: sending USR1 to its batch shell"
too_fast() {  # the job ended before the signal reached it: nothing preempted, nothing to test
  if grep -q '"event":"done"' "$METRICS" 2>/dev/null; then
    show_job; fail "job $JOB finished all $STEPS steps before the signal took effect: no preemption to test"
  fi
}
slurm scancel --signal=USR1 --batch "$JOB" || { too_fast; show_job; fail "scancel --signal=USR1 --batch $JOB failed"; }

# ---- 2: checkpoint and requeue -------------------------------------------------------------------
SIGNALLED=$SECONDS
while :; do
  poll_job
  RESTARTS=$(job_field Restarts)
  [ "${RESTARTS:-0}" -lt 1 ] || break
  STATE=$(job_field JobState)
  case "$STATE" in
    RUNNING|COMPLETING|REQUEUED|PENDING) ;;
    *) too_fast; show_job; fail "job $JOB is $STATE without having been requeued" ;;
  esac
  [ $(( SECONDS - SIGNALLED )) -le "$REQUEUE_SECONDS" ] || { show_job; fail "job $JOB not requeued ${REQUEUE_SECONDS} s after the signal (state $STATE)"; }
  sleep 0.5
done
echo "job $JOB requeued $(( SECONDS - SIGNALLED )) s after the signal: $(echo "$INFO" | grep -oE '(JobState|Reason|Restarts|EligibleTime)=[^ ]*' | tr '\n' ' ')"

# ---- 3: the second start, to the end -------------------------------------------------------------
# A requeued job is pending with Reason=BeginTime for CredExpire + 1 s (121 s): start it sooner
# (the delay is Slurm's, not the job's), but not in the second of the requeue. The requeue
# revokes the job's credentials on the node up to that second (the controller's time(), whole
# seconds), and slurmd refuses a batch launch whose credential is not newer ("Job N already
# killed, do not launch batch job"); the controller then ends the job for good, FAILED 1:0 with
# RunTime 0 ("Killing non-startable batch JobId=N: Job credential revoked"). The requeue came
# before the poll that shows the job pending for BeginTime, so StartTime=now sent once the clock
# has passed the second of that poll gives a start, and a credential, at least a second later.
# A job held instead (JobHeldUser/JobHeldAdmin, e.g. after a failed launch) is released once; a
# second hold is a failure.
REQUEUED=$SECONDS BUMPED=0 RELEASED=0
while :; do
  poll_job
  [ -n "$INFO" ] || { show_job; fail "scontrol has no record of job $JOB"; }
  STATE=$(job_field JobState) REASON=$(job_field Reason)
  case "$STATE" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE|PREEMPTED) break ;; esac
  if [ "$STATE" = PENDING ]; then
    case "$REASON" in
      BeginTime)
        if [ "$BUMPED" -eq 0 ]; then
          SEEN=$(date +%s)  # not earlier than the requeue's revocation of the credentials
          while [ "$(date +%s)" -le "$SEEN" ]; do sleep 0.05; done
          echo "job $JOB pending for its requeue delay (EligibleTime $(job_field EligibleTime)): starting it now"
          slurm scontrol update JobId="$JOB" StartTime=now || echo "(scontrol update StartTime=now failed: waiting out the delay)"
          BUMPED=1
        fi ;;
      JobHeld*)
        [ "$RELEASED" -eq 0 ] || { show_job; fail "job $JOB held again ($REASON) after a release"; }
        echo "job $JOB held ($REASON): releasing it"
        slurm scontrol release "$JOB" || { show_job; fail "scontrol release $JOB failed"; }
        RELEASED=1 ;;
    esac
  fi
  [ $(( SECONDS - REQUEUED )) -le "$FINISH_SECONDS" ] || { show_job; fail "job $JOB still $STATE ($REASON) ${FINISH_SECONDS} s after the requeue"; }
  sleep 0.5
done
echo "job $JOB ended $(( SECONDS - REQUEUED )) s after the requeue: $(echo "$INFO" | grep -oE '(JobState|ExitCode|Restarts|RunTime)=[^ ]*' | tr '\n' ' ')"
[ "$STATE" = COMPLETED ] || { show_job; fail "job $JOB state is $STATE, not COMPLETED"; }
[ "$(job_field ExitCode)" = 0:0 ] || { show_job; fail "job $JOB exit code is $(job_field ExitCode), not 0:0"; }
[ "$(job_field Restarts)" = 1 ] || { show_job; fail "job $JOB restarted $(job_field Restarts) times, not once"; }

# ---- what it wrote ------------------------------------------------------------------------------
[ -f "$METRICS" ] || { show_job; fail "the job wrote no $METRICS"; }
grep -q "restart 1, run directory runs/slurm-$JOB" "$T/job.out" ||
  { show_job; fail "the job output shows no second start in runs/slurm-$JOB"; }
grep -q "resumed from .*runs/slurm-$JOB/checkpoints/step_" "$T/job.out" ||
  { show_job; fail "the second start did not resume from a checkpoint of runs/slurm-$JOB"; }
python3 - "$METRICS" "$STEPS" <<'PY' || { show_job; fail "metrics.jsonl check failed"; }
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
steps = int(sys.argv[2])
events = [(i, l) for i, l in enumerate(lines) if "event" in l and l["event"] != "eval"]
print("events:", ", ".join(f"{l['event']}@{l.get('step')}" for _, l in events))
kinds = [l["event"] for _, l in events]
assert kinds == ["preempted", "resume", "done"], f"expected preempted, resume, done; got {kinds}"
(ip, pre), (ir, res), (_, done) = events
assert pre.get("signal") == 10, f"preempted by signal {pre.get('signal')}, not SIGUSR1 (10)"
assert 0 < res["step"] < steps, f"resume step {res['step']} is not in 1..{steps - 1}"
assert res["step"] == pre["step"], f"resumed at step {res['step']}, not at the preemption checkpoint {pre['step']}"
assert done["step"] == steps, f"done at step {done['step']}, not {steps}"
assert lines[-1].get("event") == "done", f"the last line is not the done event: {lines[-1]}"
train = [l for l in lines if "event" not in l]
got = [l["step"] for l in train]
dups = sorted({s for s in got if got.count(s) > 1})
assert not dups, f"steps logged more than once: {dups[:20]}"
assert got == list(range(1, steps + 1)), \
    f"training steps are not 1..{steps} in order (missing: {sorted(set(range(1, steps + 1)) - set(got))[:20]})"
# The resumed steps come after the resume event, the earlier ones before the preemption.
assert all(l["step"] <= pre["step"] for l in lines[:ip] if "event" not in l)
assert all(l["step"] > res["step"] for l in lines[ir:] if "event" not in l)
# The losses continue: right after the resume they are near those just before the preemption,
# not back at the untrained start (a run that started over would be).
loss = {l["step"]: l["loss"] for l in train}
r = res["step"]
mean = lambda a, b: sum(loss[s] for s in range(a, b + 1)) / (b - a + 1)
first, before, after = mean(1, 5), mean(r - 4, r), mean(r + 1, r + 5)
print(f"loss: steps 1-5 {first:.3f} | {r - 4}-{r} {before:.3f} | resumed {r + 1}-{r + 5} {after:.3f} | "
      f"step {steps} {loss[steps]:.3f}")
assert first - before > 0.3, f"the run had not learned before the preemption ({first:.3f} -> {before:.3f})"
assert after < before + 0.5 * (first - before), f"the resumed losses ({after:.3f}) start over instead of continuing ({before:.3f})"
PY
grep -E "SIGUSR1|requeueing|resumed from|some train:" "$T/job.out"
echo "slurm preempt + requeue + resume ($NTASKS ranks): ok"
