"""some_tools.analytics against hand-computed values (run with the project's Python: numpy, sklearn),
and some_tools.report on small hand-made run directories of the baselines (no keys in the analytics
files: MoE with its gate in a checkpoint / model.h5 / nowhere, hash routing).

The Gini and entropy definitions are the trainer's (src/train/routing_analytics.cpp):
G = sum_r (2r - n - 1) x_(r) / (n sum x) over the ascending counts, H = -sum p log p in nats.
"""
import json
import math
import re
import tempfile
import unittest
from pathlib import Path

import numpy as np

from some_tools import analytics
from some_tools.report.make import make_report


def clustered_keys(rng, centers, per_cluster, spread, d):
    """Unit keys around `centers` random directions, with Gaussian noise `spread` per coordinate."""
    c = rng.normal(size=(centers, d))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    k = np.repeat(c, per_cluster, axis=0) + spread * rng.normal(size=(centers * per_cluster, d))
    return k / np.linalg.norm(k, axis=1, keepdims=True)


class GiniEntropy(unittest.TestCase):
    def test_gini_even_is_zero(self):
        self.assertAlmostEqual(analytics.gini([1, 1, 1, 1]), 0.0, places=12)

    def test_gini_one_expert_takes_all(self):
        # sorted [0, 0, 0, 4]: (-3*0 - 1*0 + 1*0 + 3*4) / (4 * 4) = 0.75 = (n - 1) / n
        self.assertAlmostEqual(analytics.gini([0, 0, 0, 4]), 0.75, places=12)
        self.assertAlmostEqual(analytics.gini([4, 0, 0, 0]), 0.75, places=12)  # order does not matter

    def test_gini_hand_computed(self):
        # sorted [1, 2, 3]: ((-2)*1 + 0*2 + 2*3) / (3 * 6) = 4 / 18
        self.assertAlmostEqual(analytics.gini([3, 1, 2]), 4 / 18, places=12)

    def test_gini_no_selections_is_zero(self):
        self.assertEqual(analytics.gini([0, 0, 0]), 0.0)
        self.assertEqual(analytics.gini([]), 0.0)

    def test_gini_scale_invariant(self):
        self.assertAlmostEqual(analytics.gini([1, 5, 2, 0]), analytics.gini([10, 50, 20, 0]), places=12)

    def test_entropy(self):
        self.assertAlmostEqual(analytics.entropy_nats([1, 1, 1, 1]), math.log(4), places=12)
        self.assertAlmostEqual(analytics.entropy_norm([1, 1, 1, 1]), 1.0, places=12)
        self.assertEqual(analytics.entropy_nats([0, 0, 7, 0]), 0.0)
        # p = (1/2, 1/4, 1/4, 0): H = 1/2 log 2 + 2 * 1/4 log 4 = 1.5 log 2
        self.assertAlmostEqual(analytics.entropy_nats([2, 1, 1, 0]), 1.5 * math.log(2), places=12)
        self.assertAlmostEqual(analytics.entropy_norm([2, 1, 1, 0]), 1.5 * math.log(2) / math.log(4), places=12)
        self.assertEqual(analytics.entropy_nats([0, 0]), 0.0)
        self.assertEqual(analytics.entropy_norm([5]), 0.0)  # E = 1: the trainer reports 0

    def test_dead_experts(self):
        self.assertEqual(analytics.dead_experts([0, 3, 0, 1]), 2)
        self.assertEqual(analytics.dead_experts([1, 1]), 0)


class KeyGeometry(unittest.TestCase):
    def test_mean_pairwise_cosine(self):
        keys = np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
        # cosines: (0,1)=0, (0,2)=-1, (1,2)=0 -> mean over ordered pairs = 2*(-1) / 6
        self.assertAlmostEqual(analytics.mean_pairwise_cosine(keys), -1 / 3, places=12)
        self.assertEqual(analytics.mean_pairwise_cosine(np.ones((1, 3))), 1.0)

    def test_mean_key_norm(self):
        self.assertAlmostEqual(analytics.mean_key_norm(np.array([[3.0, 4.0], [0.0, 1.0]])), 3.0, places=12)

    def test_unit_rows_keeps_zero_rows(self):
        u = analytics.unit_rows(np.array([[0.0, 0.0], [0.0, 5.0]]))
        np.testing.assert_allclose(u, [[0, 0], [0, 1]])


class Coactivation(unittest.TestCase):
    def test_normalisation(self):
        n = np.array([4.0, 9.0, 0.0, 1.0])
        C = np.array([[0, 6, 0, 1],
                      [6, 0, 0, 0],
                      [0, 0, 0, 0],
                      [1, 0, 0, 0]], dtype=float)
        a = analytics.normalized_coactivation(C, n)
        self.assertAlmostEqual(a[0, 1], 6 / math.sqrt(4 * 9), places=12)   # 1.0: always together
        self.assertAlmostEqual(a[0, 3], 1 / math.sqrt(4 * 1), places=12)
        self.assertEqual(a[2, 0], 0.0)   # dead expert: no division by zero
        np.testing.assert_allclose(a, a.T)
        np.testing.assert_array_equal(np.diag(a), 0)

    def test_top_edges_strongest_first(self):
        s = np.array([[0, 0.2, 0.9], [0.2, 0, 0.5], [0.9, 0.5, 0]])
        self.assertEqual(analytics.top_edges(s, 2), [(0, 2, 0.9), (1, 2, 0.5)])
        self.assertEqual(len(analytics.top_edges(np.zeros((3, 3)), 5)), 0)

    def test_correlation_with_key_cosine(self):
        # Experts 0, 1 share a direction and fire together; 2, 3 likewise: positive correlation.
        keys = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 0, 1], [0, 0.1, 0.9]], dtype=float)
        n = np.array([10, 10, 10, 10.0])
        C = np.zeros((4, 4))
        C[0, 1] = C[1, 0] = 9
        C[2, 3] = C[3, 2] = 8
        C[0, 2] = C[2, 0] = 1
        self.assertGreater(analytics.coactivation_key_correlation(C, n, keys), 0.9)
        self.assertIsNone(analytics.coactivation_key_correlation(C, np.array([1.0, 1, 0, 0]), keys))


class Clustering(unittest.TestCase):
    def test_three_tight_clusters_on_the_sphere(self):
        keys = clustered_keys(np.random.default_rng(0), centers=3, per_cluster=10, spread=0.02, d=32)
        c = analytics.cluster_keys(keys, k_max=8, seed=0)
        self.assertEqual(c.k, 3)
        self.assertGreater(c.silhouette, 0.8)
        self.assertEqual(sorted(np.bincount(c.labels)), [10, 10, 10])
        # every true cluster maps to one label
        for g in range(3):
            self.assertEqual(len(set(c.labels[g * 10:(g + 1) * 10])), 1)

    def test_uniform_keys_have_low_silhouette(self):
        rng = np.random.default_rng(1)
        keys = rng.normal(size=(64, 32))
        c = analytics.cluster_keys(keys, k_max=8, seed=0)
        self.assertLess(c.silhouette, 0.2)

    def test_cosine_geometry_ignores_key_length(self):
        keys = clustered_keys(np.random.default_rng(2), centers=2, per_cluster=8, spread=0.02, d=16)
        scaled = keys * np.random.default_rng(3).uniform(0.1, 10.0, size=(16, 1))
        a, b = analytics.cluster_keys(keys), analytics.cluster_keys(scaled)
        self.assertEqual(a.k, b.k)
        self.assertAlmostEqual(a.silhouette, b.silhouette, places=6)

    def test_deterministic(self):
        keys = np.random.default_rng(4).normal(size=(24, 8))
        a, b = analytics.cluster_keys(keys, seed=0), analytics.cluster_keys(keys, seed=0)
        self.assertEqual(a.k, b.k)
        np.testing.assert_array_equal(a.labels, b.labels)
        xa, _ = analytics.embed_2d(keys, seed=0)
        xb, _ = analytics.embed_2d(keys, seed=0)
        np.testing.assert_allclose(xa, xb)

    def test_too_few_keys(self):
        c = analytics.cluster_keys(np.eye(2), k_max=8)
        self.assertEqual((c.k, c.silhouette), (1, None))
        xy, how = analytics.embed_2d(np.eye(3))
        self.assertEqual(xy.shape, (3, 2))
        self.assertIn("PCA", how)



def two_block_coactivation():
    """E = 7, top-2: experts 0-2 and 3-5 are selected together within their block (C = 20), 2 and 3
    once across (C = 1); expert 6 is dead (n_6 = 0)."""
    e = 7
    c = np.zeros((e, e))
    for block in ((0, 1, 2), (3, 4, 5)):
        for i in block:
            for j in block:
                if i != j:
                    c[i, j] = 20
    c[2, 3] = c[3, 2] = 1
    n = c.sum(axis=1)  # top-2: every selection of i is co-selected with one other expert
    return c, n


class CoactivationLayout(unittest.TestCase):
    def test_classical_mds_recovers_planar_distances(self):
        pts = np.array([[0, 0], [3, 0], [0, 4], [1, 1], [-2, 0.5]], dtype=float)
        d = np.linalg.norm(pts[:, None] - pts[None], axis=2)
        xy = analytics.classical_mds(d)
        np.testing.assert_allclose(np.linalg.norm(xy[:, None] - xy[None], axis=2), d, atol=1e-9)
        np.testing.assert_array_equal(analytics.classical_mds(np.zeros((1, 1))), np.zeros((1, 2)))

    def test_blocks_sit_together_dead_on_the_ring(self):
        c, n = two_block_coactivation()
        xy, how = analytics.coactivation_layout(c, n)
        self.assertEqual(xy.shape, (7, 2))
        self.assertIn("force-directed", how)
        self.assertIn("1 dead expert on the outer ring", how)
        d = np.linalg.norm(xy[:, None] - xy[None], axis=2)
        within = [d[i, j] for b in ((0, 1, 2), (3, 4, 5)) for i in b for j in b if i < j]
        between = [d[i, j] for i in (0, 1, 2) for j in (3, 4, 5)]
        self.assertLess(max(within), min(between))
        self.assertGreater(d[np.triu_indices(7, 1)].min(), 1e-3)   # nobody on top of anybody
        self.assertAlmostEqual(np.linalg.norm(xy[6]), 1.25, places=9)  # dead: outer ring
        self.assertLessEqual(np.linalg.norm(xy[:6], axis=1).max(), 1.0 + 1e-9)
        xy2, _ = analytics.coactivation_layout(c, n)
        np.testing.assert_array_equal(xy, xy2)                       # deterministic

    def test_no_coactivation_is_a_circle(self):
        xy, how = analytics.coactivation_layout(np.zeros((5, 5)), np.array([3, 0, 2, 1, 4]))
        self.assertIn("circular", how)
        np.testing.assert_allclose(np.linalg.norm(xy, axis=1), 1.0)

    def test_order_keeps_blocks_contiguous_dead_last(self):
        c, n = two_block_coactivation()
        order = list(analytics.coactivation_order(c, n))
        self.assertEqual(sorted(order), list(range(7)))
        self.assertEqual(order[-1], 6)
        self.assertEqual({frozenset(order[:3]), frozenset(order[3:6])}, {frozenset({0, 1, 2}), frozenset({3, 4, 5})})
        self.assertEqual(list(analytics.coactivation_order(np.zeros((3, 3)), np.array([0, 2, 1]))), [1, 2, 0])


# ---------------------------------------------------------------------------------------------
# some_tools.report on hand-made baseline runs (no training: seconds)
# ---------------------------------------------------------------------------------------------


def table(md):
    lines = md.split("<!-- routing-table -->", 1)[1].strip().splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return {int(r["layer"]): r for r in (dict(zip(header, (c.strip() for c in line.strip("|").split("|"))))
                                        for line in lines[2:] if line.startswith("|"))}


class MapSilhouette(unittest.TestCase):
    """analytics.map_silhouette: how well a 2-D map keeps the key clusters apart."""

    def test_separated_clusters_score_high_and_mixed_low(self):
        labels = np.repeat([0, 1, 2], 10)
        rng = np.random.default_rng(0)
        centers = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
        apart = centers[labels] + 0.1 * rng.normal(size=(30, 2))
        self.assertGreater(analytics.map_silhouette(apart, labels), 0.9)
        mixed = rng.normal(size=(30, 2))   # the same labels on points that ignore them
        self.assertLess(analytics.map_silhouette(mixed, labels), 0.2)

    def test_undefined_cases_are_none(self):
        self.assertIsNone(analytics.map_silhouette(np.zeros((5, 2)), np.zeros(5, dtype=int)))
        self.assertIsNone(analytics.map_silhouette(np.eye(3, 2), np.arange(3)))


class BaselineReports(unittest.TestCase):
    """Runs of E = 7 experts, d = 4, one routed layer, analytics of step 10 with counts and
    co-activation only (what the trainer writes for model.ffn = moe | hash)."""

    def make_run(self, ffn, balance="aux_loss"):
        import h5py
        run = Path(self.tmp.name) / f"{ffn}_{balance}_{len(list(Path(self.tmp.name).iterdir()))}"
        (run / "analytics").mkdir(parents=True)
        (run / "config.toml").write_text(
            f"[model]\nffn = '{ffn}'\nn_layers = 1\nd_model = 4\nnum_experts = 7\ntop_k = 2\n"
            f"some_layers = 'all'\n\n[moe]\nbalance = '{balance}'\naux_loss = 0.01\nbias_rate = 0.001\n")
        c, n = two_block_coactivation()
        with h5py.File(run / "analytics" / "step_00000010.h5", "w") as f:
            f["layers/0/counts"] = n.astype(np.float32)
            f["layers/0/coactivation"] = c.astype(np.float32)
        routing = {"layer": 0, "gini": analytics.gini(n), "entropy": analytics.entropy_nats(n),
                   "entropy_norm": analytics.entropy_norm(n), "dead_experts": analytics.dead_experts(n), "churn": None}
        lines = [{"step": s, "loss": 5.0 - 0.1 * s, "routing": [routing]} for s in (5, 10)]
        lines.append({"event": "eval", "step": 10, "val_loss": 4.0, "val_ppl": 54.6, "unigram_ppl": 30.0,
                      "routing": [routing], "sample": "And God said"})
        lines.append({"event": "done", "step": 10, "elapsed_s": 3.0})
        (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
        return run

    def gate(self):
        w = np.random.default_rng(7).normal(size=(7, 4))
        b = np.array([0.01, -0.02, 0, 0.03, 0, 0, 0.05])
        return w, b

    def write_checkpoint(self, run, step, w, b):
        import h5py
        d = run / "checkpoints" / f"step_{step:08d}"
        d.mkdir(parents=True)
        with h5py.File(d / "rank_00000.h5", "w") as f:
            f["layers.0.moe.gate.weight"] = w.astype(np.float32)
            f["layers.0.moe.bias"] = b.astype(np.float32)
        tensors = {"layers.0.moe.gate.weight": {"file": "rank_00000.h5", "shape": [7, 4], "dtype": "float32"},
                   "layers.0.moe.bias": {"file": "rank_00000.h5", "shape": [7], "dtype": "float32"}}
        (d / "manifest.json").write_text(json.dumps({"step": step, "tensors": tensors}))
        (run / "checkpoints" / "latest").write_text(d.name)

    def report(self, run):
        md = make_report(run, run / "report", None, "tsne").read_text()
        pngs = sorted(p.name for p in (run / "report").glob("*.png"))
        for name in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
            self.assertIn(name, pngs)
            self.assertEqual((run / "report" / name).read_bytes()[:4], b"\x89PNG")
        self.assertNotIn("WARNING", md)
        return md, pngs

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def test_hash(self):
        md, pngs = self.report(self.make_run("hash"))
        self.assertTrue(md.startswith("# Run report: `") and md.splitlines()[0].endswith("(hash routing)"))
        self.assertIn("- Router: **hash**", md)
        row = table(md)[0]
        self.assertEqual([row[c] for c in ("k", "silhouette", "mean key cos", "mean key norm", "corr(cos, co-act)")],
                         ["—"] * 5)
        self.assertEqual((row["dead"], row["Gini"]), ("1", f"{analytics.gini(two_block_coactivation()[1]):.4f}"))
        self.assertIn("—: does not apply — hash routing has no keys", md)
        self.assertIn("layer_0_coactivation.png", pngs)
        self.assertNotIn("layer_0_keys.png", pngs)
        self.assertIn("panels are left out", md)

    def test_moe_gate_from_checkpoint(self):
        run = self.make_run("moe", "bias")
        w, b = self.gate()
        self.write_checkpoint(run, 10, w, b)
        md, pngs = self.report(run)
        self.assertTrue(md.splitlines()[0].endswith("(MoE, balance bias)"))
        self.assertIn("`moe.balance = bias`", md)
        row = table(md)[0]
        w32 = w.astype(np.float32)
        self.assertAlmostEqual(float(row["mean gate-row cos"]), analytics.mean_pairwise_cosine(w32), places=4)
        self.assertAlmostEqual(float(row["mean gate-row norm"]), analytics.mean_key_norm(w32), places=4)
        self.assertGreaterEqual(int(row["k"]), 2)
        self.assertIn("rows W_g[i] of the learned gate (checkpoint step 10)", md)
        self.assertIn("Selection bias b_i: from -0.0200 (expert 1) to +0.0500 (expert 6)", md)
        self.assertIn("layer_0_keys.png", pngs)

    def test_moe_gate_from_model_h5_then_nowhere(self):
        import h5py
        run = self.make_run("moe")
        w, _ = self.gate()
        with h5py.File(run / "model.h5", "w") as f:
            f["layers.0.moe.gate.weight"] = w
        md, _ = self.report(run)
        self.assertIn("rows W_g[i] of the learned gate (model.h5)", md)
        (run / "model.h5").unlink()
        md, pngs = self.report(run)
        self.assertEqual(table(md)[0]["mean gate-row cos"], "—")
        self.assertIn("No checkpoint or model.h5 holds the MoE gate", md)
        self.assertIn("layer_0_coactivation.png", pngs)
        self.assertNotIn("layer_0_keys.png", pngs)  # the first report's figure is not left behind


if __name__ == "__main__":
    unittest.main()
