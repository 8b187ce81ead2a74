#!/usr/bin/env bash
# `some top` on what is not a run: exit status 1 and one message naming the path and what a run
# directory holds, before anything is drawn; the status is the Python tool's own.
#     top_errors.sh SOME_BINARY SOURCE_DIR PYTHON
set -euo pipefail
SOME=$1
SRC=$2
PY=$3
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"  # fail, T (removed at exit), on_exit
mkdir "$T/empty"
echo "not a run" > "$T/file"
# expect_error ARGS... -- REGEX: `some top ARGS` fails with status 1 and a message matching REGEX.
expect_error() {
  local args=() rc
  while [ "$1" != "--" ]; do args+=("$1"); shift; done
  set +e
  "$SOME" top "${args[@]}" --once > "$T/out" 2> "$T/err"; rc=$?
  set -e
  [ $rc -eq 1 ] || fail "some top ${args[*]} exited $rc, not 1: $(cat "$T/err")"
  grep -qE "$2" "$T/err" || fail "some top ${args[*]}: the message does not match /$2/: $(cat "$T/err")"
  [ ! -s "$T/out" ] || fail "some top ${args[*]} drew something before failing: $(cat "$T/out")"
}
expect_error "$T/empty" -- "^top: error: $T/empty: not a run directory: expected $T/empty/metrics.jsonl"
expect_error "$T/missing" -- "^top: error: $T/missing: no such directory \(expected a run directory holding metrics.jsonl"
expect_error "$T/file" -- "^top: error: $T/file: not a directory"
# One bad directory among good ones is named too (here the second of two).
mkdir "$T/run" && echo '{"step": 5, "loss": 3.0, "elapsed_s": 1.0}' > "$T/run/metrics.jsonl"
expect_error "$T/run" "$T/empty" -- "$T/empty: not a run directory"
# The Python tool's status is `some top`'s: the launcher hands the process over to it.
set +e
PYTHONPATH="$SRC/tools" "$PY" -m some_tools.top "$T/empty" 2> /dev/null; rc=$?
set -e
[ $rc -eq 1 ] || fail "python -m some_tools.top on a non-run exited $rc"
# A good directory works once (no terminal: one frame) and names its step.
"$SOME" top "$T/run" > "$T/out" || fail "some top on a run failed"
grep -q "step 5" "$T/out" || fail "the frame does not show step 5: $(cat "$T/out")"
set +e
SOME_PYTHON="$T/no/python" "$SOME" top "$T/run" 2> "$T/err"; rc=$?
set -e
[ $rc -eq 1 ] || fail "a missing interpreter exited $rc"
grep -q "SOME_PYTHON" "$T/err" || fail "the missing-interpreter error does not name SOME_PYTHON"
echo "top errors: ok"
