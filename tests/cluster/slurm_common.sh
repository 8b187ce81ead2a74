# Sourced by the Slurm CTest cases (slurm_cpu_job.sh, slurm_preempt_resume.sh): start the real
# one-node Slurm of ../shared/slurm-local.sh and stop it again at exit. Exit 77 (skipped) only
# where Slurm itself cannot start: no slurm-local.sh, not root, or its daemons do not come up.
# The sourcing script sets SRC (the source directory), START_SECONDS (for slurm-local.sh start:
# it may apt-get install Slurm) and CLIENT_SECONDS (for any one sinfo/squeue/scontrol/sbatch call).

skip() { echo "SKIPPED: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
slurm() { timeout "$CLIENT_SECONDS" "$@"; }  # no Slurm client call may hang the test

# Starts the local Slurm (or skips the test) and sets `trap stop_slurm EXIT`; a script with its
# own EXIT trap calls stop_slurm from it.
start_local_slurm() {
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
  trap stop_slurm EXIT
  local start_log states=""
  if ! start_log=$(timeout "$START_SECONDS" bash "$SLURM_LOCAL" start 2>&1); then
    echo "$start_log" | tail -n 20
    skip "the local Slurm did not start within ${START_SECONDS} s ($SLURM_LOCAL start failed, output above)"
  fi
  command -v sbatch >/dev/null || skip "slurm-local.sh ran but sbatch is not on PATH"
  for _ in $(seq 20); do  # ReturnToService=2 brings a node back once its slurmd registers
    states=$(slurm sinfo -h -o %T 2>/dev/null || true)
    echo "$states" | grep -qE '^(idle|mixed|allocated)' && break
    sleep 1
  done
  echo "$states" | grep -qE '^(idle|mixed|allocated)' ||
    skip "the local Slurm has no usable node (sinfo states: ${states:-none}; see /var/log/slurm/)"
  echo "slurm up: $(slurm sinfo -h -o '%P %D %T %c' | head -n 1)"
  declare -gA SLURM_LOG_SIZE=()  # where slurm_log_lines starts reading
  local f
  for f in $SLURM_LOGS; do SLURM_LOG_SIZE[$f]=$(stat -c %s "$f" 2>/dev/null || echo 0); done
}

# The daemons' log lines about job $1 written since start_local_slurm (the log files of
# slurm-local.sh; job ids may repeat across Slurm state resets, older lines are left out).
SLURM_LOGS="/var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log"
slurm_log_lines() {
  local f from
  for f in $SLURM_LOGS; do
    [ -r "$f" ] || continue
    from=$(( ${SLURM_LOG_SIZE[$f]:-0} + 1 ))
    [ "$(stat -c %s "$f")" -ge $(( from - 1 )) ] || from=1  # replaced since
    echo "---- $f (job $1) ----"
    tail -c +"$from" "$f" | grep -E "(JobId=|[Jj]ob |StepId=)$1([^0-9]|\$)|\[$1\.[a-z0-9]+\]" |
      grep -v 'Recovered JobId' | tail -n 20 || true
  done
}

stop_slurm() {
  local pids="" f p
  if [ "$SLURM_WAS_UP" -eq 0 ]; then
    for f in /run/slurmd.pid /run/slurmctld.pid; do [ ! -f "$f" ] || pids+=" $(cat "$f")"; done
    timeout 30 bash "$SLURM_LOCAL" stop >/dev/null 2>&1 || true
  fi
  if [ "$MUNGE_WAS_UP" -eq 0 ] && [ -f /run/munge/munged.pid ]; then
    pids+=" $(cat /run/munge/munged.pid)"
    kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
  fi
  # Wait (bounded) until they are gone: slurmctld takes a moment to save its state. A test that
  # starts right after this one would otherwise find them still up and not start its own, and
  # an old daemon's exit removes the pid file of its successor. A zombie counts as gone.
  local alive
  for _ in $(seq 60); do
    alive=0
    for p in $pids; do
      if [ -r "/proc/$p/stat" ] && ! grep -qE '^[0-9]+ \(.*\) Z' "/proc/$p/stat" 2>/dev/null; then alive=1; fi
    done
    [ "$alive" -eq 1 ] || break
    sleep 0.5
  done
  return 0
}

# A scratch directory $T with the test corpus in $T/data, removed at exit together with the job
# $JOB (if still queued) and the daemons this test started; the environment the job's mpirun
# needs. Call after start_local_slurm, with SOME and SRC set.
job_workspace() {
  T=$(mktemp -d)
  JOB=""
  cleanup() {
    if [ -n "$JOB" ] && timeout 30 squeue -h -j "$JOB" 2>/dev/null | grep -q .; then timeout 30 scancel "$JOB" || true; fi
    rm -rf "$T"
    stop_slurm
  }
  trap cleanup EXIT
  bash "$SRC/tests/make_test_dataset.sh" "$SOME" "$T"
  if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
  export SOME_BIN="$SOME"
}
