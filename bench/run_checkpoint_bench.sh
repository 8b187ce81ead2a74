#!/usr/bin/env bash
# Checkpoint save / load cost on this machine: build/bin/bench_checkpoint for configs/default.toml
# and configs/some-150m.toml at W = 1, 2, 4 ranks with the experts sharded over all of them
# (P = W; W = 1 is a plain process, no mpirun), intra-op threads = cores / W (at least 1).
# OUT (default /tmp/checkpoint_bench.jsonl) is rewritten with one JSON line per run, and a
# Markdown table of the figures is printed on stdout.
#
#   bench/run_checkpoint_bench.sh [OUT.jsonl]
#   WORLD_SIZES="1 2" RUNS="default" REPEATS=5 bench/run_checkpoint_bench.sh /tmp/ck.jsonl
#   DATA=/tmp/t/data bench/run_checkpoint_bench.sh   # tests/make_test_dataset.sh: vocab 300
#
# RUNS lists configs (configs/NAME.toml); NAME@MODE overrides train.checkpoint_experts with MODE
# (every | once). The default runs some-150m as configured (once: the frozen experts are written
# to an expert library at the first save and referenced) and again with every (each checkpoint
# holds them). The batch of the one training step that creates the optimizer state is lowered
# (only the saved state's size matters, and it does not depend on batch or sequence length); the
# model dimensions are the configs'. With data/default (vocab 8192) some-150m has 173M
# parameters. On one machine the W ranks share its cores and its disk: W > 1 shows the
# protocol's overhead (gathers, every rank verifying every file, W files), not scaling.
# bench_checkpoint records the host load average at the start and end of each run (other jobs
# skew the timings); before each run the script waits up to WAIT_IDLE seconds (default 300,
# 0 = no wait) for the CPUs to be at least 90 % idle over 5 s.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-/tmp/checkpoint_bench.jsonl}
BIN=build/bin/bench_checkpoint
if [[ ! -x $BIN ]]; then
  echo "run_checkpoint_bench: $BIN not found; build it first: ninja -C build bench_checkpoint" >&2
  exit 1
fi
WORLD_SIZES=${WORLD_SIZES:-"1 2 4"}
RUNS=${RUNS:-"default some-150m some-150m@every"}
REPEATS=${REPEATS:-3}
DATA=${DATA:-data/default}
CKPT_DIR=${CKPT_DIR:-/tmp/some_checkpoint_bench}
WAIT_IDLE=${WAIT_IDLE:-300}
NPROC=$(nproc)
if [[ $(id -u) == 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
[[ -f $DATA/meta.json ]] || echo "run_checkpoint_bench: $DATA has no dataset: the first run builds data/default" >&2

# One training step that fits quickly on a CPU (global_batch splits into W x whole micro-batches).
batch_overrides() {
  case $1 in
    default) echo "--set train.global_batch=8 --set train.micro_batch=2" ;;
    some-150m) echo "--set train.global_batch=4 --set train.micro_batch=1 --set train.seq_len=128" ;;
    *) echo "" ;;
  esac
}

# Waits up to WAIT_IDLE s until the machine's CPUs were >= 90 % idle over 5 s (other jobs).
cpu_idle_total() { awk '/^cpu /{print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }
wait_idle() {
  (( WAIT_IDLE > 0 )) || return 0
  local deadline=$((SECONDS + WAIT_IDLE)) i1 t1 i2 t2
  while :; do
    read -r i1 t1 < <(cpu_idle_total)
    sleep 5
    read -r i2 t2 < <(cpu_idle_total)
    (( (i2 - i1) * 100 >= 90 * (t2 - t1) )) && return 0
    if (( SECONDS >= deadline )); then
      echo "run_checkpoint_bench: machine not idle after ${WAIT_IDLE} s; running anyway" >&2
      return 0
    fi
  done
}

ERR=$(mktemp)
trap 'rm -f "$ERR"' EXIT
: > "$OUT"
for RUN in $RUNS; do
  CONFIG=${RUN%%@*}
  MODE_ARGS=()
  [[ $RUN == *@* ]] && MODE_ARGS=(--set "train.checkpoint_experts=${RUN#*@}")
  for W in $WORLD_SIZES; do
    THREADS=$(( NPROC / W )); (( THREADS >= 1 )) || THREADS=1
    ARGS=(--config "configs/$CONFIG.toml" $(batch_overrides "$CONFIG") "${MODE_ARGS[@]}"
          --set "parallel.expert_parallel=$W" --set "train.threads=$THREADS"
          --data "$DATA" --dir "$CKPT_DIR" --repeats "$REPEATS")
    echo "run_checkpoint_bench: $RUN W=$W P=$W, $THREADS thread(s) per rank ($NPROC cores)" >&2
    if (( W == 1 )); then
      CMD=("$BIN" "${ARGS[@]}")
    else
      CMD=(mpirun --oversubscribe --bind-to none -np "$W" -x OMP_NUM_THREADS=$THREADS -x MKL_NUM_THREADS=$THREADS
           "$BIN" "${ARGS[@]}")
    fi
    echo "  ${CMD[*]}" >&2
    wait_idle
    OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS "${CMD[@]}" 2> "$ERR" | grep '^{' >> "$OUT" || {
      echo "run_checkpoint_bench: $RUN W=$W failed:" >&2
      cat "$ERR" >&2
      exit 1
    }
  done
done
echo "run_checkpoint_bench: $(wc -l < "$OUT") runs in $OUT" >&2

python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("| config | experts | W=P | checkpoint GB (step dir + library) | ratio to param bytes | optimizer GB "
      "| first save s | save s | load+verify s | load s | verify s | save MB/s | load MB/s | verify MB/s "
      "| max RSS/rank GB | load avg |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    m = lambda k: r[k]["median"]
    print(f"| {r['config'].split('/')[-1].removesuffix('.toml')} | {r['checkpoint_experts']} | {r['world_size']} "
          f"| {r['checkpoint_GB']:.3f} ({r['step_dir_bytes'] / 1e9:.3f} + {r['library_bytes'] / 1e9:.3f}) "
          f"| {r['checkpoint_to_parameter_bytes']:.3f} | {r['optimizer_bytes'] / 1e9:.3f} "
          f"| {r['first_save_s']:.3f} | {m('save_s'):.3f} | {m('load_verify_s'):.3f} | {m('load_s'):.3f} "
          f"| {m('verify_s'):.3f} | {r['save_MB_per_s']:.0f} | {r['load_MB_per_s']:.0f} | {r['verify_MB_per_s']:.0f} "
          f"| {r['peak_rss_max_bytes'] / 1e9:.2f} | {r['host_loadavg_start'][0]:.2f} |")
PY
