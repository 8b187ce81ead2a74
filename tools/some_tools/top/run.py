"""What `some top` knows about one run directory, refreshed by poll(): the metrics.jsonl lines so
far (some_tools.metrics.Follower), the resolved config (for max_steps and E), the newest
analytics file and the key drift between consecutive analytics files.

Legend: E experts, d model width.
"""
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from some_tools import analytics, analytics_files, metrics
from some_tools.analytics_files import LayerData
from some_tools.errors import InputError

STALE_S = 120   # a run without a new line for this long and no end event is shown as "stalled?"


def check_run_dir(path: Path):
    """InputError naming `path` and what a run directory holds, unless it is one. A directory that
    has config.toml but no metrics.jsonl yet is a run whose trainer is starting up."""
    if not path.exists():
        raise InputError(f"{path}: no such directory (expected a run directory holding metrics.jsonl, "
                         "as `some train --run-dir` writes it)")
    if not path.is_dir():
        raise InputError(f"{path}: not a directory (expected a run directory holding metrics.jsonl)")
    if not (path / "metrics.jsonl").is_file() and not (path / "config.toml").is_file():
        raise InputError(f"{path}: not a run directory: expected {path / 'metrics.jsonl'} (or, while the trainer "
                         "starts, config.toml); `some train --run-dir` writes them")


@dataclass
class Drift:
    """How far the keys moved between two analytics files: 1 − cos(k_i^new, k_i^old) per expert."""
    since: int                  # the older file's step
    mean: float
    max: float
    argmax: int


@dataclass
class LayerView:
    data: LayerData             # the newest analytics file's layer
    drift: Drift | None         # since the analytics file before it (SoME keys only)
    drift_history: list[float] = field(default_factory=list)  # mean drift per consecutive pair of files


def key_drift(new: np.ndarray, old: np.ndarray, since: int) -> Drift | None:
    """Per-expert 1 − cosine between the same expert's key in two files; None when the shapes differ."""
    if new.shape != old.shape or new.size == 0:
        return None
    d = 1.0 - np.sum(analytics.unit_rows(new) * analytics.unit_rows(old), axis=1)
    i = int(np.argmax(d))
    return Drift(since, float(d.mean()), float(d[i]), i)


class Run:
    def __init__(self, path: Path):
        check_run_dir(path)
        self.path = path
        self.name = path.resolve().name
        self.follower = metrics.Follower(path / "metrics.jsonl")
        self.m: metrics.Metrics = self.follower.metrics()
        self.cfg: dict = {}
        self.analytics_step: int | None = None
        self.layers: dict[int, LayerView] = {}
        self._keys_by_step: dict[int, dict[int, np.ndarray]] = {}   # newest two files' keys, for drift
        self._drift: dict[int, list[float]] = {}
        self._done_files: set[int] = set()
        self.note = ""           # a problem met while reading (shown, not fatal: the next poll retries)
        self.last_change = time.time()

    def poll(self):
        """Reads what the trainer added since the last poll."""
        self.note = ""
        if not self.cfg and (self.path / "config.toml").is_file():
            try:
                self.cfg = tomllib.loads((self.path / "config.toml").read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as e:
                self.note = f"config.toml: {e}"
        if (self.path / "metrics.jsonl").is_file():
            if self.follower.poll():
                self.m = self.follower.metrics()
                self.last_change = time.time()
        for step, p in analytics_files.list_files(self.path).items():
            if step in self._done_files:
                continue
            try:
                data = analytics_files.read(p)
            except InputError as e:
                # The trainer may be writing this file right now: try again at the next poll.
                self.note = str(e)
                break
            self._add_analytics(step, data)
            self._done_files.add(step)

    def _add_analytics(self, step: int, data: list[LayerData]):
        prev_step = self.analytics_step
        keys = {d.layer: d.keys for d in data if d.keys is not None}
        for d in data:
            drift = None
            if prev_step is not None and d.layer in self._keys_by_step.get(prev_step, {}) and d.keys is not None:
                drift = key_drift(d.keys, self._keys_by_step[prev_step][d.layer], prev_step)
                if drift is not None:
                    self._drift.setdefault(d.layer, []).append(drift.mean)
            self.layers[d.layer] = LayerView(d, drift, list(self._drift.get(d.layer, [])))
        self._keys_by_step = {step: keys}
        self.analytics_step = step

    # -- what the views show ------------------------------------------------------------------

    @property
    def status(self) -> str:
        if self.m.end is not None:
            return "done" if self.m.finished else str(self.m.end.get("event"))
        if not self.m.train and not self.m.evals:
            return "starting"
        if time.time() - self.last_change > STALE_S and self._mtime_age() > STALE_S:
            return f"stalled? ({self._mtime_age() / 60:.0f} min without a line)"
        return "running"

    def _mtime_age(self) -> float:
        try:
            return time.time() - (self.path / "metrics.jsonl").stat().st_mtime
        except OSError:
            return 0.0

    @property
    def step(self) -> int | None:
        steps = [line["step"] for line in self.m.train[-1:] + self.m.evals[-1:]]
        if self.m.end is not None:
            steps.append(self.m.end["step"])
        return max(steps) if steps else None

    @property
    def max_steps(self) -> int | None:
        v = self.cfg.get("train", {}).get("max_steps")
        return int(v) if isinstance(v, int) and v > 0 else None

    @property
    def layer_ids(self) -> list[int]:
        """Routed layers: those of the routing entries in metrics.jsonl and of the analytics files."""
        ids = {r["layer"] for line in self.m.train[-1:] + self.m.evals[-1:] for r in (line.get("routing") or [])
               if "layer" in r}
        return sorted(ids | set(self.layers))

    def eta_s(self) -> float | None:
        """Seconds to max_steps at the rate of the last logged steps (or to train.max_minutes if sooner)."""
        if self.m.end is not None or len(self.m.train) < 2 or self.max_steps is None:
            return None
        window = self.m.train[-10:]
        a, b = window[0], window[-1]
        dt, ds = b.get("elapsed_s", 0) - a.get("elapsed_s", 0), b["step"] - a["step"]
        if dt <= 0 or ds <= 0:
            return None
        eta = (self.max_steps - b["step"]) * dt / ds
        minutes = self.cfg.get("train", {}).get("max_minutes")
        if isinstance(minutes, (int, float)) and minutes > 0:
            eta = min(eta, max(0.0, minutes * 60 - b.get("elapsed_s", 0)))
        return max(eta, 0.0)

    def series(self, layer: int, key: str) -> list[float]:
        """A routing metric of one layer over the steps: from the training lines where the trainer logs
        it there, else from the eval lines (churn is measured between evals only)."""
        for lines in (self.m.train, self.m.evals):
            out = [r[key] for line in lines for r in (line.get("routing") or [])
                   if r.get("layer") == layer and r.get(key) is not None]
            if out:
                return out
        return []
