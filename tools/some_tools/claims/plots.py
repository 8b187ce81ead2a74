"""The figures of the claims report: val-PPL curves, co-activation heatmaps and statistics (claim B),
forgetting bars and the two-phase curves (claim C). Each plot_* writes one PNG into OUT and
returns its name.

Legend: E experts, k top-k.
"""
from pathlib import Path

import numpy as np

from some_tools import analytics, plotting
from some_tools.analytics_files import LayerData
from some_tools.claims import stats
from some_tools.claims.results import RunResult
from some_tools.formatting import fmt_or_na


def plot_val_curves(results: list[RunResult], title: str, out: Path, name: str, label=None, offset=None) -> str:
    """Val PPL against training tokens, one line per run; `label(run_result)` names a line,
    `offset(run_result)` shifts it right (tokens it inherited before its own)."""
    plt = plotting.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for r in results:
        shift = offset(r) if offset else 0
        xs = [e["tokens"] + shift for e in r.evals]
        ys = [e["val_ppl"] for e in r.evals]
        ax.plot(xs, ys, marker="o", ms=3, label=f"{label(r) if label else r.run.label} ({r.val_ppl:.2f})")
    uni = results[0].unigram_ppl if results else None
    if uni:
        ax.axhline(uni, color="grey", ls=":", lw=1, label=f"unigram PPL ({uni:.2f})")
    ax.set_yscale("log")
    ax.set_xlabel("training tokens")
    ax.set_ylabel("validation perplexity (log scale)")
    ax.set_title(title)
    ax.legend(title="run (final val PPL)", fontsize=8)
    return plotting.save(fig, out, name)


def _cluster_order(layer: LayerData) -> tuple[np.ndarray, list[int]]:
    """Experts ordered by key cluster (then index) and the cluster boundaries, for heatmaps."""
    if layer.keys is None:
        return np.arange(layer.counts.size), []
    labels = analytics.cluster_keys(layer.keys, k_max=8, seed=0).labels
    order = np.lexsort((np.arange(labels.size), labels))
    bounds = [i for i in range(1, labels.size) if labels[order[i]] != labels[order[i - 1]]]
    return order, bounds


def plot_coactivation_heatmaps(r: RunResult, layers: list[LayerData], step: int, out: Path, name: str) -> str:
    plt = plotting.pyplot()
    n = len(layers)
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n + 1, 3.6), squeeze=False)
    vmax = max((analytics.normalized_coactivation(layer.coact, layer.counts).max() for layer in layers),
               default=1.0) or 1.0
    im = None
    for ax, layer in zip(axes[0], layers):
        a = analytics.normalized_coactivation(layer.coact, layer.counts)
        order, bounds = _cluster_order(layer)
        im = ax.imshow(a[np.ix_(order, order)], cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
        for b in bounds:
            ax.axhline(b - 0.5, color="cyan", lw=0.6)
            ax.axvline(b - 0.5, color="cyan", lw=0.6)
        ax.set_title(f"layer {layer.layer}")
        ax.set_xlabel("expert (ordered by key cluster)")
        ax.grid(False)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].set_ylabel("expert")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.85, label="C_ij / sqrt(n_i n_j)")
    fig.suptitle(f"{r.run.label}: normalised co-activation on the val set (step {step}, "
                 f"k={r.run.top_k}, E={r.run.num_experts}); cyan lines separate key clusters", fontsize=10)
    return plotting.save(fig, out, name)


def plot_coactivation_bars(rows: list[dict], out: Path, name: str) -> str:
    """Per k and layer: share of co-activations on the top 10% of live-expert pairs, and the mean
    best-partner affinity, each with its value for uniformly mixed pairs (dashes over each bar)."""
    plt = plotting.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    n_layers = max((len(row["layers"]) for row in rows), default=0)
    width = 0.8 / max(n_layers, 1)
    colors = plt.get_cmap("tab10")
    labelled = set()  # axes whose reference dash is in the legend already
    for li in range(n_layers):
        xs = np.arange(len(rows)) + (li - (n_layers - 1) / 2) * width
        for ax, key, ref in ((axes[0], "top_mass", "top_uniform"), (axes[1], "affinity", "affinity_uniform")):
            vals = [row["layers"][li][key] if li < len(row["layers"]) else None for row in rows]
            refs = [row["layers"][li][ref] if li < len(row["layers"]) else None for row in rows]
            ax.bar(xs, [v or 0.0 for v in vals], width, color=colors(li % 10), label=f"layer {li}")
            for x, r in zip(xs, refs):
                if r is not None:
                    ax.plot([x - width / 2, x + width / 2], [r, r], color="k", ls="--", lw=1.2,
                            label=None if id(ax) in labelled else "if pairs mixed uniformly")
                    labelled.add(id(ax))
    for i, row in enumerate(rows):
        if row["k"] == 1:
            for ax in axes:
                ax.text(i, 0.01, "k=1: no\nco-activation", ha="center", va="bottom", fontsize=8)
    for ax in axes:
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels([f"k={row['k']}\nE={row['E']}, h={row['h']}\n{fmt_or_na(row['live'], '.1f')} live/layer"
                            for row in rows])
        ax.legend(fontsize=7)
    axes[0].set_ylabel(f"share of co-activations on the\ntop {stats.TOP_PAIR_FRACTION:.0%} of live-expert pairs")
    axes[0].set_title("Concentration of co-activation")
    axes[1].set_ylabel("mean best-partner affinity\nmax_j C_ij / sqrt(n_i n_j)")
    axes[1].set_title("How strongly experts pair up")
    return plotting.save(fig, out, name)


def plot_forgetting_bars(rows: list[dict], out: Path, name: str) -> str:
    plt = plotting.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    models = [row["model"] for row in rows]
    x = np.arange(len(rows))
    for ax, dom, title in ((axes[0], "A", "Domain A (the default corpus)"), (axes[1], "B", "Domain B (Python source)")):
        before = [row[f"ppl_{dom}_before"] for row in rows]
        after = [row[f"ppl_{dom}_after"] for row in rows]
        b1 = ax.bar(x - 0.2, before, 0.4, label="after domain A only (before B)")
        b2 = ax.bar(x + 0.2, after, 0.4, label="after continuing on domain B")
        ax.bar_label(b1, fmt="%.1f", fontsize=7)
        ax.bar_label(b2, fmt="%.1f", fontsize=7)
        ax.set_ylim(0, 1.3 * max(before + after))
        ax.set_xticks(x)
        ax.set_xticklabels(models)
        ax.set_ylabel(f"val PPL on domain {dom}")
        ax.set_title(title)
        ax.legend(fontsize=7)
    ratios = ", ".join(f"{row['model']} x{row['forgetting']:.3f}" for row in rows)
    fig.suptitle(f"Forgetting (PPL_A after / before): {ratios}", fontsize=10)
    return plotting.save(fig, out, name)


def plot_phase_curves(pairs: list[tuple[RunResult, RunResult]], rows: list[dict], switch_step: int | None,
                      end_step: int | None, out: Path, name: str) -> str:
    """Per model: domain-A val PPL while training on A, domain-B val PPL while training on B (starting
    from the phase-A model's PPL_B), and PPL_A after B as an open marker at the end. Without
    `switch_step` / `end_step` each model switches and ends at its own runs' last steps."""
    plt = plotting.pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colors = plt.get_cmap("tab10")
    own_steps = switch_step is None
    for i, ((a, b), row) in enumerate(zip(pairs, rows)):
        if own_steps:
            switch_step, end_step = int(a.done["step"]), int(b.done["step"])
        ax.plot([e["step"] for e in a.evals], [e["val_ppl"] for e in a.evals], marker="o", ms=3, color=colors(i),
                label=f"{a.run.label}: domain-A val, training on A")
        ax.plot([switch_step] + [e["step"] for e in b.evals], [row["ppl_B_before"]] + [e["val_ppl"] for e in b.evals],
                marker="s", ms=3, ls="--", color=colors(i), label=f"{a.run.label}: domain-B val, training on B")
        ax.plot([end_step], [row["ppl_A_after"]], marker="o", ms=8, mfc="none", mew=1.5, ls="none", color=colors(i),
                label=f"{a.run.label}: domain-A val after B (x{row['forgetting']:.3f})")
    if not own_steps:
        ax.axvline(switch_step, color="grey", lw=1)
        ax.text(switch_step, ax.get_ylim()[1], " switch to domain B", va="top", fontsize=8, color="grey")
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("validation perplexity (log scale)")
    ax.set_title("Claim C: val PPL while training on domain A, then on domain B")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return plotting.save(fig, out, name)



def plot_gap_bars(rows: list, out: Path, name: str) -> str:
    """The gap part: mean val PPL per configuration (large marker, ± one std), each seed's value
    (small dots), SoME configurations and dense ones in two colours; the axis does not start at 0
    (the differences are a few percent). `rows`: report_gap.GapRow."""
    plt = plotting.pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(rows) + 1.5))
    for i, row in enumerate(rows):
        color = "tab:blue" if row.config.ffn == "some" else "tab:grey"
        ax.errorbar([row.ppl], [i], xerr=[row.std or 0.0], fmt="o", ms=7, color=color, capsize=4)
        ax.plot([r.val_ppl for r in row.runs], [i] * len(row.runs), ".", ms=5, color="k", alpha=0.6)
        ax.annotate(f"{row.ppl:.2f}", (row.ppl + (row.std or 0.0), i), xytext=(6, 0), textcoords="offset points",
                    va="center", fontsize=8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{row.config.label} [{row.key}]" for row in rows], fontsize=8)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlabel("final val PPL (marker: mean over seeds ± std; dots: seeds)")
    ax.set_title("What closes the gap: SoME options (blue) against the dense FFN (grey)")
    return plotting.save(fig, out, name)


def plot_ffn_out_ratio(rows: list, last: int, out: Path, name: str) -> str:
    """ffn_out_ratio per layer, one line per configuration (mean over seeds of each run's last
    `last` log lines); dense configurations dashed. `rows`: report_gap.GapRow."""
    plt = plotting.pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    cmap = plt.get_cmap("tab10")
    for i, row in enumerate(rows):
        ax.plot(range(len(row.ffn_out_ratio)), row.ffn_out_ratio, marker="o", ms=3, color=cmap(i % 10),
                ls="-" if row.config.ffn == "some" else "--", label=row.config.label)
    n = max(len(row.ffn_out_ratio) for row in rows)
    ax.set_yscale("log")
    ax.set_xticks(range(n))
    ax.set_xlabel("layer")
    ax.set_ylabel("Σ‖FFN output‖ / Σ‖residual entering the FFN‖ (log scale)")
    ax.set_title(f"FFN output vs residual stream (mean of the last {last} log lines, over seeds)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return plotting.save(fig, out, name)
