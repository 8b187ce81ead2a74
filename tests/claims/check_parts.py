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


def check_gap_routing(out: Path, md: str):
    rows = parse_table(section(md, "Routing health"))
    check(len(rows) == 14, f"gap: routing table has {len(rows)} rows (7 SoME configurations x 2 seeds)")
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

def check_recycling(out: Path):
    md = (out / "report-recycling.md").read_text(encoding="utf-8")
    sec = section(md, "Val PPL: recycled")
    check(bool(sec), "recycling: no '## Val PPL: recycled ...' section")
    rows = {r["run"]: r for r in parse_table(sec)}
    names = {"recycle-some-recycled", "recycle-some-random", "dense", "recycle-wide-dense"}
    check(set(rows) == names, f"recycling table runs: {sorted(rows)}")
    if set(rows) != names:
        return
    cfg = {n: config_of(out / n) for n in names}
    wide, rec, rnd, dense = (cfg[n]["model"] for n in ("recycle-wide-dense", "recycle-some-recycled",
                                                       "recycle-some-random", "dense"))
    check(rec["experts_from"] == str(out.resolve() / "recycle-wide-dense"),
          f"recycling: the recycled run's model.experts_from is '{rec['experts_from']}'")
    check(rnd["experts_from"] == "", "recycling: the random SoME has a model.experts_from")
    check(wide["d_ff"] == rec["num_experts"] * rec["d_expert"], "recycling: wide d_ff != E_r * h")
    check(dense["d_ff"] == rec["top_k"] * rec["d_expert"], "recycling: dense d_ff != k * h")
    check((rnd["num_experts"], rnd["d_expert"], rnd["top_k"]) == (rec["num_experts"], rec["d_expert"], rec["top_k"]),
          "recycling: the random SoME's shape differs from the recycled one's")
    log = (out / "recycle-some-recycled" / "train.log").read_text()
    check(re.search(rf"expert library from {re.escape(str(out.resolve()))}/recycle-wide-dense/checkpoints/step_\d+: "
                    rf"slices of {rec['d_expert']} units", log) is not None,
          "recycling: recycle-some-recycled/train.log does not show the library loaded from the wide run")
    tokens = set()
    for name, r in rows.items():
        run = out / name
        d = done_line(run)
        tokens.add(d["tokens"])
        check(r["val PPL"] == f"{d['val_ppl']:.2f}", f"recycling {name}: val PPL {r['val PPL']} vs {d['val_ppl']}")
        check(r["unigram PPL"] == f"{d['unigram_ppl']:.2f}", f"recycling {name}: unigram PPL")
        check(r["tokens"] == str(d["tokens"]), f"recycling {name}: tokens")
        extra = done_line(out / "recycle-wide-dense")["tokens"] if name == "recycle-some-recycled" else 0
        check(r["tokens incl. the library's training"] == str(d["tokens"] + extra), f"recycling {name}: tokens incl.")
        check(r["trainable"] == str(params_of(run)[1]), f"recycling {name}: trainable {r['trainable']}")
        check(r["active FFN units/token"] == str(active_units(cfg[name])), f"recycling {name}: active units")
        routing = last_eval(run).get("routing", [])
        if routing:
            check(r["Gini (mean of layers)"] == f"{statistics.mean(x['gini'] for x in routing):.3f}",
                  f"recycling {name}: Gini")
            check(r["dead experts"].split(" of ")[0] == str(sum(x["dead_experts"] for x in routing)),
                  f"recycling {name}: dead experts")
    check(len(tokens) == 1, f"recycling: runs trained on different token counts: {tokens}")
    p = {n: float(rows[n]["val PPL"]) for n in rows}
    closed = re.search(r"closed by recycling: ([-0-9.]+)%", sec)
    if p["recycle-some-random"] > p["recycle-wide-dense"]:
        share = (p["recycle-some-random"] - p["recycle-some-recycled"]) / (p["recycle-some-random"]
                                                                          - p["recycle-wide-dense"])
        # from the 2-decimal table numbers: the report computes from full precision
        check(closed is not None and abs(float(closed.group(1)) - 100 * share) < 0.5,
              f"recycling: share of the gap closed {closed and closed.group(1)}% vs {100 * share:.1f}% from the table")
    check("**Verdict (recycling):**" in sec, "recycling: no verdict line")
    fsec = section(md, "Forgetting")
    check(bool(fsec), "recycling: no '## Forgetting' section")
    check_forgetting(out, fsec, {"recycle-some-recycled", "recycle-some-random", "dense"}, "recycling forgetting")
    check("**Verdict (recycling, forgetting):**" in fsec, "recycling: no forgetting verdict line")
    n = check_images(out, md, 3, "recycling")
    check("## Settings" in md and "```" in md, "recycling: no settings / commands section")
    if not failures:
        print(f"report-recycling.md OK: 4 phase-A runs, 3 continued, 12 evals, {n} PNGs")


def main() -> int:
    out = Path(sys.argv[1])
    parts = sys.argv[2:] or ["gap", "recycling"]
    for part in parts:
        {"gap": check_gap, "recycling": check_recycling}[part](out)
    for f in failures:
        print(f"FAIL: {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
