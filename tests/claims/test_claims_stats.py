#!/usr/bin/env python3
"""Unit tests of the pure parts of `some experiment claims` (some_tools.claims.stats, .runner, .plan
and .experiment's domain-B corpus), of the gap and recycling parts' plans and statistics, and of
the metrics.jsonl reader (some_tools.metrics) against hand-computed values."""
from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import unittest
from pathlib import Path

import numpy as np

from some_tools.claims import experiment, runner, stats
from some_tools.claims.plan import (
    SCALES,
    equal_trainable_d_ff,
    make_gap_plan,
    make_part_plan,
    make_plan,
    make_recycling_plan,
    merge_plans,
)
from some_tools.claims.results import load_run
from some_tools.errors import InputError


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


class GapStats(unittest.TestCase):
    def test_mean_std(self):
        m, sd = stats.mean_std([10.0, 12.0])
        self.assertAlmostEqual(m, 11.0)
        self.assertAlmostEqual(sd, math.sqrt(2.0))            # sample std: sqrt(((-1)^2 + 1^2) / (2 - 1))
        self.assertEqual(stats.mean_std([5.0]), (5.0, None))
        with self.assertRaises(ValueError):
            stats.mean_std([])

    def test_formats(self):
        self.assertEqual(stats.fmt_mean_std(151.234, 3.4567), "151.23 ± 3.46")
        self.assertEqual(stats.fmt_mean_std(151.234, None), "151.23")
        self.assertEqual(stats.fmt_pct(0.2634), "+26.3%")
        self.assertEqual(stats.fmt_pct(-0.05), "-5.0%")
        self.assertEqual(stats.yes_no(True), "yes")

    def test_beyond_spread(self):
        self.assertTrue(stats.beyond_spread(100.0, 1.0, 105.0, 2.0))    # 5 > 1 + 2
        self.assertFalse(stats.beyond_spread(100.0, 3.0, 105.0, 2.0))   # 5 = 3 + 2: not beyond
        self.assertTrue(stats.beyond_spread(100.0, None, 100.5, None))  # one seed: any difference

    def test_within_gap(self):
        self.assertTrue(stats.within_gap(110.0, 100.0))     # exactly +10%
        self.assertFalse(stats.within_gap(110.5, 100.0))
        self.assertTrue(stats.within_gap(80.0, 100.0))      # better than dense counts
        self.assertFalse(stats.within_gap(106.0, 100.0, within=0.05))

    def test_equal_params(self):
        self.assertTrue(stats.equal_params(20064, 20000))   # 0.3%
        self.assertTrue(stats.equal_params(20080, 20000))
        self.assertFalse(stats.equal_params(22112, 20000))  # a shared expert's 2 d H more
        self.assertTrue(stats.equal_params(0, 0))

    def test_gap_closed(self):
        # random 120, wide 100: recycled 105 covers 15 of the 20
        self.assertAlmostEqual(stats.gap_closed(105.0, 120.0, 100.0), 0.75)
        self.assertAlmostEqual(stats.gap_closed(125.0, 120.0, 100.0), -0.25)
        self.assertIsNone(stats.gap_closed(105.0, 100.0, 100.0))
        self.assertIsNone(stats.gap_closed(105.0, 90.0, 100.0))

    def test_option_verdict(self):
        self.assertEqual(stats.option_verdict("kmeans", 140.0, 1.0, "SoME", 150.0, 2.0),
                         "kmeans val PPL 140.00 ± 1.00 vs SoME 150.00 ± 2.00: 7% better, beyond the seeds' spread")
        self.assertEqual(stats.option_verdict("bias", 149.0, 2.0, "SoME", 150.0, 2.0),
                         "bias val PPL 149.00 ± 2.00 vs SoME 150.00 ± 2.00: about equal (within 2%), within the "
                         "seeds' spread")

    def test_column_means(self):
        self.assertEqual(stats.column_means([[1.0, 2.0], [3.0, 6.0]]), [2.0, 4.0])


class FfnToResidual(unittest.TestCase):
    """RunResult.ffn_out_ratio: the mean per block over the last N training log lines."""

    def run_dir(self, d: str, lines: list[dict]) -> Path:
        run = Path(d)
        done = {"event": "done", "step": 20, "tokens": 80, "val_ppl": 10.0, "unigram_ppl": 20.0}
        (run / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in [*lines, done]) + "\n")
        return run

    def test_tail_mean(self):
        lines = [{"step": 5, "loss": 3.0, "ffn_out_ratio": [9.0, 9.0]},
                 {"step": 10, "loss": 3.0, "ffn_out_ratio": [1.0, 0.5]},
                 {"event": "eval", "step": 10, "val_ppl": 11.0},
                 {"step": 15, "loss": 3.0, "ffn_out_ratio": [2.0, 0.25]},
                 {"step": 20, "loss": 3.0, "ffn_out_ratio": [3.0, 0.75]}]
        with tempfile.TemporaryDirectory() as d:
            r = load_run(make_plan("tiny").run("dense"), self.run_dir(d, lines))
            self.assertEqual(r.ffn_out_ratio(3), [2.0, 0.5])       # steps 10, 15, 20; the eval line is not one
            self.assertEqual(r.ffn_out_ratio(1), [3.0, 0.75])

    def test_missing_metric_names_file_and_key(self):
        with tempfile.TemporaryDirectory() as d:
            r = load_run(make_plan("tiny").run("dense"), self.run_dir(d, [{"step": 20, "loss": 3.0}]))
            with self.assertRaises(InputError) as e:
                r.ffn_out_ratio(3)
            self.assertIn("metrics.jsonl", str(e.exception))
            self.assertIn("ffn_out_ratio", str(e.exception))
            self.assertIn("step 20", str(e.exception))


class GapPlan(unittest.TestCase):
    def test_equal_trainable_d_ff(self):
        # SoME layer trains d^2 + d (linear query); dense 2 d d_ff: floor((d^2 + d) / 2d)
        self.assertEqual(equal_trainable_d_ff(192), 96)    # 2 * 192 * 96 = 36864 <= 37056
        self.assertEqual(equal_trainable_d_ff(32), 16)     # 1024 <= 1056
        self.assertEqual(equal_trainable_d_ff(33), 17)     # 1122 <= 1122

    def test_rows_runs_and_fairness(self):
        for scale in SCALES:
            plan = make_gap_plan(scale)
            s = plan.scale
            keys = [c.key for c in plan.gap]
            self.assertEqual(keys, ["some", "learn-scale", "bias", "kmeans", "output-scale", "shared", "all", "dense",
                                    "dense-shared", "dense-params"])
            headline = {"some", "bias", "dense"}
            self.assertEqual({c.key for c in plan.gap if c.headline}, headline)
            self.assertEqual(len(plan.runs), 3 * s.gap_seeds_headline + (len(keys) - 3) * s.gap_seeds)
            self.assertEqual(len({r.name for r in plan.runs}), len(plan.runs))
            # Every run: a whole-split eval and one with each block's FFN left out.
            self.assertEqual(len(plan.evals), len(plan.runs) * (1 + s.n_layers))
            first = [e for e in plan.evals if e.run == plan.runs[0].name]
            self.assertEqual([e.ablate for e in first], list(range(-1, s.n_layers)))
            self.assertTrue(all(e.when == "ablation" and e.domain == "A" for e in plan.evals))
            by_key = {c.key: c for c in plan.gap}
            for c in plan.gap:
                runs = plan.gap_runs(c.key)
                seeds = s.gap_seeds_headline if c.key in headline else s.gap_seeds
                self.assertEqual([r.seed for r in runs], list(range(seeds)))
                for r in runs:
                    self.assertEqual(r.sets["model.seed"], str(1234 + r.seed))
                    self.assertEqual(r.sets["train.seed"], str(1234 + r.seed))
                    self.assertEqual(plan.max_steps(r), s.gap_steps)
                    self.assertEqual(r.sets["model.d_model"], str(s.d_model))
                if c.ffn == "some":  # its dense comparison has its active units
                    self.assertEqual(plan.gap_runs(c.equal_active)[0].active_ffn, runs[0].active_ffn, c.key)
            self.assertEqual(by_key["dense"].d_ff, s.top_k * s.d_expert)
            self.assertEqual(by_key["dense-shared"].d_ff, s.top_k * s.d_expert + s.d_expert)
            self.assertEqual(by_key["dense-params"].d_ff, equal_trainable_d_ff(s.d_model))
            every = by_key["all"].options
            for key in ("learn-scale", "bias", "kmeans", "output-scale", "shared"):
                for k, v in by_key[key].options.items():
                    self.assertEqual(every[k], v, f"the combination lacks {k}={v}")

    def test_small_scale_is_long_enough(self):
        # At 100 steps no SoME row of the small scale got below the unigram PPL: 500 steps, and 3 seeds
        # for the rows the verdict rests on; ~1.6 s per step at 1 thread (the recycling part's
        # measured 322-342 s per 200 steps, 2026-12-08): about 5 hours, resumable across sessions.
        s = SCALES["small"]
        self.assertGreaterEqual(s.gap_steps, 500)
        self.assertGreaterEqual(s.gap_seeds, 2)
        self.assertGreaterEqual(s.gap_seeds_headline, 3)
        self.assertLessEqual(len(make_gap_plan("small").runs) * s.gap_steps * 1.6, 5.5 * 3600)


class RecyclingPlan(unittest.TestCase):
    def test_rows_inheritance_and_order(self):
        for scale in SCALES:
            plan = make_recycling_plan(scale)
            s = plan.scale
            names = [r.name for r in plan.runs]
            self.assertEqual(len(names), len(set(names)))
            self.assertEqual(names[0], "recycle-wide-s0")           # trained before anything is cut from it
            self.assertEqual([row.key for row in plan.recycle],
                             ["wide", "recycled", "random", "dense", "dense-tokens", "dense-flops", "wide-continued",
                              "dense-upcycled", "dense-transplant", "some-upcycled", "some-cluster"])
            for key in ("wide", "recycled", "dense", "dense-tokens", "dense-flops", "dense-upcycled",
                        "some-upcycled"):
                self.assertEqual(len(plan.gap_runs(key)), 2, key)    # the headline rows have two seeds
            for i in range(2):
                wide, rec = plan.run(f"recycle-wide-s{i}"), plan.run(f"recycle-recycled-s{i}")
                self.assertEqual(wide.d_ff, s.recycle_experts * s.d_expert)
                self.assertEqual(rec.experts_from, wide.name)       # seed i's library from seed i's parent
                self.assertEqual(rec.num_experts * rec.d_expert, wide.d_ff)
                self.assertLess(names.index(wide.name), names.index(rec.name))
                flops = plan.run(f"recycle-dense-flops-s{i}")
                self.assertEqual(flops.flops_of, (rec.name,))
                self.assertLess(names.index(rec.name), names.index(flops.name))
                for r in plan.runs:
                    if r.seed == i and not r.continue_from:
                        self.assertEqual(r.sets["model.seed"], str(1234 + i), r.name)
                self.assertEqual(plan.run(f"recycle-dense-tokens-s{i}").steps_a, 2 * s.steps_a)
                up = plan.run(f"recycle-dense-upcycled-s{i}")
                self.assertEqual((up.init_from, up.init_parts, up.init_units, up.init_optimizer),
                                 (wide.name, "all", "first", True))
                self.assertEqual(up.active_ffn, rec.active_ffn)     # every student at equal active compute
            t = plan.run("recycle-dense-transplant-s0")
            self.assertEqual((t.init_parts, t.init_optimizer), ("ffn", False))
            c = plan.run("recycle-some-cluster-s0")
            self.assertEqual((c.init_parts, c.init_units), ("ffn", "cluster"))
            cont = plan.run("recycle-wide-continued-s0")
            self.assertEqual((cont.continue_from, cont.domain, cont.steps_b), ("recycle-wide-s0", "A", s.steps_a))
            self.assertEqual(plan.max_steps(cont), 2 * s.steps_a)
            self.assertEqual(len(plan.evals), 16)
            self.assertEqual(plan.max_steps(plan.run("recycle-dense-tokens-s0-then-python")), 2 * s.steps_a + s.steps_b)

    def test_library_and_init_options_name_the_run_dir(self):
        with tempfile.TemporaryDirectory() as d:
            args = type("Args", (), {"some": "/bin/true", "out": d, "data": d, "stdlib": d})()
            plan = make_recycling_plan("tiny")
            exp = experiment.Experiment(args, plan)
            root = Path(d).resolve()
            sets = exp.sets(plan.run("recycle-recycled-s1"))
            self.assertIn(f"model.experts_from={root / 'recycle-wide-s1'}", sets)
            sets = exp.sets(plan.run("recycle-some-cluster-s0"))
            for kv in (f"model.init_from={root / 'recycle-wide-s0'}", "model.init_parts=ffn",
                       "model.init_units=cluster", "model.init_optimizer=false"):
                self.assertIn(kv, sets)
            self.assertFalse(any(x.startswith("model.experts_from") or x.startswith("model.init_from")
                                 for x in exp.sets(plan.run("recycle-random-s0"))))
            # continuations resume a checkpoint: no library or init option
            for name in ("recycle-recycled-s0-then-python", "recycle-wide-continued-s0"):
                self.assertFalse(any(x.startswith("model.") for x in exp.sets(plan.run(name))), name)

    def test_equal_flops_steps_from_the_finished_runs(self):
        """wide: 1000 tokens at 30 FLOPs/token; recycled: 1000 at 12 + the wide's; dense: 10 per token,
        100 tokens per step: (30000 + 12000) / (10 * 100) = 42 steps."""
        with tempfile.TemporaryDirectory() as d:
            args = type("Args", (), {"some": "/bin/true", "out": d, "data": d, "stdlib": d})()
            plan = make_recycling_plan("tiny")
            exp = experiment.Experiment(args, plan)
            exp.tokens_per_step = lambda: 100
            flops_run = plan.run("recycle-dense-flops-s0")
            self.assertEqual(exp.max_steps(flops_run), plan.max_steps(flops_run))  # nothing finished yet
            for name, tokens, flops in (("recycle-wide-s0", 1000, 30.0), ("recycle-recycled-s0", 1000, 12.0),
                                        ("recycle-dense-s0", 1000, 10.0)):
                (Path(d) / name).mkdir()
                (Path(d) / name / "metrics.jsonl").write_text(
                    '{"step": 1, "loss": 1.0}\n' + json.dumps({"event": "done", "step": 10, "tokens": tokens,
                                                                "model_flops_per_token": flops}) + "\n")
            self.assertEqual(exp.training_flops("recycle-recycled-s0"), 42000.0)
            self.assertEqual(exp.max_steps(flops_run), 42)
            self.assertIn("train.max_steps=42", exp.sets(flops_run))


class MergedPlans(unittest.TestCase):
    def test_all_merges_the_three_parts(self):
        plans = [make_part_plan("tiny", p) for p in ("claims", "gap", "recycling")]
        merged = merge_plans(plans)
        names = [r.name for r in merged.runs]
        self.assertEqual(len(names), len(set(names)))
        self.assertEqual(len(merged.runs), 9 + 20 + 22)
        self.assertEqual(len(merged.evals), 12 + 60 + 16)
        self.assertEqual(len(merged.recycle), 11)
        self.assertEqual(merge_plans([plans[0]]).runs, plans[0].runs)

    def test_conflicting_runs_are_refused(self):
        rec, other = make_part_plan("tiny", "recycling"), make_part_plan("tiny", "recycling")
        other.runs = [dataclasses.replace(r, d_ff=999) if r.name == "recycle-dense-s0" else r for r in other.runs]
        with self.assertRaises(ValueError):
            merge_plans([rec, other])

    def test_tasks_of_a_part(self):
        with tempfile.TemporaryDirectory() as d:
            args = type("Args", (), {"some": "/bin/true", "out": d, "data": d, "stdlib": d})()
            gap = make_part_plan("tiny", "gap")
            tasks = experiment.Experiment(args, gap).tasks()
            self.assertEqual(len(tasks), 20 + 20 * 3)              # no domain B: no prepare; its ablation evals
            self.assertEqual([t.kind for t in tasks].count("train"), 20)
            self.assertFalse(any(t.kind == "prepare" for t in tasks))
            ablate = next(t for t in tasks if t.name == "gap-some-s0.ablate.1")
            self.assertEqual(ablate.argv[-2:], ["--ablate-ffn", "1"])


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
