#!/usr/bin/env bash
# sweep.experiments_validate: every sweep file in experiments/ expands and validates, at full
# size and at --scale small (`some sweep F --dry-run`: each run's config resolved against the
# config schema, cross-key checks included). Each file must also have a description and a
# [scale.small], be named after its file, be listed in experiments/README.md, and its small
# scale must really be small (a tiny model, at most a few hundred steps). Every experiment of
# seeds 002 and 004 that the README promises has its file.
#   usage: experiments_validate.sh SOME_BINARY SOURCE_DIR
set -euo pipefail
SOME=$(realpath "$1")
SRC=$(realpath "$2")
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"  # fail, T (removed at exit), on_exit
cd "$SRC"

for stem in 1.1-heads-layers 1.2-expert-init 1.3-sparsity 1.4-experts-vs-width 2.1-collapse-linear \
            2.2-collapse-mlp 3.1-alpha-beta 3.2-ema-delta 4.1-top-k 4.2-no-beta 004-v1-vs-v2; do
  [ -f "experiments/$stem.toml" ] || fail "experiments/$stem.toml is missing"
done

n=0
for f in experiments/*.toml; do
  stem=$(basename "$f" .toml)
  grep -qx "name = \"$stem\"" "$f" || fail "$f: name is not \"$stem\""
  grep -q '^description = """' "$f" || fail "$f: no description"
  grep -qx '\[scale.small\]' "$f" || fail "$f: no [scale.small]"
  grep -qF "$stem.toml" experiments/README.md || fail "experiments/README.md does not list $stem.toml"
  full=$("$SOME" sweep "$f" --out "$T/out" --dry-run) || fail "$f does not validate at full size"
  small=$("$SOME" sweep "$f" --out "$T/out" --dry-run --scale small) || fail "$f does not validate at --scale small"
  runs_full=$(head -n 1 <<<"$full" | grep -oE '[0-9]+ runs' | cut -d' ' -f1)
  runs_small=$(head -n 1 <<<"$small" | grep -oE '[0-9]+ runs' | cut -d' ' -f1)
  [ "${runs_full:-0}" -ge 2 ] && [ "${runs_small:-0}" -ge 2 ] || fail "$f: expected at least 2 runs ($full)"
  # The small scale's sizes, from the dry run's overrides (common or per run).
  printf '%s\n' "$small" > "$T/small.txt"
  python3 - "$f" "$T/small.txt" <<'PY' || fail "$f: [scale.small] is not small"
import re, sys
text = open(sys.argv[2]).read()
def values(key):
    return [int(v) for v in re.findall(rf"\b{re.escape(key)}=(\d+)", text)]
# d_model up to 256: 2.3-ann's key search costs what it costs at the key width d (the key width of experiment 2.3's measurements, 256);
# its one block, 60 steps and 512 tokens a step keep it at minutes.
for key, most in (("train.max_steps", 300), ("model.d_model", 256), ("model.n_layers", 4), ("train.seq_len", 64),
                  ("train.global_batch", 16)):
    vs = values(key)
    assert vs, f"{sys.argv[1]}: the small scale does not set {key}"
    assert max(vs) <= most, f"{sys.argv[1]}: small scale {key} = {max(vs)} > {most}"
PY
  echo "ok $f: $runs_full runs at full size, $runs_small at --scale small"
  n=$(( n + 1 ))
done
[ "$n" -ge 11 ] || fail "only $n sweep files in experiments/"
[ ! -e "$T/out" ] || fail "a dry run created run directories"
echo "sweep.experiments_validate: $n sweep files expand and validate at both scales"
