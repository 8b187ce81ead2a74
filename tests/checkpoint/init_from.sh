#!/usr/bin/env bash
# model.init_from (docs/design.md §2): a new run's tensors from another run's checkpoint, by
# global name, with a wider dense FFN cut into a narrower one or into an expert library. The
# source is written by 2 ranks; the targets run on 1 process and on 2 ranks with P = 2. Runs of
# one step at optim.lr = 0 keep what they were given, so their checkpoints show the init exactly:
#   narrow   dense d_ff 32 <- the 128-wide FFN's 32 units of largest |up_j| |down_j|, everything
#            else copied, AdamW moments cut the same way and the step continued (init_optimizer)
#   cluster  SoME 8 x 16 <- the FFN only, units by balanced k-means: every expert 16 distinct units,
#            all 128 used once, the same groups on 1 and on 2 ranks; the backbone stays fresh
#   backbone SoME <- everything but the FFNs: embeddings and attention copied, experts random
#   misfit   another d_model: exit 2, every misfit named with both shapes, no run directory made
#   usage: init_from.sh SOME SOURCE_DIR PYTHON
source "$(dirname "$0")/common.sh" "$1" "$2" "$3"
run 2 "${COMMON[@]}" --set model.ffn=dense --set model.d_ff=128 --run-dir "$T/dense"
ONE=(--set train.max_steps=1 --set optim.lr=0 --set train.checkpoint_experts=every --set model.init_from="$T/dense")
run 1 "${COMMON[@]}" "${ONE[@]}" --set model.ffn=dense --set model.d_ff=32 --set model.init_units=magnitude \
    --set model.init_optimizer=true --run-dir "$T/narrow"
run 1 "${COMMON[@]}" "${ONE[@]}" --set model.init_parts=ffn --set model.init_units=cluster --run-dir "$T/cluster1"
run 2 "${COMMON[@]}" "${ONE[@]}" --set model.init_parts=ffn --set model.init_units=cluster \
    --set parallel.expert_parallel=2 --run-dir "$T/cluster2"
run 1 "${COMMON[@]}" "${ONE[@]}" --set model.init_parts=backbone --run-dir "$T/backbone"
grep -q "model initialised from $T/dense/checkpoints/step_00000020 (step 20)" "$T/narrow/train.log" ||
  fail "no 'model initialised from' line in narrow/train.log"
grep -q "expert library from $T/dense/checkpoints/step_00000020: groups of 16 units by cluster" "$T/cluster1/train.log" ||
  fail "no expert-library line in cluster1/train.log"
"$PY" - "$T" <<'PY'
import sys
import numpy as np
import checkpoint_h5
root = sys.argv[1]
src = checkpoint_h5.load(f"{root}/dense")
narrow = checkpoint_h5.load(f"{root}/narrow")
units = {}
for l in (0, 1):
    up, down = src[f"layers.{l}.dense.up.weight"], src[f"layers.{l}.dense.down.weight"]   # (128, d), (d, 128)
    score = np.linalg.norm(up.astype(np.float64), axis=1) * np.linalg.norm(down.astype(np.float64), axis=0)
    units[l] = np.sort(np.argsort(-score, kind="stable")[:32])
    assert np.array_equal(narrow[f"layers.{l}.dense.up.weight"], up[units[l]]), l
    assert np.array_equal(narrow[f"layers.{l}.dense.down.weight"], down[:, units[l]]), l
for name in ("tok_emb.weight", "layers.0.attn.qkv.weight", "layers.1.attn_norm.weight", "final_norm.weight"):
    assert np.array_equal(narrow[name], src[name]), name
# init_optimizer: the source's step continued by one; the second moments are the source's, cut
# like the weights, after one AdamW update v = beta2 v_src + (1 - beta2) g^2 >= beta2 v_src (a
# fresh state would hold (1 - beta2) g^2 only, far below it).
assert int(narrow["optim.step.tok_emb.weight"][0]) == int(src["optim.step.tok_emb.weight"][0]) + 1
beta2 = 0.95
v_src = src["optim.exp_avg_sq.layers.0.dense.up.weight"][units[0]].astype(np.float64)
v_new = narrow["optim.exp_avg_sq.layers.0.dense.up.weight"].astype(np.float64)
ratio = (v_new / np.maximum(v_src, 1e-30)).min()
assert np.all(v_new >= beta2 * v_src * (1 - 1e-5)), f"exp_avg_sq lost the source's second moments (min ratio {ratio})"
print("ok   narrow: 32 largest-magnitude units of 128 per layer, backbone copied, AdamW state continued")
groups = {}
for run in ("cluster1", "cluster2"):
    s = checkpoint_h5.load(f"{root}/{run}")
    for l in (0, 1):
        up, down = src[f"layers.{l}.dense.up.weight"], src[f"layers.{l}.dense.down.weight"]
        rows = {tuple(r): j for j, r in enumerate(up)}
        used = []
        for i in range(8):
            wd, wu = s[f"layers.{l}.some.experts.{i}.w_down"], s[f"layers.{l}.some.experts.{i}.w_up"]
            idx = [rows[tuple(r)] for r in wd]
            assert idx == sorted(idx) and len(set(idx)) == 16, (run, l, i, idx)
            assert np.array_equal(wu, down[:, idx]), (run, l, i)
            used += idx
        assert sorted(used) == list(range(128)), (run, l)
        groups[(run, l)] = used
    assert not np.array_equal(s["tok_emb.weight"], src["tok_emb.weight"]), f"{run}: ffn only, yet the embedding was copied"
assert groups[("cluster1", 0)] == groups[("cluster2", 0)] and groups[("cluster1", 1)] == groups[("cluster2", 1)]
assert groups[("cluster1", 0)] != list(range(128)), "cluster gave the consecutive slices"
print("ok   cluster: 2 layers x 8 experts of 16 distinct units, a partition of the 128, equal on W=1 and W=2 P=2")
b = checkpoint_h5.load(f"{root}/backbone")
assert np.array_equal(b["tok_emb.weight"], src["tok_emb.weight"]) and np.array_equal(
    b["layers.1.attn.proj.weight"], src["layers.1.attn.proj.weight"])
assert not np.array_equal(b["layers.0.some.experts.0.w_down"], src["layers.0.dense.up.weight"][:16])
print("ok   backbone: embeddings and attention copied, the expert library random")
PY
set +e
"$SOME" train "${COMMON[@]}" --set model.init_from="$T/dense" --set model.d_model=64 --run-dir "$T/misfit" > "$T/misfit.log" 2>&1
rc=$?
set -e
[ $rc -eq 2 ] || { cat "$T/misfit.log"; fail "a misfit checkpoint exited $rc, not 2"; }
grep -q "model.init_from = '$T/dense': .* tensor(s) of this model do not fit" "$T/misfit.log" ||
  { cat "$T/misfit.log"; fail "the misfit error does not name the key"; }
grep -q "layers.0.attn.qkv.weight (192, 64) <- layers.0.attn.qkv.weight (96, 32)" "$T/misfit.log" ||
  { cat "$T/misfit.log"; fail "the misfit error does not list the names and shapes"; }
[ ! -e "$T/misfit" ] || fail "a refused init left a run directory: $(ls "$T/misfit")"
echo "ok   misfit: $(grep -c ' <- ' "$T/misfit.log") tensors named, no run directory"
echo "init_from: ok"
