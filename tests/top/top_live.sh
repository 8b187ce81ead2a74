#!/usr/bin/env bash
# `some top` live, in a real terminal (a detached tmux session on a private server), on a tiny run
# *while it trains*: the screen shows a step that metrics.jsonl holds and the run's layers, the
# step moves on as the trainer logs, `n` shows the next layer, `q` quits with status 0; then a
# narrow colourless terminal (60 columns, NO_COLOR) still shows the step and the layer, without
# colour codes. The trainer is only read, never signalled by `some top`; the test stops it.
#     top_live.sh SOME_BINARY SOURCE_DIR
set -euo pipefail
SOME=$1
SRC=$2
if ! command -v tmux > /dev/null; then
  echo "SKIP: no tmux on PATH (scripts/setup.sh installs it)"
  exit 77
fi
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"  # fail, T (removed at exit), on_exit
SOCK="some-top-test-$$"   # a tmux server of our own: nothing of the user's sessions is touched
TRAIN_PID=""
on_exit 'tmux -L "$SOCK" kill-server 2> /dev/null'
on_exit '[ -z "$TRAIN_PID" ] || { kill "$TRAIN_PID" 2> /dev/null; wait "$TRAIN_PID" 2> /dev/null; }'
fail() {  # lib.sh's, plus the last screen
  echo "FAIL: $*" >&2
  [ -f "$T/screen" ] && { echo "--- last screen:" >&2; cat "$T/screen" >&2; }
  exit 1
}
export OMP_NUM_THREADS=1
bash "$SRC/tests/make_test_dataset.sh" "$SOME" "$T"
cd "$SRC"

# Far more steps than the test lasts: the run is still training while `some top` watches it.
"$SOME" train --config configs/tiny.toml --data "$T/data" --run-dir "$T/run" --set train.max_steps=1000000 \
  --set train.eval_every=40 --set train.log_every=5 --set train.threads=1 > "$T/train.out" 2>&1 &
TRAIN_PID=$!
for _ in $(seq 100); do
  [ -f "$T/run/analytics/step_00000080.h5" ] && break
  kill -0 "$TRAIN_PID" 2> /dev/null || { cat "$T/train.out" >&2; fail "the training run ended early"; }
  sleep 0.2
done
[ -f "$T/run/analytics/step_00000080.h5" ] || fail "the training run wrote no analytics in 20 s"

# capture NAME: the visible screen of session NAME into $T/screen.
capture() { tmux -L "$SOCK" capture-pane -p -t "$1" > "$T/screen"; }
# wait_for NAME REGEX: up to 15 s for the screen to match.
wait_for() {
  for _ in $(seq 75); do
    capture "$1"
    grep -qE "$2" "$T/screen" && return 0
    sleep 0.2
  done
  fail "the screen of $1 never showed /$2/"
}
# shown_step: the step in the header, checked against metrics.jsonl.
shown_step() {
  local s
  s=$(grep -oE "  step [0-9]+/1000000" "$T/screen" | head -1 | grep -oE "[0-9]+" | head -1)
  [ -n "$s" ] || fail "no step in the header"
  grep -q "\"step\":$s[,}]" "$T/run/metrics.jsonl" || fail "step $s on the screen is not in metrics.jsonl"
  echo "$s"
}

# The session runs the dashboard and records its exit status; the session ends when it does.
start() {  # start NAME COLUMNS ENV...
  local name=$1 cols=$2
  shift 2
  tmux -L "$SOCK" -f /dev/null new-session -d -s "$name" -x "$cols" -y 50 \
    "env $* '$SOME' top '$T/run' --interval 0.3; echo \$? > '$T/$name.rc'"
}

start wide 160 TERM=xterm-256color
wait_for wide "layer 0: expert load"
grep -qE "layers: +0 +1" "$T/screen" || fail "the layer tabs do not list layers 0 and 1"
grep -q "running" "$T/screen" || fail "the run is not shown as running"
first=$(shown_step)
second=$first
for _ in $(seq 50); do   # the trainer logs every 5 steps, ~100 steps/s here: up to 10 s on a busy machine
  sleep 0.2
  capture wide
  second=$(shown_step)
  [ "$second" -gt "$first" ] && break
done
[ "$second" -gt "$first" ] || fail "the step did not move on while the run trains ($first, then $second)"
grep -q "unigram PPL" "$T/screen" || fail "no unigram PPL line"
grep -q "latest eval sample" "$T/screen" || fail "no eval sample panel"

tmux -L "$SOCK" send-keys -t wide n
wait_for wide "layer 1: expert load"
tmux -L "$SOCK" send-keys -t wide q
for _ in $(seq 50); do [ -f "$T/wide.rc" ] && break; sleep 0.1; done
[ -f "$T/wide.rc" ] || fail "some top did not exit on q"
[ "$(cat "$T/wide.rc")" = 0 ] || fail "some top exited $(cat "$T/wide.rc") on q"
kill -0 "$TRAIN_PID" 2> /dev/null || fail "the trainer stopped while some top watched it"

# Narrow and colourless: stacked panels, the same facts, no colour escape codes.
start narrow 60 TERM=xterm-256color NO_COLOR=1
wait_for narrow "layer 0: routing over steps"
shown_step > /dev/null
tmux -L "$SOCK" capture-pane -p -e -t narrow > "$T/screen.esc"
if grep -qP '\x1b\[[0-9;]*(3[0-7]|38;[25];[0-9;]+|9[0-7])m' "$T/screen.esc"; then
  fail "colour codes on a NO_COLOR terminal"
fi
tmux -L "$SOCK" send-keys -t narrow q
for _ in $(seq 50); do [ -f "$T/narrow.rc" ] && break; sleep 0.1; done
[ "$(cat "$T/narrow.rc" 2> /dev/null)" = 0 ] || fail "some top on the narrow terminal did not exit 0 on q"
echo "top live: ok (steps $first -> $second while training)"
