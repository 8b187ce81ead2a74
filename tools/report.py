#!/usr/bin/env python3
"""Routing-analytics report of a run directory (docs/design.md §9): PNG plots and report.md.

    report.py RUN [--out DIR] [--step N] [--method tsne|umap]

Reads RUN/metrics.jsonl (required), RUN/analytics/step_XXXXXXXX.h5 (one per eval, routed layers
only), RUN/config.toml (or the config in the latest checkpoint's manifest). Writes to DIR
(default RUN/report/): report.md and the PNGs it embeds. Gini, entropy, dead experts and key
geometry are recomputed from the analytics file (tools/analytics.py) and checked against the
trainer's numbers in metrics.jsonl. Exit status: 0 on success, 1 for a missing or unreadable
input (the message names the file), 2 for bad arguments.

Routers (model.ffn): `some` layers have keys and Knowledge-Gravity usage in the analytics file.
The baselines have counts and co-activation only: for `moe` the rows of the learned gate W_g
(from a checkpoint, else RUN/model.h5) take the place of the keys; `hash` routing has no
learned vectors, so its experts are placed by their co-activation (classical MDS). `dense`
runs get the loss curves only.
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
    keys: np.ndarray | None   # (E, d) SoME routing keys; None for the baselines
    usage: np.ndarray | None  # (E,) Knowledge-Gravity usage u_i (EMA or cumulative; 1 = fair share); SoME only
    counts: np.ndarray        # (E,) eval-set selections n_i
    coact: np.ndarray         # (E, E) eval-set co-activation counts


def load_analytics(path: Path) -> list[LayerData]:
    import h5py
    try:
        with h5py.File(path, "r") as f:
            if "layers" not in f:
                raise ReportError(f"{path}: no /layers group")
            out = []
            for name in sorted(f["layers"], key=int):
                g = f["layers"][name]
                missing = [k for k in ("counts", "coactivation") if k not in g]
                if missing:
                    raise ReportError(f"{path}: /layers/{name} lacks {', '.join(missing)}")
                opt = {k: (g[k][()] if k in g else None) for k in ("keys", "usage")}
                out.append(LayerData(int(name), opt["keys"], opt["usage"], g["counts"][()], g["coactivation"][()]))
            return out
    except OSError as e:
        raise ReportError(f"{path}: cannot read as HDF5 ({e})") from e


# ---------------------------------------------------------------------------------------------
# The run's router, and the MoE gate from a checkpoint
# ---------------------------------------------------------------------------------------------

@dataclass
class Router:
    kind: str    # "some" | "moe" | "hash" | "dense" | "unknown"
    short: str   # for the title, e.g. "MoE, balance aux_loss"
    line: str    # one Markdown sentence for the header


MOE_BALANCE = {"aux_loss": "Switch auxiliary load-balancing loss E·Σ f_i P_i, weight {aux_loss}",
               "bias": "selection bias b_i += {bias_rate}·sign(mean load − load_i) after every step "
                       "(steers the top-k choice only, not the gate values)",
               "none": "no load balancing"}


def router_of(cfg: dict, layers: list[LayerData]) -> Router:
    """Which router the run used, from RUN/config.toml (model.ffn, moe.balance); the analytics file
    tells SoME apart when there is no config."""
    m, moe, r = cfg.get("model", {}), cfg.get("moe", {}), cfg.get("router", {})
    ffn = m.get("ffn")
    if ffn is None:
        if layers and all(d.keys is not None for d in layers):
            ffn = "some"
        else:
            what = "routed layers without keys" if layers else "no routing analytics"
            return Router("unknown", "router unknown", f"unknown (no `model.ffn` in the config; {what})")
    k, e = m.get("top_k", "?"), m.get("num_experts", "?")
    if ffn == "some":
        return Router("some", "SoME",
                      f"**SoME**: a learned query scored against per-expert routing keys (score "
                      f"`{r.get('score', '?')}`, temperature {r.get('temperature', '?')}), top-{k} of E = {e}; "
                      + ("the keys are frozen (`router.freeze_keys`)" if r.get("freeze_keys")
                         else "the keys are moved by Knowledge Gravity, not by gradients"))
    if ffn == "moe":
        balance = moe.get("balance", "?")
        how = MOE_BALANCE.get(balance, "`{balance}`").format(aux_loss=moe.get("aux_loss", "?"),
                                                             bias_rate=moe.get("bias_rate", "?"), balance=balance)
        return Router("moe", f"MoE, balance {balance}",
                      f"**MoE** baseline: learned gate W_g, softmax over E = {e} experts, top-{k}; "
                      f"`moe.balance = {balance}`: {how}")
    if ffn == "hash":
        return Router("hash", "hash routing",
                      f"**hash** baseline: each token id goes to {k} fixed experts of E = {e} (a seeded hash of "
                      f"the id, equal gates); nothing in the router is learned")
    if ffn == "dense":
        return Router("dense", "dense FFN", f"**dense** FFN (d_ff = {m.get('d_ff', '?')}): no routing")
    return Router("unknown", f"model.ffn = {ffn}", f"`model.ffn = {ffn}` (not a router this report knows)")


@dataclass
class Gate:
    weights: dict[int, np.ndarray]   # layer -> W_g (E, d)
    bias: dict[int, np.ndarray]      # layer -> selection bias b (E,)
    source: str                      # e.g. "checkpoint step 20"
    step: int | None


def _checkpoints(run: Path) -> list[tuple[int, Path]]:
    """(step, directory) of RUN/checkpoints/step_* with a manifest, the one `latest` names first,
    then by descending step."""
    d = run / "checkpoints"
    if not d.is_dir():
        return []
    found = {}
    for p in d.iterdir():
        m = re.match(r"^step_(\d+)$", p.name)
        if m and (p / "manifest.json").is_file():
            found[int(m.group(1))] = p
    latest = d / "latest"
    first = latest.read_text().strip() if latest.is_file() else None
    return sorted(found.items(), key=lambda t: (t[1].name != first, -t[0]))


def load_moe_gate(run: Path, step: int, layer_ids: list[int]) -> tuple[Gate | None, list[str]]:
    """The gate W_g (`layers.L.moe.gate.weight`) and bias (`layers.L.moe.bias`) of every layer:
    from the checkpoint of the analytics step if there is one, else the latest checkpoint, else
    RUN/model.h5 (`some checkpoint convert`). (None, notes) when none of them holds them."""
    import h5py
    names = {l: (f"layers.{l}.moe.gate.weight", f"layers.{l}.moe.bias") for l in layer_ids}
    cands = _checkpoints(run)
    cands.sort(key=lambda t: t[0] != step)  # the analytics step's own checkpoint first (stable sort)
    notes = []
    for st, d in cands:
        try:
            tensors = json.loads((d / "manifest.json").read_text()).get("tensors", {})
            w, b = {}, {}
            for l, (wn, bn) in names.items():
                for name, into in ((wn, w), (bn, b)):
                    rec = tensors.get(name)
                    if rec is None:
                        continue
                    with h5py.File(d / rec["file"], "r") as f:
                        into[l] = np.asarray(f[name][()], dtype=np.float64)
            if w:
                return Gate(w, b, f"checkpoint step {st}", st), notes
            notes.append(f"{d.relative_to(run)}: no `layers.L.moe.gate.weight` tensors.")
        except (OSError, KeyError, ValueError) as e:
            notes.append(f"{d.relative_to(run)}: cannot read the MoE gate ({e}).")
    model = run / "model.h5"
    if model.is_file():
        try:
            with h5py.File(model, "r") as f:
                w = {l: np.asarray(f[wn][()], dtype=np.float64) for l, (wn, _) in names.items() if wn in f}
                b = {l: np.asarray(f[bn][()], dtype=np.float64) for l, (_, bn) in names.items() if bn in f}
            if w:
                return Gate(w, b, "model.h5", None), notes
        except OSError as e:
            notes.append(f"model.h5: cannot read the MoE gate ({e}).")
    notes.append("No checkpoint or model.h5 holds the MoE gate: its experts are placed by co-activation "
                 "instead of by their gate vectors.")
    return None, notes


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
    vectors: np.ndarray | None     # (E, d) what places the experts: SoME keys or MoE gate rows; None (hash)
    vector_kind: str | None        # "keys" | "gate" | None
    key_cos: float | None          # mean pairwise cosine of the vectors
    key_norm: float | None         # mean norm of the vectors
    clustering: A.Clustering | None
    xy: np.ndarray                 # (E, 2) positions of the experts in the layer figure
    embedding: str                 # how xy was made
    coact_norm: np.ndarray         # (E, E) C_ij / sqrt(n_i n_j)
    coact_corr: float | None       # corr(vector cosine, coact_norm) over live pairs
    bias: np.ndarray | None = None  # (E,) MoE selection bias

    @property
    def E(self) -> int:
        return self.data.counts.size

    @property
    def load(self) -> np.ndarray:
        """Eval-set load relative to a fair share: E * n_i / sum(n) (1 = fair; same units as usage)."""
        total = self.data.counts.sum()
        return self.E * self.data.counts / total if total > 0 else np.zeros(self.E)

    @property
    def labels(self) -> np.ndarray:
        return self.clustering.labels if self.clustering else np.zeros(self.E, dtype=int)

    def colors(self) -> list:
        """Colour of every expert: its cluster's, or one colour when there are no clusters."""
        if self.clustering is None:
            return ["tab:blue"] * self.E
        palette = _cluster_colors(self.clustering.k)
        return [palette[c] for c in self.clustering.labels]


def summarize(d: LayerData, method: str, gate: np.ndarray | None = None, bias: np.ndarray | None = None
              ) -> LayerSummary:
    """SoME: the keys place the experts. MoE: the gate rows W_g[i] (given) do. Hash, or MoE without
    a gate: the co-activation does (tools/analytics.py coactivation_layout), with no clusters."""
    vectors, kind = (d.keys, "keys") if d.keys is not None else (gate, "gate") if gate is not None else (None, None)
    coact_norm = A.normalized_coactivation(d.coact, d.counts)
    base = dict(data=d, gini=A.gini(d.counts), entropy=A.entropy_nats(d.counts),
                entropy_norm=A.entropy_norm(d.counts), dead=A.dead_experts(d.counts), coact_norm=coact_norm,
                bias=bias)
    if vectors is None:
        xy, how = A.coactivation_layout(d.coact, d.counts)
        return LayerSummary(**base, vectors=None, vector_kind=None, key_cos=None, key_norm=None, clustering=None,
                            xy=xy, embedding=how, coact_corr=None)
    xy, how = A.embed_2d(vectors, method=method, seed=0)
    return LayerSummary(**base, vectors=vectors, vector_kind=kind, key_cos=A.mean_pairwise_cosine(vectors),
                        key_norm=A.mean_key_norm(vectors), clustering=A.cluster_keys(vectors, k_max=8, seed=0),
                        xy=xy, embedding=how,
                        coact_corr=A.coactivation_key_correlation(d.coact, d.counts, vectors))


def cross_check(layers: list[LayerSummary], eval_line: dict | None, step: int) -> list[str]:
    """Warnings where the recomputed metrics and the trainer's eval line disagree beyond TOLERANCE.
    Key geometry is the trainer's for SoME layers only (the MoE gate rows are this report's own)."""
    if eval_line is None:
        return [f"metrics.jsonl has no eval line for step {step}: the analytics could not be cross-checked."]
    trainer = {r["layer"]: r for r in eval_line.get("routing", [])}
    out = []
    for s in layers:
        r = trainer.get(s.data.layer)
        if r is None:
            out.append(f"layer {s.data.layer}: in the analytics file but not in the step-{step} eval line.")
            continue
        checks = [("gini", s.gini), ("entropy", s.entropy), ("entropy_norm", s.entropy_norm),
                  ("dead_experts", s.dead)]
        if s.vector_kind == "keys":
            checks += [("key_cos", s.key_cos), ("key_norm", s.key_norm)]
        for name, mine in checks:
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


PANEL_NAMES = {"gini": "Gini", "entropy_norm": "normalised entropy", "dead_experts": "dead experts",
               "churn": "churn", "top1_score": "top-1 score", "key_cos": "mean key cosine"}


def routing_panels(m: Metrics) -> list[tuple[str, str, str]]:
    """The ROUTING_PANELS whose metric the trainer logged in some routing entry (the baselines log
    no top-1 score or key geometry); the four load panels when nothing was logged at all."""
    present = {k for l in m.train + m.evals for r in (l.get("routing") or []) for k in r}
    panels = [p for p in ROUTING_PANELS if p[0] in present]
    return panels or ROUTING_PANELS[:4]


def plot_routing_over_training(m: Metrics, layer_ids: list[int], E: int | None, router: Router, out: Path) -> str:
    plt = _plt()
    from matplotlib.lines import Line2D
    panels = routing_panels(m)
    n = len(panels)
    ncols = 2 if n <= 4 else 3
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.6 * ncols if ncols == 2 else 15, 4 * nrows), sharex=True,
                             squeeze=False)
    colors = dict(zip(layer_ids, _layer_colors(len(layer_ids))))
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for idx, (ax, (key, title, ylabel)) in enumerate(zip(axes.flat, panels)):
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
        elif key == "churn" and router.kind == "hash":
            ax.text(0.5, 0.6, "0 by construction: a token's experts\ndepend on its id only", ha="center",
                    va="center", transform=ax.transAxes, color="0.35", fontsize=9)
        if key == "dead_experts" and E:
            ax.set_ylim(-0.5, E * 1.12 + 0.5)
            ax.axhline(E, color="0.5", lw=0.9, ls=":")
            ax.text(0.99, E, f"all E = {E} experts", va="bottom", ha="right", color="0.35", fontsize=8,
                    transform=ax.get_yaxis_transform())
        if key in ("gini", "entropy_norm"):
            ax.set_ylim(-0.02, 1.02)
        elif key == "churn" and drawn:
            top = max((r.get("churn") or 0) for l in m.train + m.evals for r in (l.get("routing") or []))
            ax.set_ylim(-0.02, max(1.1 * top, 0.1))
        elif key == "top1_score" and drawn:
            ax.set_ylim(bottom=0)
        ax.set(title=title, ylabel=ylabel)
        if idx + ncols >= n:  # lowest panel of its column
            ax.set_xlabel("optimizer step")
            ax.xaxis.set_tick_params(labelbottom=True)
    handles = [Line2D([], [], color=colors[l], lw=2, label=f"layer {l}") for l in layer_ids]
    handles += [Line2D([], [], color="0.3", lw=1.8, marker="o", ms=4, label="eval set"),
                Line2D([], [], color="0.3", lw=0.9, alpha=0.5, label="training batch (log lines)")]
    fig.suptitle(f"Routing over training ({router.short})", fontsize=12)
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8 if ncols == 3 else 4), frameon=False,
               bbox_to_anchor=(0.5, -0.01))
    legend_rows = math.ceil(len(handles) / (8 if ncols == 3 else 4))
    fig.tight_layout(rect=(0, (0.3 + 0.25 * legend_rows) / (4 * nrows), 1, 1))
    return _save(fig, out, "routing_over_training.png")


def plot_usage(layers: list[LayerSummary], step: int, router: Router, out: Path) -> str:
    plt = _plt()
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    n = len(layers)
    ncols = min(2, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(7.2 * ncols, 3.9 * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    has_usage = any(s.data.usage is not None for s in layers)
    has_bias = any(s.bias is not None and np.any(s.bias != 0) for s in layers)
    for ax, s in zip(axes.flat, layers):
        order = np.argsort(-s.load, kind="stable")
        colors = s.colors()
        x = np.arange(s.E)
        ax.bar(x, s.load[order], color=[colors[i] for i in order], width=0.85)
        if s.data.usage is not None:
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
        ax.set_ylim(0, max(1.15, float(s.load.max()) * 1.08,
                           float(s.data.usage.max()) * 1.08 if s.data.usage is not None else 0))
        ax.set(title=f"Layer {s.data.layer}: Gini {s.gini:.3f}, {s.dead}/{s.E} dead, "
                     f"entropy {s.entropy_norm:.2f} of max",
               xlabel="expert id (sorted by eval load)", ylabel="load / fair share")
        if s.bias is not None and np.any(s.bias != 0):
            tw = ax.twinx()
            tw.plot(x, s.bias[order], "D", color="tab:red", ms=4 if s.E <= 64 else 2, mec="k", mew=0.4)
            tw.axhline(0, color="tab:red", lw=0.8, ls=":", alpha=0.7)
            lim = float(np.abs(s.bias).max()) * 1.15
            tw.set_ylim(-lim, lim)
            tw.set_ylabel("selection bias b_i", color="tab:red")
            tw.tick_params(axis="y", colors="tab:red")
            tw.grid(False)
    what = {"keys": " (bar colour = key cluster)", "gate": " (bar colour = gate-row cluster)"}
    kinds = {s.vector_kind for s in layers}
    handles = [Patch(color="0.6" if kinds - {None} else "tab:blue",
                     label="eval-set load E·n_i/Σn" + (what.get(kinds.pop(), "") if len(kinds) == 1 else ""))]
    if has_usage:
        handles.append(Line2D([], [], color="k", marker=".", ls="", ms=7, label="Knowledge Gravity usage u_i"))
    if has_bias:
        handles.append(Line2D([], [], color="tab:red", marker="D", mec="k", mew=0.4, ls="", ms=5,
                              label="MoE selection bias b_i (right axis)"))
    handles.append(Line2D([], [], color="0.3", ls="--", label="fair share (1)"))
    if any(s.dead for s in layers):
        handles.append(Patch(color="0.88", label="dead (n_i = 0)"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, bbox_to_anchor=(0.5, -0.01))
    height = 3.9 * nrows
    fig.suptitle(f"Expert load at step {step} ({router.short})", fontsize=12)
    fig.tight_layout(rect=(0, 0.35 / height, 1, 1 - 0.15 / height))
    return _save(fig, out, "usage.png")


def _marker_sizes(load: np.ndarray) -> np.ndarray:
    top = load.max() if load.size and load.max() > 0 else 1.0
    return 25 + 475 * load / top


def _draw_experts(ax, s: LayerSummary, label_ids: bool):
    colors = np.array(s.colors(), dtype=object)
    live = s.data.counts > 0
    sizes = _marker_sizes(s.load)
    ax.scatter(s.xy[live, 0], s.xy[live, 1], s=sizes[live], c=list(colors[live]),
               edgecolors="k", linewidths=0.6, alpha=0.9, zorder=3)
    if (~live).any():  # dead: an X in its cluster's colour
        ax.scatter(s.xy[~live, 0], s.xy[~live, 1], s=70, marker="X", c=list(colors[~live]),
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


def _expert_legend(ax, s: LayerSummary, below: bool = False):
    """Clusters (or one entry for all experts), dead experts and the load scale of the markers: right
    of the axes, or in a row below them (where a colour bar takes the right)."""
    from matplotlib.lines import Line2D
    handles = []
    if s.clustering is not None:
        colors = _cluster_colors(s.clustering.k)
        for c in range(s.clustering.k):
            members = s.clustering.labels == c
            n_dead = int((members & (s.data.counts == 0)).sum())
            handles.append(Line2D([], [], marker="o", ls="", color=colors[c], mec="k", ms=8,
                                  label=f"cluster {c}: {int(members.sum())} expert{'s' if members.sum() > 1 else ''}"
                                        f"{f', {n_dead} dead' if n_dead else ''}"))
    else:
        handles.append(Line2D([], [], marker="o", ls="", color="tab:blue", mec="k", ms=8,
                              label=f"expert (E = {s.E}; no clusters: no keys)"))
    if s.dead:
        handles.append(Line2D([], [], marker="X", ls="", color="0.8", mec="k", ms=9,
                              label=f"dead expert (n_i = 0): {s.dead} of {s.E}"))
    top = float(s.load.max())
    if top > 0:
        for ref, text in ((1.0, "1x fair share"), (top, f"{top:.1f}x fair share (max)")):
            if ref <= top:
                handles.append(Line2D([], [], marker="o", ls="", color="0.85", mec="k",
                                      ms=math.sqrt(25 + 475 * ref / top), label=f"load {text}"))
    if below:
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=len(handles), fontsize=8,
                  frameon=False, handletextpad=0.8, columnspacing=1.6, borderpad=0.4)
    else:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False,
                  labelspacing=1.3, handletextpad=1.4, borderpad=0.8)


def _draw_coactivation_graph(fig, ax, s: LayerSummary, edges: list):
    plt = _plt()
    from matplotlib.collections import LineCollection
    if edges:
        wmax = edges[0][2]
        segs = [(s.xy[i], s.xy[j]) for i, j, _ in reversed(edges)]   # strongest drawn last (on top)
        ws = np.array([w for _, _, w in reversed(edges)])
        cmap = plt.get_cmap("viridis")
        lc = LineCollection(segs, linewidths=0.4 + 5.0 * ws / wmax, colors=cmap(ws / wmax), alpha=0.8, zorder=2)
        ax.add_collection(lc)
        sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, wmax))
        fig.colorbar(sm, ax=ax, shrink=0.7, pad=0.02, label="C_ij / √(n_i n_j)  (edge colour and width)")
    else:
        ax.text(0.5, 0.02, "no co-activations (top_k = 1 or no tokens)", ha="center", transform=ax.transAxes,
                color="0.3")
    _draw_experts(ax, s, s.E <= 64)


def _short_method(embedding: str) -> str:
    for name in ("t-SNE", "UMAP", "PCA"):
        if name in embedding:
            return name
    return ""


def plot_layer(s: LayerSummary, step: int, max_edges: int, gate: Gate | None, out: Path) -> tuple[str, list]:
    """Routers with vectors (SoME keys, MoE gate rows): their 2-D embedding coloured by cluster, and
    the co-activation graph at the same positions. Without (hash): the co-activation matrix and the
    co-activation graph laid out by it."""
    plt = _plt()
    fig, (ax_k, ax_c) = plt.subplots(1, 2, figsize=(15, 7))
    method = _short_method(s.embedding)
    edges = A.top_edges(s.coact_norm, max_edges)
    n_pairs = int((np.triu(s.coact_norm, 1) > 0).sum())
    if s.vector_kind is not None:
        _draw_experts(ax_k, s, s.E <= 64)
        sil = f"{s.clustering.silhouette:.3f}" if s.clustering.silhouette is not None else "n/a"
        if s.vector_kind == "keys":
            space = f"Layer {s.data.layer} key space at step {step}"
        else:
            at = f"{gate.source}" + (f"; analytics of step {step}" if gate.step != step else "")
            space = f"Layer {s.data.layer} gate space: rows W_g[i] of the MoE gate ({at})"
        ax_k.set_title(f"{space}\n{s.embedding}; k = {s.clustering.k} KMeans clusters, cosine silhouette {sil}")
        ax_k.set(xlabel=f"{method} 1 (no units)", ylabel=f"{method} 2 (no units)")
        _expert_legend(ax_k, s)
        _draw_coactivation_graph(fig, ax_c, s, edges)
        vec = "key" if s.vector_kind == "keys" else "gate"
        corr = f", corr({vec} cos, strength) = {s.coact_corr:.2f}" if s.coact_corr is not None else ""
        ax_c.set_title(f"Layer {s.data.layer} co-activation graph (same positions)\n"
                       f"strongest {len(edges)} of {n_pairs} co-selected pairs{corr}")
        ax_c.set(xlabel=f"{method} 1 (no units)", ylabel=f"{method} 2 (no units)")
        name = f"layer_{s.data.layer}_keys.png"
    else:
        order = A.coactivation_order(s.data.coact, s.data.counts)
        mat = s.coact_norm[np.ix_(order, order)]
        vmax = float(mat.max()) if mat.max() > 0 else 1.0
        im = ax_k.imshow(np.where(np.eye(s.E, dtype=bool), np.nan, mat), cmap="viridis", vmin=0, vmax=vmax,
                         interpolation="nearest")
        im.set_cmap(im.get_cmap().with_extremes(bad="0.85"))
        if s.E <= 64:
            fs = 8 if s.E <= 16 else 6 if s.E <= 32 else 4
            ax_k.set_xticks(range(s.E), [str(i) for i in order], fontsize=fs, rotation=90)
            ax_k.set_yticks(range(s.E), [str(i) for i in order], fontsize=fs)
        else:
            ax_k.set_xticks([])
            ax_k.set_yticks([])
        ax_k.grid(False)
        if s.dead:
            edge = s.E - s.dead - 0.5
            ax_k.axhline(edge, color="w", lw=1.2)
            ax_k.axvline(edge, color="w", lw=1.2)
        fig.colorbar(im, ax=ax_k, shrink=0.7, pad=0.02, label="C_ij / √(n_i n_j)")
        if not n_pairs:
            ax_k.text(0.5, 0.5, "no co-activations\n(top_k = 1 or no tokens)", ha="center", va="center",
                      transform=ax_k.transAxes, color="0.2", fontsize=12,
                      bbox=dict(boxstyle="round", facecolor="w", edgecolor="0.6"))
        ax_k.set_title(f"Layer {s.data.layer} co-activation matrix at step {step}\n"
                       + ("C_ij/√(n_i n_j), diagonal grey; experts in average-linkage leaf order of 1 − C_ij/√(n_i n_j)\n"
                          "(co-selected experts side by side)" if n_pairs else "C_ij/√(n_i n_j), diagonal grey; experts by id")
                       + (", dead experts last" if s.dead else ""))
        ax_k.set(xlabel="expert id", ylabel="expert id")
        _draw_coactivation_graph(fig, ax_c, s, edges)
        _expert_legend(ax_c, s, below=True)
        pairs = f"strongest {len(edges)} of {n_pairs} co-selected pairs" if n_pairs else "no co-selected pairs"
        how = s.embedding.replace("; ", ";\n", 1)
        ax_c.set_title(f"Layer {s.data.layer} co-activation graph, experts placed by co-activation alone:\n"
                       f"{how}\n{pairs}")
        name = f"layer_{s.data.layer}_coactivation.png"
    fig.tight_layout()
    return _save(fig, out, name), edges

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
    ffn = m.get("ffn", "some")
    parts = [f"ffn `{ffn}`", f"{m.get('n_layers', '?')} layers", f"d_model {m.get('d_model', '?')}"]
    if ffn != "dense":
        parts += [f"E = {m.get('num_experts', '?')} experts, top-{m.get('top_k', '?')}",
                  f"{'SoME' if ffn == 'some' else 'routed'} layers `{m.get('routed_layers', m.get('some_layers', '?'))}`"]
    if ffn == "some" and g:
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


NA = "—"


def _routing_table(layers: list[LayerSummary], router: Router, gate: Gate | None) -> list[str]:
    """The table after <!-- routing-table -->, its footnotes below it. Columns that do not apply to a
    layer's router are NA."""
    kinds = {s.vector_kind for s in layers}
    vec = "gate-row" if router.kind == "moe" else "key"
    out = ["<!-- routing-table -->",
           f"| layer | E | dead | Gini | entropy (nats) | entropy / log E | k | silhouette | mean {vec} cos "
           f"| mean {vec} norm | corr(cos, co-act) |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in layers:
        if s.vector_kind is None:
            geo = [NA] * 5
        else:
            geo = [str(s.clustering.k), _fmt(s.clustering.silhouette, ".4f"), f"{s.key_cos:.4f}", f"{s.key_norm:.4f}",
                   _fmt(s.coact_corr, ".3f")]
        out.append(f"| {s.data.layer} | {s.E} | {s.dead} | {s.gini:.4f} | {s.entropy:.4f} | {s.entropy_norm:.4f} | "
                   + " | ".join(geo) + " |")
    out.append("")
    if "gate" in kinds:
        at = gate.source if gate else "?"
        out.append(f"For MoE layers the *gate-row* columns are of the rows W_g[i] of the learned gate ({at}): the "
                   "vector a token is scored against to reach expert i, the counterpart of a SoME key. They are "
                   "recomputed here only (the trainer logs no key metrics for the baselines), so they are not "
                   "cross-checked. The mean gate-row norm sets how peaked the softmax is.")
        out.append("")
    if None in kinds:
        why = {"hash": "hash routing has no keys and no learned gate",
               "moe": "no checkpoint or model.h5 with the MoE gate W_g was found (see Notes)"}.get(
                   router.kind, "these layers have no keys in the analytics file")
        out.append(f"{NA}: does not apply — {why}, so there are no clusters, no vector geometry and nothing to "
                   "correlate the co-activation with; the layer figure places the experts by co-activation alone.")
        out.append("")
    return out


def write_markdown(out: Path, run: Path, cfg: dict, cfg_source: str, m: Metrics, step: int | None,
                   layers: list[LayerSummary], images: dict, warnings: list[str], notes: list[str],
                   edges: dict[int, list], router: Router, gate: Gate | None) -> Path:
    lines = [f"# Run report: `{run.resolve().name}` ({router.short})", ""]
    lines += [f"- Run directory: `{run.resolve()}`", f"- Router: {router.line}", f"- Status: {_status(m)}"]
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
        panels = [PANEL_NAMES[k] for k, _, _ in routing_panels(m)]
        lines += ["## Routing over training", "",
                  "Per routed layer, from the eval lines of `metrics.jsonl` (thick, with markers) and the training "
                  f"batches of the log lines (thin): {', '.join(panels)}."]
        if router.kind in ("moe", "hash"):
            lines.append(f"The trainer logs no top-1 routing score or key geometry for {router.kind} layers, so those "
                         "panels are left out.")
        if router.kind == "hash":
            lines.append("Churn is 0 by construction: hash routing sends a token id to the same experts at every "
                         "step.")
        lines += ["", f"![routing over training]({images['routing']})", ""]
        lines += [f"## Routing at step {step} (`analytics/step_{step:08d}.h5`)", ""]
        intro = ("Recomputed from the analytics file: load statistics of the eval-set selections n_i "
                 "(dead = n_i = 0), entropy in nats and divided by log E")
        if router.kind == "some" or all(s.vector_kind == "keys" for s in layers):
            intro += (", KMeans clusters of the unit-normalised keys (k with the best cosine silhouette over "
                      "2..min(8, E−1)), mean pairwise key cosine and key norm, and the correlation over live expert "
                      "pairs of key cosine with the normalised co-activation C_ij/√(n_i n_j).")
        elif any(s.vector_kind == "gate" for s in layers):
            intro += (". The same key-space analysis as for SoME, on the rows of the MoE gate W_g: KMeans clusters "
                      "of the unit-normalised rows (k with the best cosine silhouette over 2..min(8, E−1)), their "
                      "mean pairwise cosine and norm, and the correlation over live expert pairs of gate-row cosine "
                      "with the normalised co-activation C_ij/√(n_i n_j).")
        else:
            intro += (", and the normalised co-activation C_ij/√(n_i n_j) (1 = two experts always selected "
                      "together). " + ("Hash routing has no keys, so nothing is clustered." if router.kind == "hash"
                                       else "Without keys or gate vectors nothing is clustered."))
        lines += [intro, ""]
        lines += _routing_table(layers, router, gate)
        if any(s.clustering is not None for s in layers):
            lines += ["Silhouette reads as: > 0.7 strong, 0.5–0.7 reasonable, 0.25–0.5 weak cluster structure, "
                      "< 0.25 none to speak of (the vectors are spread, not grouped). Dead experts are clustered too.",
                      ""]
        checked = "Gini, entropy, normalised entropy, dead experts"
        if any(s.vector_kind == "keys" for s in layers):
            checked += ", key cosine and key norm"
        if warnings:
            lines += ["> **WARNING: the recomputed metrics disagree with the trainer's `metrics.jsonl` "
                      f"(tolerance {TOLERANCE:g}):**", ">"]
            lines += [f"> - {w}" for w in warnings]
        else:
            lines.append(f"Cross-check: {checked} match the trainer's step-{step} eval line within {TOLERANCE:g} for "
                         "every layer.")
        usage_caption = {"some": "Bars: eval-set load per expert, coloured by key cluster; dots: the Knowledge "
                                 "Gravity usage u_i the trainer keeps.",
                         "moe": "Bars: eval-set load per expert (from the selection counts)"
                                + (", coloured by gate-row cluster" if any(s.vector_kind == "gate" for s in layers)
                                   else "") + ("; red diamonds: the selection bias b_i of `moe.balance = bias` (right "
                                             "axis; negative = pushed away from an over-loaded expert)"
                                             if any(s.bias is not None and np.any(s.bias != 0) for s in layers)
                                             else "") + ".",
                         "hash": "Bars: eval-set load per expert (from the selection counts). Hash routing cannot "
                                 "balance: the load follows the frequency of the token ids hashed to each expert."}
        lines += ["", f"![expert load]({images['usage']})", "", usage_caption.get(router.kind, ""), ""]
        for s in layers:
            top = ", ".join(f"{i}–{j} ({w:.2f})" for i, j, w in edges[s.data.layer][:5]) or "none"
            if s.vector_kind == "keys":
                alt = "key space and co-activation"
                cap = (f"Left: the keys embedded by {s.embedding}, coloured by KMeans cluster, marker area = eval load. "
                       "Right: the co-activation graph at the same positions.")
            elif s.vector_kind == "gate":
                alt = "gate space and co-activation"
                cap = (f"Left: the gate rows W_g[i] ({gate.source}) embedded by {s.embedding}, coloured by KMeans "
                       "cluster, marker area = eval load. Right: the co-activation graph at the same positions.")
            else:
                alt = "co-activation matrix and graph"
                cap = ("Left: the normalised co-activation matrix, experts in the order of the layout. Right: the "
                       f"co-activation graph, experts placed by {s.embedding} (no keys to place them by); "
                       "marker area = eval load.")
            lines += [f"### Layer {s.data.layer}", "", f"![layer {s.data.layer} {alt}]({images['layers'][s.data.layer]})",
                      "", cap, ""]
            if s.clustering is not None:
                scores = ", ".join(f"k={k}: {v:.3f}" for k, v in s.clustering.scores.items()) or "no k tried"
                lines.append(f"- Silhouette by k: {scores}")
            lines.append(f"- Strongest co-activated pairs (C_ij/√(n_i n_j)): {top}")
            if s.bias is not None and np.any(s.bias != 0):
                lo, hi = int(np.argmin(s.bias)), int(np.argmax(s.bias))
                lines.append(f"- Selection bias b_i: from {s.bias[lo]:+.4f} (expert {lo}) to {s.bias[hi]:+.4f} "
                             f"(expert {hi})")
            lines.append("")

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

    data: list[LayerData] = []
    if files:
        if step is None:
            step = max(files)
        elif step not in files:
            raise ReportError(f"{run / 'analytics' / f'step_{step:08d}.h5'}: no such analytics file "
                              f"(steps with analytics: {', '.join(map(str, files))})")
        data = load_analytics(files[step])
    elif step is not None:
        raise ReportError(f"{run / 'analytics'}: no analytics files, so --step {step} cannot be shown")
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
        evals_by_step = {l["step"]: l for l in m.evals}
        warnings = cross_check(layers, evals_by_step.get(step), step)
        for w in warnings:
            print(f"report.py: WARNING: {w}", file=sys.stderr)
        layer_ids = sorted({r["layer"] for l in m.evals + m.train for r in (l.get("routing") or [])}
                           | {s.data.layer for s in layers})
        images["routing"] = plot_routing_over_training(m, layer_ids, layers[0].E, router, out)
        images["usage"] = plot_usage(layers, step, router, out)
        images["layers"] = {}
        for s in layers:
            images["layers"][s.data.layer], edges[s.data.layer] = plot_layer(s, step, max(64, s.E), gate, out)
    # A layer figure of an earlier report into the same directory that this one did not rewrite
    # (other layers, or the other kind: keys vs co-activation) would lie about this run.
    for p in out.glob("layer_*.png"):
        if re.fullmatch(r"layer_\d+_(keys|coactivation)\.png", p.name) and p.name not in images.get("layers", {}).values():
            p.unlink()
    return write_markdown(out, run, cfg, cfg_source, m, step, layers, images, warnings, notes, edges, router, gate)

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Routing-analytics report of a run directory (SoME, MoE, hash or dense).")
    p.add_argument("run", type=Path, help="run directory (metrics.jsonl, analytics/, config.toml)")
    p.add_argument("--out", type=Path, help="output directory (default RUN/report)")
    p.add_argument("--step", type=int, help="analytics step to plot (default: the last)")
    p.add_argument("--method", choices=("tsne", "umap"), default="tsne", help="2-D embedding of the keys (MoE: gate rows)")
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
