"""The seeds' three claims, and two follow-ups, as one resumable experiment (`some experiment claims`,
docs/claims.md, docs/design.md §10). `--part claims` (the default):

  A  reservoir:   SoME (random frozen experts, Knowledge-Gravity keys) vs the dense FFN vs SoME
                  with frozen keys vs the learned-gate MoE, at equal active parameters and tokens.
  B  composition: SoME top-k 1 / 2 / 4 at equal k * h (and equal E * h); co-activation structure.
  C  forgetting:  SoME, dense and MoE trained on domain A (the default corpus), then continued on
                  domain B (Python standard-library source, tokenised with A's tokenizer);
                  forgetting = PPL_A after / PPL_A before.

`--part gap`: what closes the gap to the dense FFN: SoME, each router / expert option alone, all of
them together, and the dense FFN at equal active compute and at equal trainable parameters, two
seeds each (OUT/report-gap.md). `--part recycling`: a trained wide dense FFN sliced into SoME's
expert library, against a random library, the dense FFN and the wide model, plus claim C's
forgetting (OUT/report-recycling.md). `--part all`: the three, runs they share trained once.

    python -m some_tools.claims --some PATH [--out DIR] [--scale tiny|small] [--part claims|gap|recycling|all]
                                [--data DIR] [--stdlib DIR] [--dry-run]

Every training, evaluation and dataset preparation is a child process of the `some` executable
PATH (`some experiment claims` passes itself), in its own directory under OUT (default
runs/claims) with its output in RUN/stdout.log. Finished runs (metrics.jsonl ends with the "done"
line) are skipped, interrupted ones continue with --resume auto. At the end each part's report
(OUT/report.md, report-gap.md, report-recycling.md, and the PNGs they embed) is written from the
runs' metrics.jsonl, analytics files and eval outputs.
Exit status: 0 done, 1 a child failed or an input is missing, 2 bad arguments, 128 + signal when
stopped by a signal (continue with the same command).
"""
import argparse
import copy
import hashlib
import json
import os
import shutil
import sys
import sysconfig
import time
import tomllib
from pathlib import Path

from some_tools import SOURCE_DIR
from some_tools.claims import runner
from some_tools.claims.plan import PARTS, SCALES, Eval, Plan, Run, make_part_plan, merge_plans
from some_tools.claims.report import write_report
from some_tools.claims.report_gap import write_gap_report
from some_tools.claims.report_recycling import write_recycling_report
from some_tools.claims.stats import parse_eval_output
from some_tools.errors import InputError

LINES_PER_DOCUMENT = 60       # domain-B documents: consecutive 60-line chunks of a source file
MAX_FILE_BYTES = 60_000       # larger standard-library files are left out (one file would dominate)


# ---------------------------------------------------------------------------------------------
# Domain B: Python source of this machine's standard library
# ---------------------------------------------------------------------------------------------

def default_stdlib() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def python_corpus_files(stdlib: Path, max_bytes: int) -> list[Path]:
    """The deterministic subset: stdlib/*.py in name order, files up to MAX_FILE_BYTES, until
    max_bytes are collected."""
    files, total = [], 0
    for p in sorted(stdlib.glob("*.py"), key=lambda p: p.name):
        size = p.stat().st_size
        if size == 0 or size > MAX_FILE_BYTES:
            continue
        files.append(p)
        total += size
        if total >= max_bytes:
            break
    return files


def write_python_corpus(files: list[Path], out: Path) -> str:
    """One JSON line per LINES_PER_DOCUMENT-line chunk of each file ({"text": ...}); returns the
    SHA-256 of what was written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    tmp = out.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for p in files:
            lines = p.read_text(encoding="utf-8", errors="replace").split("\n")
            for i in range(0, len(lines), LINES_PER_DOCUMENT):
                chunk = "\n".join(lines[i:i + LINES_PER_DOCUMENT])
                if chunk.strip():
                    line = json.dumps({"text": chunk}) + "\n"
                    f.write(line)
                    h.update(line.encode())
    tmp.replace(out)
    return h.hexdigest()


def read_meta(data_dir: Path) -> dict | None:
    try:
        return json.loads((data_dir / "meta.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


# ---------------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------------

class Experiment:
    """Paths and the task list of one claims experiment in OUT (the merged plan of its parts)."""

    def __init__(self, args, plan: Plan):
        self.some = str(Path(args.some).resolve())
        self.out = Path(args.out).resolve()
        self.plan = plan
        self.scale = plan.scale
        self.data_a = Path(args.data or "data/default").resolve()
        self.data_b = self.out / "data-python"
        self.corpus_b = self.out / "domain-b" / "python.jsonl"
        self.stdlib = Path(args.stdlib).resolve() if args.stdlib else default_stdlib()
        self.base_config = SOURCE_DIR / self.scale.base_config

    def for_plan(self, plan: Plan) -> "Experiment":
        """The same experiment seen through one part's plan (what that part's report describes)."""
        view = copy.copy(self)
        view.plan = plan
        return view

    def run_dir(self, name: str) -> Path:
        return self.out / name

    def data_dir(self, domain: str) -> Path:
        return self.data_a if domain == "A" else self.data_b

    def sets(self, run: Run) -> list[str]:
        kv = dict(self.scale.common) if not run.continue_from else {}
        kv.update(run.sets)
        if run.experts_from and not run.continue_from:
            kv["model.experts_from"] = str(self.run_dir(run.experts_from))
        if run.init_from and not run.continue_from:
            kv["model.init_from"] = str(self.run_dir(run.init_from))
            kv["model.init_parts"] = run.init_parts
            kv["model.init_units"] = run.init_units
            kv["model.init_optimizer"] = "true" if run.init_optimizer else "false"
        kv["train.max_steps"] = str(self.max_steps(run))
        out = []
        for k, v in kv.items():
            out += ["--set", f"{k}={v}"]
        return out

    def max_steps(self, run: Run) -> int:
        """The plan's steps; for a run at equal training FLOPs, the steps whose FLOPs (its own
        model's FLOPs per token, from the first finished run of the same model and seed) equal the
        summed FLOPs of `run.flops_of`, inherited ones included — known once those runs finished
        (until then the plan's steps stand in, for the ETA)."""
        if not run.flops_of:
            return self.plan.max_steps(run)
        try:
            total = sum(self.training_flops(name) for name in run.flops_of)
            per_token = self.flops_per_token(run)
        except (OSError, ValueError, KeyError, StopIteration):
            return self.plan.max_steps(run)
        return max(1, round(total / (per_token * self.tokens_per_step())))

    def done_line(self, name: str) -> dict:
        lines = (self.run_dir(name) / "metrics.jsonl").read_text().splitlines()
        done = json.loads(lines[-1])
        if done.get("event") != "done":
            raise ValueError(f"{name} has not finished")
        return done

    def training_flops(self, name: str) -> float:
        """A finished run's training FLOPs (model FLOPs per token x its tokens), plus those of the
        run it inherits from."""
        run, done = self.plan.run(name), self.done_line(name)
        own_tokens = int(done["tokens"])
        parent = run.inherits_from
        if run.continue_from:  # its tokens count from the parent's start: the parent's are not its own
            own_tokens -= int(self.done_line(run.continue_from)["tokens"])
        return float(done["model_flops_per_token"]) * own_tokens + (self.training_flops(parent) if parent else 0.0)

    def flops_per_token(self, run: Run) -> float:
        """Training FLOPs per token of `run`'s model: from a finished run with the same --set model.*
        options (the same model), whatever its step count."""
        model = {k: v for k, v in run.sets.items() if k.startswith("model.")}
        twin = next(r for r in self.plan.runs if r.name != run.name and not r.continue_from and not r.flops_of
                    and {k: v for k, v in r.sets.items() if k.startswith("model.")} == model
                    and runner.run_finished(self.run_dir(r.name)))
        return float(self.done_line(twin.name)["model_flops_per_token"])

    def train_argv(self, run: Run) -> list[str]:
        """The first command of a run (phase-B runs start from their phase-A run's checkpoint)."""
        base = [self.some, "train", "--run-dir", str(self.run_dir(run.name)), "--data", str(self.data_dir(run.domain))]
        if run.continue_from:
            ckpt = runner.latest_checkpoint(self.run_dir(run.continue_from))
            src = str(ckpt) if ckpt else str(self.run_dir(run.continue_from))
            return base + ["--resume", src] + self.sets(run)
        return base[:2] + ["--config", str(self.base_config)] + base[2:] + ["--resume", "auto"] + self.sets(run)

    def train_task(self, run: Run) -> runner.Task:
        d = self.run_dir(run.name)
        tokens_per_step = self.tokens_per_step()
        steps = run.steps_b if run.continue_from else run.steps_a

        def before() -> list[str]:
            if not run.continue_from:
                return self.train_argv(run)  # a run at equal FLOPs learns its steps here
            if runner.latest_checkpoint(d) is not None:  # interrupted in phase B: continue it
                return [self.some, "train", "--run-dir", str(d), "--data", str(self.data_dir(run.domain)),
                        "--resume", "auto", "--set", f"train.max_steps={self.max_steps(run)}"]
            # Never reached a checkpoint of its own: start phase B again from the phase-A checkpoint.
            if d.exists():
                for child in d.iterdir():
                    if child.name != "stdout.log":
                        shutil.rmtree(child) if child.is_dir() else child.unlink()
            return self.train_argv(run)

        note = (f"{run.label}, domain {run.domain}, steps "
                + (f"{run.steps_a + 1}..{self.plan.max_steps(run)} from {run.continue_from}"
                   if run.continue_from else "set when it starts" if run.flops_of else f"1..{self.max_steps(run)}")
                + (f", experts from {run.experts_from}" if run.experts_from else "")
                + (f", {run.init_parts} from {run.init_from} ({run.init_units} units"
                   + (", AdamW state" if run.init_optimizer else "") + ")" if run.init_from else "")
                + (f", steps for the training FLOPs of {' + '.join(run.flops_of)}" if run.flops_of else ""))
        return runner.Task("train", run.name, self.train_argv(run) if not run.continue_from else [], d / "stdout.log",
                           work=steps * tokens_per_step, done=lambda: runner.run_finished(d), before=before, note=note)

    def eval_argv(self, ev: Eval) -> list[str]:
        return [self.some, "eval", "--run", str(self.run_dir(ev.run)), "--data", str(self.data_dir(ev.domain)),
                "--set", "train.eval_batches=0"] + (["--ablate-ffn", str(ev.ablate)] if ev.ablate >= 0 else [])

    def eval_task(self, ev: Eval, work: float) -> runner.Task:
        out = self.out / "evals" / f"{ev.name}.txt"

        def done() -> bool:
            if not out.is_file():
                return False
            try:
                parse_eval_output(out.read_text(encoding="utf-8", errors="replace"))
                return True
            except ValueError:
                return False

        note = (f"{ev.model} {ev.when} domain B, on domain {ev.domain}" if ev.when != "ablation" else
                f"{ev.run}, whole val split" + (f", FFN of block {ev.ablate} ablated" if ev.ablate >= 0 else ""))
        return runner.Task("eval", ev.name, self.eval_argv(ev), self.out / "evals" / f"{ev.name}.log", work=work,
                           done=done, stdout=out, note=note)

    def prepare_task(self, work: float) -> runner.Task:
        files = python_corpus_files(self.stdlib, self.scale.python_bytes)

        def argv() -> list[str]:
            return [self.some, "prepare", "--input", str(self.corpus_b), "--tokenizer",
                    str(self.data_a / "tokenizer.model"), "--out", str(self.data_b), "--val-fraction",
                    str(self.scale.python_val_fraction)]

        def done() -> bool:
            meta_a, meta_b = read_meta(self.data_a), read_meta(self.data_b)
            return bool(meta_a and meta_b and meta_a.get("tokenizer_sha256") == meta_b.get("tokenizer_sha256")
                        and (self.out / "domain-b" / "files.txt").is_file())

        def before() -> list[str]:
            if not files:
                raise runner.TaskFailed(f"no Python source files under {self.stdlib} (set --stdlib DIR)")
            if self.data_b.exists():
                shutil.rmtree(self.data_b)  # a partial dataset from an interrupted prepare
            write_python_corpus(files, self.corpus_b)
            return argv()

        def after():
            lines = [str(p) for p in files]
            (self.out / "domain-b" / "files.txt").write_text("\n".join(lines) + "\n")

        total = sum(p.stat().st_size for p in files)
        return runner.Task("prepare", "data-python", argv(), self.out / "domain-b" / "prepare.log", work=work,
                           done=done, before=before, after=after,
                           note=f"{len(files)} files of {self.stdlib}, {total / 1e6:.2f} MB, tokenizer of domain A")

    def scale_value(self, key: str) -> str:
        """A train.* setting of the base config (after the scale's overrides)."""
        if key in self.scale.common:
            return self.scale.common[key]
        section, name = key.split(".")
        return str(tomllib.loads(self.base_config.read_text())[section][name])

    def tokens_per_step(self) -> int:
        return int(self.scale_value("train.global_batch")) * int(self.scale_value("train.seq_len"))

    def tasks(self) -> list[runner.Task]:
        runs_a = [r for r in self.plan.runs if not r.continue_from]
        runs_b = [r for r in self.plan.runs if r.continue_from]
        run_work = self.scale.steps_a * self.tokens_per_step()
        small = 0.02 * run_work  # an eval or the prepare, relative to a phase-A run (for the ETA only)
        tasks = [self.train_task(r) for r in runs_a]
        if runs_b or any(e.domain == "B" for e in self.plan.evals):  # domain B only for the parts that use it
            tasks.append(self.prepare_task(small))
        tasks += [self.eval_task(e, small) for e in self.plan.evals if e.when in ("before", "ablation")]
        tasks += [self.train_task(r) for r in runs_b]
        tasks += [self.eval_task(e, small) for e in self.plan.evals if e.when == "after"]
        return tasks


def check_out_dir(exp: Experiment) -> None:
    """OUT/plan.json records the scale and domain-A data of the experiment in OUT; another
    experiment is not mixed into it."""
    path = exp.out / "plan.json"
    mine = {"scale": exp.scale.name, "data_a": str(exp.data_a), "stdlib": str(exp.stdlib)}
    if path.is_file():
        theirs = json.loads(path.read_text())
        diff = [k for k in mine if theirs.get(k) != mine[k]]
        if diff:
            raise SystemExit(f"claims: {exp.out} holds a claims experiment with other settings "
                             f"({', '.join(f'{k}: {theirs.get(k)} vs now {mine[k]}' for k in diff)}); "
                             f"choose another --out")
    exp.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(mine, indent=1) + "\n")


def part_tasks(tasks: list[runner.Task], plan: Plan) -> list[runner.Task]:
    """The tasks of one part's plan (in the order they ran): its runs, its evals, domain B's prepare."""
    names = {r.name for r in plan.runs} | {e.name for e in plan.evals}
    return [t for t in tasks if t.name in names or (t.kind == "prepare" and plan.evals)]


REPORTS = {"claims": write_report, "gap": write_gap_report, "recycling": write_recycling_report}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m some_tools.claims", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--some", required=True, help="the some executable every child runs")
    ap.add_argument("--out", default="runs/claims", help="output directory (default runs/claims)")
    ap.add_argument("--scale", default="small", choices=sorted(SCALES), help="tiny (tests) or small (default)")
    ap.add_argument("--part", default="claims", choices=[*PARTS, "all"],
                    help="claims (the seeds' claims A, B, C; default), gap (what closes the gap to dense), "
                         "recycling (a trained dense FFN as the expert library), or all three")
    ap.add_argument("--data", help="domain-A dataset directory (default data/default, built by `some train` if absent)")
    ap.add_argument("--stdlib", help="folder of Python sources for domain B (default: this Python's standard library)")
    ap.add_argument("--dry-run", action="store_true", help="print the tasks and their commands, run nothing")
    args = ap.parse_args(argv)
    if not os.access(args.some, os.X_OK):
        print(f"claims: --some {args.some} is not an executable file", file=sys.stderr)
        return 2

    parts = list(PARTS) if args.part == "all" else [args.part]
    plans = [make_part_plan(args.scale, part) for part in parts]
    exp = Experiment(args, merge_plans(plans))
    tasks = exp.tasks()
    if args.dry_run:
        for i, t in enumerate(tasks, 1):
            cmd = " ".join(t.argv) if t.argv else "(decided when it starts: --resume from the phase-A checkpoint)"
            print(f"[{i}/{len(tasks)}] {t.kind} {t.name}: {t.note}\n    {cmd}")
        return 0

    check_out_dir(exp)
    guard = runner.StopGuard()
    guard.install()
    started = time.time()
    t0 = time.monotonic()
    budgets = ", ".join(f"{p}: {exp.scale.budget if p == 'claims' else exp.scale.part_budgets[p]}" for p in parts)
    print(f"claims: scale {exp.scale.name} | parts {budgets} | {len(tasks)} tasks | out {exp.out} | "
          f"domain A {exp.data_a}" + (f" | domain B {exp.stdlib}/*.py" if exp.plan.evals else ""), flush=True)
    task_runner = runner.Runner(tasks, guard, exp.out / "tasks.json")
    try:
        task_runner.run_all()
    except runner.Stopped as e:
        print(f"claims: stopped by {e}; continue with the same command", file=sys.stderr)
        return 128 + (guard.signal or 15)
    except runner.TaskFailed as e:
        print(f"claims: {e}", file=sys.stderr)
        return 1
    reports = []
    try:
        for plan in plans:
            reports.append(REPORTS[plan.part](exp.for_plan(plan), part_tasks(tasks, plan),
                                              invocation_s=time.monotonic() - t0, started=started))
    except InputError as e:
        print(f"claims: error: {e}", file=sys.stderr)
        return 1
    print(f"claims: report{'s' if len(reports) > 1 else ''} {', '.join(map(str, reports))} | this invocation "
          f"{runner.format_duration(time.monotonic() - t0)}", flush=True)
    return 0
