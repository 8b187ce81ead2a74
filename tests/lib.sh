# What every shell test needs, in one place: source it first, after reading the arguments:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"        (from tests/; ../lib.sh from tests/<dir>/)
# It sets -euo pipefail and gives
#   fail MESSAGE...   "FAIL: MESSAGE" on stderr, exit 1;
#   T                 a fresh temporary directory, removed when the script exits;
#   on_exit COMMAND   COMMAND (a string for eval) run at exit before T is removed, in order added
#                     (stop a daemon, unmount, kill what the test started); its failure is ignored.
set -euo pipefail
fail() { echo "FAIL: $*" >&2; exit 1; }
T=$(mktemp -d)
_some_test_on_exit=()
on_exit() { _some_test_on_exit+=("$1"); }
_some_test_cleanup() {
  local c
  for c in "${_some_test_on_exit[@]}"; do eval "$c" || true; done
  rm -rf "$T"
}
trap _some_test_cleanup EXIT
