#!/usr/bin/env python3
"""Unit tests of the pure parts of `some experiment claims` (some_tools.claims.stats, .runner, .plan
and .experiment's domain-B corpus) and of the metrics.jsonl reader (some_tools.metrics) against
hand-computed values."""
from __future__ import annotations

import json
import math
import tempfile
import unittest
from pathlib import Path

import numpy as np

from some_tools.claims import experiment, runner, stats
from some_tools.claims.plan import SCALES, make_plan


def coact_example() -> tuple[np.ndarray, np.ndarray]:
    """E = 4, k = 2: 6 tokens chose {0, 1}, 2 chose {0, 2}, 2 chose {2, 3}. n = row sums (k = 2)."""
    c = np.zeros((4, 4))
    for (i, j), w in {(0, 1): 6, (0, 2): 2, (2, 3): 2}.items():
        c[i, j] = c[j, i] = w
    return c, c.sum(axis=1)  # n = [8, 6, 4, 2]


class CoactivationStats(unittest.TestCase):
    def test_pair_counts(self):
        c, _ = coact_example()
        # pairs in (0,1) (0,2) (0,3) (1,2) (1,3) (2,3) order
        np.testing.assert_array_equal(stats.pair_counts(c), [6, 2, 0, 0, 0, 2])

    def test_top_pair_mass(self):
        c, _ = coact_example()
        # 6 pairs: the top ceil(0.1 * 6) = 1 pair holds 6 of 10 co-activations
        self.assertAlmostEqual(stats.top_pair_mass(c), 0.6)
        # the top ceil(0.5 * 6) = 3 pairs hold all of them
        self.assertAlmostEqual(stats.top_pair_mass(c, fraction=0.5), 1.0)
        self.assertAlmostEqual(stats.uniform_top_pair_mass(4), 1 / 6)
        self.assertAlmostEqual(stats.uniform_top_pair_mass(8), 3 / 28)

    def test_pair_statistics_of_live_experts_only(self):
        c, n = coact_example()
        big = np.zeros((6, 6))
        big[:4, :4] = c                         # experts 4 and 5 never selected
        counts = np.concatenate([n, [0, 0]])
        np.testing.assert_array_equal(stats.live_experts(counts), [0, 1, 2, 3])
        np.testing.assert_array_equal(stats.pair_counts(big, counts), [6, 2, 0, 0, 0, 2])
        self.assertAlmostEqual(stats.top_pair_mass(big, counts), 0.6)   # as without the dead experts
        self.assertAlmostEqual(stats.top_pair_mass(big), 6 / 10 + 2 / 10)  # 15 pairs: top 2 hold 8 of 10
        self.assertAlmostEqual(stats.pair_gini(big, counts), 38 / 60)

    def test_top_pair_mass_of_uniform_pairs_is_the_uniform_value(self):
        c = np.ones((5, 5)) - np.eye(5)
        self.assertAlmostEqual(stats.top_pair_mass(c), stats.uniform_top_pair_mass(5))

    def test_pair_gini(self):
        c, _ = coact_example()
        # sorted [0, 0, 0, 2, 2, 6], n = 6, sum 10: (1*2 + 3*2 + 5*6) / (6 * 10) = 38 / 60
        self.assertAlmostEqual(stats.pair_gini(c), 38 / 60)
        self.assertAlmostEqual(stats.pair_gini(np.ones((4, 4)) - np.eye(4)), 0.0)

    def test_best_partner_affinity(self):
        c, n = coact_example()
        # A01 = 6 / sqrt(8 * 6), A02 = 2 / sqrt(8 * 4), A23 = 2 / sqrt(4 * 2): row maxima
        # [A01, A01, A23, A23]
        a01, a23 = 6 / math.sqrt(48), 2 / math.sqrt(8)
        self.assertAlmostEqual(stats.best_partner_affinity(c, n), (2 * a01 + 2 * a23) / 4)
        self.assertAlmostEqual(stats.uniform_affinity(2, 8), 1 / 7)
        self.assertAlmostEqual(stats.uniform_affinity(4, 64), 3 / 63)

    def test_best_partner_affinity_skips_dead_experts(self):
        c = np.zeros((3, 3))
        c[0, 1] = c[1, 0] = 5
        n = np.array([5, 5, 0])
        self.assertAlmostEqual(stats.best_partner_affinity(c, n), 1.0)  # 0 and 1 always together

    def test_no_coactivation_is_none(self):
        z = np.zeros((4, 4))
        self.assertIsNone(stats.top_pair_mass(z))
        self.assertIsNone(stats.pair_gini(z))
        self.assertIsNone(stats.best_partner_affinity(z, np.array([3, 1, 0, 2])))
        self.assertIsNone(stats.top_pair_mass(np.zeros((1, 1))))

    def test_mean_or_none(self):
        self.assertAlmostEqual(stats.mean_or_none([0.2, None, 0.4]), 0.3)
        self.assertIsNone(stats.mean_or_none([None, None]))


class Parsing(unittest.TestCase):
    EVAL = ("val loss 4.6052 | val PPL 100.00 | unigram PPL 300.50 | 7482 tokens\n"
            '{"dead_experts":0,"gini":0.25,"layer":0}\n{"dead_experts":2,"gini":0.5,"layer":1}\n')

    def test_eval_output(self):
        e = stats.parse_eval_output(self.EVAL)
        self.assertEqual(e["val_ppl"], 100.0)
        self.assertEqual(e["val_loss"], 4.6052)
        self.assertEqual(e["unigram_ppl"], 300.5)
        self.assertEqual(e["tokens"], 7482)
        self.assertEqual([r["dead_experts"] for r in e["routing"]], [0, 2])

    def test_eval_output_without_summary_raises(self):
        with self.assertRaises(ValueError):
            stats.parse_eval_output("[data] info: nothing here\n")

    def test_param_line(self):
        line = "[11:24:04] [train] info: model: 36960 parameters (20064 trainable), 2 layers"
        self.assertEqual(stats.parse_param_line(line), (36960, 20064))
        self.assertIsNone(stats.parse_param_line("no such line"))
        self.assertAlmostEqual(stats.trainable_fraction(200, 50), 0.25)


class Verdicts(unittest.TestCase):
    def test_compare_ppl(self):
        self.assertEqual(stats.compare_ppl(151, 120), "26% worse")     # 151 / 120 = 1.258
        self.assertEqual(stats.compare_ppl(100, 125), "20% better")    # 100 / 125 = 0.8
        self.assertEqual(stats.compare_ppl(101, 100), "about equal (within 2%)")
        self.assertAlmostEqual(stats.relative_change(151, 120), 31 / 120)

    def test_compare_ppl_to(self):
        self.assertEqual(stats.compare_ppl_to(151, 120, "dense"), "26% worse than dense")
        self.assertEqual(stats.compare_ppl_to(100, 125, "dense"), "20% better than dense")
        self.assertEqual(stats.compare_ppl_to(99, 100, "dense"), "about equal to dense (within 2%)")

    def test_ppl_verdict(self):
        self.assertEqual(stats.ppl_verdict("SoME", 151, "dense", 120, "at equal active parameters"),
                         "SoME val PPL 151.00 vs dense 120.00: SoME is 26% worse at equal active parameters")

    def test_unigram_verdict(self):
        self.assertEqual(stats.unigram_verdict("SoME", 100, 300),
                         "SoME val PPL 100.00 is below the unigram PPL 300.00 of the same tokens (3.00x lower): "
                         "it learned more than token frequencies")
        self.assertIn("has not yet learned", stats.unigram_verdict("SoME", 400, 300))

    def test_best_of(self):
        self.assertEqual(stats.best_of({"k=1": 120.0, "k=2": 110.0, "k=4": 115.0}), "k=2")

    def test_forgetting_ratio(self):
        self.assertAlmostEqual(stats.forgetting_ratio(100.0, 135.0), 1.35)
        with self.assertRaises(ValueError):
            stats.forgetting_ratio(0.0, 1.0)

    def test_forgetting_verdict_least(self):
        self.assertEqual(
            stats.forgetting_verdict({"SoME": 1.10, "dense": 1.40, "MoE": 1.30}),
            "SoME forgets least: domain-A PPL x1.100 (10% higher) after training on domain B, "
            "vs dense x1.400 (40% higher), MoE x1.300 (30% higher)")

    def test_forgetting_verdict_middle_and_most(self):
        self.assertEqual(
            stats.forgetting_verdict({"SoME": 1.20, "dense": 1.40, "MoE": 1.01}),
            "SoME forgets less than dense but not less than MoE: domain-A PPL x1.200 (20% higher) after training "
            "on domain B, vs dense x1.400 (40% higher), MoE x1.010 (about unchanged, within 2%)")
        self.assertTrue(stats.forgetting_verdict({"SoME": 2.0, "dense": 1.5}).startswith("SoME forgets most: "))

    def test_forgetting_conclusion(self):
        self.assertEqual(stats.forgetting_conclusion(1.10),
                         "freezing the experts does not prevent forgetting: SoME's domain-A PPL rose by 10% (x1.100)")
        self.assertEqual(stats.forgetting_conclusion(1.01),
                         "with its experts frozen, SoME keeps domain A (domain-A PPL x1.010, about unchanged, "
                         "within 2%)")
        self.assertEqual(stats.forgetting_conclusion(0.90),
                         "with its experts frozen, SoME keeps domain A (domain-A PPL x0.900, 10% lower)")


class Runner(unittest.TestCase):
    def test_run_finished(self):
        with tempfile.TemporaryDirectory() as d:
            run = Path(d)
            self.assertFalse(runner.run_finished(run))
            m = run / "metrics.jsonl"
            m.write_text('{"step": 1, "loss": 3}\n')
            self.assertFalse(runner.run_finished(run))
            m.write_text('{"step": 1, "loss": 3}\n{"event": "done", "step": 1}\n\n')
            self.assertTrue(runner.run_finished(run))
            m.write_text('{"event": "done", "step": 1}\n{"event": "resume", "step": 1}\n')
            self.assertFalse(runner.run_finished(run))
            m.write_text('{"event": "done", "st')  # a line being written
            self.assertFalse(runner.run_finished(run))

    def test_latest_checkpoint(self):
        with tempfile.TemporaryDirectory() as d:
            run = Path(d)
            self.assertIsNone(runner.latest_checkpoint(run))
            (run / "checkpoints" / "step_00000010").mkdir(parents=True)
            (run / "checkpoints" / "latest").write_text("step_00000010\n")
            self.assertIsNone(runner.latest_checkpoint(run))  # no manifest: not complete
            (run / "checkpoints" / "step_00000010" / "manifest.json").write_text("{}")
            self.assertEqual(runner.latest_checkpoint(run), run / "checkpoints" / "step_00000010")

    def test_format_duration(self):
        self.assertEqual(runner.format_duration(12.34), "12.3s")
        self.assertEqual(runner.format_duration(185), "3m05s")
        self.assertEqual(runner.format_duration(3720), "1h02m")
        self.assertEqual(runner.format_duration(-1), "?")


class Plan(unittest.TestCase):
    def test_equal_active_and_library_parameters(self):
        for scale in SCALES:
            plan = make_plan(scale)
            some = plan.run("some-k2")
            for name in ("dense", "moe", "some-frozen-keys", "some-k1", "some-k4"):
                self.assertEqual(plan.run(name).active_ffn, some.active_ffn, f"{scale} {name}")
            for name in ("some-k1", "some-k4"):
                r = plan.run(name)
                self.assertEqual(r.num_experts * r.d_expert, some.num_experts * some.d_expert, f"{scale} {name}")
            self.assertEqual([plan.run(n).top_k for n in ("some-k1", "some-k2", "some-k4")], [1, 2, 4])
            for r in plan.runs:
                self.assertEqual(plan.max_steps(r), plan.scale.steps_a + (plan.scale.steps_b if r.continue_from else 0))
            self.assertEqual(len(plan.evals), 12)


class DomainB(unittest.TestCase):
    def test_corpus_subset_and_chunks(self):
        with tempfile.TemporaryDirectory() as d:
            lib = Path(d) / "lib"
            lib.mkdir()
            (lib / "b.py").write_text("\n".join(f"x{i} = {i}" for i in range(130)))   # 130 lines -> 3 chunks
            (lib / "a.py").write_text("print(1)\n")                                     # 1 chunk
            (lib / "c.py").write_text("y" * (experiment.MAX_FILE_BYTES + 1))                # too large: left out
            (lib / "d.py").write_text("")                                               # empty: left out
            (lib / "e.txt").write_text("not python")
            files = experiment.python_corpus_files(lib, max_bytes=10 ** 6)
            self.assertEqual([p.name for p in files], ["a.py", "b.py"])
            self.assertEqual([p.name for p in experiment.python_corpus_files(lib, max_bytes=1)], ["a.py"])
            out = Path(d) / "corpus" / "python.jsonl"
            h1 = experiment.write_python_corpus(files, out)
            docs = [json.loads(line)["text"] for line in out.read_text().splitlines()]
            self.assertEqual(len(docs), 4)
            self.assertEqual(docs[1].splitlines()[0], "x0 = 0")
            self.assertEqual(len(docs[1].splitlines()), experiment.LINES_PER_DOCUMENT)
            self.assertEqual(experiment.write_python_corpus(files, out), h1)  # deterministic


if __name__ == "__main__":
    unittest.main()
