"""Routing-analytics metrics of one SoME layer, recomputed from a run's analytics files (SPEC §9).

Pure numpy except `cluster_keys` / `embed_2d` (scikit-learn, imported when called). The
definitions match the trainer's (src/train/routing_analytics.cpp), so the numbers here can be
checked against the `routing` entries of metrics.jsonl.

Legend: E experts, d model width, k top-k. `counts` (E,) are the eval set's selections n_i (each
token selects k experts), `coact` (E, E) the co-activation counts C_ij = #tokens that selected
both i and j (i != j, zero diagonal), `keys` (E, d) the routing keys.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def gini(counts) -> float:
    """Gini coefficient of the selection counts, as the trainer computes it.

    G = sum_r (2r - n - 1) x_(r) / (n * sum x), x sorted ascending, r = 1..n. 0 for a perfectly
    even load, (n - 1) / n when one expert takes everything (0.75 for [0, 0, 0, 4]); 0 when no
    expert was selected at all.
    """
    x = np.sort(np.asarray(counts, dtype=np.float64).ravel())
    n, total = x.size, x.sum()
    if n == 0 or total <= 0:
        return 0.0
    rank = np.arange(1, n + 1, dtype=np.float64)
    return float(((2 * rank - n - 1) * x).sum() / (n * total))


def entropy_nats(counts) -> float:
    """Shannon entropy (nats) of counts / sum(counts); 0 when the sum is 0."""
    x = np.asarray(counts, dtype=np.float64).ravel()
    total = x.sum()
    if total <= 0:
        return 0.0
    p = x[x > 0] / total
    return float(-(p * np.log(p)).sum())


def entropy_norm(counts) -> float:
    """Entropy divided by log E (1 = uniform); 0 for E <= 1, as the trainer does."""
    e = np.asarray(counts).size
    return entropy_nats(counts) / math.log(e) if e > 1 else 0.0


def dead_experts(counts) -> int:
    """Experts the eval set never selected (n_i = 0)."""
    return int((np.asarray(counts).ravel() == 0).sum())


def unit_rows(keys) -> np.ndarray:
    """Rows scaled to unit L2 norm (rows of norm 0 stay 0). (E, d) float64."""
    k = np.asarray(keys, dtype=np.float64)
    norm = np.linalg.norm(k, axis=1, keepdims=True)
    return k / np.maximum(norm, 1e-12)


def mean_key_norm(keys) -> float:
    return float(np.linalg.norm(np.asarray(keys, dtype=np.float64), axis=1).mean())


def mean_pairwise_cosine(keys) -> float:
    """Mean cosine over ordered pairs i != j (1 for E < 2), as the trainer does."""
    kn = unit_rows(keys)
    e = kn.shape[0]
    if e < 2:
        return 1.0
    cos = kn @ kn.T
    return float((cos.sum() - np.trace(cos)) / (e * (e - 1)))


def normalized_coactivation(coact, counts) -> np.ndarray:
    """A_ij = C_ij / sqrt(n_i n_j) (0 where n_i or n_j is 0). (E, E), symmetric for symmetric C.

    A_ij is the cosine between the indicator vectors "token selected i" and "token selected j":
    1 when i and j are always selected together, independent of how popular each one is.
    """
    c = np.asarray(coact, dtype=np.float64)
    n = np.asarray(counts, dtype=np.float64).ravel()
    denom = np.sqrt(np.outer(n, n))
    out = np.divide(c, denom, out=np.zeros_like(c), where=denom > 0)
    np.fill_diagonal(out, 0.0)
    return out


def top_edges(strength, max_edges: int) -> list[tuple[int, int, float]]:
    """The strongest undirected pairs (i < j, strength > 0) of a symmetric (E, E) matrix, best first."""
    s = np.asarray(strength, dtype=np.float64)
    s = (s + s.T) / 2
    i, j = np.triu_indices(s.shape[0], k=1)
    w = s[i, j]
    keep = w > 0
    i, j, w = i[keep], j[keep], w[keep]
    order = np.lexsort((j, i, -w))[:max_edges]  # strongest first, ties by index: deterministic
    return [(int(i[o]), int(j[o]), float(w[o])) for o in order]


def coactivation_key_correlation(coact, counts, keys) -> float | None:
    """Pearson correlation, over pairs i < j of live experts, of key cosine and A_ij.

    Positive when experts that fire together also sit close in key space (what Knowledge
    Gravity's peer pull should produce). None with fewer than 3 such pairs or no variance.
    """
    n = np.asarray(counts).ravel()
    live = np.flatnonzero(n > 0)
    if live.size < 3:
        return None
    a = normalized_coactivation(coact, counts)[np.ix_(live, live)]
    kn = unit_rows(np.asarray(keys)[live])
    cos = kn @ kn.T
    i, j = np.triu_indices(live.size, k=1)
    x, y = cos[i, j], a[i, j]
    if x.std() == 0 or y.std() == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


@dataclass
class Clustering:
    k: int                           # chosen number of clusters (1 when no k was tried)
    silhouette: float | None         # cosine silhouette of the chosen k (None when k = 1)
    labels: np.ndarray               # (E,) cluster of every key
    scores: dict[int, float]         # silhouette of every k tried


def cluster_keys(keys, k_max: int = 8, seed: int = 0) -> Clustering:
    """KMeans on the unit-normalised keys for k = 2..min(k_max, E - 1), keeping the k with the best
    cosine silhouette. On the unit sphere, squared Euclidean distance = 2 - 2 cos, so KMeans there
    clusters by cosine. Deterministic (fixed seed, several inits)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    kn = unit_rows(keys)
    e = kn.shape[0]
    distinct = np.unique(np.round(kn, 9), axis=0).shape[0]
    ks = [k for k in range(2, min(k_max, e - 1) + 1) if k < distinct]  # silhouette needs 2 <= k <= E - 1
    if not ks:
        return Clustering(1, None, np.zeros(e, dtype=int), {})
    scores, labels = {}, {}
    for k in ks:
        km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(kn)
        if np.unique(km.labels_).size < 2:
            continue
        labels[k] = km.labels_
        scores[k] = float(silhouette_score(kn, km.labels_, metric="cosine"))
    if not scores:
        return Clustering(1, None, np.zeros(e, dtype=int), {})
    best = max(scores, key=lambda k: (scores[k], -k))  # ties: fewer clusters
    return Clustering(best, scores[best], _relabel_by_size(labels[best]), scores)


def _relabel_by_size(labels: np.ndarray) -> np.ndarray:
    """Cluster 0 = the largest, then by first member: stable colours between runs."""
    ids, first, size = np.unique(labels, return_index=True, return_counts=True)
    order = sorted(range(ids.size), key=lambda t: (-size[t], first[t]))
    remap = {ids[t]: new for new, t in enumerate(order)}
    return np.array([remap[x] for x in labels], dtype=int)


def embed_2d(keys, method: str = "tsne", seed: int = 0) -> tuple[np.ndarray, str]:
    """2-D positions (E, 2) of the unit-normalised keys and a description of how they were made.

    t-SNE with cosine distances (perplexity scaled down for small E); UMAP when asked for and
    importable; PCA for E < 5, where neither is meaningful.
    """
    kn = unit_rows(keys)
    e = kn.shape[0]
    if e < 5:
        from sklearn.decomposition import PCA
        xy = PCA(n_components=2, random_state=seed).fit_transform(kn) if e >= 2 else np.zeros((e, 2))
        return xy, f"PCA (E = {e} is too few points for t-SNE)"
    if method == "umap":
        import umap  # caller checks that it imports
        reducer = umap.UMAP(n_components=2, metric="cosine", n_neighbors=min(15, e - 1), random_state=seed)
        return reducer.fit_transform(kn), "UMAP (cosine, n_neighbors = %d)" % min(15, e - 1)
    from sklearn.manifold import TSNE
    perplexity = float(max(2.0, min(30.0, (e - 1) / 3.0)))
    xy = TSNE(n_components=2, metric="cosine", perplexity=perplexity, init="pca", random_state=seed).fit_transform(kn)
    return xy, f"t-SNE (cosine distance, perplexity {perplexity:.0f})"
