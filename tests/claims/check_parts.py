#!/usr/bin/env python3
"""Checks the reports of `some experiment claims --part gap` and `--part recycling` against the runs
they were written from.

    check_parts.py OUT gap|recycling...

gap (OUT/report-gap.md): every gap run finished; the val-PPL table's mean ± std over seeds, trainable
parameters (train.log), active FFN units (each run's config.toml), the gaps to the named dense rows
and the yes/no verdicts equal what the runs hold (recomputed here with the statistics module, not
some_tools); the dense row named "at equal active compute" really has the same active units, the
one "at equal trainable" really is within 1% in trainable parameters; every run trained the same
tokens with the same shape; seeds are model.seed = train.seed = 1234 + i; the ffn_out_ratio and
routing tables equal the metrics.jsonl lines. recycling (OUT/report-recycling.md): the recycled run
loaded its library from the wide dense run (config.toml and train.log), shapes match (wide d_ff =
E h, dense d_ff = k h), the table equals the runs, the share of the gap closed is recomputed, and
the forgetting table is checked as claim C's. Every embedded image is a valid PNG. Exit status 0
or 1 with the reasons.
"""
from __future__ import annotations

import re
import statistics
import sys
import tomllib
from pathlib import Path

from check_claims import (
    check,
    check_forgetting,
    done_line,
    failures,
    last_eval,
    lines_of,
    params_of,
    section,
    valid_png,
)
from check_claims import parse_table as parse_cells

SEED = 1234


def parse_table(text: str) -> list[dict]:
    """check_claims.parse_table with every backtick removed (cells here list several `names`)."""
    return [{k: v.replace("`", "") for k, v in row.items()} for row in parse_cells(text)]


def pct(value: float, ref: float) -> str:
    return f"{100 * (value / ref - 1):+.1f}%"


def config_of(run: Path) -> dict:
    return tomllib.loads((run / "config.toml").read_text())


def active_units(cfg: dict) -> int:
    m = cfg["model"]
    return m["d_ff"] if m["ffn"] == "dense" else m["top_k"] * m["d_expert"] + m["shared_expert"]


def check_images(out: Path, md: str, at_least: int, tag: str) -> int:
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    check(len(images) >= at_least, f"{tag}: only {len(images)} images embedded")
    for img in images:
        p = out / img
        check(p.is_file() and valid_png(p), f"{tag}: embedded image {img} is missing or not a valid PNG")
    return len(images)


# ---------------------------------------------------------------------------------------------
# gap
# ---------------------------------------------------------------------------------------------

OPTIONS = {"learn-scale": ("router", "gate_scale", "learnable"), "bias": ("router", "balance", "bias"),
           "kmeans": ("router", "key_init", "data"), "output-scale": ("expert", "output_scale", "learnable")}


def gap_runs(out: Path, key: str) -> list[Path]:
    pattern = re.compile(rf"^gap-{re.escape(key)}-s(\d+)$")
    found = [(int(m.group(1)), p) for p in out.iterdir() if (m := pattern.match(p.name))]
    return [p for _, p in sorted(found)]


def check_gap(out: Path):
    md = (out / "report-gap.md").read_text(encoding="utf-8")
    sec = section(md, "Val PPL against the dense FFN")
    check(bool(sec), "gap: no '## Val PPL against the dense FFN' section")
    rows = {r["key"]: r for r in parse_table(sec)}
    expected = {"some", "learn-scale", "bias", "kmeans", "output-scale", "shared", "all", "dense", "dense-shared",
                "dense-params"}
    check(set(rows) == expected, f"gap table keys: {sorted(rows)}")
    if set(rows) != expected:
        return
    num = {}     # key -> (mean, trainable, active) recomputed from the runs
    shapes, tokens = set(), set()
    for key, r in rows.items():
        runs = gap_runs(out, key)
        check(len(runs) >= 2, f"gap {key}: {len(runs)} seed runs")
        check(r["runs (seeds)"] == ", ".join(p.name for p in runs), f"gap {key}: runs {r['runs (seeds)']}")
        ppls, trainable, active = [], set(), set()
        for i, run in enumerate(runs):
            check((run / "stdout.log").is_file(), f"gap run {run.name} has no stdout.log")
            d = done_line(run)
            check(d.get("event") == "done", f"gap run {run.name} did not finish")
            ppls.append(d["val_ppl"])
            tokens.add(d["tokens"])
            trainable.add(params_of(run)[1])
            cfg = config_of(run)
            active.add(active_units(cfg))
            m, t = cfg["model"], cfg["train"]
            shapes.add((m["d_model"], m["n_layers"], m["n_heads"], t["seq_len"], t["global_batch"], t["max_steps"]))
            check(m["seed"] == SEED + i and t["seed"] == SEED + i,
                  f"gap {run.name}: seeds {m['seed']} / {t['seed']}, expected {SEED + i}")
            for opt, (sec_name, name, value) in OPTIONS.items():
                on = cfg[sec_name][name] == value
                check(on == (key in (opt, "all")), f"gap {run.name}: {sec_name}.{name} = {cfg[sec_name][name]}")
            check((m["shared_expert"] > 0) == (key in ("shared", "all")),
                  f"gap {run.name}: model.shared_expert = {m['shared_expert']}")
            check(m["ffn"] == ("dense" if key.startswith("dense") else "some"), f"gap {run.name}: model.ffn")
        mean, std = statistics.mean(ppls), statistics.stdev(ppls)
        check(r["val PPL (mean ± std)"] == f"{mean:.2f} ± {std:.2f}",
              f"gap {key}: val PPL {r['val PPL (mean ± std)']} vs runs {mean:.4f} ± {std:.4f}")
        check(len(trainable) == 1 and r["trainable parameters"] == str(min(trainable)),
              f"gap {key}: trainable {r['trainable parameters']} vs train.log {sorted(trainable)}")
        check(len(active) == 1 and r["active FFN units/token"] == str(min(active)),
              f"gap {key}: active units {r['active FFN units/token']} vs config.toml {sorted(active)}")
        num[key] = (mean, min(trainable), min(active))
    check(len(shapes) == 1, f"gap: runs differ in shape / batch / steps: {shapes}")
    check(len(tokens) == 1, f"gap: runs trained on different token counts: {tokens}")
    ref = num["some"][0]
    for key, r in rows.items():
        mean, trainable, active = num[key]
        check(r["vs SoME reference"] == ("reference" if key == "some" else pct(mean, ref)),
              f"gap {key}: vs SoME {r['vs SoME reference']}")
        dense_active = r["dense at equal active compute"].split(" ")[0]
        if key.startswith("dense"):
            check(dense_active == "—" and r["dense at equal trainable"] == "—", f"gap {key}: dense row compared")
            continue
        check(dense_active in num and num[dense_active][2] == active,
              f"gap {key}: '{dense_active}' is not a dense row with its {active} active units")
        if dense_active in num:
            dm = num[dense_active][0]
            check(r["gap to it"] == pct(mean, dm), f"gap {key}: gap {r['gap to it']} vs {pct(mean, dm)}")
            check(r["within 10%"] == ("yes" if mean <= dm * 1.10 else "no"), f"gap {key}: within 10%")
        dense_params = r["dense at equal trainable"].split(" ")[0]
        p = num["dense-params"]
        equal = abs(trainable - p[1]) <= 0.01 * max(trainable, p[1])
        check((dense_params == "dense-params") == equal,
              f"gap {key}: equal-trainable comparison '{dense_params}' but trainable {trainable} vs {p[1]}")
        if equal:
            check(r["gap to it (trainable)"] == pct(mean, p[0]),
                  f"gap {key}: trainable gap {r['gap to it (trainable)']}")
    check(num["dense-params"][1] <= num["some"][1], "gap: the equal-trainable dense has more trainable parameters")
    check("**Verdict (gap):**" in sec, "gap: no verdict line")
    check_gap_ffn(out, md)
    check_gap_ablation(out, md)
    check_gap_routing(out, md)
    n = check_images(out, md, 2, "gap")
    if not failures:
        print(f"report-gap.md OK: {len(rows)} configurations, {sum(len(gap_runs(out, k)) for k in rows)} runs, "
              f"{n} PNGs")


def check_gap_ffn(out: Path, md: str):
    rows = {r["key"]: r for r in parse_table(section(md, "How much the FFN writes"))}
    check(len(rows) == 10, f"gap: ffn_out_ratio table has {len(rows)} rows")
    means = {}
    for key, r in rows.items():
        per_run = []
        for run in gap_runs(out, key):
            train = [line for line in lines_of(run) if "event" not in line][-3:]
            per_run.append([statistics.mean(v) for v in zip(*(line["ffn_out_ratio"] for line in train))])
        layers = [statistics.mean(v) for v in zip(*per_run)]
        for i, x in enumerate(layers):
            check(r.get(f"layer {i}") == f"{x:.4f}", f"gap {key}: ffn_out_ratio layer {i} {r.get(f'layer {i}')} "
                                                     f"vs {x:.6f}")
        means[key] = statistics.mean(layers)
        check(r["mean of layers"] == f"{means[key]:.4f}", f"gap {key}: ffn_out_ratio mean {r['mean of layers']}")
    for key, r in rows.items():
        if "dense" in means:
            check(r["vs dense d_ff=k·h"] == f"{means[key] / means['dense']:.2f}", f"gap {key}: ffn_out_ratio ratio")


def eval_ppl(out: Path, name: str) -> float:
    text = (out / "evals" / f"{name}.txt").read_text()
    m = re.search(r"val PPL ([0-9.]+)", text)
    check(m is not None, f"gap: evals/{name}.txt has no val PPL")
    return float(m.group(1)) if m else float("nan")


def check_gap_ablation(out: Path, md: str):
    """Each block's FFN left out: the rise of the whole-split val PPL over the full model's, per
    block, mean over seeds, from the eval outputs; the library's live share and Gini per row."""
    rows = {r["key"]: r for r in parse_table(section(md, "What each block's FFN is worth"))}
    check(len(rows) == 10, f"gap: ablation table has {len(rows)} rows")
    for key, r in rows.items():
        runs = gap_runs(out, key)
        n_layers = config_of(runs[0])["model"]["n_layers"]
        full = {run.name: eval_ppl(out, f"{run.name}.full") for run in runs}
        check(r["val PPL, whole split (mean)"] == f"{statistics.mean(full.values()):.2f}",
              f"gap {key}: whole-split PPL {r['val PPL, whole split (mean)']}")
        for b in range(n_layers):
            rise = statistics.mean(eval_ppl(out, f"{run.name}.ablate.{b}") / full[run.name] - 1 for run in runs)
            check(r[f"block {b} FFN left out"] == f"{100 * rise:+.1f}%",
                  f"gap {key}: block {b} ablation {r[f'block {b} FFN left out']} vs {100 * rise:+.1f}%")
            log = (out / "evals" / f"{runs[0].name}.ablate.{b}.txt").read_text()
            check(f"FFN of block {b} ablated" in log, f"gap {runs[0].name}: the block {b} eval did not ablate it")
    lib = {r["key"]: r for r in parse_table(section(md, "How much of the library is used"))}
    check(set(lib) == {k for k in rows if not k.startswith("dense")}, f"gap: library table rows {sorted(lib)}")
    for key, r in lib.items():
        shares, ginis = [], []
        for run in gap_runs(out, key):
            routing = last_eval(run)["routing"]
            slots = config_of(run)["model"]["num_experts"] * len(routing)
            shares.append((slots - sum(x["dead_experts"] for x in routing)) / slots)
            ginis.append(statistics.mean(x["gini"] for x in routing))
        check(r["live experts (share of E x layers, mean of seeds)"] == f"{statistics.mean(shares):.1%}",
              f"gap {key}: live experts {r['live experts (share of E x layers, mean of seeds)']}")
        check(r["Gini of the load (mean of layers and seeds)"] == f"{statistics.mean(ginis):.3f}", f"gap {key}: Gini")


def check_gap_routing(out: Path, md: str):
    rows = parse_table(section(md, "Routing health"))
    some_runs = sum(len(gap_runs(out, k)) for k in (*OPTIONS, "some", "shared", "all"))
    check(len(rows) == some_runs, f"gap: routing table has {len(rows)} rows ({some_runs} SoME runs)")
    for r in rows:
        run = out / r["run"]
        e = last_eval(run)
        routing = e["routing"]
        check(r["val PPL"] == f"{done_line(run)['val_ppl']:.2f}", f"gap routing {r['run']}: val PPL")
        check(r["Gini (mean of layers)"] == f"{statistics.mean(x['gini'] for x in routing):.3f}",
              f"gap routing {r['run']}: Gini {r['Gini (mean of layers)']}")
        dead = sum(x["dead_experts"] for x in routing)
        check(r["dead experts"] == f"{dead} of {config_of(run)['model']['num_experts'] * len(routing)}",
              f"gap routing {r['run']}: dead experts {r['dead experts']} vs {dead}")
        churn = [x["churn"] for x in routing if x.get("churn") is not None]
        check(r["churn (mean of layers)"] == (f"{statistics.mean(churn):.3f}" if churn else "n/a"),
              f"gap routing {r['run']}: churn {r['churn (mean of layers)']}")


# ---------------------------------------------------------------------------------------------
# recycling
# ---------------------------------------------------------------------------------------------

def parent_of(run: Path) -> Path | None:
    """The run a run inherits from, from its own files: model.experts_from / model.init_from in its
    config.toml, or the checkpoint its resume event names (a continued run)."""
    m = config_of(run)["model"]
    for key in ("experts_from", "init_from"):
        if m.get(key):
            return Path(m[key])
    for line in lines_of(run):  # a run resumed from another run's checkpoint (not its own, after a stop)
        if line.get("event") == "resume":
            source = Path(line["checkpoint"]).parent.parent  # RUN/checkpoints/step_X -> RUN
            if source.resolve() != run.resolve():
                return source
    return None


def own_tokens(run: Path) -> int:
    """A continued run counts its tokens from its parent's start; the others from zero."""
    parent, m = parent_of(run), config_of(run)["model"]
    d = done_line(run)
    if parent is not None and not m.get("experts_from") and not m.get("init_from"):
        return d["tokens"] - done_line(parent)["tokens"]
    return d["tokens"]


def cost(run: Path) -> tuple[int, float]:
    """(tokens, training FLOPs) of a run, what it inherited included."""
    parent = parent_of(run)
    own = own_tokens(run)
    flops = done_line(run)["model_flops_per_token"] * own
    if parent is None:
        return own, flops
    t, f = cost(parent)
    return own + t, flops + f


def mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else None)


def fmt_mean_std(m: float, s: float | None) -> str:
    return f"{m:.2f}" if s is None else f"{m:.2f} ± {s:.2f}"


def check_recycling(out: Path):
    md = (out / "report-recycling.md").read_text(encoding="utf-8")
    sec = section(md, "Val PPL at equal cost")
    check(bool(sec), "recycling: no '## Val PPL at equal cost ...' section")
    rows = {r["key"]: r for r in parse_table(sec)}
    keys = {"wide", "recycled", "random", "dense", "dense-tokens", "dense-flops", "wide-continued", "dense-upcycled",
            "dense-transplant", "some-upcycled", "some-cluster"}
    check(set(rows) == keys, f"recycling table rows: {sorted(rows)}")
    if set(rows) != keys:
        return
    runs = {k: [out / name.strip() for name in r["runs (seeds)"].split(",")] for k, r in rows.items()}
    for k in ("wide", "recycled", "dense", "dense-tokens", "dense-flops", "dense-upcycled", "some-upcycled"):
        check(len(runs[k]) >= 2, f"recycling {k}: {len(runs[k])} seeds, the headline rows need 2")
    # What each row inherits, from its own files.
    for k, parts, units in (("recycled", None, None), ("dense-upcycled", "all", "first"),
                            ("dense-transplant", "ffn", "first"), ("some-upcycled", "all", "first"),
                            ("some-cluster", "ffn", "cluster")):
        for i, run in enumerate(runs[k]):
            m = config_of(run)["model"]
            parent = parent_of(run)
            check(parent is not None and parent.name == f"recycle-wide-s{i}",
                  f"recycling {run.name}: inherits from {parent}, not its seed's parent recycle-wide-s{i}")
            if parts:
                check(m["init_parts"] == parts and m["init_units"] == units,
                      f"recycling {run.name}: init_parts {m['init_parts']}, init_units {m['init_units']}")
            check(m["seed"] == SEED + i, f"recycling {run.name}: model.seed {m['seed']}")
    check(parent_of(runs["wide-continued"][0]).name == "recycle-wide-s0", "recycling: wide-continued's parent")
    log = (runs["recycled"][0] / "train.log").read_text()
    check(re.search(rf"expert library from {re.escape(str(out.resolve()))}/recycle-wide-s0/checkpoints/step_\d+: "
                    r"slices of \d+ units", log) is not None,
          "recycling: recycle-recycled-s0/train.log does not show the slice library loaded from the wide run")
    log = (runs["some-cluster"][0] / "train.log").read_text()
    check("groups of" in log and "by cluster" in log, "recycling: the cluster library was not cut by cluster")
    # Every number of the table from the runs.
    c = {k: [cost(p) for p in ps] for k, ps in runs.items()}
    rec_tokens, rec_flops = c["recycled"][0][0], statistics.mean(f for _, f in c["recycled"])
    dense_flops = statistics.mean(f for _, f in c["dense"])
    ppl = {k: mean_std([done_line(p)["val_ppl"] for p in runs[k]]) for k in rows}
    for k, r in rows.items():
        check(r["val PPL (mean ± std)"] == fmt_mean_std(*ppl[k]), f"recycling {k}: val PPL {r['val PPL (mean ± std)']}"
              f" vs {fmt_mean_std(*ppl[k])}")
        tokens = {t for t, _ in c[k]}
        check(len(tokens) == 1 and r["tokens incl. inherited"] == str(tokens.pop()),
              f"recycling {k}: tokens incl. inherited {r['tokens incl. inherited']} vs {c[k]}")
        check(r["own tokens"] == str(own_tokens(runs[k][0])), f"recycling {k}: own tokens")
        flops = statistics.mean(f for _, f in c[k])
        check(r["training FLOPs incl. inherited (x dense)"] == f"{flops / dense_flops:.3f}",
              f"recycling {k}: FLOPs {r['training FLOPs incl. inherited (x dense)']} vs {flops / dense_flops:.3f}")
        check(r["active FFN units/token"] == str(active_units(config_of(runs[k][0]))), f"recycling {k}: active units")
        if k != "recycled":
            check(r["recycled vs it"] == f"{100 * (ppl['recycled'][0] / ppl[k][0] - 1):+.1f}%",
                  f"recycling {k}: recycled vs it {r['recycled vs it']}")
    # The controls really are at equal cost.
    for k in ("dense-tokens", "wide-continued", "dense-upcycled", "dense-transplant", "some-upcycled", "some-cluster"):
        check(c[k][0][0] == rec_tokens,
              f"recycling {k}: {c[k][0][0]} tokens incl. inherited, the recycled row {rec_tokens}")
        check(rows[k]["equal tokens to recycled"] == "yes", f"recycling {k}: equal tokens not 'yes'")
    flops_ratio = statistics.mean(f for _, f in c["dense-flops"]) / rec_flops
    check(abs(flops_ratio - 1) <= 0.02, f"recycling dense-flops: {flops_ratio:.4f} x the recycled row's FLOPs")
    check(rows["dense"]["equal tokens to recycled"] == "no", "recycling dense: its own tokens are not the pipeline's")
    check("**Verdict (recycling):**" in sec, "recycling: no verdict line")
    fsec = section(md, "Forgetting")
    check(bool(fsec), "recycling: no '## Forgetting' section")
    check_forgetting(out, fsec, {f"recycle-{k}-s0" for k in ("recycled", "random", "dense", "dense-tokens")},
                     "recycling forgetting", equal_a=False)
    check("**Verdict (recycling, forgetting):**" in fsec, "recycling: no forgetting verdict line")
    n = check_images(out, md, 3, "recycling")
    check("## Settings" in md and "```" in md, "recycling: no settings / commands section")
    if not failures:
        print(f"report-recycling.md OK: {sum(len(v) for v in runs.values())} runs in 11 rows, 4 continued, {n} PNGs")


REPO = str(Path(__file__).resolve().parents[2]) + "/"


def check_no_repository_path(out: Path, part: str):
    """A committed report names the binary, configs and data relative to the repository."""
    md = (out / f"report-{part}.md").read_text(encoding="utf-8")
    check(REPO not in md, f"{part}: report-{part}.md carries this machine's repository path {REPO}")
    check("build/bin/some" in md, f"{part}: report-{part}.md does not name the binary relative to the repository")


def main() -> int:
    out = Path(sys.argv[1])
    parts = sys.argv[2:] or ["gap", "recycling"]
    for part in parts:
        {"gap": check_gap, "recycling": check_recycling}[part](out)
        check_no_repository_path(out, part)
    for f in failures:
        print(f"FAIL: {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
