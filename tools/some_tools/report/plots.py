"""The report's figures: loss and perplexity curves, routing over training, expert load, and per
layer the key (or gate-row) space with the co-activation graph, or for hash routing the
co-activation matrix. Each plot_* draws one PNG into OUT and returns its name.

Legend: E experts.
"""
import math
from pathlib import Path

import numpy as np

from some_tools import analytics, metrics, plotting
from some_tools.report.load import Gate, Router
from some_tools.report.summary import LayerSummary


def _cluster_colors(k: int):
    plt = plotting.pyplot()
    cmap = plt.get_cmap("tab10")
    return [cmap(i % 10) for i in range(max(k, 1))]


def _expert_colors(s: LayerSummary) -> list:
    """Colour of every expert: its cluster's, or one colour when there are no clusters."""
    if s.clustering is None:
        return ["tab:blue"] * s.E
    palette = _cluster_colors(s.clustering.k)
    return [palette[c] for c in s.clustering.labels]


def _layer_colors(n: int):
    plt = plotting.pyplot()
    cmap = plt.get_cmap("tab10" if n <= 10 else "viridis")
    return [cmap(i if n <= 10 else i / max(n - 1, 1)) for i in range(n)]


def plot_curves(m: metrics.Metrics, out: Path) -> str:
    plt = plotting.pyplot()
    fig, (ax_loss, ax_ppl) = plt.subplots(1, 2, figsize=(13, 4.6))
    if m.train:
        ax_loss.plot([line["step"] for line in m.train], [line["loss"] for line in m.train], color="tab:blue", lw=1.4,
                     label="train loss (logged batch)")
    if m.evals:
        steps = [line["step"] for line in m.evals]
        ax_loss.plot(steps, [line["val_loss"] for line in m.evals], "o-", color="tab:orange", lw=1.6, label="val loss")
        ax_ppl.plot(steps, [line["val_ppl"] for line in m.evals], "o-", color="tab:orange", lw=1.6, label="val PPL")
        uni = [line.get("unigram_ppl") for line in m.evals]
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
    return plotting.save(fig, out, "curves.png")


ROUTING_PANELS = [("gini", "Gini of expert load", "Gini (0 = even)"),
                  ("entropy_norm", "Normalised routing entropy", "entropy / log E"),
                  ("dead_experts", "Dead experts (no selections)", "experts"),
                  ("churn", "Routing churn since previous eval", "fraction of tokens"),
                  ("top1_score", "Mean top-1 routing score", "score (cosine)"),
                  ("key_cos", "Mean pairwise key cosine", "cosine")]


PANEL_NAMES = {"gini": "Gini", "entropy_norm": "normalised entropy", "dead_experts": "dead experts",
               "churn": "churn", "top1_score": "top-1 score", "key_cos": "mean key cosine"}


def routing_panels(m: metrics.Metrics) -> list[tuple[str, str, str]]:
    """The ROUTING_PANELS whose metric the trainer logged in some routing entry (the baselines log
    no top-1 score or key geometry); the four load panels when nothing was logged at all."""
    present = {k for line in m.train + m.evals for r in (line.get("routing") or []) for k in r}
    panels = [p for p in ROUTING_PANELS if p[0] in present]
    return panels or ROUTING_PANELS[:4]


def plot_routing_over_training(m: metrics.Metrics, layer_ids: list[int], E: int | None, router: Router,
                               out: Path) -> str:
    plt = plotting.pyplot()
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
                pts = [(line["step"], r[key]) for line in lines for r in (line.get("routing") or [])
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
            top = max((r.get("churn") or 0) for line in m.train + m.evals for r in (line.get("routing") or []))
            ax.set_ylim(-0.02, max(1.1 * top, 0.1))
        elif key == "top1_score" and drawn:
            ax.set_ylim(bottom=0)
        ax.set(title=title, ylabel=ylabel)
        if idx + ncols >= n:  # lowest panel of its column
            ax.set_xlabel("optimizer step")
            ax.xaxis.set_tick_params(labelbottom=True)
    handles = [Line2D([], [], color=colors[lid], lw=2, label=f"layer {lid}") for lid in layer_ids]
    handles += [Line2D([], [], color="0.3", lw=1.8, marker="o", ms=4, label="eval set"),
                Line2D([], [], color="0.3", lw=0.9, alpha=0.5, label="training batch (log lines)")]
    fig.suptitle(f"Routing over training ({router.short})", fontsize=12)
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8 if ncols == 3 else 4), frameon=False,
               bbox_to_anchor=(0.5, -0.01))
    legend_rows = math.ceil(len(handles) / (8 if ncols == 3 else 4))
    fig.tight_layout(rect=(0, (0.3 + 0.25 * legend_rows) / (4 * nrows), 1, 1))
    return plotting.save(fig, out, "routing_over_training.png")


def plot_usage(layers: list[LayerSummary], step: int, router: Router, out: Path) -> str:
    plt = plotting.pyplot()
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
        colors = _expert_colors(s)
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
    return plotting.save(fig, out, "usage.png")


def _marker_sizes(load: np.ndarray) -> np.ndarray:
    top = load.max() if load.size and load.max() > 0 else 1.0
    return 25 + 475 * load / top


def _draw_experts(ax, s: LayerSummary, label_ids: bool, xy: np.ndarray | None = None):
    """The experts at `xy` (default: the layer's main map s.xy)."""
    xy = s.xy if xy is None else xy
    colors = np.array(_expert_colors(s), dtype=object)
    live = s.data.counts > 0
    sizes = _marker_sizes(s.load)
    ax.scatter(xy[live, 0], xy[live, 1], s=sizes[live], c=list(colors[live]),
               edgecolors="k", linewidths=0.6, alpha=0.9, zorder=3)
    if (~live).any():  # dead: an X in its cluster's colour
        ax.scatter(xy[~live, 0], xy[~live, 1], s=70, marker="X", c=list(colors[~live]),
                   edgecolors="k", linewidths=0.6, alpha=0.9, zorder=3)
    if label_ids:
        for i, (x, y) in enumerate(xy):
            ax.annotate(str(i), (x, y), xytext=(4, 4), textcoords="offset points", fontsize=7, color="0.2",
                        zorder=4)
    pad = 0.08 * (np.ptp(xy, axis=0) + 1e-9)
    ax.set_xlim(xy[:, 0].min() - pad[0], xy[:, 0].max() + pad[0])
    ax.set_ylim(xy[:, 1].min() - pad[1], xy[:, 1].max() + pad[1])
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
    plt = plotting.pyplot()
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


def _map_sil(value: float | None, method: str) -> str:
    return "" if value is None else f"\nsilhouette of these clusters in the {method} map: {value:.3f}"


def plot_layer(s: LayerSummary, step: int, max_edges: int, gate: Gate | None, out: Path) -> tuple[str, list]:
    """Routers with vectors (SoME keys, MoE gate rows): their 2-D embedding coloured by cluster, and
    the co-activation graph at the same positions. Without (hash): the co-activation matrix and the
    co-activation graph laid out by it."""
    plt = plotting.pyplot()
    if s.alt_xy is not None:  # --method both: the second map between the first and the graph
        fig, (ax_k, ax_u, ax_c) = plt.subplots(1, 3, figsize=(22, 7))
    else:
        fig, (ax_k, ax_c) = plt.subplots(1, 2, figsize=(15, 7))
    method = _short_method(s.embedding)
    edges = analytics.top_edges(s.coact_norm, max_edges)
    n_pairs = int((np.triu(s.coact_norm, 1) > 0).sum())
    if s.vector_kind is not None:
        _draw_experts(ax_k, s, s.E <= 64)
        sil = f"{s.clustering.silhouette:.3f}" if s.clustering.silhouette is not None else "n/a"
        if s.vector_kind == "keys":
            space = f"Layer {s.data.layer} key space at step {step}"
        else:
            at = f"{gate.source}" + (f"; analytics of step {step}" if gate.step != step else "")
            space = f"Layer {s.data.layer} gate space: rows W_g[i] of the MoE gate ({at})"
        ax_k.set_title(f"{space}\n{s.embedding}; k = {s.clustering.k} KMeans clusters, cosine silhouette {sil}"
                       + _map_sil(s.map_silhouette, method))
        ax_k.set(xlabel=f"{method} 1 (no units)", ylabel=f"{method} 2 (no units)")
        if s.alt_xy is not None:
            alt = _short_method(s.alt_embedding)
            _draw_experts(ax_u, s, s.E <= 64, s.alt_xy)
            ax_u.set_title(f"{space}\n{s.alt_embedding}; the same k = {s.clustering.k} clusters"
                           + _map_sil(s.alt_map_silhouette, alt))
            ax_u.set(xlabel=f"{alt} 1 (no units)", ylabel=f"{alt} 2 (no units)")
            _expert_legend(ax_u, s)
        else:
            _expert_legend(ax_k, s)
        _draw_coactivation_graph(fig, ax_c, s, edges)
        vec = "key" if s.vector_kind == "keys" else "gate"
        corr = f", corr({vec} cos, strength) = {s.coact_corr:.2f}" if s.coact_corr is not None else ""
        ax_c.set_title(f"Layer {s.data.layer} co-activation graph (same positions)\n"
                       f"strongest {len(edges)} of {n_pairs} co-selected pairs{corr}")
        ax_c.set(xlabel=f"{method} 1 (no units)", ylabel=f"{method} 2 (no units)")
        name = f"layer_{s.data.layer}_keys.png"
    else:
        order = analytics.coactivation_order(s.data.coact, s.data.counts)
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
                       + ("C_ij/√(n_i n_j), diagonal grey; experts in average-linkage leaf order of "
                          "1 − C_ij/√(n_i n_j)\n(co-selected experts side by side)" if n_pairs
                          else "C_ij/√(n_i n_j), diagonal grey; experts by id")
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
    return plotting.save(fig, out, name), edges

