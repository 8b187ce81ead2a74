"""OUT/report.md of `some experiment claims` (some_tools.claims): per claim what was measured, a
table of numbers read from the runs' metrics.jsonl, analytics files and `some eval` outputs, the
plots, and a verdict sentence computed from those numbers (some_tools.claims.stats); then the
settings, the exact commands, the wall time and the machine.

Number formats (the CTest parses the tables back): PPL 2 decimals, ratios 4 decimals, Gini and
co-activation statistics 3 decimals, parameters and tokens as integers, tokens/s rounded.
"""
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

from some_tools import SOURCE_DIR, analytics
from some_tools.analytics_files import LayerData
from some_tools.claims import runner, stats
from some_tools.claims.plan import Plan
from some_tools.claims.plots import (
    plot_coactivation_bars,
    plot_coactivation_heatmaps,
    plot_forgetting_bars,
    plot_phase_curves,
    plot_val_curves,
)
from some_tools.claims.results import RunResult, load_eval, load_run, read_last_analytics
from some_tools.claims.runner import Task
from some_tools.formatting import fmt_or_na


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def claim_markdown(title: str, method: str, header: list[str], rows: list[list[str]], findings: list[str],
                   verdict: str, figures: list[tuple[str, Path]]) -> str:
    """One claim's section: heading, what was measured, the table, the findings, the verdict, figures."""
    md = [f"## {title}", "", method, "", table(header, rows), "", *[f"- {x}." for x in findings], "", verdict, ""]
    for caption, path in figures:
        md += [f"![{caption}]({path})", ""]
    return "\n".join(md)


def routing_summary(r: RunResult) -> tuple[float | None, int | None, int]:
    """(mean Gini over routed layers, dead experts summed over layers, E * routed layers) of the
    final eval line; (None, None, 0) for the dense model."""
    routing = r.routing
    if not routing:
        return None, None, 0
    gini = float(np.mean([x["gini"] for x in routing]))
    dead = int(sum(int(x["dead_experts"]) for x in routing))
    return gini, dead, r.run.num_experts * len(routing)


def claim_a(results: dict[str, RunResult], out: Path) -> tuple[str, dict]:
    names = ["some-k2", "some-frozen-keys", "dense", "moe"]
    rs = [results[n] for n in names]
    rows = []
    for r in rs:
        gini, dead, slots = routing_summary(r)
        frac = stats.trainable_fraction(r.total_params, r.trainable_params) if r.total_params else None
        rows.append([r.run.label, f"`{r.run.name}`", r.run.ffn, str(r.run.active_ffn), stats.fmt_ppl(r.val_ppl),
                     stats.fmt_ppl(r.unigram_ppl), fmt_or_na(r.total_params, "d"), fmt_or_na(r.trainable_params, "d"),
                     fmt_or_na(None if frac is None else 100 * frac, ".1f"), str(r.tokens),
                     f"{float(r.done['tokens_per_s']):.0f}", fmt_or_na(gini, ".3f"),
                     "n/a" if dead is None else f"{dead} of {slots}"])
    header = ["model", "run", "FFN", "active FFN units/token", "val PPL", "unigram PPL", "parameters",
              "trainable", "trainable %", "tokens", "tokens/s", "Gini (mean of layers)", "dead experts"]
    some, frozen, dense, moe = rs
    frozen_pct = (100 * (1 - stats.trainable_fraction(some.total_params, some.trainable_params))
                  if some.total_params else None)
    v = [
        stats.ppl_verdict("SoME", some.val_ppl, "dense", dense.val_ppl,
                      f"at equal active parameters ({some.run.active_ffn} FFN units per token) and equal tokens"
                      + (f", with {frozen_pct:.1f}% of its parameters frozen random experts" if frozen_pct else "")),
        f"Knowledge Gravity: SoME val PPL {stats.fmt_ppl(some.val_ppl)} vs {stats.fmt_ppl(frozen.val_ppl)} with its "
        f"keys frozen at their random init: moving the keys makes SoME "
        f"{stats.compare_ppl_to(some.val_ppl, frozen.val_ppl, 'leaving them at init')}",
        stats.ppl_verdict("SoME", some.val_ppl, "the learned-gate MoE", moe.val_ppl,
                      "(same experts' shape, but trainable experts and gate)"),
        stats.unigram_verdict("SoME", some.val_ppl, some.unigram_ppl),
    ]
    learns = some.val_ppl < some.unigram_ppl
    gap = stats.relative_change(some.val_ppl, dense.val_ppl)
    frozen_part = (f" with {frozen_pct:.1f}% of its parameters frozen (the random experts; embeddings, attention "
                   f"and the query networks train)" if frozen_pct is not None else " with its experts frozen")
    overall = (f"**Verdict A:** the random frozen reservoir {'learns' if learns else 'does not learn'} beyond token "
               f"frequencies{frozen_part}, and is {stats.compare_ppl_to(some.val_ppl, dense.val_ppl, 'the dense FFN')} "
               f"at equal active parameters ({gap:+.1%} val PPL).")
    plot = plot_val_curves(rs, "Claim A: SoME vs dense vs frozen keys vs MoE (equal active parameters)", out,
                           "claim_a_val_ppl.png")
    method = (
        "*Seed claim:* a model whose FFN knowledge is random noise, frozen, can learn by training only the "
        "routing / addressing path. *Measured:* SoME (frozen random experts, Knowledge-Gravity keys) against the "
        "dense FFN baseline and the learned-gate MoE at equal active FFN parameters per token (k·h = d_ff) and "
        "equal training tokens, and against SoME with `router.freeze_keys = true` (keys never move). Final "
        "val PPL and unigram PPL from each run's last eval (metrics.jsonl `done` line), parameters from the "
        "trainer's `model: N parameters (M trainable)` line, tokens/s = tokens / wall seconds of the whole run "
        "(evals included; the machine is shared, so tokens/s is indicative), routing state from the final eval "
        "(Gini of expert load averaged over layers, dead experts summed over layers)."
    )
    md = claim_markdown("Claim A: the reservoir", method, header, rows, v, overall,
                        [("Claim A: val PPL curves", plot)])
    return md, {"ppl": {r.run.name: r.val_ppl for r in rs}}


def coactivation_row(r: RunResult, layers: list[LayerData]) -> dict:
    """Claim B's co-activation statistics of one run, per layer and averaged over layers. Pair
    statistics use the live experts only (a collapsed router's dead experts would inflate them),
    each with its value for uniformly mixed pairs of those experts."""
    k = r.run.top_k
    per_layer = []
    for layer in layers:
        live = int(stats.live_experts(layer.counts).size)
        top = stats.top_pair_mass(layer.coact, layer.counts)
        aff = stats.best_partner_affinity(layer.coact, layer.counts)
        per_layer.append({
            "layer": layer.layer,
            "live": live,
            "top_mass": top,
            "top_uniform": stats.uniform_top_pair_mass(live) if top is not None else None,
            "pair_gini": stats.pair_gini(layer.coact, layer.counts),
            "affinity": aff,
            "affinity_uniform": stats.uniform_affinity(k, live) if aff is not None else None,
            "corr": (analytics.coactivation_key_correlation(layer.coact, layer.counts, layer.keys)
                     if layer.keys is not None else None),
            "silhouette": (analytics.cluster_keys(layer.keys, k_max=8, seed=0).silhouette
                           if layer.keys is not None else None),
        })
    keys = ("live", "top_mass", "top_uniform", "pair_gini", "affinity", "affinity_uniform", "corr", "silhouette")
    mean = {key: stats.mean_or_none(x[key] for x in per_layer) for key in keys}
    return {"k": k, "E": r.run.num_experts, "h": r.run.d_expert, "layers": per_layer, **mean}


def claim_b(results: dict[str, RunResult], out: Path) -> tuple[str, dict]:
    rs = sorted((results[n] for n in ("some-k1", "some-k2", "some-k4")), key=lambda r: r.run.top_k)
    rows, coact_stats, plots = [], [], []
    for r in rs:
        step, layers = read_last_analytics(r.dir)
        st = coactivation_row(r, layers)
        st["step"] = step
        coact_stats.append(st)
        rows.append([str(r.run.top_k), str(r.run.num_experts), str(r.run.d_expert), str(r.run.active_ffn),
                     str(r.run.num_experts * r.run.d_expert), f"`{r.run.name}`", stats.fmt_ppl(r.val_ppl),
                     stats.fmt_ppl(r.unigram_ppl), str(r.tokens), fmt_or_na(st["live"], ".1f"),
                     *(fmt_or_na(st[key], ".3f") for key in ("top_mass", "top_uniform", "pair_gini", "affinity",
                                                             "affinity_uniform", "corr", "silhouette"))])
        if r.run.top_k > 1:
            plots.append((r.run.top_k, plot_coactivation_heatmaps(r, layers, step, out,
                                                                  f"claim_b_coactivation_k{r.run.top_k}.png")))
    header = ["k", "E", "h", "k·h (active)", "E·h (library)", "run", "val PPL", "unigram PPL", "tokens",
              "live experts", f"top-{stats.TOP_PAIR_FRACTION:.0%}-pair share", "share if uniform", "pair Gini",
              "best-partner affinity", "affinity if uniform", "key-cos vs co-act corr", "key silhouette"]
    ppls = {f"k={r.run.top_k}": r.val_ppl for r in rs}
    best = stats.best_of(ppls)
    by_k = {r.run.top_k: r for r in rs}
    v = ["val PPL at equal active compute: " + ", ".join(f"{n} {stats.fmt_ppl(p)}" for n, p in ppls.items())
         + f"; best: {best}"]
    for k in (2, 4):
        if k in by_k and 1 in by_k:
            v.append(f"composition k={k} vs retrieval k=1: val PPL {stats.fmt_ppl(by_k[k].val_ppl)} vs "
                     f"{stats.fmt_ppl(by_k[1].val_ppl)}: "
                     f"k={k} is {stats.compare_ppl(by_k[k].val_ppl, by_k[1].val_ppl)}")
    for st in coact_stats:
        if st["k"] > 1 and st["top_mass"] is not None:
            v.append(f"k={st['k']}: {st['live']:.1f} of {st['E']} experts live per layer; the top "
                     f"{stats.TOP_PAIR_FRACTION:.0%} of their pairs carry {st['top_mass']:.1%} of co-activations "
                     f"({st['top_mass'] / st['top_uniform']:.1f}x the {st['top_uniform']:.1%} of uniformly mixed "
                     f"pairs); best-partner affinity {st['affinity']:.3f} vs {st['affinity_uniform']:.3f} for "
                     f"uniformly random top-{st['k']} sets of the live experts")
    comp = [k for k in (2, 4) if k in by_k and 1 in by_k]
    better = [k for k in comp if by_k[k].val_ppl < by_k[1].val_ppl * (1 - stats.EQUAL_WITHIN)]
    structured = [st["k"] for st in coact_stats if st["k"] > 1 and st["top_mass"] is not None
                  and st["top_mass"] > 1.5 * st["top_uniform"]]
    collapsed = [st["k"] for st in coact_stats if st["live"] is not None and st["live"] < 0.5 * st["E"]]
    overall = ("**Verdict B:** composing experts "
               + (f"helps at equal active compute (k={', '.join(map(str, better))} "
                  f"beat{'s' if len(better) == 1 else ''} k=1)" if better and len(better) == len(comp) else
                  f"helps at k={', '.join(map(str, better))} but not at k="
                  f"{', '.join(str(k) for k in comp if k not in better)} (vs k=1, at equal active compute)"
                  if better else "does not beat single-expert retrieval (k=1) at equal active compute")
               + "; co-activation is "
               + (f"structured (concentrated on recurring pairs at k={', '.join(map(str, structured))})"
                  if structured else "close to uniform mixing (no recurring expert squads)")
               + (f"; but fewer than half of the experts are live at k={', '.join(map(str, collapsed))} "
                  "(routing collapse), so the squads form among a few survivors" if collapsed else "") + ".")
    curves = plot_val_curves(rs, "Claim B: top-k 1 / 2 / 4 at equal k·h and E·h", out, "claim_b_val_ppl.png",
                             label=lambda r: f"SoME k={r.run.top_k}, E={r.run.num_experts}, h={r.run.d_expert}")
    bars = plot_coactivation_bars(coact_stats, out, "claim_b_coactivation_stats.png")
    method = (
        "*Seed claim:* decoupling knowledge from access lets frozen compute primitives be recycled and composed. "
        "*Measured:* SoME with top-k = 1, 2, 4 at equal active compute (k·h constant) and equal library size "
        "(E·h constant), equal tokens; val PPL from each run's last eval; co-activation structure from the last "
        "analytics file (`/layers/L/coactivation`, `counts`, `keys`), averaged over layers. Pair statistics count "
        "only the live experts (selected at least once on the val set; a collapsed router's dead experts would "
        f"inflate them): the share of all co-activations on the top {stats.TOP_PAIR_FRACTION:.0%} of pairs (vs "
        "ceil(0.1 P)/P if all P pairs co-fired equally), the Gini of the pair counts, the mean best-partner "
        "affinity max_j C_ij/sqrt(n_i n_j) (vs (k−1)/(L−1) for uniformly random top-k sets of the L live "
        "experts); then the correlation of key cosine and normalised co-activation, and the best cosine "
        "silhouette of KMeans clusters of the keys (tools/some_tools/analytics.py). k = 1 has no co-activation (n/a)."
    )
    figures = [("Claim B: val PPL curves", curves), ("Claim B: co-activation statistics per k", bars),
               *[(f"Claim B: co-activation heatmap, k={k}", p) for k, p in plots]]
    md = claim_markdown("Claim B: composition", method, header, rows, v, overall, figures)
    return md, {"stats": coact_stats}


FORGETTING_HEADER = ["model", "run on A", "run A then B", "PPL_A before", "PPL_A after", "forgetting (after/before)",
                     "PPL_B before", "PPL_B after", "tokens on A", "tokens on B"]


def forgetting_rows(plan: Plan, results: dict[str, RunResult], out: Path, bases: tuple[str, ...]):
    """Claim C's numbers for the phase-A runs `bases` (each continued on domain B): table rows
    (FORGETTING_HEADER), one dict per model (PPLs before / after on A and B, forgetting ratio)
    and the (phase-A, continued) result pairs, from the four `some eval` outputs of each."""
    rows, data, pairs = [], [], []
    for base in bases:
        a, b = results[base], results[f"{base}-then-python"]
        ev = {(e.when, e.domain): load_eval(out / "evals" / f"{e.name}.txt")
              for e in plan.evals if e.run in (base, b.run.name)}
        before_a, after_a = ev[("before", "A")]["val_ppl"], ev[("after", "A")]["val_ppl"]
        before_b, after_b = ev[("before", "B")]["val_ppl"], ev[("after", "B")]["val_ppl"]
        ratio = stats.forgetting_ratio(before_a, after_a)
        row = {"model": a.run.label, "ppl_A_before": before_a, "ppl_A_after": after_a, "ppl_B_before": before_b,
               "ppl_B_after": after_b, "forgetting": ratio}
        data.append(row)
        pairs.append((a, b))
        rows.append([a.run.label, f"`{a.run.name}`", f"`{b.run.name}`", stats.fmt_ppl(before_a), stats.fmt_ppl(after_a),
                     f"{ratio:.4f}", stats.fmt_ppl(before_b), stats.fmt_ppl(after_b), str(a.tokens),
                     str(b.tokens - a.tokens)])
    return rows, data, pairs


def claim_c(exp, results: dict[str, RunResult], out: Path) -> tuple[str, dict]:
    plan: Plan = exp.plan
    rows, data, pairs = forgetting_rows(plan, results, out, ("some-k2", "dense", "moe"))
    header = FORGETTING_HEADER
    ratios = {row["model"]: row["forgetting"] for row in data}
    verdict = stats.forgetting_verdict(ratios, subject="SoME")
    learned = [f"{row['model']} PPL_B {stats.fmt_ppl(row['ppl_B_before'])} -> {stats.fmt_ppl(row['ppl_B_after'])}"
               for row in data]
    bars = plot_forgetting_bars(data, out, "claim_c_forgetting.png")
    curves = plot_phase_curves(pairs, data, plan.scale.steps_a, plan.scale.steps_a + plan.scale.steps_b, out,
                               "claim_c_val_ppl.png")
    s = plan.scale
    method = (
        "*Seed claim:* freezing the knowledge base solves catastrophic forgetting. *Measured:* SoME, dense and MoE "
        f"trained on domain A (the default corpus, {s.steps_a} steps), then continued on domain B (Python source of "
        f"the standard library, tokenised with domain A's tokenizer) for {s.steps_b} more steps each. PPL by "
        "`some eval --run RUN --data DIR --set train.eval_batches=0` (the whole val split of each domain) on the "
        "phase-A run (before) and on the continued run (after). Forgetting = PPL_A after / PPL_A before "
        "(1 = nothing forgotten). Mechanism: `some train --resume <phase-A checkpoint> --run-dir <new run> "
        f"--data <domain B> --set train.max_steps={s.steps_a + s.steps_b}`: weights, optimizer moments, key store "
        "and usage continue from the checkpoint (the experts of SoME stay frozen); the cosine LR schedule is "
        f"recomputed for the longer run, so phase B resumes at the schedule's value for step {s.steps_a} of "
        f"{s.steps_a + s.steps_b} (above the floor phase A ended at) and decays to the floor again. The same "
        "mechanism and step counts for all three models."
    )
    overall = (
        f"**Verdict C:** {stats.forgetting_conclusion(ratios['SoME'], 'SoME')}; {verdict.split(':', 1)[0]} of the "
        f"three (SoME x{ratios['SoME']:.3f}, dense x{ratios['dense']:.3f}, MoE x{ratios['MoE']:.3f})."
    )
    findings = [verdict, f"Domain B learned: {'; '.join(learned)}"]
    md = claim_markdown("Claim C: forgetting", method, header, rows, findings, overall,
                        [("Claim C: PPL before and after domain B", bars),
                         ("Claim C: val PPL across the two phases", curves)])
    return md, {"forgetting": data}


# ---------------------------------------------------------------------------------------------
# Settings, commands, machine
# ---------------------------------------------------------------------------------------------

def machine() -> list[str]:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    load = os.getloadavg()
    return [f"host `{platform.node()}`, {platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} logical "
            f"cores" + (f", {mem:.1f} GiB memory" if mem else ""),
            f"load average at report time {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min; a "
            f"shared machine makes wall times and tokens/s noisy)"]


def git_revision() -> str:
    src = SOURCE_DIR
    try:
        rev = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return f"{rev}{' (with uncommitted changes)' if dirty else ''}" if rev else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def own_seconds(r: RunResult, results: dict[str, RunResult]) -> float:
    """Training seconds of this run alone: a continued run's elapsed_s includes its phase-A run's."""
    own = float(r.done["elapsed_s"])
    return own - float(results[r.run.continue_from].done["elapsed_s"]) if r.run.continue_from else own


def part_budget(exp) -> str:
    """The time the experiment's part is meant to take at its scale, as documented."""
    part = exp.plan.part
    return exp.scale.budget if part == "claims" else exp.scale.part_budgets[part]


def settings_section(exp, tasks: list[Task], results: dict[str, RunResult], invocation_s: float,
                     started: float) -> str:
    """Settings, every command, wall time and machine of one part (exp.plan, its `tasks`); the
    wall time sums OUT/tasks.json over this part's tasks (a task two parts share counts in both)."""
    s = exp.scale
    plan = exp.plan
    tokens_per_step = exp.tokens_per_step()
    all_records = runner.load_task_records(exp.out / "tasks.json")
    records = {key: rec for key, rec in all_records.items() if key in {f"{t.kind}:{t.name}" for t in tasks}}
    total_wall = sum(r.get("wall_s", 0.0) for r in records.values())
    train_s = sum(own_seconds(r, results) for r in results.values())
    meta_b = {}
    try:
        meta_b = json.loads((exp.data_b / "meta.json").read_text())
    except (OSError, json.JSONDecodeError):
        pass
    files_txt = exp.out / "domain-b" / "files.txt"
    files_b = files_txt.read_text().split() if files_txt.is_file() else []
    ran = sum(1 for t in tasks if t.status == "ran")
    run_rows = []
    for r in plan.runs:
        res = results[r.name]
        sets = ", ".join(f"`{k}={v}`" for k, v in r.sets.items()) or "(the phase-A run's config)"
        if r.experts_from:
            sets += f", `model.experts_from=<OUT>/{r.experts_from}`"
        if r.init_from:
            sets += (f", `model.init_from=<OUT>/{r.init_from}`, `model.init_parts={r.init_parts}`, "
                     f"`model.init_units={r.init_units}`, `model.init_optimizer={str(r.init_optimizer).lower()}`")
        before = int(results[r.continue_from].done["step"]) if r.continue_from else 0
        run_rows.append([f"`{r.name}`", r.label, ", ".join(r.claims), r.domain,
                         f"{int(res.done['step']) - before}"
                         + (f" (after {before} on {results[r.continue_from].run.domain})" if r.continue_from else ""),
                         str(res.tokens), f"{own_seconds(res, results):.1f}", sets])
    steps_a = sorted({r.steps_a for r in plan.runs if not r.continue_from})
    steps_b = sorted({(r.steps_b, r.domain) for r in plan.runs if r.continue_from})
    phase_a = " / ".join(f"{n} steps x {tokens_per_step} tokens = {n * tokens_per_step} tokens" for n in steps_a)
    domain_b = []
    if plan.evals:
        domain_b = [
            f"- Domain B: {len(files_b)} files `*.py` of the standard library of Python {platform.python_version()} "
            f"(`{exp.stdlib.name}/` of the harness's interpreter; name order, files up to 60 kB, until "
            f"{s.python_bytes} bytes; 60-line chunks as documents; list in `domain-b/files.txt`), `some prepare "
            f"--tokenizer <domain A tokenizer> --val-fraction {s.python_val_fraction}` -> "
            + (f"{meta_b['splits']['train']['num_tokens']} train / {meta_b['splits']['val']['num_tokens']} val "
               "tokens." if meta_b else "(no meta.json)")]
    cmds = []
    for t in tasks:
        rec = records.get(f"{t.kind}:{t.name}", {})
        for argv in rec.get("commands", []) or ([t.argv] if t.argv else []):
            cmds.append(" ".join(argv))
    common = ", ".join(f"`{k}={v}`" for k, v in s.common.items())
    md = [
        "## Settings, commands, time, machine",
        "",
        f"- Part `{plan.part}`, scale `{s.name}` ({part_budget(exp)}); base config `{s.base_config}` with d_model "
        f"{s.d_model}, "
        f"{s.n_layers} layers; reference SoME: E={s.num_experts} experts of width h={s.d_expert}, top-{s.top_k}; "
        f"dense d_ff = k·h = {s.top_k * s.d_expert}.",
        f"- Every {'phase-A ' if steps_b else ''}run: {phase_a} "
        f"(train.global_batch {exp.scale_value('train.global_batch')}, train.seq_len "
        f"{exp.scale_value('train.seq_len')})"
        + "".join(f"; the continued runs on domain {d} add {n} steps = {n * tokens_per_step} tokens"
                  for n, d in steps_b)
        + ".",
        f"- Overrides of every {'phase-A ' if steps_b else ''}run: {common}.",
        f"- Domain A: `{exp.data_a}`.",
        *domain_b,
        f"- `some` binary `{exp.some}`; source revision {git_revision()}.",
        f"- Wall time of {'the experiment' if plan.part == 'claims' else 'this part'}: "
        f"{runner.format_duration(total_wall)} (every task's wall time, summed over all "
        f"invocations; `tasks.json`), of which training {runner.format_duration(train_s)} (the runs' own elapsed_s). "
        f"This invocation: {ran} of {len(tasks)} tasks run, {runner.format_duration(invocation_s)} before this report "
        f"(started {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))}).",
        *[f"- Machine: {m}." for m in machine()],
        "",
        table(["run", "model", "used by", "data", "steps", "tokens (cumulative)", "training seconds", "--set (beyond "
               "the overrides above)"], run_rows),
        "",
        "Commands, in the order they ran (the output of each is in RUN/stdout.log, evals in evals/NAME.txt):",
        "",
        "```",
        *cmds,
        "```",
        "",
    ]
    return "\n".join(md)


def write_markdown(path: Path, text: str) -> Path:
    """Writes a report atomically, every path inside the repository (the binary, configs, data, run
    directories, library checkpoints) made relative to its root: a committed report names what a
    reader's checkout has, never this machine's folders."""
    root = str(Path(SOURCE_DIR).resolve()) + os.sep
    text = text.replace(root, "")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def write_report(exp, tasks: list[Task], invocation_s: float, started: float) -> Path:
    out = exp.out
    results = {r.name: load_run(r, exp.run_dir(r.name)) for r in exp.plan.runs}
    a_md, a = claim_a(results, out)
    b_md, b = claim_b(results, out)
    c_md, c = claim_c(exp, results, out)
    head = [
        "# SoME: the seeds' three claims",
        "",
        f"`some experiment claims --scale {exp.scale.name}` in `{out}`. Every number below is read from the runs' "
        "metrics.jsonl, analytics files and `some eval` outputs in this directory; every verdict is computed from "
        "them. Comparisons are at equal active FFN parameters per token and equal training tokens "
        "(docs/design.md §10). "
        f"Runs this small are a smoke-scale test of the claims, not their final adjudication.",
        "",
    ]
    text = "\n".join(head) + "\n" + a_md + "\n" + b_md + "\n" + c_md + "\n" + \
        settings_section(exp, tasks, results, invocation_s, started)
    write_markdown(out / "report.md", text)
    summary = {"claim_a": a, "claim_b": b, "claim_c": c}
    (out / "claims.json").write_text(json.dumps(summary, indent=1, default=lambda x: None) + "\n")
    return out / "report.md"
