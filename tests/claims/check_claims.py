#!/usr/bin/env python3
"""Checks OUT/report.md of `some experiment claims` against the data it was written from.

    check_claims.py OUT

Every run directory finished ("done" last line); the three claim sections exist, each with a
table and a verdict line; each table's numbers equal what the runs' metrics.jsonl, train.log,
analytics files and the `some eval` outputs hold (parsed here independently of the report code,
except the co-activation statistics, recomputed from the analytics file with some_tools.claims.stats);
tokens are equal within each comparison; forgetting = PPL_A after / PPL_A before from the table's
own numbers; every embedded image exists and is a valid PNG. Exit status 0 or 1 with the reasons.
"""
from __future__ import annotations

import json
import re
import struct
import sys
import zlib
from pathlib import Path

import numpy as np

from some_tools import analytics
from some_tools.claims import stats

RUNS = ["some-k2", "dense", "moe", "some-frozen-keys", "some-k1", "some-k4", "some-k2-then-python",
        "dense-then-python", "moe-then-python"]
failures: list[str] = []


def check(cond: bool, msg: str):
    if not cond:
        failures.append(msg)


def lines_of(run: Path) -> list[dict]:
    text = (run / "metrics.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def done_line(run: Path) -> dict:
    return lines_of(run)[-1]


def last_eval(run: Path) -> dict:
    return [line for line in lines_of(run) if line.get("event") == "eval"][-1]


def section(md: str, title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}.*?(?=^## |\Z)", md, flags=re.S | re.M)
    return m.group(0) if m else ""


def parse_table(text: str) -> list[dict]:
    """The first Markdown table of `text` as dicts keyed by header (backticks stripped)."""
    rows = [line for line in text.splitlines() if line.startswith("|")]
    if len(rows) < 3:
        return []

    def cells(row: str) -> list[str]:
        return [c.strip().strip("`") for c in row.strip().strip("|").split("|")]

    header = cells(rows[0])
    out = []
    for row in rows[2:]:
        c = cells(row)
        if len(c) != len(header):
            break
        out.append(dict(zip(header, c)))
    return out


def eval_numbers(path: Path) -> dict:
    m = re.search(r"val loss (\S+) \| val PPL (\S+) \| unigram PPL (\S+) \| (\d+) tokens", path.read_text())
    if not m:
        raise SystemExit(f"FAIL: {path}: no eval summary line")
    return {"val_ppl": float(m.group(2)), "unigram_ppl": float(m.group(3))}


def valid_png(path: Path) -> bool:
    """Signature, IHDR with a positive size, CRCs of every chunk, ends with IEND."""
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return False
    pos, seen = 8, []
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        crc = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0]
        if zlib.crc32(kind + body) != crc:
            return False
        seen.append(kind)
        if kind == b"IHDR":
            w, h = struct.unpack(">II", body[:8])
            if w == 0 or h == 0:
                return False
        pos += 12 + length
        if kind == b"IEND":
            break
    return bool(seen) and seen[0] == b"IHDR" and seen[-1] == b"IEND" and b"IDAT" in seen


def params_of(run: Path) -> tuple[int, int]:
    m = re.search(r"model: (\d+) parameters \((\d+) trainable\)", (run / "train.log").read_text())
    return int(m.group(1)), int(m.group(2))


def check_claim_a(out: Path, md: str):
    sec = section(md, "Claim A")
    check(bool(sec), "no '## Claim A' section")
    rows = {r["run"]: r for r in parse_table(sec)}
    check(set(rows) == {"some-k2", "dense", "moe", "some-frozen-keys"}, f"claim A table runs: {sorted(rows)}")
    tokens = set()
    for name, r in rows.items():
        run = out / name
        d, e = done_line(run), last_eval(run)
        total, trainable = params_of(run)
        check(r["val PPL"] == f"{d['val_ppl']:.2f}", f"A {name}: val PPL {r['val PPL']} vs metrics {d['val_ppl']}")
        check(r["val PPL"] == f"{e['val_ppl']:.2f}", f"A {name}: val PPL {r['val PPL']} vs last eval {e['val_ppl']}")
        check(r["unigram PPL"] == f"{d['unigram_ppl']:.2f}", f"A {name}: unigram PPL {r['unigram PPL']}")
        check(r["tokens"] == str(d["tokens"]), f"A {name}: tokens {r['tokens']} vs {d['tokens']}")
        check(r["tokens/s"] == f"{d['tokens_per_s']:.0f}", f"A {name}: tokens/s {r['tokens/s']} vs {d['tokens_per_s']}")
        check(r["parameters"] == str(total) and r["trainable"] == str(trainable),
              f"A {name}: parameters {r['parameters']}/{r['trainable']} vs train.log {total}/{trainable}")
        check(r["trainable %"] == f"{100 * trainable / total:.1f}", f"A {name}: trainable % {r['trainable %']}")
        routing = e.get("routing", [])
        if routing:
            gini = np.mean([x["gini"] for x in routing])
            dead = sum(x["dead_experts"] for x in routing)
            check(r["Gini (mean of layers)"] == f"{gini:.3f}", f"A {name}: Gini {r['Gini (mean of layers)']} vs {gini}")
            check(r["dead experts"].split(" of ")[0] == str(dead), f"A {name}: dead {r['dead experts']} vs {dead}")
        else:
            check(r["Gini (mean of layers)"] == "n/a", f"A {name}: Gini should be n/a without routing")
        tokens.add(d["tokens"])
    check(len(tokens) == 1, f"claim A runs trained on different token counts: {tokens}")
    check(rows.get("dense", {}).get("trainable %") == "100.0", "dense should be 100% trainable")
    check("**Verdict A:**" in sec, "no verdict line for claim A")


def check_claim_b(out: Path, md: str):
    sec = section(md, "Claim B")
    check(bool(sec), "no '## Claim B' section")
    rows = {r["run"]: r for r in parse_table(sec)}
    check(set(rows) == {"some-k1", "some-k2", "some-k4"}, f"claim B table runs: {sorted(rows)}")
    check(len({r["k·h (active)"] for r in rows.values()}) == 1, "claim B: k·h differs between runs")
    check(len({r["E·h (library)"] for r in rows.values()}) == 1, "claim B: E·h differs between runs")
    check(len({r["tokens"] for r in rows.values()}) == 1, "claim B: tokens differ between runs")
    for name, r in rows.items():
        run = out / name
        d = done_line(run)
        check(r["val PPL"] == f"{d['val_ppl']:.2f}", f"B {name}: val PPL {r['val PPL']} vs {d['val_ppl']}")
        check(r["tokens"] == str(d["tokens"]), f"B {name}: tokens")
        import h5py
        last = sorted((run / "analytics").glob("step_*.h5"))[-1]
        with h5py.File(last, "r") as f:
            layers = [(f["layers"][n]["coactivation"][()], f["layers"][n]["counts"][()], f["layers"][n]["keys"][()])
                      for n in sorted(f["layers"], key=int)]
        live = stats.mean_or_none(int((n > 0).sum()) for c, n, k in layers)
        top = stats.mean_or_none(stats.top_pair_mass(c, n) for c, n, k in layers)
        aff = stats.mean_or_none(stats.best_partner_affinity(c, n) for c, n, k in layers)
        sil = stats.mean_or_none(analytics.cluster_keys(k, k_max=8, seed=0).silhouette for c, n, k in layers)

        def fmt(x):
            return "n/a" if x is None else f"{x:.3f}"

        check(r["live experts"] == f"{live:.1f}", f"B {name}: live experts {r['live experts']} vs {live}")
        check(r["top-10%-pair share"] == fmt(top), f"B {name}: top-pair share {r['top-10%-pair share']} vs {top}")
        check(r["best-partner affinity"] == fmt(aff), f"B {name}: affinity {r['best-partner affinity']} vs {aff}")
        check(r["key silhouette"] == fmt(sil), f"B {name}: silhouette {r['key silhouette']} vs {sil}")
        if r["k"] == "1":
            check(r["top-10%-pair share"] == "n/a", "B k=1 must have no co-activation")
        else:
            check(f"claim_b_coactivation_k{r['k']}.png" in sec, f"B: no co-activation heatmap for k={r['k']}")
    check("**Verdict B:**" in sec, "no verdict line for claim B")


def check_forgetting(out: Path, sec: str, bases: set[str], tag: str, equal_a: bool = True):
    """Claim C's table (also the recycling part's): each phase-A run in `bases`, its continuation on
    domain B, the four eval outputs, forgetting = after / before from the table's own numbers, and
    equal tokens on B (and, with `equal_a`, on A) for every model."""
    rows = {r["run on A"]: r for r in parse_table(sec)}
    check(set(rows) == bases, f"{tag} table runs: {sorted(rows)}")
    for base, r in rows.items():
        after = f"{base}-then-python"
        check(r["run A then B"] == after, f"{tag} {base}: continued run {r['run A then B']}")
        ev = {key: eval_numbers(out / "evals" / f"{name}.txt") for key, name in (
            ("A_before", f"{base}.before.A"), ("A_after", f"{after}.after.A"),
            ("B_before", f"{base}.before.B"), ("B_after", f"{after}.after.B"))}
        for key, col in (("A_before", "PPL_A before"), ("A_after", "PPL_A after"), ("B_before", "PPL_B before"),
                         ("B_after", "PPL_B after")):
            check(r[col] == f"{ev[key]['val_ppl']:.2f}", f"{tag} {base}: {col} {r[col]} vs eval {ev[key]['val_ppl']}")
        ratio = float(r["PPL_A after"]) / float(r["PPL_A before"])
        check(r["forgetting (after/before)"] == f"{ratio:.4f}",
              f"{tag} {base}: forgetting {r['forgetting (after/before)']} vs {ratio:.6f} = after / before")
        da, db = done_line(out / base), done_line(out / after)
        check(r["tokens on A"] == str(da["tokens"]), f"{tag} {base}: tokens on A")
        check(r["tokens on B"] == str(db["tokens"] - da["tokens"]), f"{tag} {base}: tokens on B")
        first = [line for line in lines_of(out / after) if line.get("event") is None][0]
        check(first["step"] > da["step"],
              f"{tag} {after}: first step {first['step']} should continue after {da['step']}")
    check((not equal_a or len({r["tokens on A"] for r in rows.values()}) == 1)
          and len({r["tokens on B"] for r in rows.values()}) == 1, f"{tag}: tokens differ between models")


def check_claim_c(out: Path, md: str):
    sec = section(md, "Claim C")
    check(bool(sec), "no '## Claim C' section")
    check_forgetting(out, sec, {"some-k2", "dense", "moe"}, "C")
    check("**Verdict C:**" in sec, "no verdict line for claim C")


def main() -> int:
    out = Path(sys.argv[1])
    for name in RUNS:
        check((out / name / "metrics.jsonl").is_file() and done_line(out / name).get("event") == "done",
              f"run {name} did not finish")
        check((out / name / "stdout.log").is_file(), f"run {name} has no stdout.log")
    md = (out / "report.md").read_text(encoding="utf-8")
    check_claim_a(out, md)
    check_claim_b(out, md)
    check_claim_c(out, md)
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    check(len(images) >= 6, f"only {len(images)} images embedded")
    for img in images:
        p = out / img
        check(p.is_file() and valid_png(p), f"embedded image {img} is missing or not a valid PNG")
    check("## Settings" in md and "```" in md, "no settings / commands section")
    for f in failures:
        print(f"FAIL: {f}")
    if not failures:
        print(f"report OK: 9 runs, 3 claim tables, {len(images)} PNGs")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
