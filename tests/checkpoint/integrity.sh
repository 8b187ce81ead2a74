#!/usr/bin/env bash
# Damaged checkpoints are refused by name (docs/design.md §7): a flipped byte in a rank file, a
# truncated manifest, a leftover temporary directory. `some checkpoint info` and `some eval`
# refuse the damaged one naming the file; `--resume auto` falls back to the newest intact one.
#   usage: integrity.sh SOME SOURCE_DIR PYTHON
source "$(dirname "$0")/common.sh" "$1" "$2" "$3"
run 2 "${COMMON[@]}" --set parallel.expert_parallel=2 --set train.checkpoint_every=5 --set train.keep_last=0 --run-dir "$T/run"
CK="$T/run/checkpoints"
ls "$CK" | grep -q '^\.tmp' && fail "a temporary directory was left behind"
"$SOME" checkpoint info "$T/run" > /dev/null || fail "an intact checkpoint was refused"

# 1. One flipped byte in the middle of step 20's rank 1 file.
"$PY" - "$CK/step_00000020/rank_00001.h5" <<'PY'
import os, sys
p = sys.argv[1]
with open(p, "r+b") as f:
    f.seek(os.path.getsize(p) // 2)
    b = f.read(1)
    f.seek(-1, 1)
    f.write(bytes([b[0] ^ 0x01]))
PY
expect_refusal() {  # expect_refusal WHAT FILE COMMAND...
  local what=$1 file=$2; shift 2
  set +e; "$@" > "$T/out" 2>&1; local rc=$?; set -e
  [ $rc -ne 0 ] || { cat "$T/out"; fail "$what: a damaged checkpoint was accepted"; }
  grep -qF "$file" "$T/out" || { cat "$T/out"; fail "$what: the error does not name $file"; }
  echo "ok   $what refused: $(grep -oE "checkpoint file .* (is damaged|has [0-9]+ bytes)[^;]*" "$T/out" | head -n 1 | cut -c1-160)"
}
expect_refusal "checkpoint info, flipped byte" "$CK/step_00000020/rank_00001.h5" "$SOME" checkpoint info "$T/run"
expect_refusal "eval, flipped byte" "$CK/step_00000020/rank_00001.h5" "$SOME" eval --run "$T/run"

# 2. step 15's manifest cut in half; 3. a leftover of a killed save that looks newest.
M="$CK/step_00000015/manifest.json"
head -c $(( $(stat -c %s "$M") / 2 )) "$M" > "$M.cut" && mv "$M.cut" "$M"
expect_refusal "checkpoint info, truncated manifest" "$M" "$SOME" checkpoint info "$CK/step_00000015"
mkdir -p "$CK/.tmp.step_00000025" && cp "$CK/step_00000010/rank_00000.h5" "$CK/.tmp.step_00000025/"

# --resume auto passes over 20 (byte) and 15 (manifest), resumes at 10 and runs to 25.
run 2 "${COMMON[@]}" --set parallel.expert_parallel=2 --set train.max_steps=25 --set train.checkpoint_every=5 \
    --set train.keep_last=0 --run-dir "$T/run" --resume auto
grep -q "resumed from $CK/step_00000010 at step 10" "$T/last.log" || { tail -n 20 "$T/last.log"; fail "did not fall back to step 10"; }
grep -q "passes over a checkpoint: checkpoint file '$CK/step_00000020/rank_00001.h5' is damaged" "$T/last.log" ||
  fail "the fallback does not say why step 20 was passed over"
grep -q "passes over a checkpoint: checkpoint manifest '$M'" "$T/last.log" || fail "the fallback does not say why step 15 was passed over"
[ "$(cat "$CK/latest")" = step_00000025 ] || fail "latest is $(cat "$CK/latest"), not step_00000025"
[ ! -e "$CK/.tmp.step_00000025" ] || fail "the leftover temporary directory survived a save"
"$SOME" checkpoint info "$T/run" > /dev/null || fail "the new latest checkpoint is not intact"
"$PY" - "$T/run/metrics.jsonl" <<'PY'
import json, sys
steps = [json.loads(l)["step"] for l in open(sys.argv[1]) if '"event"' not in l]
assert steps == list(range(1, 26)), f"steps logged after the fallback: {steps}"
print("ok   metrics.jsonl: steps 1..25 once each (lines after the resumed checkpoint dropped)")
PY
echo "integrity: ok"
