#!/usr/bin/env bash
# Same seed, same global batch, 20 steps of the tiny config on W=1; W=2 P=2; W=4 P=2; W=4 P=4:
# per-step losses within 1e-4 relative and every final tensor (keys, usage, query networks,
# attention, the gathered experts) within 1e-4 of the single-process run.
set -euo pipefail
SOME=$1 SRC=$2 PY=$3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$SRC"
python3 - "$T/corpus" <<'PY'
import os, random, sys
os.makedirs(sys.argv[1])
random.seed(5)
w = "the king a shepherd went up to spoke unto came down from the city the mountain the river".split()
with open(f"{sys.argv[1]}/c.txt", "w") as f:
    f.write("\n\n".join(" ".join(random.choice(w) for _ in range(60)) for _ in range(300)))
PY
"$SOME" prepare --input "$T/corpus" --out "$T/data" --vocab-size 300 >/dev/null 2>&1
COMMON=(--config configs/tiny.toml --data "$T/data" --set train.log_every=1 --set train.sample_tokens=0
        --set train.max_steps=20 --set train.micro_batch=2 --set train.threads=1 --set parallel.key_check_every=5)
"$SOME" train "${COMMON[@]}" --run-dir "$T/w1" >/dev/null 2>&1
for topo in "2 2" "4 2" "4 4"; do
  set -- $topo
  mpirun --oversubscribe --bind-to none -np "$1" "$SOME" train "${COMMON[@]}" --set parallel.expert_parallel="$2" \
      --run-dir "$T/w$1p$2" > "$T/w$1p$2.log" 2>&1 || { cat "$T/w$1p$2.log"; echo "FAIL: W=$1 P=$2 run failed"; exit 1; }
done
"$PY" - "$T" <<'PY'
import json, sys
import h5py, numpy as np
root = sys.argv[1]
def losses(run):
    return [json.loads(l)["loss"] for l in open(f"{root}/{run}/metrics.jsonl") if '"event"' not in l]
ref, ref_file = losses("w1"), h5py.File(f"{root}/w1/model.h5")
assert len(ref) == 20, f"expected 20 loss lines, got {len(ref)}"
failed = False
for run in ("w2p2", "w4p2", "w4p4"):
    got, f = losses(run), h5py.File(f"{root}/{run}/model.h5")
    rel = max(abs(a - b) / abs(a) for a, b in zip(ref, got))
    assert len(got) == len(ref) and set(f.keys()) == set(ref_file.keys()), run
    diff = max(float(np.abs(ref_file[k][()] - f[k][()]).max()) for k in ref_file.keys())
    ok = rel <= 1e-4 and diff <= 1e-4
    failed |= not ok
    print(f"{'ok  ' if ok else 'FAIL'} {run}: largest per-step loss difference {rel:.2e} (relative), "
          f"largest final tensor difference {diff:.2e} over {len(ref_file.keys())} tensors")
sys.exit(1 if failed else 0)
PY
