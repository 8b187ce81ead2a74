"""Child processes of `some experiment claims` (some_tools.claims): each training, evaluation and
dataset preparation is a child process of the `some` executable, its output in a log file,
resumable (finished work is skipped), with one progress line per task.

Stop signals (SIGINT, SIGTERM, SIGUSR1) end the experiment cleanly: the running child gets
SIGTERM (the trainer writes a checkpoint and exits), then the script exits 130 / 143; the same
command continues later. Children run in their own process group (a terminal's Ctrl-C reaches
only this script, which decides what the child gets) and get SIGTERM if this script dies.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from some_tools import metrics

PR_SET_PDEATHSIG = 1


class TaskFailed(Exception):
    """A child exited with a non-zero status; the message names its log."""


class Stopped(Exception):
    """A stop signal arrived; the message names it."""


def run_finished(run_dir: Path) -> bool:
    """True when the run's metrics.jsonl ends with the "done" line (a finished run; some_tools.metrics)."""
    path = run_dir / "metrics.jsonl"
    return path.is_file() and metrics.read(path).finished


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint RUN/checkpoints/latest names, if it exists."""
    latest = run_dir / "checkpoints" / "latest"
    if not latest.is_file():
        return None
    ckpt = run_dir / "checkpoints" / latest.read_text().strip()
    return ckpt if (ckpt / "manifest.json").is_file() else None


def format_duration(seconds: float) -> str:
    """"1h02m", "3m05s", "12.3s" (as common/progress.cpp writes them)."""
    if seconds < 0:
        return "?"
    if seconds < 60:
        return f"{seconds:.1f}s"
    s = int(round(seconds))
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _child_setup():
    """In the child before exec: SIGTERM when the parent dies (no orphaned trainers)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class StopGuard:
    """Turns SIGINT / SIGTERM / SIGUSR1 into a stop request that is passed to the running child."""

    def __init__(self):
        self.signal: int | None = None
        self.child: subprocess.Popen | None = None

    def install(self):
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
            signal.signal(s, self._on_signal)

    def _on_signal(self, signo, frame):
        first = self.signal is None
        self.signal = self.signal or signo
        if first and self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)  # the trainer checkpoints and exits

    def check(self):
        if self.signal is not None:
            raise Stopped(signal.Signals(self.signal).name)


@dataclass
class Task:
    kind: str                 # train | eval | prepare
    name: str
    argv: list[str]
    log: Path                 # stdout + stderr of the child (stderr only for eval)
    work: float               # relative cost, for the ETA
    done: callable = None     # () -> bool: already finished (skipped)
    before: callable = None   # () -> list[str] | None: the argv to use now (resume logic), run just before
    after: callable = None    # () -> None: after a successful exit
    stdout: Path | None = None  # eval: stdout to this file (written atomically)
    note: str = ""
    wall_s: float = 0.0
    status: str = "pending"   # pending | skipped | ran


@dataclass
class Runner:
    tasks: list[Task]
    guard: StopGuard
    timings_path: Path
    env: dict = field(default_factory=lambda: dict(os.environ))
    start: float = field(default_factory=time.monotonic)
    out=sys.stdout

    def _print(self, text: str):
        print(text, file=self.out, flush=True)

    def _load_timings(self) -> dict:
        return load_task_records(self.timings_path)

    def _record(self, task: Task):
        """Adds this invocation's wall time and command of `task` to OUT/tasks.json (kept across
        invocations, so a report written after a resume still shows every command and the time)."""
        records = self._load_timings()
        r = records.setdefault(f"{task.kind}:{task.name}", {"wall_s": 0.0, "commands": []})
        r["wall_s"] = round(r["wall_s"] + task.wall_s, 3)
        r["commands"].append(task.argv)
        tmp = self.timings_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(records, indent=1, sort_keys=True))
        tmp.replace(self.timings_path)

    def run_all(self) -> None:
        n = len(self.tasks)
        width = len(str(n))
        todo = [t for t in self.tasks if not (t.done and t.done())]
        work_left = sum(t.work for t in todo)
        work_done = 0.0
        for i, task in enumerate(self.tasks, 1):
            self.guard.check()
            tag = f"[{i:>{width}}/{n}] {task.kind} {task.name}"
            if task not in todo:
                task.status = "skipped"
                self._print(f"{tag}: finished before, skipped")
                continue
            elapsed = time.monotonic() - self.start
            self._print(f"{tag}: started{(' (' + task.note + ')') if task.note else ''} | elapsed "
                        f"{format_duration(elapsed)} | log {task.log}")
            t0 = time.monotonic()
            try:
                self._run(task)
                task.status = "ran"
            finally:  # a stopped or failed task's time counts too
                task.wall_s = time.monotonic() - t0
                if task.argv:
                    self._record(task)
            work_done += task.work
            work_left -= task.work
            elapsed = time.monotonic() - self.start
            eta = elapsed / work_done * work_left if work_done > 0 else -1
            self._print(f"{tag}: done in {format_duration(task.wall_s)} | elapsed {format_duration(elapsed)} | "
                        f"ETA {format_duration(eta) if work_left > 0 else '0s'}")

    def _run(self, task: Task) -> None:
        argv = task.before() if task.before else task.argv
        task.argv = argv
        task.log.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = task.stdout.with_suffix(task.stdout.suffix + ".tmp") if task.stdout else None
        with open(task.log, "ab") as log:
            log.write(f"\n$ {' '.join(argv)}\n".encode())
            log.flush()
            out = open(tmp_out, "wb") if tmp_out else log
            try:
                child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=log, env=self.env,
                                         process_group=0, preexec_fn=_child_setup)
                self.guard.child = child
                if self.guard.signal is not None:  # arrived between the check and the start
                    child.send_signal(signal.SIGTERM)
                while True:
                    try:
                        code = child.wait()
                        break
                    except InterruptedError:
                        continue
            finally:
                self.guard.child = None
                if tmp_out:
                    out.close()
        self.guard.check()
        if code != 0:
            raise TaskFailed(f"{task.kind} {task.name} failed (exit status {code}); its output: {task.log}\n"
                             + tail(task.log, 15))
        if tmp_out:
            tmp_out.replace(task.stdout)
        if task.after:
            task.after()


def load_task_records(path: Path) -> dict:
    """OUT/tasks.json: {"train:NAME": {"wall_s": seconds over all invocations, "commands": [argv, ...]}}."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in text[-lines:])
