#!/usr/bin/env bash
# Weak scaling of the multi-rank train step on this machine (CPU, MPI over loopback / shared
# memory): build/bin/bench_parallel at W = 1, 2, 4 ranks, one intra-op thread per rank, the same
# number of sequences per rank, experts sharded over all W ranks (P = W). Prints one JSON document:
# every run's JSON line plus weak-scaling efficiency = tokens/s(W) / (W x tokens/s(1)).
#
#   bench/run_scaling.sh [extra bench_parallel options, e.g. --steps 10 --per-rank-batch 16]
#   WORLD_SIZES="1 2" bench/run_scaling.sh
#
# As root, OpenMPI needs OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1.
# More ranks than cores (W = 4 on a 2-core machine) oversubscribes: the ranks then time-share
# the cores, so that point measures contention, not the interconnect. The output says so.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=build/bin/bench_parallel
if [[ ! -x $BIN ]]; then
  echo "run_scaling: $BIN not found; build it first: cmake -S . -B build && ninja -C build bench_parallel" >&2
  exit 1
fi
WORLD_SIZES=${WORLD_SIZES:-"1 2 4"}
NPROC=$(nproc)
OUT_DIR=$(mktemp -d)
trap 'rm -rf "$OUT_DIR"' EXIT

# Without data/default the first run builds it (rank 0, a few seconds) before anything is timed.
[[ -f data/default/meta.json ]] || echo "run_scaling: data/default absent: the first run builds it" >&2

for W in $WORLD_SIZES; do
  echo "run_scaling: W=$W ranks x 1 thread ($NPROC cores)" >&2
  cut -d' ' -f1-3 /proc/loadavg > "$OUT_DIR/load_$W"
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
    mpirun --oversubscribe --bind-to none -np "$W" \
    -x OMP_NUM_THREADS -x MKL_NUM_THREADS \
    "$BIN" --threads 1 "$@" > "$OUT_DIR/run_$W.json" 2> "$OUT_DIR/err_$W" || {
      echo "run_scaling: W=$W failed:" >&2
      cat "$OUT_DIR/err_$W" >&2
      exit 1
    }
  # Keep only the JSON line (rank 0 prints exactly one).
  grep '^{' "$OUT_DIR/run_$W.json" | tail -1 > "$OUT_DIR/line_$W"
  # Control: W independent single-process copies at the same time (no MPI, no communication).
  # Their summed tokens/s is what this machine can give W busy single-thread processes at all,
  # so tokens/s(W) / that sum isolates the cost of the parallel run itself.
  if (( W > 1 )); then
    pids=()
    for ((i = 0; i < W; ++i)); do
      OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
        "$BIN" --threads 1 "$@" > "$OUT_DIR/solo_${W}_$i.json" 2> "$OUT_DIR/solo_err_${W}_$i" &
      pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid"; done
  fi
done

python3 - "$OUT_DIR" "$NPROC" $WORLD_SIZES <<'PY'
import json, sys
out_dir, nproc, sizes = sys.argv[1], int(sys.argv[2]), [int(w) for w in sys.argv[3:]]
runs = []
for w in sizes:
    r = json.load(open(f"{out_dir}/line_{w}"))
    r["host_loadavg_before"] = [float(x) for x in open(f"{out_dir}/load_{w}").read().split()]
    if w > 1:
        solo = [json.loads([l for l in open(f"{out_dir}/solo_{w}_{i}.json") if l.startswith("{")][-1])["tokens_per_s"]
                for i in range(w)]
        r["independent_concurrent_tokens_per_s"] = solo
    runs.append(r)
base = next((r for r in runs if r["world_size"] == 1), None)
summary = []
for r in runs:
    W = r["world_size"]
    row = {
        "world_size": W,
        "expert_parallel": r["expert_parallel"],
        "oversubscribed": r["oversubscribed"],
        "tokens_per_step": r["tokens_per_step"],
        "step_ms": round(r["step_ms"], 2),
        "tokens_per_s": round(r["tokens_per_s"], 1),
        "comm_fraction": round(r["comm_fraction"], 4),
        "all_to_all_MB_sent_per_rank_per_step": round(r["all_to_all"]["bytes_sent_per_rank_per_step"] / 1e6, 3),
        "all_to_all_ms_per_step": round(r["all_to_all"]["ms_per_step"], 2),
        "grad_allreduce_ms_per_step": round(r["grad_allreduce"]["phase_ms_per_step"], 2),
        "grad_allreduce_MB_per_step": round(r["grad_allreduce"]["bytes_per_step"] / 1e6, 3),
        "routing_allreduce_ms_per_step": round(r["routing_allreduce"]["ms_per_step"], 2),
        "routing_allreduce_MB_per_step": round(r["routing_allreduce"]["bytes_per_step"] / 1e6, 4),
        "compute_us_per_token": round(r["compute_us_per_token"], 1),
    }
    if base:
        row["weak_scaling_efficiency"] = round(r["tokens_per_s"] / (W * base["tokens_per_s"]), 4)
    if W > 1:
        ceiling = sum(r["independent_concurrent_tokens_per_s"])
        row["independent_concurrent_tokens_per_s"] = round(ceiling, 1)
        row["machine_ceiling_efficiency"] = round(ceiling / (W * base["tokens_per_s"]), 4) if base else None
        row["efficiency_vs_independent"] = round(r["tokens_per_s"] / ceiling, 4)
    if "alpha_beta_estimate" in r:
        row["comm_fraction_alpha_beta"] = round(r["alpha_beta_estimate"]["comm_fraction"], 4)
    summary.append(row)
doc = {
    "benchmark": "weak_scaling",
    "definition": "weak_scaling_efficiency = tokens_per_s(W) / (W * tokens_per_s(1)); fixed sequences per rank, "
                  "1 thread per rank, P = W; times are max over ranks. machine_ceiling_efficiency: the same ratio for "
                  "W independent single-process copies run at once (no communication); efficiency_vs_independent = "
                  "tokens_per_s(W) / their summed tokens/s. comm_fraction: time inside communicator calls (incl. "
                  "waiting for other ranks) / step; comm_fraction_alpha_beta: the same calls priced with this "
                  "transport's isolated alpha-beta (no waiting)",
    "nproc": nproc,
    "note": (f"this machine has {nproc} cores: W > {nproc} oversubscribes (ranks time-share cores), so those points "
             "measure CPU contention, not communication; collective times include waiting for the slowest rank. "
             "host_loadavg_before shows other load on the machine at the start of each run."),
    "summary": summary,
    "runs": runs,
}
print(json.dumps(doc, indent=2))
PY
