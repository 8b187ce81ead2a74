#!/usr/bin/env bash
# `some experiment claims --part gap|recycling|all --scale tiny` end to end on a generated dataset:
#   1. the dry runs list each part's tasks (gap 80: 20 runs and their full and per-block ablation
#      evals; recycling 39; all 140: domain B's prepare shared by the claims and recycling parts) and
#      create nothing;
#   2. --part gap continues a pre-interrupted run (k-means keys, shared expert, ...) with
#      --resume auto, and report-gap.md equals the runs (check_parts.py gap);
#   3. --part recycling trains the wide dense parents (2 seeds), what is cut and started from them
#      and the controls at equal total tokens and training FLOPs, and report-recycling.md equals the
#      runs (check_parts.py recycling); the checker catches a tampered number in each report;
#   4. --part all in the same OUT runs only the claims part's missing tasks (the shared prepare is
#      skipped) and writes all three reports; a second --part all skips all 140 tasks.
#   parts_end_to_end.sh SOME_BINARY SOURCE_DIR PYTHON
set -euo pipefail
SOME=$1 SRC=$2 PY=$3
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"  # fail, T (removed at exit), on_exit
check_parts() { PYTHONPATH="$SRC/tools" "$PY" "$SRC/tests/claims/check_parts.py" "$@"; }
check_claims() { PYTHONPATH="$SRC/tools" "$PY" "$SRC/tests/claims/check_claims.py" "$@"; }
ms() { echo $(( $(date +%s%N) / 1000000 )); }

bash "$SRC/tests/make_test_dataset.sh" "$SOME" "$T"
OUT=$T/parts
cd "$T"  # nothing may depend on the working directory being the source tree

# (1) The plans.
for part_n in gap:80 recycling:39 all:140 claims:22; do
  part=${part_n%%:*} n=${part_n##*:}
  "$SOME" experiment claims --scale tiny --part "$part" --out "$OUT" --data "$T/data" --dry-run > "$T/plan-$part.txt"
  [ "$(grep -c '^\[' "$T/plan-$part.txt")" = "$n" ] || { cat "$T/plan-$part.txt"; fail "--part $part should list $n tasks"; }
done
[ ! -e "$OUT" ] || fail "--dry-run created $OUT"
if "$SOME" experiment claims --scale tiny --part everything --out "$OUT" >/dev/null 2>&1; then
  fail "--part everything was accepted"
fi
grep -q -- '--set router.gate_scale=learnable --set router.balance=bias --set router.key_init=data --set expert.output_scale=learnable --set model.shared_expert=16' \
  "$T/plan-gap.txt" || fail "the gap plan has no run with all five options"
grep -q -- "--set model.experts_from=$OUT/recycle-wide-s1" "$T/plan-recycling.txt" ||
  fail "the recycled SoME does not take its experts from the wide dense run"
grep -q -- "--set model.init_from=$OUT/recycle-wide-s0 --set model.init_parts=ffn --set model.init_units=cluster" \
  "$T/plan-recycling.txt" || fail "the cluster library is not cut from the wide dense run"

# (2) The gap part, with one run interrupted at step 30 of 60 (its "done" line removed).
CMD=$(grep -A1 '\] train gap-all-s1:' "$T/plan-gap.txt" | tail -1)
read -r -a argv <<< "$CMD"
"${argv[@]}" --set train.max_steps=30 > "$T/interrupted.log" 2>&1 || { cat "$T/interrupted.log"; fail "pre-run of gap-all-s1"; }
"$PY" - "$OUT/gap-all-s1/metrics.jsonl" <<'PY'
import sys
p = sys.argv[1]
lines = open(p).read().splitlines()
assert '"event":"done"' in lines[-1].replace(" ", ""), lines[-1]
open(p, "w").write("\n".join(lines[:-1]) + "\n")
PY
start=$(ms)
"$SOME" experiment claims --scale tiny --part gap --out "$OUT" --data "$T/data" > "$T/gap.out" 2>&1 || {
  tail -40 "$T/gap.out"; fail "--part gap failed"; }
echo "gap: $(( $(ms) - start )) ms"
[ "$(grep -cE '^\[ ?[0-9]+/80\] .*: done in ' "$T/gap.out")" = 80 ] || { cat "$T/gap.out"; fail "gap: expected 80 tasks to run"; }
grep '"event":"resume"' "$OUT/gap-all-s1/metrics.jsonl" | grep -q '"step":30[,}]' ||
  fail "the interrupted gap-all-s1 was not resumed from its step-30 checkpoint"
check_parts "$OUT" gap || fail "report-gap.md does not match the runs"

# (3) The recycling part in the same OUT.
start=$(ms)
"$SOME" experiment claims --scale tiny --part recycling --out "$OUT" --data "$T/data" > "$T/recycling.out" 2>&1 || {
  tail -40 "$T/recycling.out"; fail "--part recycling failed"; }
echo "recycling: $(( $(ms) - start )) ms"
[ "$(grep -cE '^\[ ?[0-9]+/39\] .*: done in ' "$T/recycling.out")" = 39 ] || {
  cat "$T/recycling.out"; fail "recycling: expected 39 tasks to run"; }
check_parts "$OUT" recycling || fail "report-recycling.md does not match the runs"

# The checker must notice a wrong number in either report.
tamper() {  # tamper FILE SECTION ROW-REGEX COLUMN-INDEX: one cell of one table row changed
  "$PY" - "$@" <<'PY'
import re, sys
path, title, row_re, col = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
md = open(path).read()
i = md.index(title)
row = re.search(row_re, md[i:], flags=re.M)
cells = row.group(0).split("|")
cells[col] = " 1" + cells[col].strip() + " "
md = md[:i + row.start()] + "|".join(cells) + md[i + row.end():]
open(path, "w").write(md)
PY
}
tampered() {  # tampered FILE SECTION ROW-REGEX COLUMN-INDEX EXPECTED-MESSAGE
  cp "$OUT/$1" "$T/good.md"
  tamper "$OUT/$1" "$2" "$3" "$4"
  if check_parts "$OUT" > "$T/tampered.out"; then fail "check_parts.py accepted a tampered $1"; fi
  grep -q "$5" "$T/tampered.out" || { cat "$T/tampered.out"; fail "the tampered number in $1 was not named"; }
  cp "$T/good.md" "$OUT/$1"
}
tampered report-gap.md "## Val PPL" '^\| SoME \(reference\) \|.*$' 6 "gap some: val PPL"
tampered report-recycling.md "## Forgetting" '^\| recycled SoME \(slice library\) \|.*$' 5 "PPL_A after"
tampered report-recycling.md "## Val PPL at equal cost" '^\| dense, equal total tokens \|.*$' 6 "recycling dense-tokens: val PPL"

# (4) --part all: only the claims part's own tasks run; then nothing runs.
stamp=$(stat -c %Y "$OUT"/{gap-,recycle-}*/metrics.jsonl | md5sum)
start=$(ms)
"$SOME" experiment claims --scale tiny --part all --out "$OUT" --data "$T/data" > "$T/all.out" 2>&1 || {
  tail -40 "$T/all.out"; fail "--part all failed"; }
echo "all (the claims part's 21 remaining tasks): $(( $(ms) - start )) ms"
[ "$(grep -c 'finished before, skipped' "$T/all.out")" = 119 ] || { cat "$T/all.out"; fail "--part all should skip 119 tasks"; }
[ "$(grep -cE '^\[ *[0-9]+/140\] .*: done in ' "$T/all.out")" = 21 ] || { cat "$T/all.out"; fail "--part all should run 21"; }
[ "$stamp" = "$(stat -c %Y "$OUT"/{gap-,recycle-}*/metrics.jsonl | md5sum)" ] ||
  fail "--part all touched a run of the gap or recycling part"
check_claims "$OUT" || fail "report.md does not match the runs"
check_parts "$OUT" gap recycling || fail "the rewritten reports do not match the runs"
"$SOME" experiment claims --scale tiny --part all --out "$OUT" --data "$T/data" > "$T/again.out" 2>&1 || {
  cat "$T/again.out"; fail "the rerun failed"; }
[ "$(grep -c 'finished before, skipped' "$T/again.out")" = 140 ] || { cat "$T/again.out"; fail "the rerun did not skip all 140"; }
grep -q 'started' "$T/again.out" && fail "the rerun started a task"
for f in report.md report-gap.md report-recycling.md; do [ -s "$OUT/$f" ] || fail "no $f"; done
echo "PASS: claims parts end to end"
