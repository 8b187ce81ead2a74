"""report.md: the run's header, routing over training, the routing table at the analytics step with
its cross-check, the per-layer figures with their captions, the eval samples and notes.
"""
from pathlib import Path

import numpy as np

from some_tools import metrics
from some_tools.formatting import fmt_or_na
from some_tools.report.load import Gate, Router
from some_tools.report.plots import PANEL_NAMES, routing_panels
from some_tools.report.summary import TOLERANCE, LayerSummary


def _printable(text: str) -> str:
    """Control characters (a young model samples byte tokens) as their visible Unicode pictures."""
    return "".join(chr(0x2400 + ord(c)) if ord(c) < 32 and c not in "\n\t" else "\u2421" if c == "\x7f" else c
                   for c in text)


def _config_line(cfg: dict) -> str:
    m, g, t = cfg.get("model", {}), cfg.get("gravity", {}), cfg.get("train", {})
    if not m:
        return ""
    ffn = m.get("ffn", "some")
    parts = [f"ffn `{ffn}`", f"{m.get('n_layers', '?')} layers", f"d_model {m.get('d_model', '?')}"]
    if ffn != "dense":
        parts += [f"E = {m.get('num_experts', '?')} experts, top-{m.get('top_k', '?')}",
                  f"{'SoME' if ffn == 'some' else 'routed'} layers "
                  f"`{m.get('routed_layers', m.get('some_layers', '?'))}`"]
    if ffn == "some" and g:
        parts.append(f"gravity α {g.get('alpha')} β {g.get('beta')} δ {g.get('delta')} usage `{g.get('usage')}`")
    if t:
        parts.append(f"{t.get('max_steps', '?')} steps of {t.get('global_batch', '?')}×{t.get('seq_len', '?')} "
                     f"tokens, eval every {t.get('eval_every', '?')}")
    return "; ".join(parts)


def _status(m: metrics.Metrics) -> str:
    last_step = max([line["step"] for line in m.train + m.evals], default=0)
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
            geo = [str(s.clustering.k), fmt_or_na(s.clustering.silhouette, ".4f"), f"{s.key_cos:.4f}",
                   f"{s.key_norm:.4f}", fmt_or_na(s.coact_corr, ".3f")]
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


def _short(embedding: str | None) -> str:
    """"t-SNE" of "t-SNE (cosine distance, perplexity 2)"."""
    return embedding.split(" (")[0] if embedding else ""


def write_markdown(out: Path, run: Path, cfg: dict, cfg_source: str, m: metrics.Metrics, step: int | None,
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
                     f"**val PPL {final['val_ppl']:.2f}** vs **unigram PPL {fmt_or_na(uni, '.2f')}**{ratio}")
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
                cap = (f"Left: the keys embedded by {s.embedding}, coloured by KMeans cluster, marker area = eval "
                       "load. Right: the co-activation graph at the same positions.")
                if s.alt_embedding:
                    cap = (f"Left: the keys embedded by {s.embedding}; middle: the same keys embedded by "
                           f"{s.alt_embedding}; both coloured by the same KMeans clusters, marker area = eval load. "
                           f"Right: the co-activation graph at the {_short(s.embedding)} positions.")
            elif s.vector_kind == "gate":
                alt = "gate space and co-activation"
                cap = (f"Left: the gate rows W_g[i] ({gate.source}) embedded by {s.embedding}, coloured by KMeans "
                       "cluster, marker area = eval load. Right: the co-activation graph at the same positions.")
            else:
                alt = "co-activation matrix and graph"
                cap = ("Left: the normalised co-activation matrix, experts in the order of the layout. Right: the "
                       f"co-activation graph, experts placed by {s.embedding} (no keys to place them by); "
                       "marker area = eval load.")
            lines += [f"### Layer {s.data.layer}", "",
                      f"![layer {s.data.layer} {alt}]({images['layers'][s.data.layer]})", "", cap, ""]
            if s.clustering is not None:
                scores = ", ".join(f"k={k}: {v:.3f}" for k, v in s.clustering.scores.items()) or "no k tried"
                lines.append(f"- Silhouette by k: {scores}")
                maps = [(_short(s.embedding), s.map_silhouette), (_short(s.alt_embedding), s.alt_map_silhouette)]
                maps = [f"{name} {v:.3f}" for name, v in maps if name and v is not None]
                if maps:
                    lines.append(f"- Silhouette of the k = {s.clustering.k} clusters in the 2-D map (Euclidean; "
                                 f"how well the map keeps them apart): {', '.join(maps)}")
            lines.append(f"- Strongest co-activated pairs (C_ij/√(n_i n_j)): {top}")
            if s.bias is not None and np.any(s.bias != 0):
                lo, hi = int(np.argmin(s.bias)), int(np.argmax(s.bias))
                lines.append(f"- Selection bias b_i: from {s.bias[lo]:+.4f} (expert {lo}) to {s.bias[hi]:+.4f} "
                             f"(expert {hi})")
            lines.append("")

    samples = [(line["step"], line.get("val_ppl"), line["sample"]) for line in m.evals if line.get("sample")]
    lines += ["## Eval samples", ""]
    if samples:
        for st, ppl, text in samples:
            text = _printable(text).replace("```", "'''")
            lines += [f"**Step {st}** (val PPL {fmt_or_na(ppl, '.2f')}):", "", "```text", text, "```", ""]
    else:
        lines += ["No samples in the eval lines (train.sample_tokens = 0, or a run from before samples were "
                  "logged).", ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path

