#!/usr/bin/env bash
# `some eval --adapt` / `some generate --adapt` end to end (docs/design.md §3, "Keys that adapt
# while reading"): adapt, save the keys, evaluate with them; zero-strength gravity changes no
# number; the named errors (a keys file that does not fit, --save-keys into the checkpoint, a
# baseline); and the checkpoint's files are byte-for-byte and mtime unchanged at the end.
#   adapt_end_to_end.sh SOME_BINARY SOURCE_DIR [PYTHON with h5py]
set -euo pipefail
SOME=$1
SRC=$2
PY=${3:-python3}
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"  # fail, T (removed at exit), on_exit
export OMP_NUM_THREADS=1

bash "$SRC/tests/make_test_dataset.sh" "$SOME" "$T" --val-fraction 0.2  # more val windows: several updates
cd "$SRC"
"$SOME" train --config configs/tiny.toml --data "$T/data" --run-dir "$T/run" --set train.max_steps=20 \
        --set train.sample_tokens=0 > "$T/train.out" 2>&1 || fail "training the tiny SoME model: $(tail -3 "$T/train.out")"
CKPT="$T/run/checkpoints"
state() { (cd "$CKPT" && find . -type f -print0 | sort -z | xargs -0 sha256sum && find . -printf '%p %T@\n' | sort); }
state > "$T/before"

EVAL=(--run "$T/run" --data "$T/data" --set train.eval_batches=4)
val_line() { grep "^val loss" "$1" || fail "no val line in $1"; }

"$SOME" eval "${EVAL[@]}" > "$T/plain.out"
"$SOME" eval "${EVAL[@]}" --adapt --set gravity.alpha=0.5 --save-keys "$T/keys.h5" > "$T/adapt.out"
grep -q "^adapted online: 4 updates (every 1 micro-batches" "$T/adapt.out" || fail "eval --adapt: no 'adapted online' line: $(cat "$T/adapt.out")"
[ "$(grep -c '^{' "$T/adapt.out")" -eq 2 ] || fail "eval --adapt lost the routing JSON lines"
[ "$(val_line "$T/adapt.out")" != "$(val_line "$T/plain.out")" ] || fail "adapting changed no number"
"$PY" - "$T/keys.h5" <<'PY' || fail "the keys file lacks tensors"
import sys
import h5py
f = h5py.File(sys.argv[1], "r")
for name in ("layers/0/keys", "layers/0/usage", "layers/1/keys", "layers/1/usage"):
    assert name in f, f"no {name}"
assert f["layers/0/keys"].shape == (8, 32), f["layers/0/keys"].shape
PY
# The saved keys, loaded into the checkpoint's model: another PPL than the checkpoint's own keys.
"$SOME" eval "${EVAL[@]}" --keys "$T/keys.h5" > "$T/keys.out"
[ "$(val_line "$T/keys.out")" != "$(val_line "$T/plain.out")" ] || fail "eval --keys gave the checkpoint's numbers"
# --adapt-every 3 over 4 micro-batches: after the third, and one at the end.
"$SOME" eval "${EVAL[@]}" --adapt --adapt-every 3 > "$T/every.out"
grep -q "^adapted online: 2 updates" "$T/every.out" || fail "--adapt-every 3: $(grep adapted "$T/every.out")"
# Zero-strength gravity: exactly the unadapted numbers.
"$SOME" eval "${EVAL[@]}" --adapt --set gravity.alpha=0 --set gravity.beta=0 --set gravity.delta=0 > "$T/zero.out"
[ "$(val_line "$T/zero.out")" == "$(val_line "$T/plain.out")" ] || fail "zero-strength adaptation changed the PPL"

# Generation: the prompt, then every 4 tokens; stdout is still only the text.
"$SOME" generate --run "$T/run" --data "$T/data" --prompt "the king" --max-tokens 9 --seed 3 --adapt --adapt-every 4 \
        > "$T/gen.out" 2> "$T/gen.err"
grep -q "^the king" "$T/gen.out" || fail "generate --adapt does not echo the prompt"
grep -q "adapted online: 3 updates" "$T/gen.err" || fail "generate --adapt: $(cat "$T/gen.err")"

# Named errors.
"$PY" - "$T/bad.h5" <<'PY'
import sys
import h5py
import numpy as np
with h5py.File(sys.argv[1], "w") as f:
    for layer in (0, 1):
        f[f"layers/{layer}/keys"] = np.zeros((16 if layer else 8, 32), np.float32)
        f[f"layers/{layer}/usage"] = np.ones(8, np.float32)
PY
expect_error() {  # expect_error RC PATTERN ARGS...: exit code RC, stderr matching PATTERN
  local want=$1 pattern=$2; shift 2
  set +e; "$SOME" "$@" > "$T/out" 2> "$T/err"; local rc=$?; set -e
  [ $rc -eq "$want" ] || fail "'$*' exited $rc, not $want: $(cat "$T/err")"
  grep -q -- "$pattern" "$T/err" || fail "'$*': no error matching '$pattern': $(cat "$T/err")"
}
expect_error 1 "keys file '$T/bad.h5': tensor 'layers/1/keys' has shape \[16, 32\]" eval "${EVAL[@]}" --keys "$T/bad.h5"
expect_error 1 "$T/absent.h5" eval "${EVAL[@]}" --keys "$T/absent.h5"
expect_error 2 "inside the checkpoint" eval "${EVAL[@]}" --adapt --save-keys "$CKPT/latest-keys.h5"
expect_error 2 "inside the checkpoint" generate --run "$T/run" --data "$T/data" --save-keys "$CKPT/keys.h5"
"$SOME" train --config configs/tiny.toml --data "$T/data" --run-dir "$T/dense" --set model.ffn=dense \
        --set train.max_steps=2 --set train.sample_tokens=0 > "$T/dense.out" 2>&1 || fail "training the dense baseline"
expect_error 2 "model.ffn = 'dense'" eval --run "$T/dense" --data "$T/data" --set train.eval_batches=1 --adapt

state > "$T/after"
diff "$T/before" "$T/after" > /dev/null || fail "the checkpoint changed: $(diff "$T/before" "$T/after" | head -5)"
echo "adapt end to end: ok"
