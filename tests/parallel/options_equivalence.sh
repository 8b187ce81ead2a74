#!/usr/bin/env bash
# The SoME router and expert options of docs/design.md §1 ("Router options", "Expert-side
# options"), all on at once — learned gate scale, loss-free selection bias, k-means++ key
# initialisation, per-expert output scales, a shared expert — sharded like everything else: same
# seed, same global batch, 16 steps of the tiny config on W=1, W=2 P=2 and W=4 P=2: per-step
# losses within 1e-4 relative and every final tensor (keys, usage, selection bias, gate scale,
# expert scales, shared expert and their AdamW moments) within 1e-4. Then a run stopped at step 8
# on W=2 P=2 and resumed on W=1 must match too (the k-means initialisation is not redone).
set -euo pipefail
SOME=$1 SRC=$2 PY=$3
source "$SRC/tests/parallel/runs.sh"
COMMON=(--config configs/tiny.toml --data "$T/data" --set train.log_every=1 --set train.sample_tokens=0
        --set train.max_steps=16 --set train.micro_batch=2 --set train.threads=1 --set train.eval_every=8
        --set router.gate_scale=learnable --set router.balance=bias --set router.bias_rate=0.01
        --set router.key_init=data --set expert.output_scale=learnable --set model.shared_expert=16)
run w1 1 1; run w2p2 2 2; run w4p2 4 2
SOME_INJECT_SIGNAL=0:8 run stop 2 2
"$SOME" train "${COMMON[@]}" --run-dir "$T/stop" --resume auto > "$T/resume.log" 2>&1 ||
  { tail -n 20 "$T/resume.log"; echo "FAIL: resume on W=1"; exit 1; }
SRC="$SRC" "$PY" - "$T" <<'PY'
import os, sys
import numpy as np
sys.path.insert(0, os.path.join(os.environ["SRC"], "tests", "parallel"))
from compare_runs import compare, losses, state
root = sys.argv[1]
sa = state(root, "w1")
wanted = ("some.gate_log_scale", "some.selection_bias", "some.expert_scale", "some.shared.up.weight",
          "optim.exp_avg.layers.1.some.expert_scale")
missing = [w for w in wanted if not any(k.endswith(w) for k in sa)]
assert len(losses(root, "w1")) == 16 and not missing, missing
failed = False
for run in ("w2p2", "w4p2", "stop"):
    failed |= not compare(root, "w1", run)
# Every option did something: the selection bias and the expert scales moved.
moved = {w: max(float(np.abs(v - (1.0 if w.endswith("expert_scale") else 0.0)).max())
                for k, v in sa.items() if k.endswith(w) and not k.startswith("optim."))
         for w in ("some.selection_bias", "some.expert_scale")}
ok = all(m > 0 for m in moved.values())
failed |= not ok
print(f"{'ok  ' if ok else 'FAIL'} the options moved: {moved}")
sys.exit(1 if failed else 0)
PY
