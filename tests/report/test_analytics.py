"""tools/analytics.py against hand-computed values (run with the project's Python: numpy, sklearn).

The Gini and entropy definitions are the trainer's (src/train/routing_analytics.cpp):
G = sum_r (2r - n - 1) x_(r) / (n sum x) over the ascending counts, H = -sum p log p in nats.
"""
import math
import sys
import unittest
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import analytics as A  # noqa: E402


def clustered_keys(rng, centers, per_cluster, spread, d):
    """Unit keys around `centers` random directions, with Gaussian noise `spread` per coordinate."""
    c = rng.normal(size=(centers, d))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    k = np.repeat(c, per_cluster, axis=0) + spread * rng.normal(size=(centers * per_cluster, d))
    return k / np.linalg.norm(k, axis=1, keepdims=True)


class GiniEntropy(unittest.TestCase):
    def test_gini_even_is_zero(self):
        self.assertAlmostEqual(A.gini([1, 1, 1, 1]), 0.0, places=12)

    def test_gini_one_expert_takes_all(self):
        # sorted [0, 0, 0, 4]: (-3*0 - 1*0 + 1*0 + 3*4) / (4 * 4) = 0.75 = (n - 1) / n
        self.assertAlmostEqual(A.gini([0, 0, 0, 4]), 0.75, places=12)
        self.assertAlmostEqual(A.gini([4, 0, 0, 0]), 0.75, places=12)  # order does not matter

    def test_gini_hand_computed(self):
        # sorted [1, 2, 3]: ((-2)*1 + 0*2 + 2*3) / (3 * 6) = 4 / 18
        self.assertAlmostEqual(A.gini([3, 1, 2]), 4 / 18, places=12)

    def test_gini_no_selections_is_zero(self):
        self.assertEqual(A.gini([0, 0, 0]), 0.0)
        self.assertEqual(A.gini([]), 0.0)

    def test_gini_scale_invariant(self):
        self.assertAlmostEqual(A.gini([1, 5, 2, 0]), A.gini([10, 50, 20, 0]), places=12)

    def test_entropy(self):
        self.assertAlmostEqual(A.entropy_nats([1, 1, 1, 1]), math.log(4), places=12)
        self.assertAlmostEqual(A.entropy_norm([1, 1, 1, 1]), 1.0, places=12)
        self.assertEqual(A.entropy_nats([0, 0, 7, 0]), 0.0)
        # p = (1/2, 1/4, 1/4, 0): H = 1/2 log 2 + 2 * 1/4 log 4 = 1.5 log 2
        self.assertAlmostEqual(A.entropy_nats([2, 1, 1, 0]), 1.5 * math.log(2), places=12)
        self.assertAlmostEqual(A.entropy_norm([2, 1, 1, 0]), 1.5 * math.log(2) / math.log(4), places=12)
        self.assertEqual(A.entropy_nats([0, 0]), 0.0)
        self.assertEqual(A.entropy_norm([5]), 0.0)  # E = 1: the trainer reports 0

    def test_dead_experts(self):
        self.assertEqual(A.dead_experts([0, 3, 0, 1]), 2)
        self.assertEqual(A.dead_experts([1, 1]), 0)


class KeyGeometry(unittest.TestCase):
    def test_mean_pairwise_cosine(self):
        keys = np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
        # cosines: (0,1)=0, (0,2)=-1, (1,2)=0 -> mean over ordered pairs = 2*(-1) / 6
        self.assertAlmostEqual(A.mean_pairwise_cosine(keys), -1 / 3, places=12)
        self.assertEqual(A.mean_pairwise_cosine(np.ones((1, 3))), 1.0)

    def test_mean_key_norm(self):
        self.assertAlmostEqual(A.mean_key_norm(np.array([[3.0, 4.0], [0.0, 1.0]])), 3.0, places=12)

    def test_unit_rows_keeps_zero_rows(self):
        u = A.unit_rows(np.array([[0.0, 0.0], [0.0, 5.0]]))
        np.testing.assert_allclose(u, [[0, 0], [0, 1]])


class Coactivation(unittest.TestCase):
    def test_normalisation(self):
        n = np.array([4.0, 9.0, 0.0, 1.0])
        C = np.array([[0, 6, 0, 1],
                      [6, 0, 0, 0],
                      [0, 0, 0, 0],
                      [1, 0, 0, 0]], dtype=float)
        a = A.normalized_coactivation(C, n)
        self.assertAlmostEqual(a[0, 1], 6 / math.sqrt(4 * 9), places=12)   # 1.0: always together
        self.assertAlmostEqual(a[0, 3], 1 / math.sqrt(4 * 1), places=12)
        self.assertEqual(a[2, 0], 0.0)   # dead expert: no division by zero
        np.testing.assert_allclose(a, a.T)
        np.testing.assert_array_equal(np.diag(a), 0)

    def test_top_edges_strongest_first(self):
        s = np.array([[0, 0.2, 0.9], [0.2, 0, 0.5], [0.9, 0.5, 0]])
        self.assertEqual(A.top_edges(s, 2), [(0, 2, 0.9), (1, 2, 0.5)])
        self.assertEqual(len(A.top_edges(np.zeros((3, 3)), 5)), 0)

    def test_correlation_with_key_cosine(self):
        # Experts 0, 1 share a direction and fire together; 2, 3 likewise: positive correlation.
        keys = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 0, 1], [0, 0.1, 0.9]], dtype=float)
        n = np.array([10, 10, 10, 10.0])
        C = np.zeros((4, 4))
        C[0, 1] = C[1, 0] = 9
        C[2, 3] = C[3, 2] = 8
        C[0, 2] = C[2, 0] = 1
        self.assertGreater(A.coactivation_key_correlation(C, n, keys), 0.9)
        self.assertIsNone(A.coactivation_key_correlation(C, np.array([1.0, 1, 0, 0]), keys))


class Clustering(unittest.TestCase):
    def test_three_tight_clusters_on_the_sphere(self):
        keys = clustered_keys(np.random.default_rng(0), centers=3, per_cluster=10, spread=0.02, d=32)
        c = A.cluster_keys(keys, k_max=8, seed=0)
        self.assertEqual(c.k, 3)
        self.assertGreater(c.silhouette, 0.8)
        self.assertEqual(sorted(np.bincount(c.labels)), [10, 10, 10])
        # every true cluster maps to one label
        for g in range(3):
            self.assertEqual(len(set(c.labels[g * 10:(g + 1) * 10])), 1)

    def test_uniform_keys_have_low_silhouette(self):
        rng = np.random.default_rng(1)
        keys = rng.normal(size=(64, 32))
        c = A.cluster_keys(keys, k_max=8, seed=0)
        self.assertLess(c.silhouette, 0.2)

    def test_cosine_geometry_ignores_key_length(self):
        keys = clustered_keys(np.random.default_rng(2), centers=2, per_cluster=8, spread=0.02, d=16)
        scaled = keys * np.random.default_rng(3).uniform(0.1, 10.0, size=(16, 1))
        a, b = A.cluster_keys(keys), A.cluster_keys(scaled)
        self.assertEqual(a.k, b.k)
        self.assertAlmostEqual(a.silhouette, b.silhouette, places=6)

    def test_deterministic(self):
        keys = np.random.default_rng(4).normal(size=(24, 8))
        a, b = A.cluster_keys(keys, seed=0), A.cluster_keys(keys, seed=0)
        self.assertEqual(a.k, b.k)
        np.testing.assert_array_equal(a.labels, b.labels)
        xa, _ = A.embed_2d(keys, seed=0)
        xb, _ = A.embed_2d(keys, seed=0)
        np.testing.assert_allclose(xa, xb)

    def test_too_few_keys(self):
        c = A.cluster_keys(np.eye(2), k_max=8)
        self.assertEqual((c.k, c.silhouette), (1, None))
        xy, how = A.embed_2d(np.eye(3))
        self.assertEqual(xy.shape, (3, 2))
        self.assertIn("PCA", how)


if __name__ == "__main__":
    unittest.main()
