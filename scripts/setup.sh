#!/usr/bin/env bash
# Installs what SoME needs on Debian 12 (packages, a Python venv holding LibTorch), then
# configures and builds Release into build/. Idempotent: re-running skips what is done.
#
#   LIBTORCH_DIR=/path/to/libtorch scripts/setup.sh   # an official LibTorch or a CUDA build
#   SOME_BUILD_TYPE=Debug scripts/setup.sh            # another CMake build type
set -euo pipefail
cd "$(dirname "$0")/.."
CURRENT="start"
step() { CURRENT="$*"; echo "==> [setup] $*"; }
trap 'echo "!! [setup] FAILED during: $CURRENT (see the output above)" >&2' ERR

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

PACKAGES=(build-essential cmake ninja-build ccache pkg-config git
          openmpi-bin libopenmpi-dev libhdf5-dev hdf5-tools
          libspdlog-dev libfmt-dev libgtest-dev googletest libcli11-dev libtomlplusplus-dev
          libsentencepiece-dev sentencepiece nlohmann-json3-dev libssl-dev bible-kjv python3-venv libfaiss-dev
          tmux chromium)   # tmux: the `some top` tests drive it in a terminal; chromium: report.html in a browser

step "Debian packages (${#PACKAGES[@]})"
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "    installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "    all present"
fi

step "Python venv .venv (torch==2.13.0 for LibTorch and the PyTorch reference tests; h5py, tensorboard, matplotlib, scikit-learn, umap-learn, markdown for tests and reports; rich for some top)"
[ -x .venv/bin/python ] || python3 -m venv .venv
if ! .venv/bin/python -c "import torch, h5py, tensorboard, matplotlib, sklearn, umap, markdown, rich; assert torch.__version__.startswith('2.13.0')" 2>/dev/null; then
  .venv/bin/pip install -q --disable-pip-version-check torch==2.13.0 h5py numpy tensorboard matplotlib scikit-learn \
    umap-learn markdown rich
fi
TORCH_PREFIX=$(.venv/bin/python -c 'import torch; print(torch.utils.cmake_prefix_path)')

step "NCCL headers and library in the venv (nvidia-nccl-cu13, for the CUDA build and its CI compile check)"
if ! .venv/bin/python -c "import importlib.metadata as m; m.version('nvidia-nccl-cu13')" 2>/dev/null; then
  .venv/bin/pip install -q --disable-pip-version-check nvidia-nccl-cu13
fi

step "ruff in the venv (the CTest python.ruff lints every Python file with pyproject.toml's rules)"
if ! .venv/bin/python -c "import importlib.metadata as m; assert m.version('ruff') == '0.17.6'" 2>/dev/null; then
  .venv/bin/pip install -q --disable-pip-version-check ruff==0.17.6
fi

step "configure (build/, ${SOME_BUILD_TYPE:-Release}, LibTorch from ${LIBTORCH_DIR:-the venv wheel})"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="${SOME_BUILD_TYPE:-Release}" \
      -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" -DLIBTORCH_DIR="${LIBTORCH_DIR:-}" >/dev/null

step "build ($(nproc) jobs)"
cmake --build build -j "$(nproc)"

step "done: build/bin/some is ready (try: build/bin/some train)"
