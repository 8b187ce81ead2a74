#!/usr/bin/env bash
# A small generated corpus, tokenized by `some prepare`, for tests that launch the CLI:
#   make_test_dataset.sh SOME_BINARY OUT_DIR [PREPARE_ARGS...]   -> OUT_DIR/data (vocab 300)
set -euo pipefail
SOME=$1 OUT=$2
shift 2
python3 - "$OUT/corpus" <<'PY'
import os, random, sys
os.makedirs(sys.argv[1], exist_ok=True)
random.seed(5)
w = "the king a shepherd went up to spoke unto came down from the city the mountain the river".split()
with open(f"{sys.argv[1]}/c.txt", "w") as f:
    f.write("\n\n".join(" ".join(random.choice(w) for _ in range(60)) for _ in range(300)))
PY
"$SOME" prepare --input "$OUT/corpus" --out "$OUT/data" --vocab-size 300 "$@" >/dev/null 2>&1 || {
  echo "FAIL: some prepare of the test corpus"; exit 1; }
