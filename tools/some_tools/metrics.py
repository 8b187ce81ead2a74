"""The one reader of RUN/metrics.jsonl (docs/design.md §8), shared by every tool.

The trainer appends one JSON object per line: a training line per logged step (no "event"), an
"eval" line per evaluation, and events: "resume" when a run continues from a checkpoint,
"preempted" when a stop signal ended it after a checkpoint, "done" when it finished.

How a run ended is decided by its last line alone, as `some sweep` decides it
(launcher/sweep_summary.cpp): "done" = finished, "preempted" = stopped with a checkpoint,
anything else = in progress. An end event further up does not count: a preempted run that was
resumed logs "resume" and more steps after its "preempted" line, and is running (or was
interrupted) again; a last line that does not parse is one the trainer is still writing.
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
            try:
                j = json.loads(line)
            except json.JSONDecodeError:
                j = None
            if not isinstance(j, dict) or "step" not in j:
                skipped.append(lineno)
                last = None
                continue
            last = j
            event = j.get("event")
            if event is None:
                train[j["step"]] = j
            elif event == "eval":
                evals[j["step"]] = j
    end = last if last is not None and last.get("event") in END_EVENTS else None
    return Metrics(path, [train[s] for s in sorted(train)], [evals[s] for s in sorted(evals)], end, skipped)
