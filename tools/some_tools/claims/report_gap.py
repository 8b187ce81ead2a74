"""OUT/report-gap.md of `some experiment claims --part gap` (some_tools.claims): what closes the gap
between SoME and the dense FFN. The reference SoME, each router / expert option alone, all of them
together, and the dense FFN at equal active compute and at equal trainable parameters, each
trained with every seed; one table of val PPL (mean ± std over seeds) with the gaps and verdicts
computed from it, the FFN-to-residual ratio per layer, routing health per run, two plots, then the
settings, commands, wall time and machine.

Number formats (the CTest parses the tables back): PPL 2 decimals, relative changes as signed
percentages with 1 decimal, ffn_out_ratio 4 decimals, Gini and churn 3 decimals, parameters as
integers.
"""
import json
from pathlib import Path

from some_tools.claims import stats
from some_tools.claims.plan import GapConfig, Plan
from some_tools.claims.plots import plot_ffn_out_ratio, plot_gap_bars
from some_tools.claims.report import settings_section, table, write_markdown
from some_tools.claims.results import RunResult, load_eval, load_run
from some_tools.claims.runner import Task
from some_tools.errors import InputError
from some_tools.formatting import fmt_or_na

LAST_LOG_LINES = 3   # ffn_out_ratio: mean over the run's last 3 training log lines


class GapRow:
    """One configuration's runs (one per seed) and their summary numbers; `ablation[r]` = (the full
    model's whole-split val PPL, [the PPL with block l's FFN left out, per block]) of run r."""

    def __init__(self, config: GapConfig, runs: list[RunResult], ablation: dict | None = None):
        self.config = config
        self.runs = runs
        self.ppl, self.std = stats.mean_std(r.val_ppl for r in runs)
        trainable = {r.trainable_params for r in runs}
        if None in trainable:
            missing = next(r for r in runs if r.trainable_params is None)
            raise InputError(f"{missing.dir}/train.log: no 'model: N parameters (M trainable)' line")
        if len(trainable) != 1:
            raise InputError(f"gap configuration {config.key}: its seeds have different trainable parameter counts "
                             f"{sorted(trainable)} (train.log)")
        self.trainable = trainable.pop()
        self.active = runs[0].run.active_ffn
        per_run = [r.ffn_out_ratio(LAST_LOG_LINES) for r in runs]
        self.ffn_out_ratio = stats.column_means(per_run)
        # Per block: how much the val PPL rises when that block's FFN output is left out (ΔPPL / PPL,
        # mean over seeds); the full model's whole-split PPL.
        self.full_ppl, self.ablation = None, None
        if ablation:
            self.full_ppl = stats.mean_std(ablation[r.run.name][0] for r in runs)[0]
            self.ablation = stats.column_means([[a / ablation[r.run.name][0] - 1 for a in ablation[r.run.name][1]]
                                                for r in runs])
        # The share of the library a row uses: live experts (not dead at the final eval) and the
        # load's Gini, means over seeds (routed rows only).
        self.live, self.gini = None, None
        if runs[0].routing:
            slots = [r.run.num_experts * len(r.routing) for r in runs]
            self.live = stats.mean_std((n - r.routing_sum("dead_experts")) / n for r, n in zip(runs, slots))[0]
            self.gini = stats.mean_or_none(r.routing_mean("gini") for r in runs)

    @property
    def key(self) -> str:
        return self.config.key

    @property
    def ppl_text(self) -> str:
        return stats.fmt_mean_std(self.ppl, self.std)


def dense_for_trainable(row: GapRow, rows: dict[str, GapRow]) -> GapRow | None:
    """The dense configuration at equal trainable parameters (`dense-params`) when this SoME row's
    measured trainable count is within 1% of it; None otherwise (the shared expert adds 2 d H)."""
    dense = rows.get("dense-params")
    if row.config.ffn != "some" or dense is None:
        return None
    return dense if stats.equal_params(row.trainable, dense.trainable) else None


def gap_table(rows: dict[str, GapRow]) -> str:
    ref = rows["some"]
    out = []
    for row in rows.values():
        c = row.config
        act = rows.get(c.equal_active)
        par = dense_for_trainable(row, rows)
        out.append([
            c.label, f"`{c.key}`", ", ".join(f"`{r.run.name}`" for r in row.runs), str(row.active), str(row.trainable),
            row.ppl_text, "reference" if row is ref else stats.fmt_pct(stats.relative_change(row.ppl, ref.ppl)),
            f"`{act.key}` (d_ff {act.config.d_ff})" if act else "—",
            stats.fmt_pct(stats.relative_change(row.ppl, act.ppl)) if act else "—",
            stats.yes_no(stats.within_gap(row.ppl, act.ppl)) if act else "—",
            f"`{par.key}` (d_ff {par.config.d_ff})" if par else "—",
            stats.fmt_pct(stats.relative_change(row.ppl, par.ppl)) if par else "—",
        ])
    header = ["configuration", "key", "runs (seeds)", "active FFN units/token", "trainable parameters",
              "val PPL (mean ± std)", "vs SoME reference", "dense at equal active compute", "gap to it",
              f"within {stats.GAP_WITHIN:.0%}", "dense at equal trainable", "gap to it (trainable)"]
    return table(header, out)


def findings(rows: dict[str, GapRow]) -> tuple[list[str], str, dict]:
    ref, dense = rows["some"], rows["dense"]
    singles = [row for row in rows.values() if row.config.ffn == "some" and row.key not in ("some", "all")]
    combo = rows["all"]
    found = []

    def versus_dense(row: GapRow) -> str:
        act = rows[row.config.equal_active]
        gap = stats.relative_change(row.ppl, act.ppl)
        return (f"{stats.fmt_pct(gap)} vs dense d_ff={act.config.d_ff} at equal active compute ({row.active} units), "
                f"within {stats.GAP_WITHIN:.0%}: {stats.yes_no(stats.within_gap(row.ppl, act.ppl))}")

    found.append(f"{ref.config.label}: val PPL {ref.ppl_text}, {versus_dense(ref)}")
    helped = []
    for row in singles + [combo]:
        found.append(stats.option_verdict(row.key, row.ppl, row.std, "SoME", ref.ppl, ref.std) + "; "
                     + versus_dense(row))
        if row in singles and row.ppl < ref.ppl and stats.beyond_spread(row.ppl, row.std, ref.ppl, ref.std):
            helped.append(row.key)
    par = rows.get("dense-params")
    if par is not None:
        found.append(f"at equal trainable parameters ({ref.trainable} SoME vs {par.trainable} dense d_ff="
                     f"{par.config.d_ff}): SoME {ref.ppl_text} vs dense {par.ppl_text}: SoME is "
                     f"{stats.compare_ppl_to(ref.ppl, par.ppl, 'the dense FFN of its trainable size')}")
    # Per block, not a ratio of layer means (which one block can dominate).
    per_block = [a / b for a, b in zip(ref.ffn_out_ratio, dense.ffn_out_ratio)]
    found.append("what SoME's FFN writes into the residual stream per block (ffn_out_ratio, last "
                 f"{LAST_LOG_LINES} log lines), as a share of the dense FFN's: "
                 + " / ".join(f"{x:.1%}" for x in per_block))
    if ref.ablation and dense.ablation:
        found.append("what each block's FFN is worth at eval (val PPL rise when its output is left out): SoME "
                     + " / ".join(stats.fmt_pct(x) for x in ref.ablation) + ", dense "
                     + " / ".join(stats.fmt_pct(x) for x in dense.ablation))
    above = [row.key for row in rows.values() if row.ppl >= row.runs[0].unigram_ppl]
    found.append(f"rows not below the unigram PPL ({stats.fmt_ppl(ref.runs[0].unigram_ppl)}): "
                 + (", ".join(above) if above else "none: every row learned more than token frequencies"))
    # Closest to the dense FFN at its own active compute (a shared expert's extra units are charged
    # to it through its dense comparison), not merely the lowest PPL.
    best = min(singles, key=lambda r: stats.relative_change(r.ppl, rows[r.config.equal_active].ppl)) if singles \
        else None
    best_gap = stats.relative_change(best.ppl, rows[best.config.equal_active].ppl) if best else None
    combo_act = rows[combo.config.equal_active]
    combo_gap = stats.relative_change(combo.ppl, combo_act.ppl)
    ref_gap = stats.relative_change(ref.ppl, dense.ppl)
    verdict = (
        f"**Verdict (gap):** the reference SoME is {stats.compare_ppl_to(ref.ppl, dense.ppl, 'the dense FFN')} at "
        f"equal active compute ({stats.fmt_pct(ref_gap)}); "
        + (f"options that lower SoME's val PPL beyond the seeds' spread: {', '.join(helped)}" if helped
           else "no single option lowers SoME's val PPL beyond the seeds' spread")
        + (f"; closest to dense at its own active compute: {best.key} ({stats.fmt_pct(best_gap)} vs dense "
           f"d_ff={rows[best.config.equal_active].config.d_ff})" if best else "")
        + f"; all options together are {stats.fmt_pct(combo_gap)} vs dense d_ff={combo_act.config.d_ff} at equal "
        f"active compute: {'within' if stats.within_gap(combo.ppl, combo_act.ppl) else 'not within'} "
        f"{stats.GAP_WITHIN:.0%} of dense."
    )
    summary = {"reference_gap": ref_gap, "helped": helped, "closest_single": best.key if best else None,
               "combination_gap": combo_gap, "combination_within": stats.within_gap(combo.ppl, combo_act.ppl)}
    return found, verdict, summary


def ablation_of(plan: Plan, out: Path) -> dict:
    """run -> (full val PPL, [val PPL with block l's FFN ablated, per block]) from the ablation evals."""
    found: dict = {}
    for e in plan.evals:
        if e.when != "ablation":
            continue
        ppl = load_eval(out / "evals" / f"{e.name}.txt")["val_ppl"]
        full, per_block = found.setdefault(e.run, [None, {}])
        if e.ablate < 0:
            found[e.run][0] = ppl
        else:
            per_block[e.ablate] = ppl
    out_map = {}
    for run, (full, per_block) in found.items():
        if full is None or not per_block:
            raise InputError(f"{out / 'evals'}: run {run} lacks its full or its ablation evals")
        out_map[run] = (full, [per_block[b] for b in sorted(per_block)])
    return out_map


def ablation_table(rows: dict[str, GapRow]) -> str:
    n = max(len(row.ablation or []) for row in rows.values())
    out = []
    for row in rows.values():
        if row.ablation is None:
            continue
        out.append([row.config.label, f"`{row.key}`", stats.fmt_ppl(row.full_ppl),
                    *(stats.fmt_pct(x) for x in row.ablation), *([""] * (n - len(row.ablation)))])
    return table(["configuration", "key", "val PPL, whole split (mean)", *(f"block {i} FFN left out"
                                                                           for i in range(n))], out)


def library_table(rows: dict[str, GapRow]) -> str:
    out = []
    for row in rows.values():
        if row.live is None:
            continue
        out.append([row.config.label, f"`{row.key}`", f"{row.live:.1%}", fmt_or_na(row.gini, ".3f")])
    return table(["configuration", "key", "live experts (share of E x layers, mean of seeds)",
                  "Gini of the load (mean of layers and seeds)"], out)


def ffn_table(rows: dict[str, GapRow]) -> str:
    n = max(len(row.ffn_out_ratio) for row in rows.values())
    dense = rows["dense"]
    dense_mean = sum(dense.ffn_out_ratio) / len(dense.ffn_out_ratio)
    out = []
    for row in rows.values():
        mean = sum(row.ffn_out_ratio) / len(row.ffn_out_ratio)
        out.append([row.config.label, f"`{row.key}`", *(f"{x:.4f}" for x in row.ffn_out_ratio),
                    *([""] * (n - len(row.ffn_out_ratio))), f"{mean:.4f}", f"{mean / dense_mean:.2f}"])
    return table(["configuration", "key", *(f"layer {i}" for i in range(n)), "mean of layers",
                  "vs dense d_ff=k·h"], out)


def routing_table(rows: dict[str, GapRow]) -> str:
    out = []
    for row in rows.values():
        if row.config.ffn != "some":
            continue
        for r in row.runs:
            dead = r.routing_sum("dead_experts")
            out.append([f"`{r.run.name}`", f"`{row.key}`", str(r.run.seed), stats.fmt_ppl(r.val_ppl),
                        fmt_or_na(r.routing_mean("gini"), ".3f"),
                        "n/a" if dead is None else f"{dead} of {r.run.num_experts * len(r.routing)}",
                        fmt_or_na(r.routing_mean("churn"), ".3f")])
    return table(["run", "key", "seed", "val PPL", "Gini (mean of layers)", "dead experts", "churn (mean of layers)"],
                 out)


def option_sets(c: GapConfig) -> str:
    """" (`router.gate_scale=learnable`)": the --set overrides that make a SoME row differ from the reference."""
    sets = [f"`{k}={v}`" for k, v in c.options.items()
            if k.startswith(("router.", "expert.")) or k == "model.shared_expert"]
    return f" ({', '.join(sets)})" if sets else ""


def method_text(plan: Plan) -> str:
    s = plan.scale
    rows = "; ".join(f"`{c.key}`: {c.what}{option_sets(c)}" for c in plan.gap)
    return (
        "*Question:* which of the router and expert options brings SoME closest to the dense FFN, and what do "
        "they cost? *Measured:* every configuration below trained with "
        f"{s.gap_seeds} seeds ({s.gap_seeds_headline} for the reference SoME, the selection bias and the dense FFN "
        f"at equal active compute; seed i: `model.seed = train.seed = 1234 + i`), {s.gap_steps} steps each on the same "
        "data, same d_model, layers, heads, batch and tokens. Val PPL = the final eval of each run (metrics.jsonl "
        "`done` line, `train.eval_batches` of the val split as in claim A), mean ± sample standard deviation (n − 1) "
        f"over the seeds. Configurations: {rows}. The combination is all five options together — chosen before any "
        "run, not the best subset of the single-option results. *Fair dense comparisons:* equal active compute = "
        "a dense FFN with d_ff = the FFN hidden units a token passes through: k·h for SoME, k·h + H when the shared "
        "expert of width H is on (its units are active for every token). Equal trainable parameters: a SoME layer "
        "trains only its query network (`router.query = linear`: d² weights + d biases; experts and keys are "
        "buffers), a dense FFN trains 2·d·d_ff weights, everything else is the same in both, so d_ff = "
        "floor((d² + d) / 2d); a row is compared with it only when its measured trainable count (train.log) is "
        f"within {stats.EQUAL_PARAMS_WITHIN:.0%} of the dense one's (the shared expert adds 2·d·H per layer). "
        f"Gap = val PPL / dense val PPL − 1 (positive: SoME worse); within {stats.GAP_WITHIN:.0%} = gap ≤ "
        f"{stats.GAP_WITHIN:.0%}. An option counts as helping when it lowers the mean val PPL by more than the sum "
        "of the two configurations' seed standard deviations (rough with two seeds)."
    )


def write_gap_report(exp, tasks: list[Task], invocation_s: float, started: float) -> Path:
    out = exp.out
    plan: Plan = exp.plan
    results = {r.name: load_run(r, exp.run_dir(r.name)) for r in plan.runs}
    ablation = ablation_of(plan, out) if any(e.when == "ablation" for e in plan.evals) else {}
    rows = {c.key: GapRow(c, [results[r.name] for r in plan.gap_runs(c.key)], ablation) for c in plan.gap}
    found, verdict, summary = findings(rows)
    bars = plot_gap_bars(list(rows.values()), out, "gap_val_ppl.png")
    ratios = plot_ffn_out_ratio(list(rows.values()), LAST_LOG_LINES, out, "gap_ffn_out_ratio.png")
    md = [
        "# SoME: what closes the gap to the dense FFN",
        "",
        f"`some experiment claims --part gap --scale {exp.scale.name}` in `{out}`. Every number below is read from "
        "the runs' metrics.jsonl and train.log in this directory; every verdict is computed from them. "
        "Runs this small are a smoke-scale comparison, not a final ranking of the options.",
        "",
        "## Val PPL against the dense FFN",
        "",
        method_text(plan),
        "",
        gap_table(rows),
        "",
        *[f"- {x}." for x in found],
        "",
        verdict,
        "",
        f"![Gap: val PPL per configuration]({bars})",
        "",
        "## How much the FFN writes into the residual stream",
        "",
        f"`ffn_out_ratio` per block = Σ_t ‖FFN output‖ / Σ_t ‖residual entering the FFN‖ over a training step's "
        f"tokens (every training log line of metrics.jsonl); per run the mean over its last {LAST_LOG_LINES} log "
        "lines, then the mean over seeds. Mixing k frozen random experts shrinks the FFN's output; this puts a "
        "number on it next to the dense FFN's (docs/design.md §9).",
        "",
        ffn_table(rows),
        "",
        f"![Gap: FFN output / residual per layer]({ratios})",
        "",
        "## What each block's FFN is worth",
        "",
        "Per run, `some eval --set train.eval_batches=0` on the whole val split, then once per block with "
        "`--ablate-ffn L` (block L's FFN output left out of the residual stream; the FFN still runs); the rise of "
        "the val PPL over the full model's, relative, mean over seeds. A block whose FFN writes little but matters "
        "much shows here, not in `ffn_out_ratio`.",
        "",
        ablation_table(rows),
        "",
        "## How much of the library is used",
        "",
        "Per routed configuration, from each run's final eval line: live experts (selected at least once on the "
        "eval batches) as a share of E × routed layers, and the Gini of the expert load, means over seeds.",
        "",
        library_table(rows),
        "",
        "## Routing health",
        "",
        "Per SoME run, from its final eval line (`routing` of metrics.jsonl): Gini of the expert load and churn "
        "(share of tokens whose top-1 expert changed since the previous eval), each averaged over layers; dead "
        "experts (never selected on the eval batches) summed over layers.",
        "",
        routing_table(rows),
        "",
        settings_section(exp, tasks, results, invocation_s, started),
    ]
    write_markdown(out / "report-gap.md", "\n".join(md))
    data = {"rows": {k: {"val_ppl_mean": r.ppl, "val_ppl_std": r.std, "val_ppl": [x.val_ppl for x in r.runs],
                         "trainable": r.trainable, "active_ffn": r.active, "ffn_out_ratio": r.ffn_out_ratio,
                         "full_ppl": r.full_ppl, "ablation": r.ablation, "live_experts": r.live, "gini": r.gini}
                     for k, r in rows.items()}, **summary}
    (out / "gap.json").write_text(json.dumps(data, indent=1) + "\n")
    return out / "report-gap.md"
