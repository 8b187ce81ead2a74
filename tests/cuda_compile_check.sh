#!/usr/bin/env bash
# GPU-only code compiles even where nothing can run it: configure a SOME_WITH_CUDA=ON build with
# this machine's CUDA toolkit and compile the targets that hold CUDA code: some_common (checked
# CUDA calls) and some_parallel (NcclCommunicator, against NCCL from the venv's nvidia-nccl-cu13,
# cmake/NCCL.cmake). Static libraries are archived, never linked, so this works with the CPU
# Torch wheel, which has no CUDA libraries to link against. Exit 77 = skipped.
# CMAKE_BUILD_PARALLEL_LEVEL limits the jobs, as for any `cmake --build`.
set -euo pipefail
SRC=$1 BUILD=$2 PREFIX=$3
if ! command -v nvcc >/dev/null; then
  echo "SKIPPED: no CUDA toolkit (nvcc) on this machine"
  exit 77
fi
cmake -S "$SRC" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSOME_WITH_CUDA=ON \
      -DCMAKE_PREFIX_PATH="$PREFIX" > "$BUILD.configure.log" 2>&1 || {
  cat "$BUILD.configure.log" >&2
  echo "FAIL: configuring the SOME_WITH_CUDA=ON build failed (see above)" >&2
  exit 1
}
grep "SoME: NCCL" "$BUILD.configure.log" || true
cmake --build "$BUILD" --target some_common some_parallel
OBJ=$(find "$BUILD/parallel" -name 'nccl_communicator.cpp.o' -print -quit)
[ -n "$OBJ" ] || { echo "FAIL: some_parallel built without nccl_communicator.cpp" >&2; exit 1; }
nm -C "$OBJ" | grep ' U ncclCommInitRank' >/dev/null || { echo "FAIL: $OBJ does not call NCCL" >&2; exit 1; }
echo "CUDA code paths compile ($(nvcc --version | tail -n 2 | head -n 1); $(basename "$OBJ"))"
