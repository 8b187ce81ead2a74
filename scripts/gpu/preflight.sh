#!/usr/bin/env bash
# The GPU node's configure, build and link, done here without a GPU, against the node's torch:
# a scratch venv outside the repository with PyPI's torch==2.11.0 (its CUDA 13 build, ~3 GB with
# its nvidia-* wheels), the pack unpacked as on the node, then `scripts/gpu/check.sh --link-only`
# (the very configure and build commands of the GPU run, CUDA code paths on) and its `links`
# stage: every binary resolves its libraries, libtorch_cuda and NCCL among them, and test_cuda
# starts. Not part of CI (downloads, ~15 min of build on 2 cores): run it whenever the GPU path
# changes, before a GPU is lent.
#
#   scripts/gpu/preflight.sh [--venv DIR] [--torch VERSION] [--out DIR]
#
# Defaults: --venv ~/.cache/some-preflight/venv (reused when it already holds that torch),
# --torch 2.11.0, --out build-preflight (the report, check.log, build.log, env.txt; the build is
# build-preflight/build). Needs this machine's CUDA toolkit (nvcc) and the pack (.gpu-pack; made
# by scripts/gpu/pack.sh when absent).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
VENV=$HOME/.cache/some-preflight/venv TORCH=2.11.0 OUTDIR=build-preflight
while [ $# -gt 0 ]; do
  case "$1" in
    --venv) VENV=$2; shift ;;
    --torch) TORCH=$2; shift ;;
    --out) OUTDIR=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "preflight.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
step() { echo "==> [preflight] $*"; }
fail() { echo "!! [preflight] $*" >&2; exit 1; }
case "$(cd "$(dirname "$VENV")" 2>/dev/null && pwd)/" in
  "$ROOT"/*) fail "--venv $VENV is inside the repository: a 3 GB venv would travel with every device call" ;;
esac
command -v nvcc >/dev/null || fail "no nvcc on PATH: the CUDA toolkit is needed to configure the CUDA build (it compiles no CUDA code)"

step "venv $VENV with torch==$TORCH (PyPI's CUDA build)"
if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH')" 2>/dev/null; then
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv --clear "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "torch==$TORCH" nvidia-nccl-cu13 ||
    fail "pip install torch==$TORCH nvidia-nccl-cu13 into $VENV failed (PyPI reachable? disk: $(df -h --output=avail "$(dirname "$VENV")" | tail -n 1))"
fi
"$VENV/bin/python" - <<'PY' || fail "the venv's torch is not a CUDA 13 build"
import importlib.metadata as m, torch
print(f"    torch {torch.__version__}, CUDA {torch.version.cuda}, nvidia-nccl-cu13 {m.version('nvidia-nccl-cu13')}")
raise SystemExit(not (torch.version.cuda or "").startswith("13"))
PY

step "the pack (.gpu-pack)"
[ -f .gpu-pack/MANIFEST.txt ] || bash scripts/gpu/pack.sh

step "check.sh --link-only against it (the GPU run's configure and build; then the links)"
mkdir -p "$OUTDIR"
rc=0
OUT=$OUTDIR SOME_TORCH_PYTHON=$VENV/bin/python bash scripts/gpu/check.sh --link-only --build "$OUTDIR/build" \
  --prefix /tmp/some-preflight-prefix || rc=$?
python3 - "$OUTDIR/gpu-report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"    torch {r['torch_version']} (CUDA {r['torch_cuda']}), build {r['build_seconds']} s, ok: {r['ok']}")
for name, s in r["stages"].items():
    print(f"    {name:10s} {s['status']:8s} {s['seconds']:8.1f} s")
for t in r.get("build_errors") or []:
    print(f"    FAILED {t['target']}: {t['errors'][:1]}")
PY
[ "$rc" = 0 ] && step "PASS: the GPU build configures, builds and links against torch $TORCH here (log: $OUTDIR/check.log)" ||
  fail "see $OUTDIR/check.log"
