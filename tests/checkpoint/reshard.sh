#!/usr/bin/env bash
# Resharding (docs/design.md §7): save on W=4 P=4 at step 10, resume on W=1, on W=2 P=2 and on W=4 P=2:
# the losses of steps 11..20 stay within 1e-4 (relative) of the unresharded continuation. Round
# trip: the W=4 checkpoint of step 20 loaded at W=1 and saved again is bit-identical, every
# tensor. A checkpoint loaded into a model of another shape is an error naming the tensors.
#   usage: reshard.sh SOME SOURCE_DIR PYTHON
source "$(dirname "$0")/common.sh" "$1" "$2" "$3"
run 4 "${COMMON[@]}" --set parallel.expert_parallel=4 --set train.checkpoint_every=10 --run-dir "$T/w4p4"
[ "$(ls "$T/w4p4/checkpoints/step_00000010" | grep -c '^rank_')" -eq 4 ] || fail "W=4 P=4 did not write 4 rank files"
FROM="$T/w4p4/checkpoints/step_00000010"
run 1 "${COMMON[@]}" --resume "$FROM" --run-dir "$T/w1"
run 2 "${COMMON[@]}" --set parallel.expert_parallel=2 --resume "$FROM" --run-dir "$T/w2p2"
run 4 "${COMMON[@]}" --set parallel.expert_parallel=2 --resume "$FROM" --run-dir "$T/w4p2"
# Round trip: resuming at train.max_steps trains nothing and saves the checkpoint again.
run 1 "${COMMON[@]}" --resume "$T/w4p4" --run-dir "$T/roundtrip"
"$PY" - "$T" <<'PY'
import json, sys
import numpy as np
import checkpoint_h5
root = sys.argv[1]
def losses(run): return {l["step"]: l["loss"] for l in map(json.loads, open(f"{root}/{run}/metrics.jsonl")) if "event" not in l}
ref = losses("w4p4")
for run in ("w1", "w2p2", "w4p2"):
    got = losses(run)
    assert sorted(got) == list(range(11, 21)), f"{run}: steps {sorted(got)}"
    rel = max(abs(got[s] - ref[s]) / abs(ref[s]) for s in range(11, 21))
    assert rel <= 1e-4, f"{run}: loss differs by {rel:.2e} relative from the W=4 P=4 continuation"
    print(f"ok   resumed on {run}: steps 11..20 within {rel:.2e} (relative) of W=4 P=4")
a = checkpoint_h5.load(f"{root}/w4p4")
b = checkpoint_h5.load(f"{root}/roundtrip")
assert checkpoint_h5.manifest(f"{root}/roundtrip")["world_size"] == 1
assert a.keys() == b.keys(), f"names differ: {sorted(set(a) ^ set(b))[:5]}"
bad = [k for k in a if a[k].dtype != b[k].dtype or not np.array_equal(a[k], b[k])]
assert not bad, f"{len(bad)} tensors changed in the W=4 -> W=1 round trip, e.g. {bad[:5]}"
experts = sum(".experts." in k for k in a)
moments = sum(k.startswith("optim.exp_avg") for k in a)
print(f"ok   round trip W=4 P=4 -> W=1 -> saved: {len(a)} tensors bit-identical ({experts} expert matrices, "
      f"{moments} AdamW moments, keys, usage, RNG)")
PY
# Another model shape: a named error listing the mismatched tensors, exit 1.
set +e
"$SOME" train "${COMMON[@]}" --set model.d_expert=8 --resume "$FROM" --run-dir "$T/bad" > "$T/bad.log" 2>&1
rc=$?
set -e
[ $rc -eq 1 ] || { cat "$T/bad.log"; fail "loading into another shape exited $rc, not 1"; }
grep -q "does not match the model" "$T/bad.log" && grep -q "layers.1.some.experts.0.w_down" "$T/bad.log" ||
  { cat "$T/bad.log"; fail "the shape error does not name the mismatched tensors"; }
echo "ok   another model shape: $(grep -o '([0-9]* problem(s))' "$T/bad.log" | head -n 1) named"
# eval and generate read the W=4 checkpoint in one process.
"$SOME" eval --run "$T/w4p4" > "$T/eval.out" 2>&1 || { cat "$T/eval.out"; fail "eval of the W=4 checkpoint"; }
grep -q "val PPL" "$T/eval.out" || fail "eval printed no val PPL"
echo "reshard: ok"
