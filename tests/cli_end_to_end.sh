#!/usr/bin/env bash
# The `some` CLI end to end on a generated corpus: prepare (text + JSONL), train the tiny config,
# its metrics and TensorBoard events, checkpoint info / convert, eval and generate from the run,
# and the named errors for a bad key and missing data.
set -euo pipefail
SOME=$1
SRC=$2
PY=${3:-python3}  # with h5py
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"  # fail, T (removed at exit), on_exit

mkdir -p "$T/corpus"
python3 - "$T/corpus" <<'PY'
import json, random, sys
random.seed(3)
who = ["the king", "a shepherd", "the prophet", "his servant", "the people"]
did = ["went up to", "spoke unto", "came down from", "looked upon"]
what = ["the city", "the mountain", "the temple", "the river", "the field"]
def doc():
    return " ".join(f"{random.choice(who)} {random.choice(did)} {random.choice(what)}." for _ in range(8))
with open(f"{sys.argv[1]}/a.txt", "w") as f:
    f.write("\n\n".join(doc() for _ in range(150)))
with open(f"{sys.argv[1]}/b.jsonl", "w") as f:
    for _ in range(150):
        f.write(json.dumps({"text": doc(), "id": 1}) + "\n")
PY

"$SOME" prepare --input "$T/corpus" --out "$T/data" --vocab-size 300 --val-fraction 0.05
for f in meta.json tokenizer.model train-00000.h5 val-00000.h5; do [ -f "$T/data/$f" ] || fail "prepare wrote no $f"; done
ls "$T/data" | grep -q '\.tmp' && fail "a temporary shard was left behind"

cd "$SRC"
"$SOME" train --config configs/tiny.toml --data "$T/data" --run-dir "$T/run" --set train.max_steps=30 | tee "$T/train.out"
grep -q "val PPL" "$T/train.out" || fail "train printed no val PPL"
for f in config.toml train.log metrics.jsonl tokenizer.model checkpoints/latest; do [ -f "$T/run/$f" ] || fail "run has no $f"; done
"$SOME" checkpoint info "$T/run" | tee "$T/info.out"
grep -q "step 30 " "$T/info.out" || fail "checkpoint info does not show the final step"
"$SOME" checkpoint convert "$T/run" --out "$T/model.h5"
"$PY" - "$T/model.h5" <<'PY' || fail "the consolidated checkpoint lacks tensors"
import json, sys
import h5py
f = h5py.File(sys.argv[1], "r")
m = json.loads(f.attrs["manifest"])
assert set(f.keys()) == set(m["tensors"]), "consolidated file and manifest disagree"
for name in ("layers.0.some.keys", "layers.0.some.experts.0.w_down", "tok_emb.weight"):
    assert name in f, f"no {name}"
print(f"consolidated: {len(f.keys())} tensors")
PY
ls "$T/run/analytics/"step_*.h5 >/dev/null || fail "no analytics file"
# TensorBoard: every scalar and text metrics.jsonl implies, read back by the tensorboard package
# from the events the trainer wrote (beside libtorch and libsentencepiece in one process).
"$PY" "$SRC/tests/tensorboard/read_events.py" --run "$T/run" \
    --expect-tags train/loss,train/lr,train/tokens_per_s,eval/val_ppl,eval/sample,routing/layer_0/gini,routing/layer_1/entropy,routing/layer_0/dead_experts,routing/layer_1/churn \
  || fail "TensorBoard events do not match metrics.jsonl"
python3 - "$T/run/metrics.jsonl" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
for l in lines:
    for key in ("step", "tokens", "loss", "lr", "tokens_per_s", "elapsed_s"):
        assert key in l, f"metrics line without {key}: {l}"
evals = [l for l in lines if l.get("event") == "eval"]
assert evals and all("routing" in l and "val_ppl" in l for l in evals), "eval lines lack val_ppl/routing"
assert all(l.get("sample", "").startswith("And God said ") and len(l["sample"]) > 20 for l in evals), "eval lines lack a sample"
assert all({"gini", "entropy", "dead_experts", "top1_score"} <= set(r) for r in evals[-1]["routing"])
assert lines[-1].get("event") == "done", "last line is not the done event"
train = [l for l in lines if "event" not in l]
assert train[-1]["loss"] < train[0]["loss"], "loss did not fall"
print(f"metrics ok: {len(lines)} lines, loss {train[0]['loss']:.3f} -> {train[-1]['loss']:.3f}")
PY

"$SOME" eval --run "$T/run" | tee "$T/eval.out"
grep -q "val PPL" "$T/eval.out" || fail "eval printed no val PPL"
"$SOME" generate --run "$T/run" --prompt "the king" --max-tokens 10 --seed 3 > "$T/gen1"
"$SOME" generate --run "$T/run" --prompt "the king" --max-tokens 10 --seed 3 > "$T/gen2"
cmp -s "$T/gen1" "$T/gen2" || fail "generate is not deterministic for a fixed seed"
grep -q "^the king" "$T/gen1" || fail "generate does not echo the prompt"
set +e
"$SOME" generate --run "$T/run" --temperature nan > "$T/out" 2> "$T/err"; rc=$?
set -e
[ $rc -ne 0 ] || fail "generate --temperature nan was accepted"
grep -q "temperature.*finite" "$T/err" || fail "generate --temperature nan: no error naming the option ($(cat "$T/err"))"

set +e
"$SOME" train --config configs/tiny.toml --data "$T/data" --set model.top_kk=2 2> "$T/err"; rc=$?
set -e
[ $rc -eq 2 ] || fail "bad key exited $rc, not 2"
grep -q "model.top_kk" "$T/err" || fail "bad key error does not name the key"
set +e
"$SOME" train --config configs/tiny.toml --data "$T/nowhere" 2> "$T/err"; rc=$?
set -e
[ $rc -ne 0 ] || fail "missing dataset did not fail"
grep -q "$T/nowhere" "$T/err" || fail "missing dataset error does not name the directory"
# A model too large for the machine is refused before it is built: one line with the estimate.
set +e
"$SOME" train --config configs/tiny.toml --data "$T/data" --set model.d_model=65536 --set train.max_steps=1 \
        --run-dir "$T/too-big" > "$T/out" 2> "$T/err"; rc=$?
set -e
[ $rc -eq 2 ] || fail "an impossible model exited $rc, not 2 (a config error)"
grep -q "config error: model needs about .* GiB available" "$T/out" "$T/err" || fail "no one-line memory refusal: $(tail -3 "$T/err")"
! grep -q "frame #" "$T/out" "$T/err" || fail "the refusal printed a backtrace"
[ ! -e "$T/too-big" ] || fail "the refused run left a run directory"
# An error raised inside LibTorch (a failing TORCH_CHECK at step 1, SOME_INJECT_TORCH_ERROR) is one
# line, not a C++ backtrace — even with TORCH_SHOW_CPP_STACKTRACES, which puts one into what().
set +e
SOME_INJECT_TORCH_ERROR=0:1 TORCH_SHOW_CPP_STACKTRACES=1 "$SOME" train --config configs/tiny.toml --data "$T/data" \
        --set train.max_steps=2 --run-dir "$T/torch-error" > "$T/out" 2> "$T/err"; rc=$?
set -e
[ $rc -eq 1 ] || fail "a LibTorch error exited $rc, not 1"
grep -q "LibTorch: injected LibTorch error on rank 0 at step 1" "$T/out" "$T/err" || fail "no one-line LibTorch error: $(tail -3 "$T/err")"
! grep -q "frame #" "$T/out" "$T/err" || fail "the LibTorch error printed its backtrace"
echo "cli end to end: ok"
