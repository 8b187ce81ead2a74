#!/usr/bin/env bash
# The test command: install and build if needed (scripts/setup.sh), then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "==> [test] ctest"
ctest --test-dir build --output-on-failure -j "$(nproc)" --timeout 900
