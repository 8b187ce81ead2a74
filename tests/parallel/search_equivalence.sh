#!/usr/bin/env bash
# The key store at scale (docs/design.md §3, "Statistics that scale with E" and "Key search"):
# router.search = ivf (4 lists, 2 probed: the index really is approximate) with gravity.peer_stats =
# peer_sum, same seed and global batch, 16 steps of the tiny config on W=1 and W=2 P=2: per-step
# losses within 1e-4 relative and every final tensor (keys, usage, the IVF centres) within 1e-4 —
# every rank holds the same index. A run stopped at step 8 on W=2 P=2 and resumed on W=1 matches too
# (the centres come back from the checkpoint). A second W=1 run with the same seed is identical,
# bit for bit (ANN training is deterministic). And gravity.peer_stats = coactivation gives the same
# run as peer_sum (the two reductions carry the same update).
set -euo pipefail
SOME=$1 SRC=$2 PY=$3
source "$SRC/tests/parallel/runs.sh"
COMMON=(--config configs/tiny.toml --data "$T/data" --set train.log_every=1 --set train.sample_tokens=0
        --set train.max_steps=16 --set train.micro_batch=2 --set train.threads=1 --set train.eval_every=8
        --set router.search=ivf --set router.ivf_lists=4 --set router.ivf_probe=2)
run w1 1 1 --set gravity.peer_stats=peer_sum
run again 1 1 --set gravity.peer_stats=peer_sum
run coact 1 1 --set gravity.peer_stats=coactivation
run exact 1 1 --set gravity.peer_stats=peer_sum --set router.search=exact
run w2p2 2 2 --set gravity.peer_stats=peer_sum
SOME_INJECT_SIGNAL=0:8 run stop 2 2 --set gravity.peer_stats=peer_sum
"$SOME" train "${COMMON[@]}" --set gravity.peer_stats=peer_sum --run-dir "$T/stop" --resume auto > "$T/resume.log" 2>&1 ||
  { tail -n 20 "$T/resume.log"; echo "FAIL: resume on W=1"; exit 1; }
SRC="$SRC" "$PY" - "$T" <<'PY'
import os, sys
import numpy as np
sys.path.insert(0, os.path.join(os.environ["SRC"], "tests", "parallel"))
from compare_runs import compare, losses, state
root = sys.argv[1]
sa = state(root, "w1")
centres = [k for k in sa if k.endswith("some.ivf_centres")]
assert len(losses(root, "w1")) == 16 and centres, sorted(sa)[:20]
failed = False
for run in ("w2p2", "stop", "coact"):
    failed |= not compare(root, "w1", run)
same = losses(root, "again") == losses(root, "w1") and all(
    np.array_equal(v, state(root, "again")[k]) for k, v in sa.items())
print(f"{'ok  ' if same else 'FAIL'} a second run with the same seed is bit-identical")
failed |= not same
# Probing 2 of 4 lists is approximate: some step's loss differs from exact search's.
diff = max(abs(a - b) for a, b in zip(losses(root, "w1").values(), losses(root, "exact").values()))
print(f"{'ok  ' if diff > 0 else 'FAIL'} ivf with 2 of 4 lists routes differently from exact search (max loss diff {diff:.2e})")
failed |= not diff > 0
sys.exit(1 if failed else 0)
PY
