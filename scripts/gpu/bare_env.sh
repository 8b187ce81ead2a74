#!/usr/bin/env bash
# Runs a command on this Debian machine as if it were a bare GPU node: in a private mount
# namespace (root; `unshare -m`) where this machine's own copies of what the pack carries are
# hidden, so that only the pack can satisfy a build. `scripts/gpu/check.sh --cpu --bare` uses
# it to prove the pack complete before it ever meets a GPU node.
#
#   scripts/gpu/bare_env.sh PACK_DIR -- COMMAND [ARGS...]
#
# Hidden: every file of the pack's -dev packages and of the libraries the build links (HDF5,
# spdlog, fmt, GoogleTest, CLI11, toml++, SentencePiece, nlohmann-json, the OpenSSL headers),
# libsz2 and libaec0 (so that prefix.sh's fallback for runtime sonames a node lacks is used),
# and Debian's Open MPI (the wheel's is the one left). Folders that hold only hidden files are
# covered by an empty tmpfs; other files by /dev/null. libssl3, libcurl and the rest of the
# runtime chain stay: cmake, git and python3 here need them, and prefix.sh keeps a node's own.
set -euo pipefail
if [ $# -lt 3 ] || [ "$2" != "--" ]; then
  echo "usage: scripts/gpu/bare_env.sh PACK_DIR -- COMMAND [ARGS...]" >&2
  exit 2
fi
PACK=$1
shift 2
[ -d "$PACK/debs/dev" ] || { echo "bare_env.sh: $PACK/debs/dev is missing (scripts/gpu/pack.sh writes it)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "bare_env.sh: needs root (a mount namespace)" >&2; exit 1; }

packages=()
for deb in "$PACK"/debs/dev/*.deb; do
  p=$(dpkg-deb -f "$deb" Package)
  [ "$p" = libssl3 ] || packages+=("$p")
done
packages+=(libsz2 libaec0 hdf5-helpers openmpi-bin libopenmpi-dev libopenmpi3 openmpi-common mpi-default-dev mpi-default-bin)
installed=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && installed+=("$p")
done

# The mounts: (kind, path) lines, folders first; computed from dpkg's file lists.
PLAN=$(python3 - "${installed[@]}" <<'PY'
import os, subprocess, sys
hidden = set()
for pkg in sys.argv[1:]:
    out = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True).stdout.split("\n")
    hidden.update(p for p in out if p.startswith("/") and (os.path.isfile(p) or os.path.islink(p)))
hidden = {p for p in hidden if os.path.lexists(p)}
# A folder is covered whole when every file below it is hidden (and it is not a shared root).
roots = {"/", "/usr", "/usr/include", "/usr/lib", "/usr/lib/x86_64-linux-gnu", "/usr/share", "/usr/bin",
         "/usr/share/doc", "/usr/share/man", "/etc", "/lib", "/usr/lib/x86_64-linux-gnu/cmake",
         "/usr/share/cmake", "/usr/lib/x86_64-linux-gnu/pkgconfig", "/usr/share/pkgconfig", "/usr/src"}
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
for d in covered:
    print("dir", d)
files = set()
for p in hidden:  # a link is hidden through its target, when that is hidden too (else it stays:
    target = os.path.realpath(p)  # libssl-dev's libcrypto.so -> libssl3's, which cmake here needs)
    if target in hidden and os.path.isfile(target) and not any(target.startswith(c + "/") for c in covered):
        files.add(target)
for p in sorted(files):
    print("file", p)
PY
)
export BARE_PLAN=$PLAN
echo "bare_env.sh: hiding ${#installed[@]} packages ($(grep -c '^dir' <<< "$PLAN") folders, $(grep -c '^file' <<< "$PLAN") files)" >&2
exec unshare -m --propagation private bash -c '
  set -e
  while read -r kind path; do
    [ -n "$kind" ] || continue
    if [ "$kind" = dir ]; then mount -t tmpfs -o size=1k,mode=755 none "$path"; else mount --bind /dev/null "$path"; fi
  done <<< "$BARE_PLAN"
  unset BARE_PLAN
  exec "$@"' bare-env "$@"
