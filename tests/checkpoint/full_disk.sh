#!/usr/bin/env bash
# A full disk during a save (docs/design.md §7): the run directory on a small tmpfs, filled up after a
# first checkpoint. The next save fails with an error naming the file, the job exits 1, and the
# previous checkpoint stays intact and `latest`; nothing partial is left behind.
# Skipped (77) only where a tmpfs cannot be mounted (not root, or no CAP_SYS_ADMIN).
#   usage: full_disk.sh SOME SOURCE_DIR PYTHON
source "$(dirname "$0")/common.sh" "$1" "$2" "$3"
DISK="$T/disk"
mkdir -p "$DISK"
if [ "$(id -u)" -ne 0 ] || ! mount -t tmpfs -o size=4m some-full-disk-test "$DISK" 2>"$T/mount.err"; then
  echo "SKIPPED: cannot mount a tmpfs here ($(cat "$T/mount.err" 2>/dev/null))"; exit 77
fi
on_exit 'umount "$DISK" 2>/dev/null'
run 1 "${COMMON[@]}" --set train.max_steps=10 --run-dir "$DISK/run"
CK="$DISK/run/checkpoints"
[ "$(cat "$CK/latest")" = step_00000010 ] || fail "no first checkpoint"
SIZE=$(du -sb "$CK/step_00000010" | cut -f1)
FREE=$(df --output=avail -B1 "$DISK" | tail -n 1)
# Leave a third of a checkpoint free: room for the logs, not for the next save.
dd if=/dev/zero of="$DISK/filler" bs=4096 count=$(( (FREE - SIZE / 3) / 4096 )) status=none 2>/dev/null || true
echo "tmpfs: checkpoint $SIZE bytes, $(df --output=avail -B1 "$DISK" | tail -n 1) bytes left"
set +e
"$SOME" train "${COMMON[@]}" --set train.max_steps=20 --run-dir "$DISK/run" --resume auto > "$T/full.log" 2>&1
rc=$?
set -e
[ $rc -eq 1 ] || { tail -n 20 "$T/full.log"; fail "a save to a full disk exited $rc, not 1"; }
grep -qE "checkpoint 'step_00000020' of step 20 failed, previous checkpoints are intact: .*cannot write '$CK/.tmp.step_00000020/rank_00000.h5' \(disk full\?\)" "$T/full.log" ||
  { tail -n 5 "$T/full.log"; fail "the error does not name the file it could not write"; }
echo "ok   full disk: $(grep -o "checkpoint 'step_00000020' of step 20 failed.*" "$T/full.log" | head -n 1 | cut -c1-200)"
[ "$(cat "$CK/latest")" = step_00000010 ] || fail "latest moved to $(cat "$CK/latest")"
"$SOME" checkpoint info "$CK/step_00000010" > /dev/null || fail "the previous checkpoint is damaged"
leftovers=$(ls -A "$CK" | grep -v -e '^latest$' -e '^step_00000010$' || true)
[ -z "$leftovers" ] || fail "left behind in $CK: $leftovers"
# Space again: the run resumes from the intact checkpoint and finishes.
rm -f "$DISK/filler"
run 1 "${COMMON[@]}" --set train.max_steps=20 --run-dir "$DISK/run" --resume auto
grep -q "resumed from $CK/step_00000010 at step 10" "$T/last.log" || fail "did not resume from step 10 after freeing space"
echo "ok   previous checkpoint intact and latest; after freeing space the run resumed at step 10 and finished"
echo "full disk: ok"
