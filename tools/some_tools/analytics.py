"""Routing-analytics metrics of one SoME layer, recomputed from a run's analytics files (docs/design.md §9).

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


def map_silhouette(xy, labels) -> float | None:
    """Euclidean silhouette of the key clusters in a 2-D map: how well the map keeps the clusters found
    in key space apart (None with fewer than 2 clusters, or as many clusters as points)."""
    from sklearn.metrics import silhouette_score
    labels = np.asarray(labels)
    k = np.unique(labels).size
    if k < 2 or k >= labels.size:
        return None
    return float(silhouette_score(np.asarray(xy, dtype=np.float64), labels, metric="euclidean"))


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
        # n_jobs=1: a fixed random_state makes UMAP single-threaded anyway (and it warns unless told).
        reducer = umap.UMAP(n_components=2, metric="cosine", n_neighbors=min(15, e - 1), random_state=seed, n_jobs=1)
        return reducer.fit_transform(kn), f"UMAP (cosine, n_neighbors = {min(15, e - 1)})"
    from sklearn.manifold import TSNE
    perplexity = float(max(2.0, min(30.0, (e - 1) / 3.0)))
    xy = TSNE(n_components=2, metric="cosine", perplexity=perplexity, init="pca", random_state=seed).fit_transform(kn)
    return xy, f"t-SNE (cosine distance, perplexity {perplexity:.0f})"


# ---------------------------------------------------------------------------------------------
# Routers without keys (hash routing): placing the experts by their co-activation alone
# ---------------------------------------------------------------------------------------------

def classical_mds(dist, dims: int = 2) -> np.ndarray:
    """Classical (Torgerson) MDS: (n, dims) positions whose Euclidean distances best match the
    symmetric dissimilarities `dist` (n, n) in the least-squares sense of the double-centred Gram
    matrix B = -1/2 J D^2 J. Deterministic: no random start, each axis's sign fixed so that its
    largest-magnitude coordinate is positive. Axes with no positive eigenvalue are 0."""
    d = np.asarray(dist, dtype=np.float64)
    d = (d + d.T) / 2
    n = d.shape[0]
    out = np.zeros((n, dims))
    if n < 2:
        return out
    j = np.eye(n) - 1.0 / n
    b = -0.5 * j @ (d ** 2) @ j
    w, v = np.linalg.eigh(b)
    order = np.argsort(-w, kind="stable")[:dims]
    for c, o in enumerate(order):
        if w[o] <= 1e-12:
            continue
        col = v[:, o] * math.sqrt(w[o])
        if col[np.argmax(np.abs(col))] < 0:
            col = -col
        out[:, c] = col
    return out


def _circle(n: int, radius: float = 1.0, phase: float = 0.0) -> np.ndarray:
    t = phase + 2 * math.pi * np.arange(n) / max(n, 1)
    return radius * np.stack([np.sin(t), np.cos(t)], axis=1)


def force_layout(weights, init, iterations: int = 200, gravity: float = 1.0) -> np.ndarray:
    """Fruchterman-Reingold layout of a weighted graph (n, n), started from `init` (n, 2).

    Every pair repels with k^2 / d, every edge attracts with w_ij d^2 / k (k = 1 / sqrt(n), the
    ideal distance in a unit square), plus a weak pull to the centre that keeps disconnected parts
    in view; each node moves at most a temperature that cools linearly to 0. Deterministic: the
    start is `init` plus a fixed tiny offset per node (so coincident starts separate).
    """
    w = np.asarray(weights, dtype=np.float64)
    w = (w + w.T) / 2
    np.fill_diagonal(w, 0.0)
    n = w.shape[0]
    pos = np.asarray(init, dtype=np.float64).copy()
    if n < 2:
        return pos
    span = np.ptp(pos, axis=0).max()
    pos = (pos - pos.mean(axis=0)) / (span if span > 0 else 1.0)
    pos += 1e-3 * _circle(n)  # deterministic "jitter"
    k = 1.0 / math.sqrt(n)
    t0 = 0.1
    for it in range(iterations):
        t = t0 * (1 - it / iterations)
        delta = pos[:, None, :] - pos[None, :, :]
        dist = np.maximum(np.linalg.norm(delta, axis=2), 1e-4)
        coef = k * k / dist ** 2 - w * dist / k          # repulsion - attraction, divided by d
        np.fill_diagonal(coef, 0.0)
        disp = np.einsum("ijk,ij->ik", delta, coef) - gravity * pos
        length = np.maximum(np.linalg.norm(disp, axis=1, keepdims=True), 1e-9)
        pos += disp / length * np.minimum(length, t)
    return pos - pos.mean(axis=0)


def coactivation_layout(coact, counts) -> tuple[np.ndarray, str]:
    """2-D positions (E, 2) of the experts from their co-activation alone, and how they were made.

    Live experts (n_i > 0): a force-directed layout (force_layout) whose edges are A_ij =
    C_ij / sqrt(n_i n_j) (normalized_coactivation), started from the classical MDS of 1 - A_ij, so
    experts often selected together sit close; scaled to radius 1. Dead experts (no co-activation
    to place them by) go on a ring of radius 1.25 around them. With fewer than 3 live experts or
    no co-activation at all (top_k = 1): a circle by expert id.
    """
    n = np.asarray(counts).ravel()
    e = n.size
    a = normalized_coactivation(coact, counts)
    a = (a + a.T) / 2
    live = np.flatnonzero(n > 0)
    if live.size < 3 or not (a[np.ix_(live, live)] > 0).any():
        return _circle(e), "circular layout by expert id (no co-activations to place the experts by)"
    xy = np.zeros((e, 2))
    sub_a = a[np.ix_(live, live)]
    sub = force_layout(sub_a, classical_mds(1.0 - sub_a))
    r = np.linalg.norm(sub, axis=1).max()
    xy[live] = sub / r if r > 0 else _circle(live.size)
    dead = np.flatnonzero(n == 0)
    if dead.size:
        xy[dead] = _circle(dead.size, 1.25, phase=math.pi / max(dead.size, 1))
    how = "force-directed layout (Fruchterman–Reingold, edge weight C_ij/√(n_i n_j), classical-MDS start)"
    return xy, how + (f"; {dead.size} dead expert{'s' if dead.size > 1 else ''} on the outer ring" if dead.size else "")


def coactivation_order(coact, counts) -> np.ndarray:
    """Expert order for a co-activation heatmap: the live experts as the leaves of an average-linkage
    tree on the dissimilarity 1 - A_ij (optimal leaf ordering: experts often selected together
    become neighbours, blocks show as blocks), then the dead experts by id. By id when there is
    no co-activation to order by."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    n = np.asarray(counts).ravel()
    live = np.flatnonzero(n > 0)
    dead = np.flatnonzero(n == 0)
    a = normalized_coactivation(coact, counts)
    sub = ((a + a.T) / 2)[np.ix_(live, live)]
    if live.size < 3 or not (sub > 0).any():
        return np.concatenate([live, dead])
    d = np.clip(1.0 - sub, 0.0, None)
    np.fill_diagonal(d, 0.0)
    tree = linkage(squareform(d, checks=False), method="average", optimal_ordering=True)
    return np.concatenate([live[leaves_list(tree)], dead])
