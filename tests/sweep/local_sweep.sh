#!/usr/bin/env bash
# sweep.local: `some sweep` end to end on the tiny config and a generated corpus, a 2 x 1 grid x
# 2 seeds = 4 runs of 30 steps, each a real `some train` child process. Checked, in order:
#  1. every run trains in OUT/<sweep>/<run name>/ and ends with the done event; summary.csv has
#     one row per run whose values equal that run's metrics.jsonl (last eval, done line);
#     summary.md has the mean ± std table over the two seeds;
#  2. the same command again trains nothing: every run is reported skipped, no file changes;
#  3. one run's done line deleted, another run's directory deleted and its training failing at
#     step 25 (SOME_INJECT_FAULT): only those two run; the first finishes again from its final
#     checkpoint, the second fails, the sweep goes on and exits non-zero naming it;
#  4. the same command again: only the failed run runs, resuming from its step-20 checkpoint;
#  5. a SIGTERM to the sweep while a run trains reaches the run, which checkpoints and stops; the
#     sweep stops, and the same command then resumes that run from the checkpoint;
#  6. a sweep whose configs changed (--set) refuses the old run directories.
#   usage: local_sweep.sh SOME_BINARY SOURCE_DIR
set -euo pipefail
SOME=$(realpath "$1")
SRC=$(realpath "$2")
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"  # fail, T (removed at exit), on_exit
SWEEP_PID=""
on_exit '[ -z "$SWEEP_PID" ] || kill "$SWEEP_PID" 2>/dev/null'
bash "$SRC/tests/make_test_dataset.sh" "$SOME" "$T"

# The base config next to the sweep file (base = a path relative to the sweep file).
cp "$SRC/configs/tiny.toml" "$T/tiny-base.toml"
cat > "$T/sweep.toml" <<'EOF'
name = "local"
description = "sweep.local: a 2 x 1 grid over two seeds on the tiny config"
base = "tiny-base.toml"
seeds = [1, 2]

[set]
"train.max_steps" = 30
"train.log_every" = 5
"train.eval_every" = 10
"train.checkpoint_every" = 10
"train.sample_tokens" = 0
"train.eval_sample_tokens" = 0
"train.threads" = 1

[grid]
"gravity.alpha" = [0.01, 0.1]
gravity.beta = [0.002]
EOF
mkdir -p "$T/work" && cd "$T/work"  # neither the source tree nor the sweep file's folder
OUT="$T/out"
DIR="$OUT/local"
NAMES=("alpha=0.01,beta=0.002,seed=1" "alpha=0.1,beta=0.002,seed=1" "alpha=0.01,beta=0.002,seed=2"
       "alpha=0.1,beta=0.002,seed=2")
sweep() { "$SOME" sweep "$T/sweep.toml" --out "$OUT" --data "$T/data" "$@"; }
# "EVENT STEP" per line of a metrics.jsonl ("- STEP" for a training line).
events() { python3 -c 'import json, sys
for l in map(json.loads, open(sys.argv[1])): print(l.get("event", "-"), l.get("step"))' "$1"; }
ends_done() { events "$DIR/$1/metrics.jsonl" | tail -n 1 | grep -q '^done '; }
fingerprint() { (cd "$DIR" && find . -type f ! -path './summary*' -exec md5sum {} + | sort); }

# The summary against every run's metrics.jsonl: exact values, one row per run, in run order.
check_summary() {  # EXPECTED_STATUS... (one per run)
  python3 - "$DIR" "$@" <<'PY'
import csv, json, math, sys
d, expected = sys.argv[1], sys.argv[2:]
rows = list(csv.DictReader(open(f"{d}/summary.csv")))
names = ["alpha=0.01,beta=0.002,seed=1", "alpha=0.1,beta=0.002,seed=1", "alpha=0.01,beta=0.002,seed=2",
         "alpha=0.1,beta=0.002,seed=2"]
assert [r["run"] for r in rows] == names, f"summary rows {[r['run'] for r in rows]}"
for r, name, status in zip(rows, names, expected):
    assert r["status"] == status, f"{name}: status {r['status']}, expected {status}"
    assert r["gravity.alpha"] == name.split(",")[0].split("=")[1] and r["gravity.beta"] == "0.002", r
    assert r["seed"] == name[-1], r
    if status != "done":
        continue
    lines = [json.loads(l) for l in open(f"{d}/{name}/metrics.jsonl")]
    ev = [l for l in lines if l.get("event") == "eval"][-1]
    done = lines[-1]
    assert done["event"] == "done"
    assert float(r["val_ppl"]) == ev["val_ppl"], (name, r["val_ppl"], ev["val_ppl"])
    assert float(r["unigram_ppl"]) == ev["unigram_ppl"], name
    for key in ("gini", "entropy_norm", "dead_experts"):
        want = sum(l[key] for l in ev["routing"]) / len(ev["routing"])
        assert math.isclose(float(r[key]), want, rel_tol=1e-12, abs_tol=1e-12), (name, key, r[key], want)
    assert float(r["tokens_per_s"]) == done["tokens_per_s"] and float(r["wall_s"]) == done["elapsed_s"], name
    assert int(r["steps"]) == 30, r
print(f"summary.csv: {len(rows)} rows match metrics.jsonl ({', '.join(expected)})")
PY
}

# ---- 1: every run --------------------------------------------------------------------------
sweep --dry-run | tee "$T/dry.log"
[ "$(grep -c ' new ' "$T/dry.log")" -eq 4 ] || fail "the dry run does not list 4 new runs"
[ ! -e "$DIR" ] || fail "--dry-run created $DIR"
sweep | tee "$T/run1.log" || fail "the first sweep failed"
[ "$(grep -c ': done in ' "$T/run1.log")" -eq 4 ] || fail "expected 4 'done in' progress lines"
grep -q 'run 4/4 .* ETA' "$T/run1.log" || fail "no progress line with an ETA"
for n in "${NAMES[@]}"; do
  [ -d "$DIR/$n" ] || fail "no run directory $DIR/$n"
  ends_done "$n" || fail "$n: metrics.jsonl does not end with the done event"
  grep -q "^==== some sweep local run" "$DIR/$n/stdout.log" || fail "$n: no stdout.log header"
  grep -q "val PPL" "$DIR/$n/stdout.log" || fail "$n: stdout.log lacks the child's output"
  grep -q 'seed = 1$\|seed = 2$' "$DIR/$n/config.toml" || fail "$n: config.toml has no seed"
done
[ "$(grep -c '^seed = '"${NAMES[3]: -1}" "$DIR/${NAMES[3]}/config.toml")" -eq 2 ] ||
  fail "model.seed and train.seed are not both the run's seed"
check_summary done done done done
grep -q '## Mean ± std over seeds' "$DIR/summary.md" || fail "summary.md has no mean ± std table"
grep -qE '^\| alpha=0.1,beta=0.002 \| 0.1 \| 0.002 \| 2/2 \| [0-9.]+ ± [0-9.]+ \|' "$DIR/summary.md" ||
  fail "summary.md's mean ± std row for alpha=0.1 is missing"

# ---- 2: again: everything skipped ------------------------------------------------------------
before=$(fingerprint)
start=$SECONDS
sweep | tee "$T/run2.log" || fail "the second sweep failed"
[ "$(grep -c 'skipped (already done' "$T/run2.log")" -eq 4 ] || fail "not every run was skipped"
! grep -q 'starting\|resuming' "$T/run2.log" || fail "a finished run was started again"
[ $(( SECONDS - start )) -le 15 ] || fail "skipping 4 finished runs took $(( SECONDS - start )) s"
[ "$before" = "$(fingerprint)" ] || fail "the second sweep changed run files"
sweep --dry-run | grep -c ' done ' | grep -qx 4 || fail "the dry run does not show 4 done runs"

# ---- 3: a lost done line, a lost run that fails ------------------------------------------------
sed -i '$d' "$DIR/${NAMES[1]}/metrics.jsonl"        # run 1: last line (done) gone
rm -rf "${DIR:?}/${NAMES[2]}"                        # run 2: gone; it fails at step 25 below
set +e
SOME_INJECT_FAULT=0:25 sweep > "$T/run3.log" 2>&1
rc=$?
set -e
cat "$T/run3.log"
[ "$rc" -ne 0 ] || fail "a sweep with a failed run exited 0"
grep -q "run 2/4 ${NAMES[1]}: resuming" "$T/run3.log" || fail "run 1 (done line deleted) did not resume"
grep -q "run 2/4 ${NAMES[1]}: done in" "$T/run3.log" || fail "run 1 did not finish"
grep -q "run 3/4 ${NAMES[2]}: starting" "$T/run3.log" || fail "run 2 (deleted) did not start"
grep -q "run 3/4 ${NAMES[2]}: FAILED" "$T/run3.log" || fail "run 2's failure was not reported"
grep -q "injected fault" "$T/run3.log" || fail "the failed run's last output lines are not shown"
grep -q "run 4/4 ${NAMES[3]}: skipped" "$T/run3.log" || fail "the sweep did not go on after the failure"
grep -q "1 of 4 run(s) failed: ${NAMES[2]}" "$T/run3.log" || fail "the final error does not name the failed run"
[ "$(grep -c 'skipped (already done' "$T/run3.log")" -eq 2 ] || fail "expected runs 0 and 3 skipped"
ends_done "${NAMES[1]}" || fail "run 1 does not end with done again"
events "$DIR/${NAMES[1]}/metrics.jsonl" | grep -x 'resume 30' >/dev/null || fail "run 1 did not resume at step 30"
check_summary done done failed done

# ---- 4: the failed run resumes --------------------------------------------------------------
sweep | tee "$T/run4.log" || fail "the fourth sweep failed"
[ "$(grep -c 'skipped (already done' "$T/run4.log")" -eq 3 ] || fail "expected 3 runs skipped"
grep -q "run 3/4 ${NAMES[2]}: resuming" "$T/run4.log" || fail "the failed run did not resume"
events "$DIR/${NAMES[2]}/metrics.jsonl" | grep -x 'resume 20' >/dev/null ||
  fail "the failed run did not resume from its step-20 checkpoint"
python3 - "$DIR/${NAMES[2]}/metrics.jsonl" <<'PY' || fail "the resumed run's training lines are wrong"
import json, sys
steps = [l["step"] for l in map(json.loads, open(sys.argv[1])) if "event" not in l]
assert steps == list(range(5, 31, 5)), steps
PY
check_summary done done done done

# ---- 5: a stop signal reaches the run; the same command resumes it --------------------------------
cat > "$T/long.toml" <<'EOF'
name = "long"
base = "tiny-base.toml"
[set]
"train.max_steps" = 400
"train.log_every" = 1
"train.eval_every" = 0
"train.checkpoint_every" = 0
"train.sample_tokens" = 0
"train.eval_sample_tokens" = 0
"train.threads" = 1
EOF
LONG="$OUT/long/base"
"$SOME" sweep "$T/long.toml" --out "$OUT" --data "$T/data" > "$T/long1.log" 2>&1 &
SWEEP_PID=$!
for _ in $(seq 600); do  # until step 20 is logged (at most 60 s)
  last=$(grep -v '"event"' "$LONG/metrics.jsonl" 2>/dev/null | tail -n 1 | grep -oE '"step":[0-9]+' | cut -d: -f2 || true)
  [ "${last:-0}" -lt 20 ] || break
  sleep 0.1
done
[ "${last:-0}" -ge 20 ] || { cat "$T/long1.log"; fail "the long run did not reach step 20"; }
kill -TERM "$SWEEP_PID"
set +e
wait "$SWEEP_PID"
rc=$?
set -e
SWEEP_PID=""
cat "$T/long1.log"
[ "$rc" -ne 0 ] || fail "a sweep stopped by SIGTERM exited 0"
grep -q "stopped by signal 15" "$T/long1.log" || fail "the sweep did not say it was stopped by the signal"
last=$(events "$LONG/metrics.jsonl" | tail -n 1)
[ "${last% *}" = preempted ] || fail "the run did not checkpoint on the signal (last line: $last)"
stopped=${last#* }
[ "$stopped" -lt 400 ] || fail "the run was not stopped early (step $stopped)"
"$SOME" sweep "$T/long.toml" --out "$OUT" --data "$T/data" | tee "$T/long2.log" || fail "the resumed sweep failed"
grep -q "resuming" "$T/long2.log" || fail "the stopped run was not resumed"
events "$LONG/metrics.jsonl" | grep -x "resume $stopped" >/dev/null || fail "the run did not resume at step $stopped"
events "$LONG/metrics.jsonl" | tail -n 1 | grep -qx 'done 400' || fail "the resumed run did not finish"

# ---- 6: another config in the same directories ----------------------------------------------
before=$(fingerprint)
set +e
sweep --set gravity.delta=0.01 > "$T/run6.log" 2>&1
rc=$?
set -e
cat "$T/run6.log"
[ "$rc" -ne 0 ] || fail "a sweep over run directories of another config exited 0"
[ "$(grep -c 'is another config (gravity.delta' "$T/run6.log")" -eq 4 ] || fail "not every stale run was refused"
[ "$before" = "$(fingerprint)" ] || fail "the refused sweep changed run files"
grep -q '^"alpha=0.01,beta=0.002,seed=1",0.01,0.002,1,stale,' "$DIR/summary.csv" || fail "summary.csv does not mark stale runs"
echo "sweep.local: ok"
