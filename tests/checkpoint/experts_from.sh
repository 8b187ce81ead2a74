#!/usr/bin/env bash
# model.experts_from (docs/design.md §2): the expert library built from a trained dense model's
# FFNs. Expert i of layer l = hidden units [i*h, (i+1)*h) of that layer's FFN when E*h = d_ff,
# the whole FFN when h = d_ff; on 1 process and sharded over 2 ranks (each rank fills its own
# experts); the experts stay frozen through training; a misfit is a config error naming the key.
#   usage: experts_from.sh SOME SOURCE_DIR PYTHON
source "$(dirname "$0")/common.sh" "$1" "$2" "$3"
run 1 "${COMMON[@]}" --set model.ffn=dense --set model.d_ff=128 --run-dir "$T/dense"
# tiny: E = 8 experts of h = 16 -> slices of the 128-wide FFN.
run 1 "${COMMON[@]}" --set train.max_steps=5 --set model.experts_from="$T/dense" --run-dir "$T/slices1"
run 2 "${COMMON[@]}" --set train.max_steps=5 --set model.experts_from="$T/dense" --set parallel.expert_parallel=2 --run-dir "$T/slices2"
run 1 "${COMMON[@]}" --set train.max_steps=5 --set model.experts_from="$T/dense" --set model.d_expert=128 --run-dir "$T/copies"
grep -q "expert library from $T/dense/checkpoints/step_00000020: slices of 16 units" "$T/slices1/train.log" || fail "no expert-library log line"
"$PY" - "$T" <<'PY'
import sys
import numpy as np
import checkpoint_h5
root = sys.argv[1]
dense = checkpoint_h5.load(f"{root}/dense")
for run, h in (("slices1", 16), ("slices2", 16), ("copies", 128)):
    some = checkpoint_h5.load(f"{root}/{run}")
    for l in (0, 1):
        up, down = dense[f"layers.{l}.dense.up.weight"], dense[f"layers.{l}.dense.down.weight"]  # (d_ff, d), (d, d_ff)
        for i in range(8):
            first = i * h if h * 8 == up.shape[0] else 0
            assert np.array_equal(some[f"layers.{l}.some.experts.{i}.w_down"], up[first:first + h]), (run, l, i)
            assert np.array_equal(some[f"layers.{l}.some.experts.{i}.w_up"], down[:, first:first + h]), (run, l, i)
    print(f"ok   {run}: 2 layers x 8 experts equal to the dense FFN's {'slices' if h == 16 else 'copies'} after 5 training steps")
PY
set +e
"$SOME" train "${COMMON[@]}" --set model.experts_from="$T/dense" --set model.d_expert=20 --run-dir "$T/bad" > "$T/bad.log" 2>&1
rc=$?
set -e
[ $rc -eq 2 ] || { cat "$T/bad.log"; fail "a misfit dense model exited $rc, not 2"; }
grep -q "model.experts_from = '$T/dense':" "$T/bad.log" &&
  grep -q "layers.0.some.experts.0.w_down (20, 32) <- layers.0.dense.up.weight (128, 32): 8 experts x 20 units need 160 units" "$T/bad.log" ||
  { cat "$T/bad.log"; fail "the misfit error does not name the key and the widths"; }
[ ! -e "$T/bad" ] || fail "a refused library left a run directory"
echo "ok   misfit: $(grep -o "layers.0.some.experts.0.w_down.*" "$T/bad.log" | head -n 1)"
echo "experts_from: ok"
