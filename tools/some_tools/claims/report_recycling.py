"""OUT/report-recycling.md of `some experiment claims --part recycling` (some_tools.claims): a trained
dense FFN recycled as SoME's expert library, at equal cost. A wide dense model (the parent, d_ff =
E_r·h) is trained first; what is cut from it or started from it (the recycled SoME's slice and
cluster libraries, the upcycled SoME and dense students, an FFN transplant) trains on the same
number of tokens again; every row counts the tokens and training FLOPs it inherited, and the
verdicts compare rows of equal total tokens and of equal training FLOPs only: the dense FFN at
equal active compute trained for the pipeline's tokens and for its FLOPs, and the parent itself
continued. Then forgetting, compared at equal starting PPL. Tables, verdicts computed from them,
plots, settings.

Number formats (the CTest parses the tables back): PPL 2 decimals, mean ± std over seeds,
relative changes as signed percentages with 1 decimal, FLOPs as multiples of the dense row's
(3 decimals), Gini 3 decimals, tokens as integers.
"""
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from some_tools.claims import stats
from some_tools.claims.plan import Plan, recycle_run
from some_tools.claims.plots import plot_forgetting_bars, plot_phase_curves, plot_val_curves
from some_tools.claims.report import (
    FORGETTING_HEADER,
    claim_markdown,
    forgetting_rows,
    routing_summary,
    settings_section,
    write_markdown,
)
from some_tools.claims.results import RunResult, load_run
from some_tools.claims.runner import Task
from some_tools.errors import InputError

LIBRARY_LINE = re.compile(r"expert library from (\S+): (.*)$", re.M)
INIT_LINE = re.compile(r"model initialised from (\S+) \(step \d+\): (.*)$", re.M)


def library_line(r: RunResult) -> tuple[str, str]:
    """(source checkpoint, what was taken) from the trainer's "expert library from ..." log line of
    a run with model.experts_from or a library cut by model.init_from: the evidence that the library
    really was loaded."""
    log = r.dir / "train.log"
    try:
        m = LIBRARY_LINE.search(log.read_text(encoding="utf-8", errors="replace"))
    except OSError as e:
        raise InputError(f"{log}: cannot read ({e})") from e
    if not m:
        raise InputError(f"{log}: no 'expert library from ...' line: the run did not load its library")
    return m.group(1), m.group(2).strip()


def init_line(r: RunResult) -> str:
    """What model.init_from gave a run (the trainer's "model initialised from ..." line)."""
    log = r.dir / "train.log"
    m = INIT_LINE.search(log.read_text(encoding="utf-8", errors="replace"))
    if not m:
        raise InputError(f"{log}: no 'model initialised from ...' line: the run did not load model.init_from")
    return m.group(2).strip()


# ---------------------------------------------------------------------------------------------
# Costs: what every run spent, with what it inherited
# ---------------------------------------------------------------------------------------------

def own_tokens(r: RunResult, results: dict[str, RunResult]) -> int:
    """Tokens this run trained on itself (a continued run's done line counts from its parent's start)."""
    return r.tokens - (results[r.run.continue_from].tokens if r.run.continue_from else 0)


def total_tokens(r: RunResult, results: dict[str, RunResult]) -> int:
    """Its own tokens and every token of the runs it inherits from (library, weights, checkpoint)."""
    parent = r.run.inherits_from
    return own_tokens(r, results) + (total_tokens(results[parent], results) if parent else 0)


def training_flops(r: RunResult, results: dict[str, RunResult]) -> float:
    """Model FLOPs per token (forward + backward; frozen experts have no weight gradient) x its own
    tokens, plus the training FLOPs of the run it inherits from."""
    flops = r.done.get("model_flops_per_token")
    if not flops:
        raise InputError(f"{r.dir / 'metrics.jsonl'}: the done line has no model_flops_per_token")
    parent = r.run.inherits_from
    return float(flops) * own_tokens(r, results) + (training_flops(results[parent], results) if parent else 0.0)


@dataclass
class Row:
    key: str
    label: str
    what: str
    runs: list[RunResult]
    ppl: float
    std: float | None
    tokens: int            # total, inherited included (seed 0's; the seeds' are equal)
    own: int
    flops: float           # total training FLOPs, inherited included (mean over seeds)

    @property
    def names(self) -> str:
        return ", ".join(f"`{r.run.name}`" for r in self.runs)


def rows_of(plan: Plan, results: dict[str, RunResult]) -> dict[str, Row]:
    rows = {}
    for spec in plan.recycle:
        runs = [results[r.name] for r in plan.gap_runs(spec.key)]
        if not runs:
            raise InputError(f"recycling row {spec.key}: no runs")
        tokens = {total_tokens(r, results) for r in runs}
        if len(tokens) != 1:
            raise InputError(f"recycling row {spec.key}: its seeds trained on different token counts {sorted(tokens)}")
        mean, std = stats.mean_std(r.val_ppl for r in runs)
        rows[spec.key] = Row(spec.key, spec.label, spec.what, runs, mean, std, tokens.pop(),
                             own_tokens(runs[0], results), float(np.mean([training_flops(r, results) for r in runs])))
    return rows


# ---------------------------------------------------------------------------------------------
# The table and the verdicts
# ---------------------------------------------------------------------------------------------

EQUAL_COST_WITHIN = 0.02   # tokens / FLOPs within 2% count as equal cost


def same_cost(a: float, b: float) -> bool:
    return abs(a - b) <= EQUAL_COST_WITHIN * max(a, b)


def cost_table(rows: dict[str, Row], subject: Row) -> tuple[list[str], list[list[str]]]:
    """Every row with its cost, inherited included, and how `subject` compares with it."""
    unit = rows["dense"].flops
    out = []
    for r in rows.values():
        gini, dead, slots = routing_summary(r.runs[0])
        out.append([r.label, f"`{r.key}`", r.names, r.runs[0].run.ffn, str(r.runs[0].run.active_ffn),
                    stats.fmt_mean_std(r.ppl, r.std), stats.fmt_ppl(r.runs[0].unigram_ppl), str(r.own), str(r.tokens),
                    f"{r.flops / unit:.3f}", stats.yes_no(same_cost(r.tokens, subject.tokens)),
                    stats.yes_no(same_cost(r.flops, subject.flops)),
                    "—" if r is subject else stats.fmt_pct(stats.relative_change(subject.ppl, r.ppl)),
                    "n/a" if gini is None else f"{gini:.3f}", "n/a" if dead is None else f"{dead} of {slots}"])
    header = ["model", "key", "runs (seeds)", "FFN", "active FFN units/token", "val PPL (mean ± std)", "unigram PPL",
              "own tokens", "tokens incl. inherited", "training FLOPs incl. inherited (x dense)",
              f"equal tokens to {subject.key}", f"equal FLOPs to {subject.key}", f"{subject.key} vs it",
              "Gini (seed 0)", "dead experts (seed 0)"]
    return header, out


def versus(subject: Row, ref: Row, what: str) -> str:
    """"<what>: A val PPL 90.00 ± 1.00 vs B 100.00 ± 2.00: 10% better, beyond the seeds' spread" — or,
    where a row has one seed, "(one seed: no spread to judge it by)"."""
    if subject.std is None or ref.std is None:
        return (f"{what}: {subject.label} val PPL {stats.fmt_mean_std(subject.ppl, subject.std)} vs {ref.label} "
                f"{stats.fmt_mean_std(ref.ppl, ref.std)}: {stats.compare_ppl(subject.ppl, ref.ppl)} (one seed: no "
                "spread to judge it by)")
    return f"{what}: " + stats.option_verdict(subject.label, subject.ppl, subject.std, ref.label, ref.ppl, ref.std)


def dense_tokens_for(ppl: float, dense: Row, results: dict[str, RunResult]) -> float | None:
    """The tokens at which the dense FFN's val PPL curve (its longest run's evals, seed 0) first
    reaches `ppl`, linear between evals in log PPL; None if it never does."""
    longest = max(dense.runs, key=lambda r: r.tokens)
    curve = [(int(e["tokens"]), float(e["val_ppl"])) for e in longest.evals if "val_ppl" in e and "tokens" in e]
    prev = None
    for tokens, value in curve:
        if value <= ppl:
            if prev is None:
                return float(tokens)
            t0, p0 = prev
            f = (math.log(p0) - math.log(ppl)) / (math.log(p0) - math.log(value))
            return t0 + f * (tokens - t0)
        prev = (tokens, value)
    return None


def performance(plan: Plan, results: dict[str, RunResult], out: Path) -> tuple[str, dict]:
    rows = rows_of(plan, results)
    rec, rnd, dense = rows["recycled"], rows["random"], rows["dense"]
    source, taken = library_line(rec.runs[0])
    equal_tokens = [k for k in ("dense-tokens", "wide-continued", "dense-upcycled", "dense-transplant",
                                "some-upcycled", "some-cluster") if same_cost(rows[k].tokens, rec.tokens)]
    findings = [
        f"library of the recycled SoME: {taken}, from `{source}` (train.log); the cluster library: "
        f"{library_line(rows['some-cluster'].runs[0])[1]}; what `model.init_from` gave the upcycled SoME: "
        f"{init_line(rows['some-upcycled'].runs[0])}",
        versus(rec, rnd, "trained against random library (same shape, same own tokens)"),
        versus(rec, dense, "against dense at equal active compute and equal *own* tokens, the library's "
               "training not counted"),
    ]
    for k in equal_tokens:
        findings.append(versus(rec, rows[k], f"at equal total tokens ({rec.tokens})"))
    flops_equal = same_cost(rows["dense-flops"].flops, rec.flops)
    findings.append(versus(rec, rows["dense-flops"], f"at equal training FLOPs ({rec.flops / dense.flops:.3f}x dense; "
                                                   f"equal within {EQUAL_COST_WITHIN:.0%}: "
                                                   f"{stats.yes_no(flops_equal)})"))
    findings.append(versus(rec, rows["dense-transplant"], "freezing and routing against training the same inherited "
                           "units as a dense FFN (FFN transplant)"))
    findings.append(versus(rows["some-upcycled"], rows["dense-upcycled"], "SoME against a dense student with the "
                           "same inheritance (backbone, units, AdamW state)"))
    findings.append(versus(rows["some-cluster"], rec, "cluster against slice library"))
    # The goal: a configuration inside the seeds' design within 10% of dense at equal active
    # compute and equal total cost (both the tokens and the FLOPs control).
    some_rows = [rows[k] for k in ("recycled", "some-upcycled", "some-cluster")]
    best = min(some_rows, key=lambda r: r.ppl)
    ref_t, ref_f = rows["dense-tokens"], rows["dense-flops"]
    gap_t, gap_f = stats.relative_change(best.ppl, ref_t.ppl), stats.relative_change(best.ppl, ref_f.ppl)
    goal = stats.within_gap(best.ppl, ref_t.ppl) and stats.within_gap(best.ppl, ref_f.ppl)
    findings.append(f"best SoME row {best.label} ({stats.fmt_ppl(best.ppl)}): {stats.fmt_pct(gap_t)} against dense at "
                    f"equal total tokens, {stats.fmt_pct(gap_f)} at equal training FLOPs; within "
                    f"{stats.GAP_WITHIN:.0%} of both: {stats.yes_no(goal)}")
    teacher = rows["wide-continued"]
    findings.append(versus(rec, teacher, "against its parent trained on for the same extra tokens"))
    # What a library paid once would need to be worth it: reused by N students, each pays the
    # parent's tokens / N; the dense FFN needs T* tokens to reach the recycled row's PPL.
    t_star = dense_tokens_for(rec.ppl, rows["dense-tokens"], results)
    parent_tokens = rec.tokens - rec.own
    if t_star is None:
        amortise = (f"the dense FFN never reached the recycled SoME's {stats.fmt_ppl(rec.ppl)} within "
                    f"{max(r.tokens for r in rows['dense-tokens'].runs)} tokens: the library pays off at any reuse")
        reuse = 0.0
    elif t_star <= rec.own:
        amortise = (f"the dense FFN reaches the recycled SoME's {stats.fmt_ppl(rec.ppl)} at {t_star:.0f} tokens, no "
                    f"more than the student's own {rec.own}: the library never pays for itself, however often reused")
        reuse = math.inf
    else:
        reuse = parent_tokens / (t_star - rec.own)
        amortise = (f"the dense FFN reaches the recycled SoME's {stats.fmt_ppl(rec.ppl)} at {t_star:.0f} tokens; a "
                    f"student trains on {rec.own} of its own, so the parent's {parent_tokens} tokens are repaid "
                    f"once the library serves more than {reuse:.2f} students (each saving {t_star - rec.own:.0f} "
                    "tokens)")
    findings.append(f"a library paid once and reused: {amortise}")
    overall = (
        f"**Verdict (recycling):** a trained library makes SoME "
        f"{stats.compare_ppl_to(rec.ppl, rnd.ppl, 'a random library of the same shape')}"
        "; "
        f"at equal total tokens it is {stats.compare_ppl_to(rec.ppl, ref_t.ppl, 'dense')} "
        f"({stats.fmt_pct(stats.relative_change(rec.ppl, ref_t.ppl))}), at equal training FLOPs "
        f"{stats.compare_ppl_to(rec.ppl, ref_f.ppl, 'dense')} "
        f"({stats.fmt_pct(stats.relative_change(rec.ppl, ref_f.ppl))}); the best configuration of the seeds' design "
        f"({best.label}) is {'within' if goal else 'not within'} {stats.GAP_WITHIN:.0%} of dense at equal active "
        f"compute and equal total cost."
    )
    curves = plot_val_curves([r.runs[0] for r in rows.values()],
                             "Recycling: val PPL against training tokens, inherited ones included", out,
                             "recycling_val_ppl.png",
                             offset=lambda r: total_tokens(r, results) - own_tokens(r, results))
    method = (
        "*Seed claim:* frozen compute primitives can be recycled from an older model, and learning then lies in the "
        "routing. *Measured:* a wide dense model (the parent, d_ff = E_r·h = "
        f"{rows['wide'].runs[0].run.d_ff}) trained on domain A; from each seed's parent, at the same step count: "
        f"SoME with E_r = {rec.runs[0].run.num_experts} frozen experts of width h = {rec.runs[0].run.d_expert}, "
        f"top-{rec.runs[0].run.top_k}, cut from the parent's FFNs (slices, and balanced k-means clusters), SoME and "
        "a dense FFN started from the parent's whole backbone, and a dense FFN started from the parent's units only. "
        "Controls: SoME over a random library; the dense FFN at equal active compute (d_ff = k·h) trained for the "
        "student's own tokens, for the pipeline's total tokens and for its training FLOPs (steps chosen when it "
        "starts, from the finished runs' FLOPs); the parent continued. Rows: "
        + "; ".join(f"`{r.key}` {r.what}" for r in rows.values())
        + ". *Cost:* every row counts what it inherited — tokens incl. inherited = its own + its parent's; training "
        "FLOPs = `model_flops_per_token` (forward and backward; a frozen expert has no weight gradient) x own tokens + "
        "the parent's — and a verdict compares only rows of equal total tokens or equal training FLOPs (within "
        f"{EQUAL_COST_WITHIN:.0%}); the row against dense at its own tokens is shown, and says that it ignores the "
        "library's cost. Seeds: model.seed = train.seed = 1234 + i, each seed's students cut from that seed's "
        "parent; mean ± sample std over seeds; a difference counts when it exceeds the sum of the two rows' "
        "standard deviations (rough with two seeds). Val PPL from each run's final eval (metrics.jsonl done line). "
        "The curves put each run's inherited tokens before its own."
    )
    header, table_rows = cost_table(rows, rec)
    md = claim_markdown("Val PPL at equal cost: recycled libraries, upcycled students and dense controls", method,
                        header, table_rows, findings, overall,
                        [("Recycling: val PPL against total training tokens", curves)])
    data = {"rows": {k: {"val_ppl_mean": r.ppl, "val_ppl_std": r.std, "val_ppl": [x.val_ppl for x in r.runs],
                         "tokens_incl_inherited": r.tokens, "own_tokens": r.own, "training_flops": r.flops}
                     for k, r in rows.items()},
            "goal_within_10pct": goal, "best_some_row": best.key, "reuse_to_repay": reuse}
    return md, data


# ---------------------------------------------------------------------------------------------
# Forgetting at equal starting PPL
# ---------------------------------------------------------------------------------------------

def dense_forgetting_at(ppl: float, data: list[dict], dense_labels: tuple[str, str]) -> float | None:
    """The dense FFN's forgetting ratio at starting PPL `ppl`, linear in log PPL between its two
    rows (its own tokens and equal total tokens); None when `ppl` lies outside them."""
    pts = sorted((math.log(d["ppl_A_before"]), d["forgetting"]) for d in data if d["model"] in dense_labels)
    if len(pts) != 2 or not pts[0][0] <= math.log(ppl) <= pts[1][0]:
        return None
    (x0, y0), (x1, y1) = pts
    return y0 + (math.log(ppl) - x0) / (x1 - x0) * (y1 - y0) if x1 > x0 else y0


def forgetting(plan: Plan, results: dict[str, RunResult], out: Path) -> tuple[str, dict]:
    names = tuple(recycle_run(k, 0) for k in ("recycled", "random", "dense", "dense-tokens"))
    rows, data, pairs = forgetting_rows(plan, results, out, names)
    ratios = {row["model"]: row["forgetting"] for row in data}
    subject = results[names[0]].run.label
    dense_labels = (results[names[2]].run.label, results[names[3]].run.label)
    start = data[0]["ppl_A_before"]
    at_equal = dense_forgetting_at(start, data, dense_labels)
    verdict = stats.forgetting_verdict(ratios, subject=subject)
    if at_equal is None:
        dense_starts = ", ".join(f"{d['model']} {stats.fmt_ppl(d['ppl_A_before'])}" for d in data[2:])
        equal = (f"at the recycled SoME's starting PPL_A {stats.fmt_ppl(start)} no dense row brackets it "
                 f"({dense_starts}): forgetting is not compared at equal starting PPL")
    else:
        equal = (f"at equal starting PPL_A ({stats.fmt_ppl(start)}): recycled SoME x{ratios[subject]:.3f} vs the dense "
                 f"FFN x{at_equal:.3f} (interpolated in log PPL between its two rows): recycled SoME forgets "
                 f"{'less' if ratios[subject] < at_equal else 'more'} "
                 f"({stats.fmt_pct(stats.relative_change(ratios[subject], at_equal))})")
    learned = [f"{row['model']} PPL_B {stats.fmt_ppl(row['ppl_B_before'])} -> {stats.fmt_ppl(row['ppl_B_after'])}"
               for row in data]
    steps_b = pairs[0][1].run.steps_b
    bars = plot_forgetting_bars(data, out, "recycling_forgetting.png")
    curves = plot_phase_curves(pairs, data, None, None, out, "recycling_forgetting_val_ppl.png")
    method = (
        "*Question:* does a recycled (trained) frozen library change how much SoME forgets, compared with a dense "
        f"FFN that starts from the same PPL? *Measured:* as claim C (docs/claims.md): each model (seed 0) trained on "
        f"domain A is continued on domain B (Python source, domain A's tokenizer) for {steps_b} more steps with "
        "`some train --resume <its checkpoint>`; PPL on each domain's whole val split by `some eval --set "
        "train.eval_batches=0` before and after; forgetting = PPL_A after / PPL_A before. Forgetting grows as a model "
        "gets better on A, so it is compared at equal starting PPL: the dense FFN at its own tokens and at the "
        "pipeline's tokens brackets the recycled SoME's starting PPL, and its forgetting ratio is interpolated there "
        "(linear in log PPL_A)."
    )
    overall = (f"**Verdict (recycling, forgetting):** {equal}.")
    md = claim_markdown("Forgetting at equal starting PPL: recycled SoME, random SoME and dense on domain B", method,
                        FORGETTING_HEADER, rows, [verdict, equal, f"Domain B learned: {'; '.join(learned)}"], overall,
                        [("Recycling: PPL before and after domain B", bars),
                         ("Recycling: val PPL across the two phases", curves)])
    return md, {"forgetting": data, "dense_forgetting_at_equal_ppl": at_equal}


def write_recycling_report(exp, tasks: list[Task], invocation_s: float, started: float) -> Path:
    out = exp.out
    plan: Plan = exp.plan
    results = {r.name: load_run(r, exp.run_dir(r.name)) for r in plan.runs}
    perf_md, perf = performance(plan, results, out)
    forget_md, forget = forgetting(plan, results, out)
    head = [
        "# SoME: recycling a trained dense FFN as the expert library, at equal cost",
        "",
        f"`some experiment claims --part recycling --scale {exp.scale.name}` in `{out}`. Every number below is read "
        "from the runs' metrics.jsonl, train.log and `some eval` outputs in this directory; every verdict is computed "
        "from them, and compares rows of equal total tokens or equal training FLOPs, inherited ones included.",
        "",
    ]
    text = "\n".join(head) + "\n" + perf_md + "\n" + forget_md + "\n" + \
        settings_section(exp, tasks, results, invocation_s, started)
    write_markdown(out / "report-recycling.md", text)
    (out / "recycling.json").write_text(json.dumps({"performance": perf, **forget}, indent=1, default=str) + "\n")
    return out / "report-recycling.md"
