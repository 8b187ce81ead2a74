"""`some top`: arguments, the refresh loop on Rich's Live display, and the keys.

Rich draws (Live redraws the whole screen from renderables, so a resize or a narrow terminal needs
nothing special); the keys are read here from the terminal in cbreak mode with select(), which
is all a read-only dashboard needs from input. Without a terminal on stdout (a pipe, a log) or
with --once, one frame is printed and the program ends.
"""
import argparse
import os
import select
import sys
import termios
import time
import tty
from pathlib import Path

from rich.console import Console
from rich.live import Live

from some_tools.errors import InputError
from some_tools.top import render
from some_tools.top.run import Run

KEYS = {"n": "next_layer", "l": "next_layer", "\x1b[C": "next_layer", "p": "prev_layer", "h": "prev_layer",
        "\x1b[D": "prev_layer", "\t": "next_run", "\x1b[B": "next_run", "\x1b[A": "prev_run", " ": "pause",
        "q": "quit", "Q": "quit", "\x03": "quit"}


class Keys:
    """Keystrokes from stdin in cbreak mode (no echo, no line buffering; Ctrl-C still interrupts),
    the terminal restored on exit. Without a terminal on stdin there are no keys: read() waits."""

    def __init__(self):
        self.fd = sys.stdin.fileno() if sys.stdin is not None and sys.stdin.isatty() else None
        self._saved = None

    def __enter__(self):
        if self.fd is not None:
            self._saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        return self

    def __exit__(self, *exc):
        if self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)

    def read(self, timeout: float) -> list[str]:
        """The actions of the keys pressed within `timeout` seconds (returns at the first key)."""
        if self.fd is None:
            time.sleep(timeout)
            return []
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return []
        data = os.read(self.fd, 64).decode("utf-8", errors="replace")
        actions, i = [], 0
        while i < len(data):
            # An arrow key arrives as one three-character sequence (ESC [ C); anything else is one character.
            seq = data[i:i + 3] if data[i] == "\x1b" else data[i]
            if seq in KEYS:
                actions.append(KEYS[seq])
            i += len(seq)
        return actions


class Dashboard:
    def __init__(self, runs: list[Run]):
        self.runs = runs
        self.focus = 0
        self.layer_pos = 0
        self.paused = False

    def poll(self):
        for r in self.runs:
            r.poll()

    def layer(self) -> int | None:
        ids = self.runs[self.focus].layer_ids
        if not ids:
            return None
        self.layer_pos %= len(ids)
        return ids[self.layer_pos]

    def act(self, action: str) -> bool:
        """Applies one key's action; False for quit."""
        if action == "quit":
            return False
        if action == "pause":
            self.paused = not self.paused
        elif action in ("next_layer", "prev_layer"):
            self.layer_pos += 1 if action == "next_layer" else -1
        elif action in ("next_run", "prev_run"):
            self.focus = (self.focus + (1 if action == "next_run" else -1)) % len(self.runs)
        return True

    def frame(self, console: Console):
        ascii_only = not (console.encoding or "").lower().startswith("utf")
        return render.screen(self.runs, self.focus, self.layer(), console.size.width, ascii_only, self.paused)


def _scroll(dash: Dashboard, console: Console, keys: Keys, interval: float) -> int:
    shown = None
    while True:
        state = (dash.runs[dash.focus].step, dash.focus, dash.layer(), dash.paused)
        if state != shown:
            console.rule()
            console.print(dash.frame(console))
            shown = state
        for action in keys.read(interval):
            if not dash.act(action):
                return 0
        if not dash.paused:
            dash.poll()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m some_tools.top",
                                description="Live terminal dashboard of running or finished runs (read-only).")
    p.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="run directory (holds metrics.jsonl)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between reads of the files (default 1)")
    p.add_argument("--once", action="store_true", help="print one frame and exit (also without a terminal)")
    a = p.parse_args(argv)
    if a.interval <= 0:
        p.error(f"--interval must be positive, got {a.interval}")
    try:
        runs = [Run(path) for path in a.runs]
        dash = Dashboard(runs)
        dash.poll()
        console = Console()
        if a.once or not console.is_terminal:
            console.print(dash.frame(console))
            return 0
        if console.is_dumb_terminal:
            # TERM=dumb cannot move the cursor, so Live cannot redraw in place: print a frame per
            # change instead, one under the other, keys as usual.
            with Keys() as keys:
                return _scroll(dash, console, keys, a.interval)
        with Keys() as keys, Live(dash.frame(console), console=console, screen=True, auto_refresh=False) as live:
            while True:
                for action in keys.read(a.interval):
                    if not dash.act(action):
                        return 0
                if not dash.paused:
                    dash.poll()
                live.update(dash.frame(console), refresh=True)
    except InputError as e:
        print(f"top: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
