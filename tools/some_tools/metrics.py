"""The one reader of RUN/metrics.jsonl (docs/design.md §8), shared by every tool.

The trainer appends one JSON object per line: a training line per logged step (no "event"), an
"eval" line per evaluation, and events: "resume" when a run continues from a checkpoint,
"preempted" when a stop signal ended it after a checkpoint, "done" when it finished.

How a run ended is decided by its last line alone, as `some sweep` decides it
(launcher/sweep_summary.cpp): "done" = finished, "preempted" = stopped with a checkpoint,
anything else = in progress. An end event further up does not count: a preempted run that was
resumed logs "resume" and more steps after its "preempted" line, and is running (or was
interrupted) again; a last line that does not parse is one the trainer is still writing.

read() reads the whole file once; Follower reads the same lines a little at a time, as the
trainer appends them (`some top`).
"""
import json
from dataclasses import dataclass, field
from pathlib import Path

from some_tools.errors import InputError

END_EVENTS = ("done", "preempted")


@dataclass
class Metrics:
    path: Path
    train: list[dict]             # training-step lines, by step; a step logged twice keeps its later line
    evals: list[dict]             # "eval" lines, by step, the same way
    end: dict | None              # the last line when it is a "done" or "preempted" event, else None
    skipped: list[int] = field(default_factory=list)  # numbers of lines that are not JSON objects with a "step"

    @property
    def finished(self) -> bool:
        """The run ended with its "done" line (not preempted, not in progress)."""
        return self.end is not None and self.end.get("event") == "done"


def read(path: Path) -> Metrics:
    """Reads a metrics.jsonl. A resumed run logs the steps after its checkpoint again: for train and
    eval lines the later line of a step wins. Unparsable lines (e.g. one a running trainer is
    writing) are skipped and their numbers kept in `skipped`. InputError when the file is missing."""
    if not path.is_file():
        raise InputError(f"{path}: no such file (is {path.parent} a run directory? `some train --run-dir` writes it)")
    train, evals, skipped, last = {}, {}, [], None
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            j = _parse(line)
            if j is None:
                skipped.append(lineno)
                last = None
                continue
            last = j
            _file(j, train, evals)
    end = last if last is not None and last.get("event") in END_EVENTS else None
    return Metrics(path, [train[s] for s in sorted(train)], [evals[s] for s in sorted(evals)], end, skipped)


def _parse(line: str) -> dict | None:
    """One line as a JSON object with a "step", else None."""
    try:
        j = json.loads(line)
    except json.JSONDecodeError:
        return None
    return j if isinstance(j, dict) and "step" in j else None


def _file(j: dict, train: dict, evals: dict):
    """Files a parsed line under its step: training lines (no "event") and "eval" lines; events are not kept."""
    event = j.get("event")
    if event is None:
        train[j["step"]] = j
    elif event == "eval":
        evals[j["step"]] = j


class Follower:
    """Reads a metrics.jsonl that a trainer is still appending to, a little at a time (`some top`):
    each poll() parses only the bytes added since the last, and a line without its newline yet
    waits for the next poll. The same semantics as read(): the later line of a step wins, the
    last complete line decides `end`. A file that shrank (a run directory re-created) is read again
    from the start."""

    def __init__(self, path: Path):
        self.path = path
        self._reset()

    def _reset(self):
        self._offset, self._partial, self._lineno = 0, b"", 0
        self._train, self._evals, self._skipped, self._last = {}, {}, [], None

    def poll(self) -> bool:
        """Reads what was appended; True when a complete line arrived. InputError when the file is missing."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError as e:
            raise InputError(f"{self.path}: no such file (is {self.path.parent} a run directory? "
                             "`some train --run-dir` writes it)") from e
        if size < self._offset:
            self._reset()
        if size == self._offset:
            return False
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            chunk = f.read(size - self._offset)
        self._offset += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for raw in lines:
            self._lineno += 1
            if not raw.strip():
                continue
            j = _parse(raw.decode("utf-8", errors="replace"))
            if j is None:
                self._skipped.append(self._lineno)
                self._last = None
                continue
            self._last = j
            _file(j, self._train, self._evals)
        return bool(lines)

    def metrics(self) -> Metrics:
        """What was read so far, as read() would return it for those lines."""
        end = self._last if self._last is not None and self._last.get("event") in END_EVENTS else None
        return Metrics(self.path, [self._train[s] for s in sorted(self._train)],
                       [self._evals[s] for s in sorted(self._evals)], end, list(self._skipped))
