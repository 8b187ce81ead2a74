"""Checks a report written by `some report` against the run it was made from.

    check_report.py REPORT_DIR RUN_DIR STEP      (STEP: the analytics step the report shows)
    check_report.py REPORT_DIR RUN_DIR dense     (a run without routed layers)

report.md must embed only PNGs that exist, are valid (signature, IHDR), larger than 10 kB and of
a sensible size; every PNG in REPORT_DIR must be embedded. The title must name the router of
RUN/config.toml (model.ffn; moe.balance for MoE). The routing table's dead-expert counts must
equal those of RUN/analytics/step_STEP.h5 (counts == 0) and its Gini and entropy those of the
step-STEP eval line of metrics.jsonl, for every layer of the file. By router:
  some: key cosine / norm equal metrics.jsonl's; a layer_L_keys.png per layer;
  moe:  the gate-row cosine / norm equal those recomputed here from `layers.L.moe.gate.weight` of
        the checkpoint the report names (read with tests/checkpoint_h5.py); layer_L_keys.png;
        no top-1 / key-cosine panels claimed;
  hash: the key columns are "—" with their footnote; a layer_L_coactivation.png per layer.
"""
import json
import re
import struct
import sys
import tomllib
from pathlib import Path

import checkpoint_h5  # tests/checkpoint_h5.py: tests/ is on PYTHONPATH (report_end_to_end.sh)
import h5py
import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def check_png(path: Path):
    data = path.read_bytes()
    if data[:8] != PNG_SIGNATURE:
        fail(f"{path} is not a PNG (signature {data[:8]!r})")
    if data[12:16] != b"IHDR":
        fail(f"{path}: first chunk is not IHDR")
    width, height = struct.unpack(">II", data[16:24])
    if len(data) <= 10_000:
        fail(f"{path}: only {len(data)} bytes (an empty plot?)")
    if not (400 <= width <= 4000 and 300 <= height <= 4000):
        fail(f"{path}: {width}x{height} px is not a reasonable figure size")
    return width, height


def routing_table(md: str):
    """{layer: row dict} of the table after the <!-- routing-table --> marker."""
    lines = md.split("<!-- routing-table -->", 1)[1].strip().splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        cells = dict(zip(header, (c.strip() for c in line.strip("|").split("|"))))
        rows[int(cells["layer"])] = cells
    return rows


def mean_cos_norm(w):
    """Mean pairwise cosine over ordered pairs i != j and mean row norm, computed independently."""
    w = np.asarray(w, dtype=np.float64)
    norms = np.linalg.norm(w, axis=1)
    u = w / norms[:, None]
    e = w.shape[0]
    cos = [float(u[i] @ u[j]) for i in range(e) for j in range(e) if i != j]
    return sum(cos) / len(cos), float(norms.mean())


def expected_title(cfg):
    ffn = cfg.get("model", {}).get("ffn", "some")
    return {"some": "(SoME)", "moe": f"(MoE, balance {cfg.get('moe', {}).get('balance')})", "hash": "(hash routing)",
            "dense": "(dense FFN)"}[ffn], ffn


def main():
    report, run, step = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    md_path = report / "report.md"
    if not md_path.is_file():
        fail(f"no {md_path}")
    md = md_path.read_text(encoding="utf-8")
    cfg = tomllib.loads((run / "config.toml").read_text())
    title, ffn = expected_title(cfg)
    first = md.splitlines()[0]
    if not first.startswith("# Run report:") or not first.endswith(title):
        fail(f"the title {first!r} does not name the router {title} of config.toml")
    if f"- Router: **{ {'some': 'SoME', 'moe': 'MoE'}.get(ffn, ffn)}**" not in md:
        fail(f"no `- Router:` line for model.ffn = {ffn}")

    embedded = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    if not embedded:
        fail("report.md embeds no image")
    for name in embedded:
        if not name.endswith(".png") or "/" in name:
            fail(f"report.md embeds {name!r}, not a PNG beside it")
        if not (report / name).is_file():
            fail(f"report.md embeds {name}, which does not exist")
        w, h = check_png(report / name)
        print(f"  {name}: {w}x{h} px, {(report / name).stat().st_size // 1024} kB")
    orphans = {p.name for p in report.glob("*.png")} - set(embedded)
    if orphans:
        fail(f"PNGs not embedded in report.md: {sorted(orphans)}")
    if "curves.png" not in embedded:
        fail("no loss / perplexity curves")
    if "val PPL" not in md or "unigram PPL" not in md:
        fail("report.md does not state the final val PPL against the unigram PPL")

    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    evals = {line["step"]: line for line in metrics if line.get("event") == "eval"}
    for st, ev in evals.items():
        if ev.get("sample") and f"**Step {st}**" not in md:
            fail(f"the step-{st} eval sample is not in report.md")

    if step == "dense":
        if "No routing analytics" not in md:
            fail("a run without routed layers gets no note saying so")
        if "routing-table" in md:
            fail("a run without routed layers has a routing table")
        print(f"report ok (no routed layers, {title})")
        return

    step = int(step)
    rows = routing_table(md)
    gate = None
    if ffn == "moe":
        m = re.search(r"rows W_g\[i\] of the learned gate \(checkpoint step (\d+)\)", md)
        if not m:
            fail("the MoE report does not say which checkpoint its gate rows come from")
        gate = checkpoint_h5.load(str(run / "checkpoints" / f"step_{int(m.group(1)):08d}"))
    if ffn in ("moe", "hash"):
        if "top-1 score" in md.split("## Routing over training", 1)[1].split("![", 1)[0]:
            fail(f"the {ffn} report claims a top-1 score panel the trainer cannot log")
        if "panels are left out" not in md:
            fail(f"the {ffn} report does not say why panels are missing")
    with h5py.File(run / "analytics" / f"step_{step:08d}.h5", "r") as f:
        layers = sorted(int(name) for name in f["layers"])
        if sorted(rows) != layers:
            fail(f"table layers {sorted(rows)} != analytics layers {layers}")
        trainer = {r["layer"]: r for r in evals[step]["routing"]}
        for lid in layers:
            counts = f[f"layers/{lid}/counts"][()]
            if int(rows[lid]["E"]) != counts.size:
                fail(f"layer {lid}: table E {rows[lid]['E']} != {counts.size}")
            dead = int((counts == 0).sum())
            if int(rows[lid]["dead"]) != dead or dead != trainer[lid]["dead_experts"]:
                fail(f"layer {lid}: dead experts table {rows[lid]['dead']}, h5 {dead}, "
                     f"metrics.jsonl {trainer[lid]['dead_experts']}")
            if abs(float(rows[lid]["Gini"]) - trainer[lid]["gini"]) > 1e-4:
                fail(f"layer {lid}: Gini table {rows[lid]['Gini']} != metrics.jsonl {trainer[lid]['gini']}")
            if abs(float(rows[lid]["entropy (nats)"]) - trainer[lid]["entropy"]) > 1e-4:
                fail(f"layer {lid}: entropy table {rows[lid]['entropy (nats)']} != metrics.jsonl "
                     f"{trainer[lid]['entropy']}")
            geo = [c for c in rows[lid] if c.startswith(("k", "silhouette", "mean ", "corr"))]
            if ffn == "hash":
                if any(rows[lid][c] != "—" for c in geo):
                    fail(f"layer {lid}: hash routing has no keys, yet the table has {[rows[lid][c] for c in geo]}")
                if "—: does not apply" not in md:
                    fail("the — cells have no footnote")
                if f"layer_{lid}_coactivation.png" not in embedded:
                    fail(f"layer {lid} has no co-activation figure")
                print(f"  layer {lid}: E {counts.size}, dead {dead}, Gini {rows[lid]['Gini']}, key columns —")
                continue
            k = int(rows[lid]["k"])
            if not 1 <= k <= min(8, counts.size - 1):
                fail(f"layer {lid}: chosen k {k} outside 2..min(8, E-1)")
            sil = rows[lid]["silhouette"]
            if sil != "n/a" and not -1 <= float(sil) <= 1:
                fail(f"layer {lid}: silhouette {sil} outside [-1, 1]")
            if f"layer_{lid}_keys.png" not in embedded:
                fail(f"layer {lid} has no key-space / co-activation figure")
            if ffn == "moe":
                cos, norm = mean_cos_norm(gate[f"layers.{lid}.moe.gate.weight"])
                got = float(rows[lid]["mean gate-row cos"]), float(rows[lid]["mean gate-row norm"])
                vs = "the checkpoint's gate"
            else:
                cos, norm = trainer[lid]["key_cos"], trainer[lid]["key_norm"]
                got = float(rows[lid]["mean key cos"]), float(rows[lid]["mean key norm"])
                vs = "metrics.jsonl"
            if abs(got[0] - cos) > 1e-4 or abs(got[1] - norm) > 1e-4:
                fail(f"layer {lid}: table cos / norm {got} != {vs} {cos:.6f} / {norm:.6f}")
            print(f"  layer {lid}: E {counts.size}, dead {dead}, Gini {rows[lid]['Gini']}, k {k}, silhouette {sil}, "
                  f"cos {got[0]:.4f}, norm {got[1]:.4f}")
    if f"Routing at step {step}" not in md:
        fail(f"report.md does not say it shows step {step}")
    if "WARNING" in md:
        fail("report.md warns that its metrics disagree with the trainer's")
    if "usage.png" not in embedded or "routing_over_training.png" not in embedded:
        fail("no usage or routing-over-training figure")
    print(f"report ok ({title}, step {step}, {len(layers)} routed layers, {len(embedded)} PNGs)")


if __name__ == "__main__":
    main()
