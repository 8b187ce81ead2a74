#!/usr/bin/env bash
# `some report` end to end on real runs of the tiny config:
#   a SoME run with two evals -> report.md whose PNGs exist and are valid and whose table matches
#   the run's analytics file and metrics.jsonl (last step, then --step of the first eval);
#   a disagreeing metrics.jsonl -> a WARNING in the report;
#   a dense run -> curves and a note; the named errors and the exit status passed through;
#   the baselines: an MoE run (its gate rows from the final checkpoint in place of keys) and a
#   hash run (no keys, no gate: experts placed by co-activation), checked the same way.
#     report_end_to_end.sh SOME_BINARY SOURCE_DIR PYTHON
set -euo pipefail
SOME=$1
SRC=$2
PY=$3
HERE=$(cd "$(dirname "$0")" && pwd)
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"  # fail, T (removed at exit), on_exit
export OMP_NUM_THREADS=1
# The checker reads checkpoints with tests/checkpoint_h5.py. Only the checker gets tests/ on its
# module path: `some report` must find the tools package by itself.
check_report() { PYTHONPATH="$SRC/tests" "$PY" "$HERE/check_report.py" "$@"; }

bash "$SRC/tests/make_test_dataset.sh" "$SOME" "$T"
cd "$SRC"
"$SOME" train --config configs/tiny.toml --data "$T/data" --run-dir "$T/run" --set train.max_steps=20 \
  --set train.eval_every=10 --set train.threads=1 > "$T/train.out"
ls "$T/run/analytics/step_00000010.h5" "$T/run/analytics/step_00000020.h5" > /dev/null || fail "train wrote no analytics"

# The last analytics step, into RUN/report.
"$SOME" report "$T/run" | tee "$T/report.out"
grep -q "report.md" "$T/report.out" || fail "some report did not say where the report is"
grep -q "report.html" "$T/report.out" || fail "some report did not say where report.html is"
check_report "$T/run/report" "$T/run" 20
# report.html: self-contained, the same images and text (rendered in a browser by report.browser).
"$PY" "$HERE/check_html.py" "$T/run/report"

# An earlier step and UMAP (a note when the package is missing), into --out.
"$SOME" report "$T/run" --step 10 --out "$T/rep10" --method umap
check_report "$T/rep10" "$T/run" 10
if ! "$PY" -c "import umap" 2> /dev/null; then
  grep -q "UMAP was requested" "$T/rep10/report.md" || fail "no note that UMAP is unavailable"
else
  grep -q "keys embedded by UMAP" "$T/rep10/report.md" || fail "--method umap did not draw the keys with UMAP"
fi

# Both maps: t-SNE and UMAP side by side, the same clusters, each map's silhouette of them.
"$SOME" report "$T/run" --out "$T/both" --method both
check_report "$T/both" "$T/run" 20
if "$PY" -c "import umap" 2> /dev/null; then
  grep -q "middle: the same keys embedded by UMAP" "$T/both/report.md" || fail "--method both has no UMAP map"
  [ "$(grep -c "in the 2-D map (Euclidean; how well the map keeps them apart): t-SNE [0-9.-]*, UMAP [0-9.-]*" \
      "$T/both/report.md")" -eq 2 ] || fail "--method both lacks the t-SNE and UMAP silhouettes of both layers"
  "$PY" - "$T/both/layer_0_keys.png" "$T/run/report/layer_0_keys.png" <<'PY' || fail "--method both drew no third panel"
import struct, sys
w = [struct.unpack(">II", open(p, "rb").read()[16:24])[0] for p in sys.argv[1:]]
sys.exit(0 if w[0] > 1.25 * w[1] else 1)   # three panels are wider than two
PY
else
  grep -q "UMAP was requested" "$T/both/report.md" || fail "no note that UMAP is unavailable"
fi

# The cross-check can fail: a metrics.jsonl whose Gini disagrees gets a warning.
mkdir "$T/bad" && cp -r "$T/run/analytics" "$T/run/config.toml" "$T/bad/"
"$PY" - "$T/run/metrics.jsonl" "$T/bad/metrics.jsonl" <<'PY'
import json, sys
out = open(sys.argv[2], "w")
for line in open(sys.argv[1]):
    j = json.loads(line)
    if j.get("event") == "eval" and j["step"] == 20:
        j["routing"][0]["gini"] += 0.01
    out.write(json.dumps(j) + "\n")
PY
"$SOME" report "$T/bad" 2> "$T/bad.err"
grep -q "WARNING" "$T/bad/report/report.md" || fail "a disagreeing Gini gave no warning in report.md"
grep -q "layer 0 gini" "$T/bad/report/report.md" || fail "the warning does not name the layer and metric"
grep -q "WARNING" "$T/bad.err" || fail "a disagreeing Gini gave no warning on stderr"

# A dense run: curves and a note, no routing figures.
"$SOME" train --config configs/tiny.toml --data "$T/data" --run-dir "$T/dense" --set model.ffn=dense \
  --set train.max_steps=10 --set train.eval_every=10 --set train.threads=1 > /dev/null
"$SOME" report "$T/dense"
check_report "$T/dense/report" "$T/dense" dense

# The baselines: analytics with counts and co-activation only (no keys, no usage).
for ffn in moe hash; do
  "$SOME" train --config configs/tiny.toml --data "$T/data" --run-dir "$T/$ffn" --set model.ffn=$ffn \
    --set train.max_steps=20 --set train.eval_every=10 --set train.threads=1 > /dev/null
  ls "$T/$ffn/analytics/step_00000020.h5" > /dev/null || fail "the $ffn run wrote no analytics"
  "$SOME" report "$T/$ffn" 2> "$T/$ffn.err" || { cat "$T/$ffn.err" >&2; fail "some report of the $ffn run failed"; }
  ! grep -q WARNING "$T/$ffn.err" || fail "the $ffn report disagrees with metrics.jsonl: $(cat "$T/$ffn.err")"
  check_report "$T/$ffn/report" "$T/$ffn" 20
done
grep -q "gate space" "$T/moe/report/report.md" || fail "the MoE report does not draw the gate space"

# Errors name the file, and the script's exit status is the command's.
set +e
"$SOME" report "$T/empty_run" 2> "$T/err"; rc=$?
PYTHONPATH="$SRC/tools" "$PY" -m some_tools.report "$T/empty_run" 2> /dev/null; py_rc=$?
set -e
[ $rc -ne 0 ] || fail "a run without metrics.jsonl did not fail"
[ $rc -eq $py_rc ] || fail "some report exited $rc, python -m some_tools.report $py_rc"
grep -q "$T/empty_run" "$T/err" || fail "missing run error does not name it"
mkdir "$T/no_metrics"
set +e
"$SOME" report "$T/no_metrics" 2> "$T/err"; rc=$?
set -e
[ $rc -eq 1 ] || fail "a run directory without metrics.jsonl exited $rc, not 1"
grep -q "$T/no_metrics/metrics.jsonl" "$T/err" || fail "the error does not name metrics.jsonl"
set +e
"$SOME" report "$T/run" --step 15 --out "$T/x" 2> "$T/err"; rc=$?
set -e
[ $rc -eq 1 ] || fail "a step without analytics exited $rc"
grep -q "step_00000015.h5" "$T/err" || fail "the missing-step error does not name the file"
set +e
SOME_PYTHON="$T/no/python" "$SOME" report "$T/run" 2> "$T/err"; rc=$?
set -e
[ $rc -ne 0 ] || fail "a missing interpreter did not fail"
grep -q "$T/no/python" "$T/err" || fail "the missing-interpreter error does not name it"
grep -q "SOME_PYTHON" "$T/err" || fail "the missing-interpreter error does not name SOME_PYTHON"
# No shell between `some` and the interpreter: arguments arrive verbatim, the status comes back;
# the package is found through tools/ put in front of the caller's PYTHONPATH.
printf '#!/bin/sh\nfor a in "$@" "PYTHONPATH=$PYTHONPATH"; do echo "[$a]"; done > "%s/argv"\nexit 7\n' "$T" \
  > "$T/fake_python"
chmod +x "$T/fake_python"
set +e
PYTHONPATH=/elsewhere SOME_PYTHON="$T/fake_python" "$SOME" report "$T/a run; echo x" --out "$T/o u t" --step 10 \
  --method umap; rc=$?
set -e
[ $rc -eq 7 ] || fail "the interpreter's exit status 7 came back as $rc"
printf '[%s]\n' -m some_tools.report "$T/a run; echo x" --out "$T/o u t" --step 10 --method umap \
  "PYTHONPATH=$SRC/tools:/elsewhere" > "$T/argv.expected"
diff "$T/argv.expected" "$T/argv" || fail "some_tools.report got other arguments or PYTHONPATH than given"
echo "report end to end: ok"
