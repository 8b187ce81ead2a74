#!/usr/bin/env bash
# `some experiment claims --scale tiny` end to end on a generated dataset (domain B from this
# Python's standard library):
#   1. a run interrupted before the experiment (a checkpoint, no "done" line) is continued with
#      --resume auto, and a phase-B run dir that never reached a checkpoint starts again from the
#      phase-A checkpoint;
#   2. every run finishes and report.md's tables equal the runs' metrics / eval outputs
#      (check_claims.py), which also catches a tampered number;
#   3. a rerun skips every task and only rewrites the report.
#   claims_end_to_end.sh SOME_BINARY SOURCE_DIR PYTHON
set -euo pipefail
SOME=$1 SRC=$2 PY=$3
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"  # fail, T (removed at exit), on_exit
# The checker recomputes the co-activation statistics with some_tools.claims.stats.
check_claims() { PYTHONPATH="$SRC/tools" "$PY" "$SRC/tests/claims/check_claims.py" "$@"; }

bash "$SRC/tests/make_test_dataset.sh" "$SOME" "$T"
OUT=$T/claims
cd "$T"  # nothing may depend on the working directory being the source tree

"$SOME" experiment claims --scale tiny --out "$OUT" --data "$T/data" --dry-run > "$T/plan.txt"
[ "$(grep -c '^\[' "$T/plan.txt")" = 22 ] || { cat "$T/plan.txt"; fail "the dry run should list 22 tasks"; }
[ ! -e "$OUT" ] || fail "--dry-run created $OUT"
if "$SOME" experiment claims --scale huge --out "$OUT" >/dev/null 2>&1; then fail "--scale huge was accepted"; fi

# (1) An interrupted phase-A run: the dense run's own command stopped at step 30 of 60 (its
# final "done" line removed, as if the process had been killed after the step-30 checkpoint).
DENSE_CMD=$(grep -A1 '\] train dense:' "$T/plan.txt" | tail -1)
read -r -a argv <<< "$DENSE_CMD"
"${argv[@]}" --set train.max_steps=30 > "$T/interrupted.log" 2>&1 || { cat "$T/interrupted.log"; fail "pre-run of dense"; }
"$PY" - "$OUT/dense/metrics.jsonl" <<'PY'
import sys
p = sys.argv[1]
lines = open(p).read().splitlines()
assert '"event":"done"' in lines[-1].replace(" ", ""), lines[-1]
open(p, "w").write("\n".join(lines[:-1]) + "\n")
PY
# A phase-B run directory that never reached a checkpoint of its own.
mkdir -p "$OUT/moe-then-python"
echo '{"step": 1, "loss": 9.9, "tokens": 1}' > "$OUT/moe-then-python/metrics.jsonl"

ms() { echo $(( $(date +%s%N) / 1000000 )); }
start=$(ms)
"$SOME" experiment claims --scale tiny --out "$OUT" --data "$T/data" > "$T/first.out" 2>&1 || {
  tail -40 "$T/first.out"; fail "some experiment claims --scale tiny failed"; }
first=$(( $(ms) - start ))
echo "first run: ${first} ms"
grep -E '^\[ ?[0-9]+/22\] .*(done in|skipped)' "$T/first.out" | sed 's/^/  /' | head -30
[ "$(grep -cE '^\[ ?[0-9]+/22\] .*: done in .* \| ETA ' "$T/first.out")" = 22 ] || {
  cat "$T/first.out"; fail "expected 22 tasks to run, each with a progress line"; }
grep '"event":"resume"' "$OUT/dense/metrics.jsonl" | grep -q '"step":30[,}]' ||
  fail "the interrupted dense run was not resumed from its step-30 checkpoint"
grep -q -- '--resume auto' "$OUT/dense/stdout.log" || fail "dense was not continued with --resume auto"
grep -q -- "--resume $OUT/moe/checkpoints/step_" "$OUT/moe-then-python/stdout.log" ||
  fail "moe-then-python did not restart from the moe checkpoint"

check_claims "$OUT" || fail "report.md does not match the runs"

# The checker must notice a wrong number (a test that cannot fail is no test).
cp "$OUT/report.md" "$T/report.good"
"$PY" - "$OUT/report.md" <<'PY'
import re, sys
p = sys.argv[1]
md = open(p).read()
i = md.index("## Claim C")
row = re.search(r"^\| SoME \|.*$", md[i:], flags=re.M)
cells = row.group(0).split("|")
cells[4] = f" {float(cells[4]) + 1:.2f} "  # PPL_A before
md = md[:i + row.start()] + "|".join(cells) + md[i + row.end():]
open(p, "w").write(md)
PY
if check_claims "$OUT" > "$T/tampered.out"; then fail "check_claims.py accepted a tampered report"; fi
grep -q "PPL_A before" "$T/tampered.out" || { cat "$T/tampered.out"; fail "the tampered number was not named"; }
cp "$T/report.good" "$OUT/report.md"

# (3) A rerun skips everything (metrics untouched) and rewrites the report.
stamp=$(stat -c %Y "$OUT"/*/metrics.jsonl | md5sum)
start=$(ms)
"$SOME" experiment claims --scale tiny --out "$OUT" --data "$T/data" > "$T/second.out" 2>&1 || {
  cat "$T/second.out"; fail "the rerun failed"; }
second=$(( $(ms) - start ))
echo "rerun: ${second} ms"
[ "$(grep -c 'finished before, skipped' "$T/second.out")" = 22 ] || { cat "$T/second.out"; fail "the rerun did not skip all 22 tasks"; }
grep -q 'started' "$T/second.out" && fail "the rerun started a task"
[ "$stamp" = "$(stat -c %Y "$OUT"/*/metrics.jsonl | md5sum)" ] || fail "the rerun touched a metrics.jsonl"
check_claims "$OUT" || fail "the rewritten report.md does not match the runs"
[ "$second" -lt "$first" ] || fail "the rerun (${second} ms) was not faster than the first run (${first} ms)"
echo "PASS: claims end to end (first ${first} ms, rerun ${second} ms)"
