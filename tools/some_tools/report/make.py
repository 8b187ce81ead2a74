"""The report of one run, stage by stage: load, summarise each routed layer, draw, write report.md."""
import argparse
import re
import sys
from pathlib import Path

from some_tools import analytics_files
from some_tools.analytics_files import LayerData
from some_tools.errors import InputError
from some_tools.report.html import write_html
from some_tools.report.load import load_config, load_metrics, load_moe_gate, router_of
from some_tools.report.markdown import write_markdown
from some_tools.report.plots import plot_curves, plot_layer, plot_routing_over_training, plot_usage
from some_tools.report.summary import LayerSummary, cross_check, summarize


def make_report(run: Path, out: Path, step: int | None, method: str) -> Path:
    if not run.is_dir():
        raise InputError(f"{run}: no such run directory (a run holds {run / 'metrics.jsonl'})")
    m, notes = load_metrics(run)
    cfg, cfg_source = load_config(run)
    files = analytics_files.list_files(run)
    if method in ("umap", "both"):
        try:
            import umap  # noqa: F401
        except ImportError:
            notes.append("UMAP was requested but the `umap` package does not import here (pip install umap-learn; "
                         "scripts/setup.sh installs it); the key space is drawn with t-SNE only.")
            method = "tsne"

    data: list[LayerData] = []
    if files:
        if step is None:
            step = max(files)
        elif step not in files:
            raise InputError(f"{run / 'analytics' / f'step_{step:08d}.h5'}: no such analytics file "
                             f"(steps with analytics: {', '.join(map(str, files))})")
        data = analytics_files.read(files[step])
    elif step is not None:
        raise InputError(f"{run / 'analytics'}: no analytics files, so --step {step} cannot be shown")
    router = router_of(cfg, data)

    gate = None
    if router.kind == "moe" and any(d.keys is None for d in data):
        gate, gate_notes = load_moe_gate(run, step, [d.layer for d in data])
        notes += gate_notes
        if gate is not None and gate.step != step:
            notes.append(f"The gate rows are of {gate.source}, the analytics of step {step} (no checkpoint of that "
                         "step).")
    layers: list[LayerSummary] = []
    for d in data:
        w = gate.weights.get(d.layer) if gate else None
        if w is not None and w.shape[0] != d.counts.size:
            notes.append(f"layer {d.layer}: the gate has {w.shape[0]} rows for E = {d.counts.size} experts; not used.")
            w = None
        b = gate.bias.get(d.layer) if gate else None
        layers.append(summarize(d, method, gate=w, bias=b if b is not None and b.shape == d.counts.shape else None))

    out.mkdir(parents=True, exist_ok=True)
    images: dict = {"curves": plot_curves(m, out)}
    warnings, edges = [], {}
    if layers:
        evals_by_step = {line["step"]: line for line in m.evals}
        warnings = cross_check(layers, evals_by_step.get(step), step)
        for w in warnings:
            print(f"report: WARNING: {w}", file=sys.stderr)
        layer_ids = sorted({r["layer"] for line in m.evals + m.train for r in (line.get("routing") or [])}
                           | {s.data.layer for s in layers})
        images["routing"] = plot_routing_over_training(m, layer_ids, layers[0].E, router, out)
        images["usage"] = plot_usage(layers, step, router, out)
        images["layers"] = {}
        for s in layers:
            images["layers"][s.data.layer], edges[s.data.layer] = plot_layer(s, step, max(64, s.E), gate, out)
    # A layer figure of an earlier report into the same directory that this one did not rewrite
    # (other layers, or the other kind: keys vs co-activation) would lie about this run.
    for p in out.glob("layer_*.png"):
        ours = images.get("layers", {}).values()
        if re.fullmatch(r"layer_\d+_(keys|coactivation)\.png", p.name) and p.name not in ours:
            p.unlink()
    md = write_markdown(out, run, cfg, cfg_source, m, step, layers, images, warnings, notes, edges, router, gate)
    write_html(md)
    return md


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m some_tools.report",
                                description="Routing-analytics report of a run directory (SoME, MoE, hash or dense).")
    p.add_argument("run", type=Path, help="run directory (metrics.jsonl, analytics/, config.toml)")
    p.add_argument("--out", type=Path, help="output directory (default RUN/report)")
    p.add_argument("--step", type=int, help="analytics step to plot (default: the last)")
    p.add_argument("--method", choices=("tsne", "umap", "both"), default="tsne",
                   help="2-D embedding of the keys (MoE: gate rows); both: t-SNE and UMAP side by side")
    a = p.parse_args(argv)
    try:
        path = make_report(a.run, a.out or a.run / "report", a.step, a.method)
    except InputError as e:
        print(f"report: error: {e}", file=sys.stderr)
        return 1
    print(f"report: {path}")
    print(f"report: {path.with_suffix('.html')} (self-contained: open it in a browser)")
    return 0
