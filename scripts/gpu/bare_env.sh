#!/usr/bin/env bash
# Runs a command on this Debian machine as if it were a bare GPU node: in a private mount
# namespace (root; `unshare -m`) where this machine's own copies of what the pack carries are
# hidden, so that only the pack can satisfy a build. `scripts/gpu/check.sh --cpu --bare` and
# tests/gpu/pack_prefix.sh use it to prove the pack complete before it ever meets a GPU node.
#
#   scripts/gpu/bare_env.sh PACK_DIR -- COMMAND [ARGS...]
#
# Hidden (from dpkg's file lists of the installed packages):
#   - every package of the pack's debs/dev (the -dev packages of HDF5, spdlog, fmt, GoogleTest,
#     CLI11, toml++, SentencePiece, nlohmann-json, OpenSSL, and the libraries the build links);
#   - libsz2 and libaec0, so that prefix.sh's fallback for runtime sonames a node lacks is used;
#   - what Debian adds around them and a node does not have: HDF5's other bindings, h5cc
#     (hdf5-helpers), hdf5-tools, libaec-dev, the sentencepiece tools, catch2;
#   - Debian's Open MPI and what it brings (PMIx, hwloc, libevent, libfabric, UCX, PSM): the
#     wheel's is the only MPI left.
# How: a folder that holds only hidden files is covered by an empty tmpfs; a file by /dev/null
# (it exists, empty and not executable: a link or run of it fails); a symbolic link whose target
# stays visible (libssl-dev's libcrypto.so -> libssl3's libcrypto.so.3) by an overlay of its
# folder with a whiteout, where the kernel has overlayfs (else it stays, and is reported).
# libssl3, libcurl and the rest of the runtime chain stay: cmake, git and python3 here need
# them, and prefix.sh keeps a node's own.
set -euo pipefail
if [ $# -lt 3 ] || [ "$2" != "--" ]; then
  echo "usage: scripts/gpu/bare_env.sh PACK_DIR -- COMMAND [ARGS...]" >&2
  exit 2
fi
PACK=$1
shift 2
[ -d "$PACK/debs/dev" ] || { echo "bare_env.sh: $PACK/debs/dev is missing (scripts/gpu/pack.sh writes it)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "bare_env.sh: needs root (a mount namespace)" >&2; exit 1; }
for tool in unshare mount dpkg dpkg-deb dpkg-query python3; do
  command -v "$tool" >/dev/null || { echo "bare_env.sh: needs '$tool'" >&2; exit 1; }
done

packages=()
for deb in "$PACK"/debs/dev/*.deb; do
  p=$(dpkg-deb -f "$deb" Package)
  [ "$p" = libssl3 ] || packages+=("$p")  # (packs before libssl3 moved to debs/runtime)
done
packages+=(libsz2 libaec0 libaec-dev
           hdf5-helpers hdf5-tools libhdf5-cpp-103-1 libhdf5-hl-100 libhdf5-hl-cpp-100 libhdf5-fortran-102
           libhdf5-hl-fortran-100 sentencepiece catch2
           openmpi-bin openmpi-common libopenmpi3 libopenmpi-dev mpi-default-dev mpi-default-bin
           libcaf-openmpi-3 libcoarrays-openmpi-dev libpmix2 libpmix-dev libhwloc15 libhwloc-dev libhwloc-plugins
           libevent-2.1-7 libevent-core-2.1-7 libevent-extra-2.1-7 libevent-pthreads-2.1-7 libevent-openssl-2.1-7
           libevent-dev libfabric1 libucx0 libpsm-infinipath1 libpsm2-2)
installed=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && installed+=("$p")
done

# The mounts: (kind, path) lines, computed from dpkg's file lists: "dir" folders first (a tmpfs),
# then "file" (/dev/null over it) and "link" (a whiteout in an overlay of its folder).
PLAN=$(python3 - "${installed[@]}" <<'PY'
import os, subprocess, sys
hidden = set()
for pkg in sys.argv[1:]:
    out = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True).stdout.split("\n")
    hidden.update(p for p in out if p.startswith("/") and (os.path.isfile(p) or os.path.islink(p)))
# One spelling per path: the folder resolved (/lib -> /usr/lib on a merged /usr), the name kept.
hidden = {os.path.join(os.path.realpath(os.path.dirname(p)), os.path.basename(p)) for p in hidden if os.path.lexists(p)}
# A folder is covered whole when every file below it is hidden (and it is not a shared root).
roots = {"/", "/usr", "/usr/include", "/usr/lib", "/usr/lib/x86_64-linux-gnu", "/usr/share", "/usr/bin",
         "/usr/share/doc", "/usr/share/man", "/etc", "/lib", "/usr/lib/x86_64-linux-gnu/cmake",
         "/usr/share/cmake", "/usr/lib/x86_64-linux-gnu/pkgconfig", "/usr/share/pkgconfig", "/usr/src",
         "/usr/share/lintian", "/usr/share/lintian/overrides", "/usr/include/x86_64-linux-gnu",
         "/usr/lib/x86_64-linux-gnu/libfabric", "/usr/share/bug"}
def all_hidden(d):
    for base, dirs, files in os.walk(d):
        for f in files:
            if os.path.join(base, f) not in hidden:
                return False
        for sub in dirs:
            path = os.path.join(base, sub)
            if os.path.islink(path) and path not in hidden:
                return False
    return True
covered = []
for d in sorted({os.path.dirname(p) for p in hidden}, key=len):
    while d not in roots and os.path.dirname(d) not in roots and all_hidden(os.path.dirname(d)):
        d = os.path.dirname(d)
    if d in roots or any(d == c or d.startswith(c + "/") for c in covered) or not all_hidden(d):
        continue
    covered.append(d)
def under_covered(p):
    return any(p.startswith(c + "/") for c in covered)
for d in covered:
    print("dir", d)
files, links = set(), set()
for p in hidden:
    if under_covered(p):
        continue
    target = os.path.realpath(p)
    if not os.path.islink(p):
        files.add(p)
    elif target in hidden and os.path.isfile(target):
        files.add(target)  # the link then resolves to /dev/null
    elif os.path.exists(target) and not os.path.isdir(target):
        links.add(p)       # it leads to a file that stays visible: whiteout the link itself
for p in sorted(files):
    if not under_covered(p):
        print("file", p)
for p in sorted(links):
    print("link", p)
PY
)
count() { grep -c "^$1 " <<< "$PLAN" || true; }
export BARE_PLAN=$PLAN
echo "bare_env.sh: hiding ${#installed[@]} packages: $(count dir) folders (tmpfs), $(count file) files (/dev/null)," \
     "$(count link) links (overlay whiteouts)" >&2
exec unshare -m --propagation private bash -c '
  set -e
  # Links first: an overlay of a folder hides the mounts below it, so it comes before them.
  links=$(grep "^link " <<< "$BARE_PLAN" | cut -d" " -f2- || true)
  if [ -n "$links" ]; then
    wo=/tmp/.bare-env-whiteouts  # a tmpfs mounted in this namespace only
    mkdir -p "$wo"
    mount -t tmpfs -o size=1m,mode=700 none "$wo"
    i=0
    for parent in $(dirname $links | sort -u); do
      i=$((i + 1)); mkdir -p "$wo/$i"
      for l in $links; do [ "$(dirname "$l")" = "$parent" ] && mknod "$wo/$i/$(basename "$l")" c 0 0; done
      mount -t overlay overlay -o "lowerdir=$wo/$i:$parent" "$parent" 2>/dev/null ||
        echo "bare_env.sh: no overlayfs here: these links stay visible: $(ls "$wo/$i" | tr "\n" " ")" >&2
    done
  fi
  while read -r kind path; do
    case $kind in
      dir) mount -t tmpfs -o size=1k,mode=755 none "$path" ;;
      file) mount --bind /dev/null "$path" ;;
    esac
  done <<< "$BARE_PLAN"
  unset BARE_PLAN
  exec "$@"' bare-env "$@"
