#!/usr/bin/env bash
# Exact resume (docs/design.md §7): 20 steps straight vs 10 steps, stop (a preemption signal at step 10:
# checkpoint, exit 0), `--resume auto`, 10 more steps, on NP ranks (P = NP): every loss and every
# tensor of the final checkpoint (weights, experts, keys, usage, AdamW moments and steps, RNG) is
# bit-identical. The stopped run keeps its experts in an expert library (checkpoint_experts =
# once), so this also shows that both layouts hold the same state. With NP=1 also:
# train.checkpoint_minutes writes checkpoints, keep_last prunes.
#   usage: resume_exact.sh SOME SOURCE_DIR PYTHON NP
source "$(dirname "$0")/common.sh" "$1" "$2" "$3"
NP=$4
P=(--set parallel.expert_parallel="$NP")
run "$NP" "${COMMON[@]}" "${P[@]}" --set train.checkpoint_every=10 --run-dir "$T/straight"
P+=(--set train.checkpoint_experts=once)
SOME_INJECT_SIGNAL=0:10 run "$NP" "${COMMON[@]}" "${P[@]}" --run-dir "$T/stopped"
grep -q '"event":"preempted"' "$T/stopped/metrics.jsonl" || fail "the stopped run logged no preempted event"
[ "$(cat "$T/stopped/checkpoints/latest")" = step_00000010 ] || fail "the stopped run's latest is not step 10"
run "$NP" "${COMMON[@]}" "${P[@]}" --run-dir "$T/stopped" --resume auto
grep -q "resumed from $T/stopped/checkpoints/step_00000010 at step 10" "$T/last.log" || fail "did not resume at step 10"
"$PY" - "$T" <<'PY'
import json, os, sys
import numpy as np
import checkpoint_h5
root = sys.argv[1]
def lines(run): return [json.loads(l) for l in open(f"{root}/{run}/metrics.jsonl")]
def losses(run): return [(l["step"], l["loss"]) for l in lines(run) if "event" not in l]
a, b = losses("straight"), losses("stopped")
assert [s for s, _ in b] == list(range(1, 21)), f"steps of the resumed run: {[s for s, _ in b]}"
assert a == b, "losses differ: " + str([(x, y) for x, y in zip(a, b) if x != y][:3])
events = [l["event"] for l in lines("stopped") if "event" in l]
assert events.count("preempted") == 1 and events.count("resume") == 1 and events[-1] == "done", events
for step in ("step_00000010", "step_00000020"):
    x = checkpoint_h5.load(f"{root}/straight/checkpoints/{step}")
    y = checkpoint_h5.load(f"{root}/stopped/checkpoints/{step}")
    assert x.keys() == y.keys(), f"{step}: tensor names differ: {set(x) ^ set(y)}"
    bad = [k for k in x if x[k].dtype != y[k].dtype or not np.array_equal(x[k], y[k])]
    assert not bad, f"{step}: {len(bad)} tensors differ, e.g. {bad[:5]}"
    kinds = {k.split(".")[0] for k in x} | {"experts" for k in x if ".experts." in k} | {"keys" for k in x if k.endswith(".keys")}
    assert {"optim", "rng", "experts", "keys", "tok_emb"} <= kinds, kinds
    print(f"ok   {step}: {len(x)} tensors bit-identical (weights, experts, keys, usage, AdamW moments, RNG)")
# The resumed process continues in its own directory: it keeps referencing the first library.
for step, lib in (("step_00000010", "experts_00000010"), ("step_00000020", "experts_00000010")):
    m = checkpoint_h5.manifest(f"{root}/stopped/checkpoints/{step}")
    assert m["library"] == "../" + lib, (step, m.get("library"))
    assert not any(".experts." in t for t in m["tensors"]), f"{step} holds experts beside its library"
assert sorted(os.listdir(f"{root}/stopped/checkpoints")) == ["experts_00000010", "latest", "step_00000010", "step_00000020"]
print("ok   checkpoint_experts = once: the experts written once (before the stop), referenced by both checkpoints")
print(f"ok   losses of steps 1..20 bit-identical: {a[9][1]:.6f} at step 10, {a[-1][1]:.6f} at step 20")
PY
if [ "$NP" -eq 1 ]; then
  # Wall-clock checkpoints: every ~0.05 s over 20 steps; keep_last = 2 keeps the newest two.
  run 1 "${COMMON[@]}" --set train.checkpoint_minutes=0.001 --set train.keep_last=2 --run-dir "$T/minutes"
  "$PY" - "$T/minutes" <<'PY'
import json, os, sys
import checkpoint_h5
d = os.path.join(sys.argv[1], "checkpoints")
steps = sorted(x for x in os.listdir(d) if x.startswith("step_"))
assert len(steps) == 2 and steps[-1] == "step_00000020", f"keep_last = 2 left {steps}"
reasons = [checkpoint_h5.manifest(os.path.join(d, s))["trainer"]["reason"] for s in steps]
assert reasons[0] == "interval", f"checkpoint_minutes wrote no interval checkpoint: {steps} {reasons}"
log = open(os.path.join(sys.argv[1], "train.log")).read()
n = log.count("(interval) written")
assert n >= 2, f"only {n} interval checkpoints in 20 steps"
print(f"ok   checkpoint_minutes: {n} interval checkpoints; keep_last = 2 left {steps}")
PY
fi
echo "resume exact on $NP rank(s): ok"
