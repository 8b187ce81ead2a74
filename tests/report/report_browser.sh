#!/usr/bin/env bash
# report.html in a real browser: a tiny SoME run reported with both key maps, then report.html
# rendered by headless Chromium (tests/report/check_html.py --browser): every image decodes, no
# console message, a screenshot of the window's size. Skipped (exit 77) where Chromium is absent.
#     report_browser.sh SOME_BINARY SOURCE_DIR PYTHON
set -euo pipefail
SOME=$1
SRC=$2
PY=$3
HERE=$(cd "$(dirname "$0")" && pwd)
BROWSER=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$BROWSER" ]; then
  echo "SKIP: no chromium on PATH (scripts/setup.sh installs Debian's chromium)"
  exit 77
fi
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"  # fail, T (removed at exit), on_exit
export OMP_NUM_THREADS=1
bash "$SRC/tests/make_test_dataset.sh" "$SOME" "$T"
cd "$SRC"
"$SOME" train --config configs/tiny.toml --data "$T/data" --run-dir "$T/run" --set train.max_steps=20 \
  --set train.eval_every=10 --set train.threads=1 > /dev/null
"$SOME" report "$T/run" > /dev/null
"$PY" "$HERE/check_html.py" "$T/run/report" --browser "$BROWSER"
echo "report browser: ok"
