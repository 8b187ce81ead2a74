"""The runs of a claims experiment read back: each run's metrics.jsonl (some_tools.metrics), its
parameter count from the trainer's log, its last analytics file (some_tools.analytics_files),
and the outputs of `some eval`.
"""
from dataclasses import dataclass
from pathlib import Path

from some_tools import analytics_files, metrics
from some_tools.analytics_files import LayerData
from some_tools.claims import stats
from some_tools.claims.plan import Run
from some_tools.errors import InputError


def read_finished_metrics(run_dir: Path) -> metrics.Metrics:
    """RUN/metrics.jsonl of a finished run (its last line is the "done" event)."""
    m = metrics.read(run_dir / "metrics.jsonl")
    if not m.finished:
        raise InputError(f"{m.path}: the run has not finished (its last line is not the \"done\" event)")
    return m


def read_last_analytics(run_dir: Path) -> tuple[int, list[LayerData]]:
    """The last RUN/analytics/step_*.h5: (step, its layers)."""
    files = analytics_files.list_files(run_dir)
    if not files:
        raise InputError(f"{run_dir}/analytics: no analytics file")
    step = max(files)
    return step, analytics_files.read(files[step])


@dataclass
class RunResult:
    run: Run
    dir: Path
    train: list[dict]
    evals: list[dict]
    done: dict
    total_params: int | None
    trainable_params: int | None

    @property
    def val_ppl(self) -> float:
        return float(self.done["val_ppl"])

    @property
    def unigram_ppl(self) -> float:
        return float(self.done["unigram_ppl"])

    @property
    def tokens(self) -> int:
        return int(self.done["tokens"])

    @property
    def routing(self) -> list[dict]:
        """The routing list of the final eval line (one entry per routed layer)."""
        return self.evals[-1].get("routing", []) if self.evals else []


def load_run(run: Run, run_dir: Path) -> RunResult:
    m = read_finished_metrics(run_dir)
    params = None
    for log in ("train.log", "stdout.log"):
        p = run_dir / log
        if p.is_file():
            params = stats.parse_param_line(p.read_text(encoding="utf-8", errors="replace"))
            if params:
                break
    total, trainable = params if params else (None, None)
    return RunResult(run, run_dir, m.train, m.evals, m.end, total, trainable)


def load_eval(path: Path) -> dict:
    try:
        return stats.parse_eval_output(path.read_text(encoding="utf-8", errors="replace"))
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e})") from e
    except ValueError as e:
        raise InputError(f"{path}: {e}") from e

