#!/usr/bin/env bash
# The MoE and hash baselines (docs/design.md §10) sharded like SoME: same seed, same global batch, 16 steps
# of the tiny config on W=1, W=2 P=2 and W=4 P=2 (expert gradients averaged over 2 replicas):
# per-step losses within 1e-4 relative and every final tensor (gate, selection bias, every
# trainable expert and its AdamW moments) within 1e-4. Then a run stopped at step 8 on W=2 P=2
# and resumed on W=1 (trainable experts and their moments resharded) must match too.
set -euo pipefail
SOME=$1 SRC=$2 PY=$3
source "$SRC/tests/parallel/runs.sh"
COMMON=(--config configs/tiny.toml --data "$T/data" --set train.log_every=1 --set train.sample_tokens=0
        --set train.max_steps=16 --set train.micro_batch=2 --set train.threads=1 --set train.eval_every=8)
MOE=(--set model.ffn=moe --set moe.balance=aux_loss --set moe.aux_loss=0.05)
BIAS=(--set model.ffn=moe --set moe.balance=bias --set moe.bias_rate=0.01)
HASH=(--set model.ffn=hash)
run moe_w1 1 1 "${MOE[@]}";   run moe_w2p2 2 2 "${MOE[@]}";   run moe_w4p2 4 2 "${MOE[@]}"
run bias_w1 1 1 "${BIAS[@]}"; run bias_w2p2 2 2 "${BIAS[@]}"
run hash_w1 1 1 "${HASH[@]}"; run hash_w4p2 4 2 "${HASH[@]}"
# Stopped at step 8 on W=2 P=2 (the real preemption path), resumed on one process.
SOME_INJECT_SIGNAL=0:8 run moe_stop 2 2 "${MOE[@]}"
"$SOME" train "${COMMON[@]}" "${MOE[@]}" --run-dir "$T/moe_stop" --resume auto > "$T/moe_resume.log" 2>&1 ||
  { tail -n 20 "$T/moe_resume.log"; echo "FAIL: resume on W=1"; exit 1; }
SRC="$SRC" "$PY" - "$T" <<'PY'
import os, sys
import numpy as np
sys.path.insert(0, os.path.join(os.environ["SRC"], "tests", "parallel"))
from compare_runs import compare, losses, state
root = sys.argv[1]
failed = False
for ref, others in (("moe_w1", ("moe_w2p2", "moe_w4p2", "moe_stop")), ("bias_w1", ("bias_w2p2",)), ("hash_w1", ("hash_w4p2",))):
    sa = state(root, ref)
    experts = sum(".experts." in k and not k.startswith("optim.") for k in sa)
    moments = sum(k.startswith("optim.exp_avg.") and ".experts." in k for k in sa)
    assert len(losses(root, ref)) == 16 and experts > 0 and moments == experts, (ref, experts, moments)
    for run in others:
        failed |= not compare(root, ref, run, f" ({experts} expert matrices)")
bias = [v for k, v in state(root, "bias_w1").items() if k.endswith("moe.bias")]
ok = len(bias) == 2 and all(np.abs(b).max() > 0 for b in bias)
failed |= not ok
print(f"{'ok  ' if ok else 'FAIL'} moe.balance = bias moved the selection bias (max |b| {max(np.abs(b).max() for b in bias):.3f})")
sys.exit(1 if failed else 0)
PY
