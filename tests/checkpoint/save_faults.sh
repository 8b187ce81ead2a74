#!/usr/bin/env bash
# SIGKILL during a save (docs/design.md §7): 10 times, a rank of a 2-rank job is killed with SIGKILL at
# a random point of a random save (after writing its file, after the reports are gathered, after
# the manifest, after the directory rename, after `latest`). Every time: every directory named
# step_* verifies, the job resumes (`--resume auto`) from the newest complete checkpoint (the one
# expected for where the kill landed) and finishes with losses bit-identical to a run never killed.
#   usage: save_faults.sh SOME SOURCE_DIR PYTHON [SEED]
source "$(dirname "$0")/common.sh" "$1" "$2" "$3"
RANDOM=${4:-5}
ARGS=("${COMMON[@]}" --set train.max_steps=12 --set train.checkpoint_every=2 --set train.keep_last=2
      --set parallel.expert_parallel=2 --set train.eval_every=0)
run 2 "${ARGS[@]}" --run-dir "$T/reference"
# Every point of a save each rank passes (rank 1 only writes its file and reports), then random.
POINTS=(0:file 0:gathered 0:manifest 0:renamed 0:latest 1:file 1:gathered)
for i in $(seq 10); do
  if [ "$i" -le ${#POINTS[@]} ]; then POINT=${POINTS[$(( i - 1 ))]}; else POINT=${POINTS[$(( RANDOM % ${#POINTS[@]} ))]}; fi
  RANK=${POINT%%:*} PHASE=${POINT#*:}
  NTH=$(( 2 + RANDOM % 4 ))  # the 2nd..5th save: steps 4..10, with an earlier checkpoint on disk
  R="$T/kill$i"
  set +e
  SOME_CHECKPOINT_FAULT="$RANK:$PHASE:$NTH" launch 2 "${ARGS[@]}" --run-dir "$R"
  rc=$?
  set -e
  [ $rc -ne 0 ] || fail "kill $i ($RANK:$PHASE:$NTH): the job did not die"
  grep -q "SOME_CHECKPOINT_FAULT: killing rank $RANK at '$PHASE' of save $NTH" "$T/last.log" ||
    { tail -n 20 "$T/last.log"; fail "kill $i: the fault did not fire"; }
  for d in "$R"/checkpoints/step_*; do
    "$SOME" checkpoint info "$d" > "$T/info.log" 2>&1 || { cat "$T/info.log"; fail "kill $i ($RANK:$PHASE:$NTH): $d is not intact"; }
  done
  if [ -f "$R/checkpoints/latest" ]; then
    "$SOME" checkpoint info "$R" > "$T/info.log" 2>&1 || { cat "$T/info.log"; fail "kill $i ($RANK:$PHASE:$NTH): latest is damaged"; }
  fi
  # The save the kill interrupted was committed iff the kill came after the directory rename,
  # except rank 1 killed after the reports were gathered: rank 0 has everything it needs and may
  # commit before mpirun takes it down (a complete checkpoint either way).
  case $PHASE in renamed|latest) EXPECT="$(( 2 * NTH ))" ;; *) EXPECT="$(( 2 * (NTH - 1) ))" ;; esac
  [ "$RANK:$PHASE" = 1:gathered ] && EXPECT="$EXPECT|$(( 2 * NTH ))"
  run 2 "${ARGS[@]}" --run-dir "$R" --resume auto
  grep -qE "resumed from $R/checkpoints/step_0+($EXPECT) at step ($EXPECT) " "$T/last.log" ||
    { grep -E 'resumed|passes over' "$T/last.log"; fail "kill $i ($RANK:$PHASE:$NTH): did not resume at step $EXPECT"; }
  "$PY" - "$R" "$T/reference" <<'PY' || fail "kill $i ($RANK:$PHASE:$NTH): the resumed run differs"
import json, sys
def losses(run): return [(l["step"], l["loss"]) for l in map(json.loads, open(f"{run}/metrics.jsonl")) if "event" not in l]
assert losses(sys.argv[1]) == losses(sys.argv[2]), "losses differ from the run never killed"
PY
  AT=$(grep -oE "resumed from .* at step [0-9]+" "$T/last.log" | grep -oE '[0-9]+$')
  echo "ok   kill $i: rank $RANK at '$PHASE' of save $NTH -> every step_* intact, resumed at step $AT, losses identical"
done
echo "save faults: ok"
