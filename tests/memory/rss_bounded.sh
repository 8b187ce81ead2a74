#!/usr/bin/env bash
# memory.rss_bounded: a SoME run's resident memory must not grow with steps. The per-expert loop
# under glibc malloc fragmented the heap (2E GEMM shapes that change every step: 0.8 GB after 5
# steps, 2.8 GB after 400 at d 256, E 64); the grouped kernel computes the same numbers with two
# shapes per step. Here a small model with many experts trains 240 steps and the RSS in its
# metrics lines (`rss_gib`) at the end must stay within 15% of the RSS at step 40.
#   rss_bounded.sh SOME_BINARY SOURCE_DIR [extra --set overrides...]
set -euo pipefail
SOME=$1 SRC=$2
shift 2
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"  # fail, T (removed at exit), on_exit
bash "$SRC/tests/make_test_dataset.sh" "$SOME" "$T"
cd "$SRC"
"$SOME" train --config configs/tiny.toml --data "$T/data" --run-dir "$T/run" \
  --set model.d_model=128 --set model.n_heads=4 --set model.num_experts=64 --set model.d_expert=128 \
  --set train.micro_batch=16 --set train.global_batch=16 --set train.seq_len=64 --set train.max_steps=240 \
  --set train.log_every=40 --set train.eval_every=0 --set train.eval_sample_tokens=0 --set train.checkpoint_every=0 \
  --set train.threads=1 "$@" > "$T/log" 2>&1 || { tail -5 "$T/log"; fail "some train failed"; }
python3 - "$T/run/metrics.jsonl" <<'PY'
import json, sys
rss = {l["step"]: l["rss_gib"] for l in map(json.loads, open(sys.argv[1])) if "event" not in l and "rss_gib" in l}
first, last = rss[40], rss[max(rss)]
print("rss_gib by step: " + ", ".join(f"{s}: {v:.3f}" for s, v in sorted(rss.items())))
print(f"step {max(rss)} / step 40 = {last / first:.3f} (limit 1.15)")
sys.exit(0 if last <= 1.15 * first else 1)
PY
echo "memory.rss_bounded: ok"
