#!/usr/bin/env bash
# sweep.invalid_files: sweep files (and options) that must be refused before anything starts:
# exit code 2 (a config error), a message naming the sweep file and the key or table at fault,
# and no run directory created. Each case is a file body and the strings its message must hold.
#   usage: invalid_files.sh SOME_BINARY SOURCE_DIR
set -euo pipefail
SOME=$(realpath "$1")
SRC=$(realpath "$2")
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"  # fail, T (removed at exit), on_exit
cd "$SRC"  # base = "configs/tiny.toml" resolves against the repository root

HEAD='name = "bad"
base = "configs/tiny.toml"'
CASES=0
# expect NAME 'FILE BODY' 'OPTIONS' 'EXPECTED'... : the file $T/NAME.toml holds BODY; `some sweep`
# with OPTIONS must exit 2 naming the file and printing every EXPECTED string.
expect() {
  local name=$1 body=$2 opts=$3 f="$T/$1.toml" out rc
  shift 3
  printf '%s\n' "$body" > "$f"
  set +e
  # shellcheck disable=SC2086
  out=$("$SOME" sweep "$f" --out "$T/out" $opts 2>&1)
  rc=$?
  set -e
  [ "$rc" -eq 2 ] || fail "$name: exit code $rc, expected 2; output: $out"
  grep -qF -- "$f" <<<"$out" || fail "$name: the message does not name the file $f: $out"
  for s in "$@"; do
    grep -qF -- "$s" <<<"$out" || fail "$name: the message lacks '$s': $out"
  done
  [ ! -e "$T/out" ] || fail "$name: a refused sweep created $T/out"
  CASES=$(( CASES + 1 ))
  echo "ok $name: $(grep -F "$f" <<<"$out" | head -n 1 | sed 's/.*error: //')"
}

expect unknown_top "$HEAD
nmae = \"x\"" "" "unknown key 'nmae'"
expect no_name 'base = "configs/tiny.toml"' "" "'name' is missing"
expect bad_name 'name = "a b/c"' "" 'name = "a b/c"'
expect syntax "$HEAD
[grid
x = 1" "" "TOML syntax error"
expect unknown_grid_key "$HEAD
[grid]
\"gravity.alpah\" = [0.1, 0.2]" "" "[grid]" "unknown config key 'gravity.alpah'"
expect unknown_section "$HEAD
[set]
\"gravty.alpha\" = 0.1" "" "[set]" "unknown config section in 'gravty.alpha'"
expect out_of_range "$HEAD
[set]
\"gravity.alpha\" = 2.0" "" "[set]" "gravity.alpha = 2 is not allowed"
expect wrong_type_grid "$HEAD
[grid]
\"model.n_heads\" = [2, \"four\"]" "" "[grid]" "model.n_heads"
expect wrong_type_run "$HEAD
[[runs]]
name = \"a\"
\"model.d_model\" = \"big\"" "" "[[runs]] 'a'" "model.d_model"
expect grid_not_array "$HEAD
[grid]
\"gravity.alpha\" = 0.1" "" "[grid] gravity.alpha: expected an array"
expect grid_empty "$HEAD
[grid]
\"gravity.alpha\" = []" "" "[grid] gravity.alpha: the array is empty"
expect grid_repeat "$HEAD
[grid]
\"gravity.alpha\" = [0.1, 0.1]" "" "gravity.alpha: the value 0.1 is listed twice"
expect cross_key "$HEAD
[grid]
\"model.top_k\" = [2, 16]" "" "run 1 'top_k=16'" "model.top_k = 16 exceeds model.num_experts = 8"
expect run_no_name "$HEAD
[[runs]]
\"gravity.alpha\" = 0.1" "" "[[runs]] #1 has no name"
expect run_twice "$HEAD
[[runs]]
name = \"a\"
[[runs]]
name = \"a\"" "" "two [[runs]] are named 'a'"
expect set_and_grid "$HEAD
[set]
\"gravity.alpha\" = 0.1
[grid]
\"gravity.alpha\" = [0.1, 0.2]" "" "[set] and [grid] both set gravity.alpha"
expect seed_twice "$HEAD
seeds = [1, 2]
[set]
\"model.seed\" = 3" "" "[set] sets model.seed"
expect bad_seeds "$HEAD
seeds = [1, \"two\"]" "" "seeds: every seed must be an integer"
expect scale_grid_axis "$HEAD
[grid]
\"gravity.alpha\" = [0.1, 0.2]
[scale.small.grid]
\"gravity.beta\" = [0.1]" "" "[scale.small.grid] gravity.beta: not an axis of [grid]"
expect scale_sets_axis "$HEAD
[grid]
\"gravity.alpha\" = [0.1, 0.2]
[scale.small]
\"gravity.alpha\" = 0.5" "" "[scale.small] sets gravity.alpha, an axis of [grid]"
expect scale_bad_value "$HEAD
[scale.small]
\"train.max_steps\" = 0" "" "[scale.small]" "train.max_steps = 0 is not allowed"
expect scale_unknown_run "$HEAD
[[runs]]
name = \"a\"
[scale.small.runs.b]
\"gravity.alpha\" = 0.1" "" "[scale.small.runs]: 'b' is not the name of a [[runs]] entry"
expect no_such_scale "$HEAD
[scale.small]
\"train.max_steps\" = 5" "--scale large" "--scale large: the file has no [scale.large] (it has: small)"
expect base_missing 'name = "bad"
base = "configs/nope.toml"' "" 'base = "configs/nope.toml" not found'
expect only_out_of_range "$HEAD
[grid]
\"gravity.alpha\" = [0.1, 0.2]" "--only 2" "--only 2 is out of range: the sweep has 2 run(s)"
expect cli_set_bad "$HEAD" "--set gravity.nope=1 --dry-run" "unknown config key 'gravity.nope'"

# A sweep file that does not exist.
set +e
out=$("$SOME" sweep "$T/absent.toml" 2>&1)
rc=$?
set -e
[ "$rc" -eq 2 ] && grep -qF "$T/absent.toml' does not exist" <<<"$out" || fail "a missing sweep file: exit $rc: $out"

# And the same body made valid is accepted (the cases fail for the reason named, not another).
printf '%s\n[grid]\n"gravity.alpha" = [0.1, 0.2]\n[scale.small]\n"train.max_steps" = 5\n' "$HEAD" > "$T/good.toml"
"$SOME" sweep "$T/good.toml" --out "$T/out" --dry-run --scale small | grep -q "2 runs at scale 'small'" ||
  fail "the valid file was not accepted"
echo "sweep.invalid_files: $CASES invalid files refused with exit 2 and the file and key named"
