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

    def ffn_out_ratio(self, last: int) -> list[float]:
        """Per block, the mean of `ffn_out_ratio` (sum_t ||FFN output|| / sum_t ||residual entering
        the FFN||, one value per block on every training log line) over the last `last` training
        log lines of the run."""
        lines = self.train[-last:]
        path = self.dir / "metrics.jsonl"
        if not lines:
            raise InputError(f"{path}: no training log line (lines with \"step\" and no \"event\")")
        values = []
        for line in lines:
            v = line.get("ffn_out_ratio")
            if not isinstance(v, list) or not v:
                raise InputError(f"{path}: the training line of step {line.get('step')} has no \"ffn_out_ratio\" "
                                 "list (a trainer built before the metric?)")
            values.append([float(x) for x in v])
        if len({len(v) for v in values}) != 1:
            raise InputError(f"{path}: \"ffn_out_ratio\" has a different number of blocks on different lines")
        return stats.column_means(values)

    def routing_mean(self, key: str) -> float | None:
        """The mean over routed layers of `key` in the final eval line's routing (None: no routing,
        or the key is null in every layer, as churn is at the first eval)."""
        return stats.mean_or_none(x.get(key) for x in self.routing)

    def routing_sum(self, key: str) -> int | None:
        """The sum over routed layers of the integer `key` in the final eval line's routing."""
        if not self.routing:
            return None
        missing = [x.get("layer") for x in self.routing if x.get(key) is None]
        if missing:
            raise InputError(f"{self.dir / 'metrics.jsonl'}: the last eval line's routing has no \"{key}\" for "
                             f"layer(s) {missing}")
        return int(sum(int(x[key]) for x in self.routing))


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

