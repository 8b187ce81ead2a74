"""OUT/report-recycling.md of `some experiment claims --part recycling` (some_tools.claims): a trained
dense FFN recycled as SoME's expert library. A wide dense model (d_ff = E_r·h) is trained first;
SoME with E_r experts of width h cut from its FFNs (`model.experts_from`) is compared with SoME over
a random library of the same shape, the dense FFN at equal active compute (d_ff = k·h) and the wide
model itself (the upper bound); then claim C's forgetting for the recycled SoME, the random SoME and
the dense FFN. Tables, verdicts computed from them, plots, settings.

Number formats (the CTest parses the tables back): PPL 2 decimals, ratios 4 decimals, relative
changes as signed percentages with 1 decimal, Gini 3 decimals, parameters and tokens as integers.
"""
import json
import re
from pathlib import Path

from some_tools.claims import stats
from some_tools.claims.plan import Plan
from some_tools.claims.plots import plot_forgetting_bars, plot_phase_curves, plot_val_curves
from some_tools.claims.report import (
    FORGETTING_HEADER,
    claim_markdown,
    forgetting_rows,
    routing_summary,
    settings_section,
)
from some_tools.claims.results import RunResult, load_run
from some_tools.claims.runner import Task
from some_tools.errors import InputError
from some_tools.formatting import fmt_or_na

WIDE, RECYCLED, RANDOM, DENSE = "recycle-wide-dense", "recycle-some-recycled", "recycle-some-random", "dense"
LIBRARY_LINE = re.compile(r"expert library from (\S+): (.*)$", re.M)


def library_line(r: RunResult) -> tuple[str, str]:
    """(source checkpoint, what was taken) from the trainer's "expert library from ..." log line of
    a run with model.experts_from: the evidence that the library really was loaded."""
    log = r.dir / "train.log"
    try:
        m = LIBRARY_LINE.search(log.read_text(encoding="utf-8", errors="replace"))
    except OSError as e:
        raise InputError(f"{log}: cannot read ({e})") from e
    if not m:
        raise InputError(f"{log}: no 'expert library from ...' line: the run did not load model.experts_from")
    return m.group(1), m.group(2).strip()


def performance(results: dict[str, RunResult], out: Path) -> tuple[str, dict]:
    wide, recycled, random, dense = (results[n] for n in (WIDE, RECYCLED, RANDOM, DENSE))
    source, taken = library_line(recycled)
    rows = []
    for r in (recycled, random, dense, wide):
        gini, dead, slots = routing_summary(r)
        library = ("—" if r.run.ffn == "dense" else
                   f"trained: slices of `{r.run.experts_from}`" if r.run.experts_from else "random (expert.init)")
        shape = (f"{r.run.num_experts} x {r.run.d_expert}, top-{r.run.top_k}" if r.run.ffn == "some"
                 else f"d_ff {r.run.d_ff}")
        with_library = r.tokens + (results[r.run.experts_from].tokens if r.run.experts_from else 0)
        rows.append([r.run.label, f"`{r.run.name}`", r.run.ffn, shape, library, str(r.run.active_ffn),
                     fmt_or_na(r.trainable_params, "d"), stats.fmt_ppl(r.val_ppl), stats.fmt_ppl(r.unigram_ppl),
                     str(r.tokens), str(with_library), fmt_or_na(gini, ".3f"),
                     "n/a" if dead is None else f"{dead} of {slots}"])
    header = ["model", "run", "FFN", "shape", "library", "active FFN units/token", "trainable", "val PPL",
              "unigram PPL", "tokens", "tokens incl. the library's training", "Gini (mean of layers)", "dead experts"]
    closed = stats.gap_closed(recycled.val_ppl, random.val_ppl, wide.val_ppl)
    dense_gap = stats.relative_change(recycled.val_ppl, dense.val_ppl)
    within = stats.within_gap(recycled.val_ppl, dense.val_ppl)
    findings = [
        f"library of the recycled SoME: {taken}, from `{source}` (train.log)",
        stats.ppl_verdict("recycled SoME", recycled.val_ppl, "random SoME", random.val_ppl,
                          f"(same shape: {recycled.run.num_experts} experts of width {recycled.run.d_expert}, "
                          f"top-{recycled.run.top_k})"),
        stats.ppl_verdict("recycled SoME", recycled.val_ppl, "dense", dense.val_ppl,
                          f"at equal active compute ({dense.run.active_ffn} FFN units per token); gap "
                          f"{stats.fmt_pct(dense_gap)}, within {stats.GAP_WITHIN:.0%}: {stats.yes_no(within)}"),
        stats.ppl_verdict("recycled SoME", recycled.val_ppl, "the wide dense model", wide.val_ppl,
                          f"(the upper bound: all {wide.run.d_ff} units active, trainable)")
        + ("; share of the way from the random library to the wide model closed by recycling: "
           + (f"{closed:.1%}" if closed is not None else "n/a (the wide model is not better than the random library)")),
    ]
    overall = (
        f"**Verdict (recycling):** a trained library makes SoME "
        f"{stats.compare_ppl_to(recycled.val_ppl, random.val_ppl, 'a random library of the same shape')}"
        + (f", {closed:.0%} of the way from the random library to the wide dense model it was cut from"
           if closed is not None else "")
        + f"; it is {stats.compare_ppl_to(recycled.val_ppl, dense.val_ppl, 'the dense FFN')} at equal active "
        f"compute ({stats.fmt_pct(dense_gap)}): {'within' if within else 'not within'} {stats.GAP_WITHIN:.0%} of dense."
    )
    curves = plot_val_curves([recycled, random, dense, wide], "Recycling: a trained dense FFN as the expert library",
                             out, "recycling_val_ppl.png")
    method = (
        "*Seed claim:* frozen compute primitives can be recycled: a library cut from a trained model should serve "
        "SoME better than random noise. *Measured:* a wide dense model (`model.ffn = dense`, d_ff = E_r·h = "
        f"{wide.run.d_ff}) trained first on domain A; SoME with E_r = {recycled.run.num_experts} frozen experts of "
        f"width h = {recycled.run.d_expert}, top-{recycled.run.top_k}, whose expert i of layer l is the slice of "
        "hidden units [i·h, (i+1)·h) of the wide model's layer-l FFN (`model.experts_from = <its run>`; only the "
        "FFN weights are taken, embeddings, attention and the query networks train from scratch); SoME over a "
        "random library of the same shape; the dense FFN at equal active compute (d_ff = k·h, the claims' `dense` "
        "run) and the wide model as the upper bound (more active units, all trainable). Every run trains the same "
        "steps and tokens on domain A; the recycled SoME also profits from the wide model's training (the column "
        "\"tokens incl. the library's training\"). Val PPL from each run's last eval (metrics.jsonl `done` line), "
        "routing state from the final eval. Share of the way closed = (PPL_random − PPL_recycled) / (PPL_random − "
        "PPL_wide)."
    )
    md = claim_markdown("Val PPL: recycled against random library, dense and the wide model", method, header, rows,
                        findings, overall, [("Recycling: val PPL curves", curves)])
    return md, {"ppl": {r.run.name: r.val_ppl for r in (recycled, random, dense, wide)}, "gap_closed": closed,
                "dense_gap": dense_gap}


def forgetting(plan: Plan, results: dict[str, RunResult], out: Path) -> tuple[str, dict]:
    rows, data, pairs = forgetting_rows(plan, results, out, (RECYCLED, RANDOM, DENSE))
    ratios = {row["model"]: row["forgetting"] for row in data}
    subject = results[RECYCLED].run.label
    verdict = stats.forgetting_verdict(ratios, subject=subject)
    learned = [f"{row['model']} PPL_B {stats.fmt_ppl(row['ppl_B_before'])} -> {stats.fmt_ppl(row['ppl_B_after'])}"
               for row in data]
    steps_a, steps_b = pairs[0][1].run.steps_a, pairs[0][1].run.steps_b
    bars = plot_forgetting_bars(data, out, "recycling_forgetting.png")
    curves = plot_phase_curves(pairs, data, steps_a, steps_a + steps_b, out, "recycling_forgetting_val_ppl.png")
    method = (
        "*Question:* does a recycled (trained) frozen library change how much SoME forgets? *Measured:* as claim C "
        f"(docs/claims.md): each model trained on domain A ({steps_a} steps) is continued on domain B (Python "
        f"source, domain A's tokenizer) for {steps_b} more steps with `some train --resume <its checkpoint>`; PPL on "
        "each domain's whole val split by `some eval --set train.eval_batches=0` before and after; forgetting = "
        "PPL_A after / PPL_A before (1 = nothing forgotten). The experts of both SoME models stay frozen in both "
        "phases."
    )
    overall = (f"**Verdict (recycling, forgetting):** {verdict.split(':', 1)[0]} of the three ("
               + ", ".join(f"{name} x{r:.3f}" for name, r in ratios.items()) + ").")
    md = claim_markdown("Forgetting: recycled SoME, random SoME and dense on domain B", method, FORGETTING_HEADER, rows,
                        [verdict, f"Domain B learned: {'; '.join(learned)}"], overall,
                        [("Recycling: PPL before and after domain B", bars),
                         ("Recycling: val PPL across the two phases", curves)])
    return md, {"forgetting": data}


def write_recycling_report(exp, tasks: list[Task], invocation_s: float, started: float) -> Path:
    out = exp.out
    plan: Plan = exp.plan
    results = {r.name: load_run(r, exp.run_dir(r.name)) for r in plan.runs}
    perf_md, perf = performance(results, out)
    forget_md, forget = forgetting(plan, results, out)
    head = [
        "# SoME: recycling a trained dense FFN as the expert library",
        "",
        f"`some experiment claims --part recycling --scale {exp.scale.name}` in `{out}`. Every number below is read "
        "from the runs' metrics.jsonl, train.log and `some eval` outputs in this directory; every verdict is computed "
        "from them. One seed per model: differences of a few percent are within what another seed could change "
        "(see the gap part's seed spread).",
        "",
    ]
    text = "\n".join(head) + "\n" + perf_md + "\n" + forget_md + "\n" + \
        settings_section(exp, tasks, results, invocation_s, started)
    tmp = out / "report-recycling.md.tmp"
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out / "report-recycling.md")
    (out / "recycling.json").write_text(json.dumps({"performance": perf, **forget}, indent=1) + "\n")
    return out / "report-recycling.md"
