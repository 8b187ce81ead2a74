"""some_tools.top without a terminal: the incremental metrics.jsonl reader against the whole-file
reader, the run-directory check, key drift, and the screen rendered at a wide and a narrow,
colourless, ASCII-only width (the live dashboard itself is tested under tmux by top_live.sh)."""
import io
import json
import tempfile
import unittest
from pathlib import Path

import h5py
import numpy as np
from rich.console import Console

from some_tools import metrics
from some_tools.errors import InputError
from some_tools.top import render
from some_tools.top.app import Dashboard
from some_tools.top.run import Run, check_run_dir, key_drift


def routing(layer, gini, churn=None):
    return {"layer": layer, "gini": gini, "entropy": 1.0, "entropy_norm": 0.9, "dead_experts": 1, "churn": churn,
            "top1_score": 0.5, "key_norm": 1.0, "key_cos": 0.1}


def train_line(step, loss=3.0):
    return {"step": step, "loss": loss, "lr": 1e-3, "tokens_per_s": 1000.0, "elapsed_s": step * 0.5,
            "routing": [routing(0, 0.2), routing(1, 0.3)]}


def eval_line(step):
    return {"step": step, "event": "eval", "val_loss": 2.5, "val_ppl": 12.18, "unigram_ppl": 20.5,
            "sample": "And God said unto", "routing": [routing(0, 0.25, 0.1), routing(1, 0.35, 0.2)]}


def write_analytics(run: Path, step: int, keys: np.ndarray, counts: np.ndarray):
    (run / "analytics").mkdir(exist_ok=True)
    with h5py.File(run / "analytics" / f"step_{step:08d}.h5", "w") as f:
        for layer in (0, 1):
            g = f.create_group(f"layers/{layer}")
            g["counts"] = counts
            g["coactivation"] = np.outer(counts, counts) / max(counts.sum(), 1)
            g["keys"] = keys
            g["usage"] = np.ones(counts.size)


class Follower(unittest.TestCase):
    def test_appends_partial_lines_and_rewrites_like_read(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "metrics.jsonl"
            f = metrics.Follower(path)
            with self.assertRaisesRegex(InputError, "metrics.jsonl: no such file"):
                f.poll()
            lines = [json.dumps(train_line(s)) for s in (5, 10)] + [json.dumps(eval_line(10))]
            whole = "\n".join(lines) + "\n"
            cut = len(lines[0]) + 1 + len(lines[1]) // 2   # in the middle of the second line
            path.write_text(whole[:cut])
            self.assertTrue(f.poll())
            self.assertEqual([t["step"] for t in f.metrics().train], [5])
            self.assertFalse(f.poll())                      # nothing new: nothing read
            with open(path, "a") as out:
                out.write(whole[cut:] + json.dumps(train_line(10, loss=1.0)) + "\n")   # step 10 logged again
                out.write(json.dumps({"step": 10, "event": "done"}) + "\n")
            self.assertTrue(f.poll())
            m = f.metrics()
            self.assertEqual(m, metrics.read(path))
            self.assertEqual([t["loss"] for t in m.train], [3.0, 1.0])   # the later line of a step wins
            self.assertTrue(m.finished)
            path.write_text(json.dumps(train_line(5)) + "\n")          # a new run in the same place
            f.poll()
            self.assertEqual(f.metrics(), metrics.read(path))
            self.assertIsNone(f.metrics().end)


class RunDirectory(unittest.TestCase):
    def test_not_a_run_names_the_path_and_what_was_expected(self):
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            with self.assertRaisesRegex(InputError, f"{d}: not a run directory: expected {d}/metrics.jsonl"):
                check_run_dir(d)
            with self.assertRaisesRegex(InputError, f"{d}/nope: no such directory"):
                check_run_dir(d / "nope")
            (d / "file").write_text("x")
            with self.assertRaisesRegex(InputError, f"{d}/file: not a directory"):
                check_run_dir(d / "file")
            (d / "config.toml").write_text("[train]\nmax_steps = 40\n")   # a trainer that is starting
            check_run_dir(d)

    def test_key_drift(self):
        old = np.eye(3)
        new = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0.6, 0.8]])
        d = key_drift(new, old, since=10)
        self.assertAlmostEqual(d.max, 0.2)
        self.assertEqual(d.argmax, 2)
        self.assertAlmostEqual(d.mean, 0.2 / 3)
        self.assertIsNone(key_drift(np.eye(2), old, 10))


class Screen(unittest.TestCase):
    def make_run(self, tmp: Path) -> Run:
        (tmp / "config.toml").write_text("[train]\nmax_steps = 40\n")
        lines = [train_line(s) for s in (5, 10, 15, 20)] + [eval_line(10), eval_line(20)]
        (tmp / "metrics.jsonl").write_text("".join(json.dumps(j) + "\n" for j in lines))
        rng = np.random.default_rng(0)
        keys = rng.normal(size=(6, 4))
        write_analytics(tmp, 10, keys, np.array([5, 4, 3, 2, 1, 0]))
        write_analytics(tmp, 20, keys + 0.1 * rng.normal(size=(6, 4)), np.array([6, 4, 3, 2, 0, 0]))
        run = Run(tmp)
        run.poll()
        return run

    def draw(self, dash: Dashboard, width: int, **console_args) -> str:
        buf = io.StringIO()
        console = Console(file=buf, width=width, **console_args)
        console.print(dash.frame(console))
        return buf.getvalue()

    def test_wide_and_narrow(self):
        with tempfile.TemporaryDirectory() as tmp:
            run = self.make_run(Path(tmp))
            self.assertEqual(run.layer_ids, [0, 1])
            self.assertEqual(run.step, 20)
            self.assertAlmostEqual(run.eta_s(), 10.0)     # 20 steps to go at 2 steps/s
            self.assertEqual(len(run.layers[0].drift_history), 1)
            dash = Dashboard([run])
            wide = self.draw(dash, 160, color_system="truecolor", force_terminal=True)
            self.assertIn("step 20/40 (50%)", wide)
            self.assertIn("layer 0: expert load", wide)
            self.assertIn("dead 2 (4, 5)", wide)
            self.assertIn("unigram PPL 20.50", wide)
            self.assertIn("And God said unto", wide)
            self.assertIn("key drift 1−cos: mean", wide)
            self.assertIn("\x1b[", wide)                     # coloured
            dash.act("next_layer")
            narrow = self.draw(dash, 48, color_system=None, force_terminal=True, legacy_windows=False,
                               _environ={"TERM": "xterm"})
            self.assertIn("layer 1: expert load", narrow)
            self.assertNotIn("\x1b[3", narrow)                # no colour codes
            self.assertTrue(all(len(line) <= 48 for line in narrow.splitlines()))
            self.assertEqual(render.sparkline([0, 1, 2, 3], 4, ascii_only=True), "_-+#")
            self.assertEqual(render.sparkline([0, 1, 2, 3], 4), "▁▃▆█")
            self.assertEqual(len(render.sparkline(list(range(100)), 10)), 10)   # resampled to the width
            self.assertEqual(render.bar(0.5, 8, ascii_only=True), "####")
            self.assertEqual(render.bar(1.0, 2), "██")

    def test_several_runs_get_a_summary_row_each(self):
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            dash = Dashboard([self.make_run(Path(a)), self.make_run(Path(b))])
            out = self.draw(dash, 160)
            for name in (Path(a).name, Path(b).name):
                self.assertIn(name, out)
            self.assertIn("(run 1 of 2)", out)
            dash.act("next_run")
            self.assertIn("(run 2 of 2)", self.draw(dash, 160))


if __name__ == "__main__":
    unittest.main()
