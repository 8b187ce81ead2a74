#!/usr/bin/env bash
# GPU-only code compiles even where nothing can run it: configure a SOME_WITH_CUDA=ON build with
# this machine's CUDA toolkit and compile the targets that hold CUDA code. Exit 77 = skipped.
set -euo pipefail
SRC=$1 BUILD=$2 PREFIX=$3
if ! command -v nvcc >/dev/null; then
  echo "SKIPPED: no CUDA toolkit (nvcc) on this machine"
  exit 77
fi
cmake -S "$SRC" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSOME_WITH_CUDA=ON \
      -DCMAKE_PREFIX_PATH="$PREFIX" >/dev/null
cmake --build "$BUILD" --target some_common
echo "CUDA code paths compile ($(nvcc --version | tail -n 2 | head -n 1))"
