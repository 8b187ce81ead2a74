#!/usr/bin/env python3
"""Routing-analytics report of a SoME run directory (SPEC §9): PNG plots and report.md.

    report.py RUN [--out DIR] [--step N] [--method tsne|umap]

Reads RUN/metrics.jsonl (required), RUN/analytics/step_XXXXXXXX.h5 (one per eval, SoME layers
only), RUN/config.toml (or the config in the latest checkpoint's manifest). Writes to DIR
(default RUN/report/): report.md and the PNGs it embeds. Gini, entropy, dead experts and key
geometry are recomputed from the analytics file (tools/analytics.py) and checked against the
trainer's numbers in metrics.jsonl. Exit status: 0 on success, 1 for a missing or unreadable
input (the message names the file), 2 for bad arguments.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

# The matrices here are small (E up to a few hundred); more threads only oversubscribe shared nodes.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import analytics as A  # noqa: E402

DPI = 120
TOLERANCE = 1e-3          # trainer vs recomputed metrics
ANALYTICS_RE = re.compile(r"^step_(\d{8})\.h5$")


class ReportError(Exception):
    """A missing or unreadable input; the message names the file."""


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------

@dataclass
class Metrics:
    train: list[dict]            # training-step lines, one per step (the latest if a step repeats)
    evals: list[dict]            # "event": "eval" lines, one per step
    end: dict | None             # the "done" / "preempted" line, if any
    notes: list[str] = field(default_factory=list)


def load_metrics(run: Path) -> Metrics:
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise ReportError(f"{path}: no such file (is {run} a run directory? `some train --run-dir` writes it)")
    train, evals, end, notes, bad = {}, {}, None, [], []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                j = json.loads(line)
            except json.JSONDecodeError:
                bad.append(lineno)  # e.g. a line being written by a running trainer
                continue
            if not isinstance(j, dict) or "step" not in j:
                bad.append(lineno)
                continue
            event = j.get("event")
            # A resumed run logs the steps after its checkpoint again: the later line wins.
            if event is None:
                train[j["step"]] = j
            elif event == "eval":
                evals[j["step"]] = j
            elif event in ("done", "preempted"):
                end = j
    if bad:
        notes.append(f"{path.name}: skipped {len(bad)} unparsable line(s) (line {', '.join(map(str, bad[:5]))}"
                     f"{', ...' if len(bad) > 5 else ''}).")
    if not train and not evals:
        raise ReportError(f"{path}: no training or eval lines")
    return Metrics([train[s] for s in sorted(train)], [evals[s] for s in sorted(evals)], end, notes)


def load_config(run: Path) -> tuple[dict, str]:
    """The run's resolved config and where it came from ({} and a note when there is none)."""
    import tomllib
    path = run / "config.toml"
    text, source = None, None
    if path.is_file():
        text, source = path.read_text(encoding="utf-8"), str(path.name)
    else:
        latest = run / "checkpoints" / "latest"
        if latest.is_file():
            manifest = run / "checkpoints" / latest.read_text().strip() / "manifest.json"
            if manifest.is_file():
                text = json.loads(manifest.read_text()).get("config")
                source = str(manifest.relative_to(run))
    if not text:
        return {}, "no config.toml or checkpoint manifest"
    try:
        return tomllib.loads(text), source
    except tomllib.TOMLDecodeError as e:
        return {}, f"{source} does not parse ({e})"


def analytics_files(run: Path) -> dict[int, Path]:
    d = run / "analytics"
    if not d.is_dir():
        return {}
    out = {}
    for p in d.iterdir():
        m = ANALYTICS_RE.match(p.name)
        if m:
            out[int(m.group(1))] = p
    return dict(sorted(out.items()))


@dataclass
class LayerData:
    layer: int
    keys: np.ndarray     # (E, d)
    usage: np.ndarray    # (E,) Knowledge-Gravity usage u_i (EMA or cumulative; 1 = fair share)
    counts: np.ndarray   # (E,) eval-set selections n_i
    coact: np.ndarray    # (E, E) eval-set co-activation counts


def load_analytics(path: Path) -> list[LayerData]:
    import h5py
    try:
        with h5py.File(path, "r") as f:
            if "layers" not in f:
                raise ReportError(f"{path}: no /layers group")
            out = []
            for name in sorted(f["layers"], key=int):
                g = f["layers"][name]
                missing = [k for k in ("keys", "usage", "counts", "coactivation") if k not in g]
                if missing:
                    raise ReportError(f"{path}: /layers/{name} lacks {', '.join(missing)}")
                out.append(LayerData(int(name), g["keys"][()], g["usage"][()], g["counts"][()], g["coactivation"][()]))
            return out
    except OSError as e:
        raise ReportError(f"{path}: cannot read as HDF5 ({e})") from e


# ---------------------------------------------------------------------------------------------
# Per-layer analysis of one analytics file
# ---------------------------------------------------------------------------------------------

@dataclass
class LayerSummary:
    data: LayerData
    gini: float
    entropy: float
    entropy_norm: float
    dead: int
    key_cos: float
    key_norm: float
    clustering: A.Clustering
    xy: np.ndarray              # (E, 2) embedding of the keys
    embedding: str              # how xy was made
    coact_norm: np.ndarray      # (E, E) C_ij / sqrt(n_i n_j)
    coact_corr: float | None    # corr(key cosine, coact_norm) over live pairs

    @property
    def E(self) -> int:
        return self.data.counts.size

    @property
    def load(self) -> np.ndarray:
        """Eval-set load relative to a fair share: E * n_i / sum(n) (1 = fair; same units as usage)."""
        total = self.data.counts.sum()
        return self.E * self.data.counts / total if total > 0 else np.zeros(self.E)


def summarize(d: LayerData, method: str) -> LayerSummary:
    xy, how = A.embed_2d(d.keys, method=method, seed=0)
    return LayerSummary(d, A.gini(d.counts), A.entropy_nats(d.counts), A.entropy_norm(d.counts),
                        A.dead_experts(d.counts), A.mean_pairwise_cosine(d.keys), A.mean_key_norm(d.keys),
                        A.cluster_keys(d.keys, k_max=8, seed=0), xy, how,
                        A.normalized_coactivation(d.coact, d.counts),
                        A.coactivation_key_correlation(d.coact, d.counts, d.keys))


def cross_check(layers: list[LayerSummary], eval_line: dict | None, step: int) -> list[str]:
    """Warnings where the recomputed metrics and the trainer's eval line disagree beyond TOLERANCE."""
    if eval_line is None:
        return [f"metrics.jsonl has no eval line for step {step}: the analytics could not be cross-checked."]
    trainer = {r["layer"]: r for r in eval_line.get("routing", [])}
    out = []
    for s in layers:
        r = trainer.get(s.data.layer)
        if r is None:
            out.append(f"layer {s.data.layer}: in the analytics file but not in the step-{step} eval line.")
            continue
        for name, mine in (("gini", s.gini), ("entropy", s.entropy), ("entropy_norm", s.entropy_norm),
                           ("dead_experts", s.dead), ("key_cos", s.key_cos), ("key_norm", s.key_norm)):
            theirs = r.get(name)
            if theirs is None or abs(float(theirs) - mine) > TOLERANCE:
                out.append(f"layer {s.data.layer} {name}: trainer {theirs} vs recomputed {mine:.6g}")
    return out


# ---------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------

def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "axes.grid": True, "grid.alpha": 0.3,
                         "figure.dpi": DPI, "savefig.dpi": DPI})
    return plt


def _cluster_colors(k: int):
    plt = _plt()
    cmap = plt.get_cmap("tab10")
    return [cmap(i % 10) for i in range(max(k, 1))]


def _layer_colors(n: int):
    plt = _plt()
    cmap = plt.get_cmap("tab10" if n <= 10 else "viridis")
    return [cmap(i if n <= 10 else i / max(n - 1, 1)) for i in range(n)]


def _save(fig, out: Path, name: str) -> str:
    fig.savefig(out / name, bbox_inches="tight")
    _plt().close(fig)
    return name


def plot_curves(m: Metrics, out: Path) -> str:
    plt = _plt()
    fig, (ax_loss, ax_ppl) = plt.subplots(1, 2, figsize=(13, 4.6))
    if m.train:
        ax_loss.plot([l["step"] for l in m.train], [l["loss"] for l in m.train], color="tab:blue", lw=1.4,
                     label="train loss (logged batch)")
    if m.evals:
        steps = [l["step"] for l in m.evals]
        ax_loss.plot(steps, [l["val_loss"] for l in m.evals], "o-", color="tab:orange", lw=1.6, label="val loss")
        ax_ppl.plot(steps, [l["val_ppl"] for l in m.evals], "o-", color="tab:orange", lw=1.6, label="val PPL")
        uni = [l.get("unigram_ppl") for l in m.evals]
        if any(u is not None for u in uni):
            ax_ppl.plot(steps, [u if u is not None else np.nan for u in uni], "--", color="0.35", lw=1.4,
                        label="unigram PPL of the val tokens")
        ax_ppl.set_yscale("log")
        ax_ppl.legend(loc="best")
    else:
        ax_ppl.text(0.5, 0.5, "no eval lines yet", ha="center", va="center", transform=ax_ppl.transAxes)
    ax_loss.set(title="Loss", xlabel="optimizer step", ylabel="cross-entropy (nats / token)")
    ax_loss.legend(loc="best")
    ax_ppl.set(title="Validation perplexity (log scale)", xlabel="optimizer step", ylabel="perplexity")
    fig.tight_layout()
    return _save(fig, out, "curves.png")


ROUTING_PANELS = [("gini", "Gini of expert load", "Gini (0 = even)"),
                  ("entropy_norm", "Normalised routing entropy", "entropy / log E"),
                  ("dead_experts", "Dead experts (no selections)", "experts"),
                  ("churn", "Routing churn since previous eval", "fraction of tokens"),
                  ("top1_score", "Mean top-1 routing score", "score (cosine)"),
                  ("key_cos", "Mean pairwise key cosine", "cosine")]


def plot_routing_over_training(m: Metrics, layer_ids: list[int], E: int | None, out: Path) -> str:
    plt = _plt()
    from matplotlib.lines import Line2D
    fig, axes = plt.subplots(2, 3, figsize=(15, 8), sharex=True)
    colors = dict(zip(layer_ids, _layer_colors(len(layer_ids))))
    for ax, (key, title, ylabel) in zip(axes.flat, ROUTING_PANELS):
        drawn = False
        for lid in layer_ids:
            for lines, style in ((m.train, dict(lw=0.9, alpha=0.35)), (m.evals, dict(lw=1.8, marker="o", ms=4))):
                pts = [(l["step"], r[key]) for l in lines for r in (l.get("routing") or [])
                       if r.get("layer") == lid and r.get(key) is not None]
                if pts:
                    xs, ys = zip(*pts)
                    ax.plot(xs, ys, color=colors[lid], **style)
                    drawn = True
        if not drawn:
            ax.text(0.5, 0.5, "churn needs two evals" if key == "churn" else "no data", ha="center",
                    va="center", transform=ax.transAxes, color="0.4")
        if key == "dead_experts" and E:
            ax.set_ylim(-0.5, E * 1.12 + 0.5)
            ax.axhline(E, color="0.5", lw=0.9, ls=":")
            ax.text(0.99, E, f"all E = {E} experts", va="bottom", ha="right", color="0.35", fontsize=8,
                    transform=ax.get_yaxis_transform())
        if key in ("gini", "entropy_norm"):
            ax.set_ylim(-0.02, 1.02)
        elif key in ("churn", "top1_score") and drawn:
            ax.set_ylim(bottom=0)
        ax.set(title=title, ylabel=ylabel)
    for ax in axes[-1]:
        ax.set_xlabel("optimizer step")
    handles = [Line2D([], [], color=colors[l], lw=2, label=f"layer {l}") for l in layer_ids]
    handles += [Line2D([], [], color="0.3", lw=1.8, marker="o", ms=4, label="eval set"),
                Line2D([], [], color="0.3", lw=0.9, alpha=0.5, label="training batch (log lines)")]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), frameon=False,
               bbox_to_anchor=(0.5, -0.01))
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return _save(fig, out, "routing_over_training.png")


def plot_usage(layers: list[LayerSummary], step: int, out: Path) -> str:
    plt = _plt()
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    n = len(layers)
    ncols = min(2, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(7.2 * ncols, 3.9 * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax, s in zip(axes.flat, layers):
        order = np.argsort(-s.load, kind="stable")
        colors = _cluster_colors(s.clustering.k)
        x = np.arange(s.E)
        ax.bar(x, s.load[order], color=[colors[c] for c in s.clustering.labels[order]], width=0.85)
        ax.plot(x, s.data.usage[order], "k.", ms=5 if s.E <= 64 else 2.5)
        dead = s.data.counts[order] == 0
        if dead.any():  # sorted by load: the dead are the tail
            ax.axvspan(x[dead][0] - 0.5, s.E - 0.5, color="0.88", zorder=0)
            ax.text((x[dead][0] - 0.5 + s.E - 0.5) / 2, 0.97, f"{s.dead} dead", ha="center", va="top",
                    transform=ax.get_xaxis_transform(), fontsize=8, color="0.3")
        ax.axhline(1.0, color="0.3", ls="--", lw=1)
        if s.E <= 64:
            ax.set_xticks(x, [str(i) for i in order], fontsize=7 if s.E <= 32 else 5, rotation=90)
        else:
            ax.set_xticks([])
        ax.grid(axis="x", visible=False)
        ax.set_xlim(-0.5, s.E - 0.5)
        ax.set(title=f"Layer {s.data.layer}: Gini {s.gini:.3f}, {s.dead}/{s.E} dead, "
                     f"entropy {s.entropy_norm:.2f} of max",
               xlabel="expert id (sorted by eval load)", ylabel="load / fair share")
    handles = [Patch(color="0.6", label="eval-set load E·n_i/Σn (bar colour = key cluster)"),
               Line2D([], [], color="k", marker=".", ls="", ms=7, label="Knowledge Gravity usage u_i"),
               Line2D([], [], color="0.3", ls="--", label="fair share (1)"),
               Patch(color="0.88", label="dead (n_i = 0)")]
    fig.legend(handles=handles, loc="lower center", ncol=4, frameon=False, bbox_to_anchor=(0.5, -0.01))
    height = 3.9 * nrows
    fig.suptitle(f"Expert load at step {step}", fontsize=12)
    fig.tight_layout(rect=(0, 0.35 / height, 1, 1 - 0.15 / height))
    return _save(fig, out, "usage.png")


def _marker_sizes(load: np.ndarray) -> np.ndarray:
    top = load.max() if load.size and load.max() > 0 else 1.0
    return 25 + 475 * load / top


def _draw_experts(ax, s: LayerSummary, label_ids: bool):
    colors = _cluster_colors(s.clustering.k)
    live = s.data.counts > 0
    sizes = _marker_sizes(s.load)
    ax.scatter(s.xy[live, 0], s.xy[live, 1], s=sizes[live], c=[colors[c] for c in s.clustering.labels[live]],
               edgecolors="k", linewidths=0.6, alpha=0.9, zorder=3)
    if (~live).any():  # dead: an X in its cluster's colour
        ax.scatter(s.xy[~live, 0], s.xy[~live, 1], s=70, marker="X", c=[colors[c] for c in s.clustering.labels[~live]],
                   edgecolors="k", linewidths=0.6, alpha=0.9, zorder=3)
    if label_ids:
        for i, (x, y) in enumerate(s.xy):
            ax.annotate(str(i), (x, y), xytext=(4, 4), textcoords="offset points", fontsize=7, color="0.2",
                        zorder=4)
    pad = 0.08 * (np.ptp(s.xy, axis=0) + 1e-9)
    ax.set_xlim(s.xy[:, 0].min() - pad[0], s.xy[:, 0].max() + pad[0])
    ax.set_ylim(s.xy[:, 1].min() - pad[1], s.xy[:, 1].max() + pad[1])
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def plot_layer(s: LayerSummary, step: int, max_edges: int, out: Path) -> tuple[str, list]:
    plt = _plt()
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D
    fig, (ax_k, ax_c) = plt.subplots(1, 2, figsize=(15, 7))
    method = s.embedding.split(" ")[0]
    label_ids = s.E <= 64

    _draw_experts(ax_k, s, label_ids)
    sil = f"{s.clustering.silhouette:.3f}" if s.clustering.silhouette is not None else "n/a"
    ax_k.set_title(f"Layer {s.data.layer} key space at step {step}\n{s.embedding}; "
                   f"k = {s.clustering.k} KMeans clusters, cosine silhouette {sil}")
    ax_k.set(xlabel=f"{method} 1 (no units)", ylabel=f"{method} 2 (no units)")
    colors = _cluster_colors(s.clustering.k)
    handles = []
    for c in range(s.clustering.k):
        members = s.clustering.labels == c
        n_dead = int((members & (s.data.counts == 0)).sum())
        handles.append(Line2D([], [], marker="o", ls="", color=colors[c], mec="k", ms=8,
                              label=f"cluster {c}: {int(members.sum())} expert{'s' if members.sum() > 1 else ''}"
                                    f"{f', {n_dead} dead' if n_dead else ''}"))
    if s.dead:
        handles.append(Line2D([], [], marker="X", ls="", color="0.8", mec="k", ms=9,
                              label=f"dead expert (n_i = 0): {s.dead} of {s.E}"))
    top = float(s.load.max())
    if top > 0:
        for ref, text in ((1.0, "1x fair share"), (top, f"{top:.1f}x fair share (max)")):
            if ref <= top:
                handles.append(Line2D([], [], marker="o", ls="", color="0.85", mec="k",
                                      ms=math.sqrt(25 + 475 * ref / top), label=f"load {text}"))
    ax_k.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False,
                labelspacing=1.3, handletextpad=1.4, borderpad=0.8)

    edges = A.top_edges(s.coact_norm, max_edges)
    if edges:
        wmax = edges[0][2]
        segs = [(s.xy[i], s.xy[j]) for i, j, _ in reversed(edges)]   # strongest drawn last (on top)
        ws = np.array([w for _, _, w in reversed(edges)])
        cmap = plt.get_cmap("viridis")
        lc = LineCollection(segs, linewidths=0.4 + 5.0 * ws / wmax, colors=cmap(ws / wmax), alpha=0.8, zorder=2)
        ax_c.add_collection(lc)
        sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, wmax))
        fig.colorbar(sm, ax=ax_c, shrink=0.7, pad=0.02, label="C_ij / √(n_i n_j)  (edge colour and width)")
    else:
        ax_c.text(0.5, 0.02, "no co-activations (top_k = 1 or no tokens)", ha="center", transform=ax_c.transAxes,
                  color="0.3")
    _draw_experts(ax_c, s, label_ids)
    corr = f", corr(key cos, strength) = {s.coact_corr:.2f}" if s.coact_corr is not None else ""
    n_pairs = int((np.triu(s.coact_norm, 1) > 0).sum())
    ax_c.set_title(f"Layer {s.data.layer} co-activation graph (same positions)\n"
                   f"strongest {len(edges)} of {n_pairs} co-selected pairs{corr}")
    ax_c.set(xlabel=f"{method} 1 (no units)", ylabel=f"{method} 2 (no units)")
    fig.tight_layout()
    return _save(fig, out, f"layer_{s.data.layer}_keys.png"), edges


# ---------------------------------------------------------------------------------------------
# report.md
# ---------------------------------------------------------------------------------------------

def _printable(text: str) -> str:
    """Control characters (a young model samples byte tokens) as their visible Unicode pictures."""
    return "".join(chr(0x2400 + ord(c)) if ord(c) < 32 and c not in "\n\t" else "\u2421" if c == "\x7f" else c
                   for c in text)


def _fmt(x, spec=".3f"):
    return "n/a" if x is None else format(x, spec)


def _config_line(cfg: dict) -> str:
    m, g, t = cfg.get("model", {}), cfg.get("gravity", {}), cfg.get("train", {})
    if not m:
        return ""
    parts = [f"ffn `{m.get('ffn', '?')}`", f"{m.get('n_layers', '?')} layers", f"d_model {m.get('d_model', '?')}"]
    if m.get("ffn", "some") != "dense":
        parts += [f"E = {m.get('num_experts', '?')} experts, top-{m.get('top_k', '?')}",
                  f"SoME layers `{m.get('some_layers', '?')}`"]
    if m.get("ffn", "some") == "some" and g:
        parts.append(f"gravity α {g.get('alpha')} β {g.get('beta')} δ {g.get('delta')} usage `{g.get('usage')}`")
    if t:
        parts.append(f"{t.get('max_steps', '?')} steps of {t.get('global_batch', '?')}×{t.get('seq_len', '?')} "
                     f"tokens, eval every {t.get('eval_every', '?')}")
    return "; ".join(parts)


def _status(m: Metrics) -> str:
    last_step = max([l["step"] for l in m.train + m.evals], default=0)
    if m.end is None:
        return f"in progress (no `done` line yet; last logged step {last_step})"
    if m.end.get("event") == "preempted":
        return f"preempted at step {m.end['step']}"
    stopped = " (stopped by the time limit)" if m.end.get("stopped_by_time") else ""
    elapsed = m.end.get("elapsed_s")
    took = f" in {elapsed / 60:.1f} min" if isinstance(elapsed, (int, float)) else ""
    return f"finished at step {m.end['step']}{took}{stopped}"


def write_markdown(out: Path, run: Path, cfg: dict, cfg_source: str, m: Metrics, step: int | None,
                   layers: list[LayerSummary], images: dict, warnings: list[str], notes: list[str],
                   edges: dict[int, list]) -> Path:
    lines = [f"# SoME run report: `{run.resolve().name}`", ""]
    lines += [f"- Run directory: `{run.resolve()}`", f"- Status: {_status(m)}"]
    cl = _config_line(cfg)
    lines.append(f"- Config ({cfg_source}): {cl}" if cl else f"- Config: {cfg_source}")
    final = m.evals[-1] if m.evals else None
    if final:
        uni = final.get("unigram_ppl")
        ratio = f" = {final['val_ppl'] / uni:.2f}× the unigram PPL" if uni else ""
        lines.append(f"- Final eval (step {final['step']}): val loss {final['val_loss']:.4f}, "
                     f"**val PPL {final['val_ppl']:.2f}** vs **unigram PPL {_fmt(uni, '.2f')}**{ratio}")
    if m.train:
        lines.append(f"- Train loss {m.train[0]['loss']:.4f} (step {m.train[0]['step']}) → "
                     f"{m.train[-1]['loss']:.4f} (step {m.train[-1]['step']})")
    lines += ["", "## Training curves", "", f"![loss and perplexity]({images['curves']})", ""]

    if not layers:
        ffn = cfg.get("model", {}).get("ffn")
        why = f"model.ffn = `{ffn}`" if ffn else "no config"
        lines += ["## Routing", "", f"> **No routing analytics in this run** ({why}, no `analytics/step_*.h5` "
                  "files): the report has the loss and perplexity curves only.", ""]
    else:
        lines += ["## Routing over training", "",
                  "Per SoME layer, from the eval lines of `metrics.jsonl` (thick, with markers) and the training "
                  "batches of the log lines (thin).", "", f"![routing over training]({images['routing']})", ""]
        lines += [f"## Routing at step {step} (`analytics/step_{step:08d}.h5`)", "",
                  "Recomputed from the analytics file: load statistics of the eval-set selections n_i "
                  "(dead = n_i = 0), entropy in nats and divided by log E, KMeans clusters of the "
                  "unit-normalised keys (k with the best cosine silhouette over 2..min(8, E−1)), mean pairwise key "
                  "cosine and key norm, and the correlation over live expert pairs of key cosine with the "
                  "normalised co-activation C_ij/√(n_i n_j).", "", "<!-- routing-table -->",
                  "| layer | E | dead | Gini | entropy (nats) | entropy / log E | k | silhouette | mean key cos "
                  "| mean key norm | corr(cos, co-act) |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for s in layers:
            lines.append(f"| {s.data.layer} | {s.E} | {s.dead} | {s.gini:.4f} | {s.entropy:.4f} | "
                         f"{s.entropy_norm:.4f} | {s.clustering.k} | {_fmt(s.clustering.silhouette, '.4f')} | "
                         f"{s.key_cos:.4f} | {s.key_norm:.4f} | {_fmt(s.coact_corr, '.3f')} |")
        lines += ["", "Silhouette reads as: > 0.7 strong, 0.5–0.7 reasonable, 0.25–0.5 weak cluster structure, "
                  "< 0.25 none to speak of (the keys are spread, not grouped). Dead experts' keys are clustered too.",
                  ""]
        if warnings:
            lines += ["> **WARNING: the recomputed metrics disagree with the trainer's `metrics.jsonl` "
                      f"(tolerance {TOLERANCE:g}):**", ">"]
            lines += [f"> - {w}" for w in warnings]
        else:
            lines.append(f"Cross-check: Gini, entropy, normalised entropy, dead experts, key cosine and key norm "
                         f"match the trainer's step-{step} eval line within {TOLERANCE:g} for every layer.")
        lines += ["", f"![expert load]({images['usage']})", ""]
        for s in layers:
            top = ", ".join(f"{i}–{j} ({w:.2f})" for i, j, w in edges[s.data.layer][:5]) or "none"
            scores = ", ".join(f"k={k}: {v:.3f}" for k, v in s.clustering.scores.items()) or "no k tried"
            lines += [f"### Layer {s.data.layer}", "",
                      f"![layer {s.data.layer} key space and co-activation]({images['layers'][s.data.layer]})", "",
                      f"- Silhouette by k: {scores}",
                      f"- Strongest co-activated pairs (C_ij/√(n_i n_j)): {top}", ""]

    samples = [(l["step"], l.get("val_ppl"), l["sample"]) for l in m.evals if l.get("sample")]
    lines += ["## Eval samples", ""]
    if samples:
        for st, ppl, text in samples:
            text = _printable(text).replace("```", "'''")
            lines += [f"**Step {st}** (val PPL {_fmt(ppl, '.2f')}):", "", "```text", text, "```", ""]
    else:
        lines += ["No samples in the eval lines (train.sample_tokens = 0, or a run from before samples were "
                  "logged).", ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------

def make_report(run: Path, out: Path, step: int | None, method: str) -> Path:
    if not run.is_dir():
        raise ReportError(f"{run}: no such run directory (a run holds {run / 'metrics.jsonl'})")
    m = load_metrics(run)
    cfg, cfg_source = load_config(run)
    notes = list(m.notes)
    files = analytics_files(run)
    if method == "umap":
        try:
            import umap  # noqa: F401
        except ImportError:
            notes.append("UMAP was requested but the `umap` package does not import here (pip install umap-learn); "
                         "the key space is drawn with t-SNE instead.")
            method = "tsne"

    layers: list[LayerSummary] = []
    if files:
        if step is None:
            step = max(files)
        elif step not in files:
            raise ReportError(f"{run / 'analytics' / f'step_{step:08d}.h5'}: no such analytics file "
                              f"(steps with analytics: {', '.join(map(str, files))})")
        layers = [summarize(d, method) for d in load_analytics(files[step])]
    elif step is not None:
        raise ReportError(f"{run / 'analytics'}: no analytics files, so --step {step} cannot be shown")
    else:
        step = None

    out.mkdir(parents=True, exist_ok=True)
    images: dict = {"curves": plot_curves(m, out)}
    warnings, edges = [], {}
    if layers:
        evals_by_step = {l["step"]: l for l in m.evals}
        warnings = cross_check(layers, evals_by_step.get(step), step)
        for w in warnings:
            print(f"report.py: WARNING: {w}", file=sys.stderr)
        layer_ids = sorted({r["layer"] for l in m.evals + m.train for r in (l.get("routing") or [])}
                           | {s.data.layer for s in layers})
        images["routing"] = plot_routing_over_training(m, layer_ids, layers[0].E, out)
        images["usage"] = plot_usage(layers, step, out)
        images["layers"] = {}
        for s in layers:
            images["layers"][s.data.layer], edges[s.data.layer] = plot_layer(s, step, max_edges=max(64, s.E), out=out)
    return write_markdown(out, run, cfg, cfg_source, m, step, layers, images, warnings, notes, edges)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Routing-analytics report of a SoME run directory.")
    p.add_argument("run", type=Path, help="run directory (metrics.jsonl, analytics/, config.toml)")
    p.add_argument("--out", type=Path, help="output directory (default RUN/report)")
    p.add_argument("--step", type=int, help="analytics step to plot (default: the last)")
    p.add_argument("--method", choices=("tsne", "umap"), default="tsne", help="2-D embedding of the keys")
    a = p.parse_args(argv)
    try:
        path = make_report(a.run, a.out or a.run / "report", a.step, a.method)
    except ReportError as e:
        print(f"report.py: error: {e}", file=sys.stderr)
        return 1
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
