"""The one reader of each run file the Python tools share: some_tools.metrics (RUN/metrics.jsonl)
and some_tools.analytics_files (RUN/analytics/step_XXXXXXXX.h5), on hand-written files.

How a run ended is its last line's event (docs/design.md §8, launcher/sweep_summary.cpp): these
tests pin that rule for the cases where the two readers it replaces disagreed (a "preempted"
line followed by a resume, a "done" line followed by more lines).
"""
import json
import tempfile
import unittest
from pathlib import Path

import h5py
import numpy as np

from some_tools import analytics_files, metrics
from some_tools.errors import InputError


def jsonl(*objects) -> str:
    return "".join(json.dumps(o) + "\n" for o in objects)


class MetricsFile(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.path = Path(self.tmp.name) / "metrics.jsonl"

    def tearDown(self):
        self.tmp.cleanup()

    def read(self, text: str) -> metrics.Metrics:
        self.path.write_text(text)
        return metrics.read(self.path)

    def test_missing_file_names_it(self):
        with self.assertRaises(InputError) as e:
            metrics.read(self.path)
        self.assertIn(str(self.path), str(e.exception))

    def test_lines_by_kind_later_line_of_a_step_wins(self):
        m = self.read(jsonl({"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.5},
                            {"event": "eval", "step": 2, "val_ppl": 9.0},
                            {"event": "resume", "step": 1},  # a resumed run logs step 2 again
                            {"step": 2, "loss": 2.4}, {"event": "eval", "step": 2, "val_ppl": 8.0},
                            {"event": "done", "step": 2}))
        self.assertEqual([(line["step"], line["loss"]) for line in m.train], [(1, 3.0), (2, 2.4)])
        self.assertEqual([(line["step"], line["val_ppl"]) for line in m.evals], [(2, 8.0)])
        self.assertEqual(m.end, {"event": "done", "step": 2})
        self.assertTrue(m.finished)
        self.assertEqual(m.skipped, [])

    def test_unparsable_lines_are_skipped_and_numbered(self):
        m = self.read('{"step": 1, "loss": 3}\n\nnot json\n[1, 2]\n{"loss": 1}\n{"step": 2, "loss": 2}\n')
        self.assertEqual([line["step"] for line in m.train], [1, 2])
        self.assertEqual(m.skipped, [3, 4, 5])  # the blank line 2 is not counted
        self.assertIsNone(m.end)

    def test_preempted_last_line(self):
        m = self.read(jsonl({"step": 10, "loss": 2.0}, {"event": "preempted", "step": 10, "signal": 15}))
        self.assertEqual(m.end["event"], "preempted")
        self.assertFalse(m.finished)

    def test_preempted_then_resumed_is_in_progress(self):
        m = self.read(jsonl({"step": 10, "loss": 2.0}, {"event": "preempted", "step": 10},
                            {"event": "resume", "step": 10}, {"step": 12, "loss": 1.9}))
        self.assertIsNone(m.end)
        self.assertFalse(m.finished)

    def test_preempted_then_resumed_then_done(self):
        m = self.read(jsonl({"event": "preempted", "step": 10}, {"event": "resume", "step": 10},
                            {"event": "done", "step": 20}))
        self.assertEqual(m.end, {"event": "done", "step": 20})
        self.assertTrue(m.finished)

    def test_done_then_continued_is_in_progress(self):
        m = self.read(jsonl({"event": "done", "step": 20}, {"event": "resume", "step": 20}, {"step": 21, "loss": 1}))
        self.assertIsNone(m.end)

    def test_a_last_line_being_written_is_no_end(self):
        m = self.read(jsonl({"event": "done", "step": 20}) + '{"event": "resume", "st')
        self.assertIsNone(m.end)
        self.assertEqual(m.skipped, [2])
        self.assertTrue(self.read(jsonl({"event": "done", "step": 20}) + "\n\n").finished)  # blank lines: no line


class AnalyticsFiles(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.run = Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def test_list_files_by_step(self):
        self.assertEqual(analytics_files.list_files(self.run), {})
        d = self.run / "analytics"
        d.mkdir()
        for name in ("step_00000020.h5", "step_00000005.h5", "step_5.h5", "step_00000010.h5.tmp", "notes.txt"):
            (d / name).write_bytes(b"")
        files = analytics_files.list_files(self.run)
        self.assertEqual(list(files), [5, 20])
        self.assertEqual(files[20], d / "step_00000020.h5")

    def test_read_layers_in_numeric_order_keys_optional(self):
        path = self.run / "step_00000010.h5"
        with h5py.File(path, "w") as f:
            for layer in (10, 2):
                f[f"layers/{layer}/counts"] = np.array([3.0, 0.0, 1.0])
                f[f"layers/{layer}/coactivation"] = np.zeros((3, 3))
            f["layers/2/keys"] = np.eye(3)
            f["layers/2/usage"] = np.ones(3)
        layers = analytics_files.read(path)
        self.assertEqual([d.layer for d in layers], [2, 10])
        np.testing.assert_array_equal(layers[0].keys, np.eye(3))
        np.testing.assert_array_equal(layers[0].usage, np.ones(3))
        self.assertIsNone(layers[1].keys)
        self.assertIsNone(layers[1].usage)
        np.testing.assert_array_equal(layers[1].counts, [3.0, 0.0, 1.0])
        self.assertEqual(layers[1].coact.shape, (3, 3))

    def test_coactivation_pairs_rebuild_the_symmetric_matrix(self):
        # What the trainer writes above 4096 experts: rows (i, j, count), i < j, strongest first.
        path = self.run / "step_00000010.h5"
        with h5py.File(path, "w") as f:
            f["layers/0/counts"] = np.array([3.0, 4.0, 1.0, 0.0])
            f["layers/0/coactivation_pairs"] = np.array([[0, 1, 3], [1, 2, 1]], dtype=np.int64)
        (layer,) = analytics_files.read(path)
        expected = np.zeros((4, 4))
        expected[0, 1] = expected[1, 0] = 3
        expected[1, 2] = expected[2, 1] = 1
        np.testing.assert_array_equal(layer.coact, expected)
        with h5py.File(path, "w") as f:
            f["layers/0/counts"] = np.ones(analytics_files.MAX_DENSE_EXPERTS + 1)
            f["layers/0/coactivation_pairs"] = np.zeros((0, 3), dtype=np.int64)
        with self.assertRaisesRegex(InputError, r"step_00000010\.h5: /layers/0 has 8193 experts"):
            analytics_files.read(path)

    def test_read_errors_name_the_file(self):
        path = self.run / "step_00000010.h5"
        with h5py.File(path, "w") as f:
            f["layers/0/counts"] = np.ones(3)
        with self.assertRaisesRegex(InputError, r"step_00000010\.h5: /layers/0 lacks coactivation"):
            analytics_files.read(path)
        with h5py.File(path, "w") as f:
            f["other"] = 1
        with self.assertRaisesRegex(InputError, r"step_00000010\.h5: no /layers group"):
            analytics_files.read(path)
        path.write_text("not HDF5")
        with self.assertRaisesRegex(InputError, r"step_00000010\.h5: cannot read as HDF5"):
            analytics_files.read(path)


if __name__ == "__main__":
    unittest.main()
