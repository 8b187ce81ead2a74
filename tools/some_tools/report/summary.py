"""Per-layer numbers of one analytics file, recomputed (some_tools.analytics), and their
cross-check against the trainer's eval line in metrics.jsonl.

Legend: E experts, d model width.
"""
from dataclasses import dataclass

import numpy as np

from some_tools import analytics
from some_tools.analytics_files import LayerData

TOLERANCE = 1e-3          # trainer vs recomputed metrics


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
    clustering: analytics.Clustering | None
    xy: np.ndarray                 # (E, 2) positions of the experts in the layer figure
    embedding: str                 # how xy was made
    coact_norm: np.ndarray         # (E, E) C_ij / sqrt(n_i n_j)
    coact_corr: float | None       # corr(vector cosine, coact_norm) over live pairs
    bias: np.ndarray | None = None  # (E,) MoE selection bias
    map_silhouette: float | None = None      # silhouette of the clusters in xy (2-D, Euclidean)
    alt_xy: np.ndarray | None = None         # (E, 2) a second map (--method both: UMAP beside t-SNE)
    alt_embedding: str | None = None
    alt_map_silhouette: float | None = None

    @property
    def E(self) -> int:
        return self.data.counts.size

    @property
    def load(self) -> np.ndarray:
        """Eval-set load relative to a fair share: E * n_i / sum(n) (1 = fair; same units as usage)."""
        total = self.data.counts.sum()
        return self.E * self.data.counts / total if total > 0 else np.zeros(self.E)


def summarize(d: LayerData, method: str, gate: np.ndarray | None = None, bias: np.ndarray | None = None
              ) -> LayerSummary:
    """SoME: the keys place the experts. MoE: the gate rows W_g[i] (given) do. Hash, or MoE without
    a gate: the co-activation does (some_tools.analytics.coactivation_layout), with no clusters."""
    vectors, kind = (d.keys, "keys") if d.keys is not None else (gate, "gate") if gate is not None else (None, None)
    coact_norm = analytics.normalized_coactivation(d.coact, d.counts)
    base = dict(data=d, gini=analytics.gini(d.counts), entropy=analytics.entropy_nats(d.counts),
                entropy_norm=analytics.entropy_norm(d.counts), dead=analytics.dead_experts(d.counts),
                coact_norm=coact_norm, bias=bias)
    if vectors is None:
        xy, how = analytics.coactivation_layout(d.coact, d.counts)
        return LayerSummary(**base, vectors=None, vector_kind=None, key_cos=None, key_norm=None, clustering=None,
                            xy=xy, embedding=how, coact_corr=None)
    # "both": t-SNE places the experts (and the co-activation graph), UMAP is drawn beside it; the
    # clusters come from the vectors themselves, so both maps get the same colours.
    xy, how = analytics.embed_2d(vectors, method="tsne" if method == "both" else method, seed=0)
    clustering = analytics.cluster_keys(vectors, k_max=8, seed=0)
    alt_xy = alt_how = alt_sil = None
    if method == "both":
        alt_xy, alt_how = analytics.embed_2d(vectors, method="umap", seed=0)
        alt_sil = analytics.map_silhouette(alt_xy, clustering.labels)
    return LayerSummary(**base, vectors=vectors, vector_kind=kind,
                        key_cos=analytics.mean_pairwise_cosine(vectors), key_norm=analytics.mean_key_norm(vectors),
                        clustering=clustering, xy=xy, embedding=how,
                        coact_corr=analytics.coactivation_key_correlation(d.coact, d.counts, vectors),
                        map_silhouette=analytics.map_silhouette(xy, clustering.labels), alt_xy=alt_xy,
                        alt_embedding=alt_how, alt_map_silhouette=alt_sil)


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
