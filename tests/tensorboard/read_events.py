#!/usr/bin/env python3
"""Reads a run's TensorBoard events (RUN/tb) with the tensorboard package and checks them
against the run's metrics.jsonl: every scalar and text the C++ writer should have derived from
it (common/tensorboard.cpp write_metrics, mirrored independently below) is there, at the same
steps, with the same values (float32), and nothing else under those tags.

Both of TensorBoard's readers are checked: event_accumulator (the documented Python API) and
plugin_event_accumulator (what `tensorboard --logdir` serves; it treats a run's first
SessionLog.START differently, which matters for resumed runs).

  read_events.py --run RUN [--metrics FILE] [--expect-tags a,b] [--expect-scalar TAG:STEP:VALUE]
                 [--expect-text TAG:STEP:TEXT] [--exact]

Exit status 0 when every check holds; otherwise each failure is printed and the status is 1.
"""
import argparse
import json
import math
import os
import sys

from tensorboard.backend.event_processing import event_accumulator, plugin_event_accumulator
from tensorboard.util import tensor_util

TRAIN_KEYS = ("loss", "lr", "grad_norm", "tokens_per_s", "dropped_slots")
EVAL_KEYS = ("val_loss", "val_ppl", "unigram_ppl")


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def expected_from_metrics(path):
    """({tag: [(step, value)]}, {tag: [(step, text)]}) that metrics.jsonl implies."""
    scalars, texts = {}, {}

    def add(tag, step, value):
        scalars.setdefault(tag, []).append((step, float(value)))

    def routing(line, prefix):
        for layer in line.get("routing") or []:
            for key, value in layer.items():
                if key != "layer" and is_number(value):
                    add(f"{prefix}/layer_{layer['layer']}/{key}", line["step"], value)

    with open(path) as f:
        for raw in f:
            if not raw.strip():
                continue
            line = json.loads(raw)
            event = line.get("event")
            if event is None:
                keys, prefix, routing_prefix = TRAIN_KEYS, "train", "routing_train"
            elif event == "eval":
                keys, prefix, routing_prefix = EVAL_KEYS, "eval", "routing"
                if isinstance(line.get("sample"), str):
                    texts.setdefault("eval/sample", []).append((line["step"], line["sample"]))
            else:
                continue  # resume (metrics.jsonl is already cut back), done, preempted
            for key in keys:
                if is_number(line.get(key)):
                    add(f"{prefix}/{key}", line["step"], line[key])
            routing(line, routing_prefix)
    return scalars, texts


def read_legacy(tb_dir):
    acc = event_accumulator.EventAccumulator(
        tb_dir, size_guidance={k: 0 for k in event_accumulator.DEFAULT_SIZE_GUIDANCE})
    acc.Reload()
    tags = acc.Tags()
    scalars = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in tags[event_accumulator.SCALARS]}
    # This reader purges scalars on a restart (SessionLog.START) but not tensors (its
    # accumulated_attrs lack them), so a restarted step's text is there twice: the restarted
    # process's, read last, is the one that counts.
    texts = {t: sorted({e.step: e.tensor_proto.string_val[0].decode() for e in acc.Tensors(t)}.items())
             for t in tags[event_accumulator.TENSORS]}
    return scalars, texts


def read_served(tb_dir):
    acc = plugin_event_accumulator.EventAccumulator(
        tb_dir, size_guidance=plugin_event_accumulator.STORE_EVERYTHING_SIZE_GUIDANCE)
    acc.Reload()
    scalars, texts = {}, {}
    for tag in acc.Tags()[plugin_event_accumulator.TENSORS]:
        plugin = acc.SummaryMetadata(tag).plugin_data.plugin_name
        for e in acc.Tensors(tag):
            value = tensor_util.make_ndarray(e.tensor_proto)
            if plugin == "scalars":
                scalars.setdefault(tag, []).append((e.step, float(value)))
            elif plugin == "text":
                texts.setdefault(tag, []).append((e.step, value.item().decode()))
    return scalars, texts


def close(a, b):
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-30) or (math.isnan(a) and math.isnan(b))


class Checker:
    def __init__(self, reader):
        self.reader, self.failures = reader, []

    def fail(self, msg):
        self.failures.append(f"[{self.reader}] {msg}")

    def series(self, tag, got, want, same):
        got_steps, want_steps = [s for s, _ in got], [s for s, _ in want]
        if got_steps != want_steps:
            self.fail(f"{tag}: steps {got_steps} in tensorboard, {want_steps} expected")
            return
        for (step, g), (_, w) in zip(got, want):
            if not same(g, w):
                self.fail(f"{tag} step {step}: tensorboard {g!r} != expected {w!r}")


def check(reader, got, want, args):
    got_scalars, got_texts = got
    want_scalars, want_texts = want
    c = Checker(reader)
    for tag, points in want_scalars.items():
        c.series(tag, got_scalars.get(tag, []), points, close)
    for tag, points in want_texts.items():
        c.series(tag, got_texts.get(tag, []), points, lambda a, b: a == b)
    for tag in args.expect_tags:
        steps = [s for s, _ in got_scalars.get(tag, []) + got_texts.get(tag, [])]
        if not steps:
            c.fail(f"expected tag {tag} is missing")
        elif any(b <= a for a, b in zip(steps, steps[1:])):
            c.fail(f"{tag}: steps not increasing: {steps}")
    if args.exact:
        extra = (set(got_scalars) - set(want_scalars)) | (set(got_texts) - set(want_texts))
        if extra:
            c.fail(f"unexpected tags: {sorted(extra)}")
    return c.failures


def parse_point(spec, kind):
    tag, step, value = spec.split(":", 2)
    return tag, int(step), float(value) if kind == "scalar" else value


def unescape(text):
    """Backslash escapes (\\n) in a UTF-8 command-line argument, so a CTest argument holds a newline."""
    return text.encode().decode("unicode_escape").encode("latin-1").decode()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run directory holding tb/ and metrics.jsonl")
    p.add_argument("--metrics", help="metrics.jsonl to compare with (default RUN/metrics.jsonl)")
    p.add_argument("--expect-tags", default="", help="comma-separated tags that must exist")
    p.add_argument("--expect-scalar", action="append", default=[], metavar="TAG:STEP:VALUE")
    p.add_argument("--expect-text", action="append", default=[], metavar="TAG:STEP:TEXT")
    p.add_argument("--exact", action="store_true", help="no tags beyond the expected ones")
    args = p.parse_args()
    args.expect_tags = [t for t in args.expect_tags.split(",") if t]

    tb_dir = os.path.join(args.run, "tb")
    metrics = args.metrics or os.path.join(args.run, "metrics.jsonl")
    want_scalars, want_texts = expected_from_metrics(metrics)
    # Points given on the command line (the writer's direct API) join those from metrics.jsonl.
    for spec in args.expect_scalar:
        tag, step, value = parse_point(spec, "scalar")
        want_scalars.setdefault(tag, []).append((step, value))
    for spec in args.expect_text:
        tag, step, text = parse_point(spec, "text")
        want_texts.setdefault(tag, []).append((step, unescape(text)))
    for points in list(want_scalars.values()) + list(want_texts.values()):
        points.sort(key=lambda p: p[0])
    if not want_scalars:
        print(f"FAIL: no scalars expected from {metrics}: nothing would be checked")
        return 1

    failures = []
    for reader, read in (("event_accumulator", read_legacy), ("tensorboard server", read_served)):
        failures += check(reader, read(tb_dir), (want_scalars, want_texts), args)
    for f in failures:
        print("FAIL:", f)
    n_points = sum(len(v) for v in want_scalars.values()) + sum(len(v) for v in want_texts.values())
    print(f"{'FAILED' if failures else 'OK'}: {tb_dir}: {len(want_scalars)} scalar tags, {len(want_texts)} text tags, "
          f"{n_points} points checked against {metrics} and the command line, both readers")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
