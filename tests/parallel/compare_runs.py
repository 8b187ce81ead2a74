"""Imported by the equivalence scripts' checks: two runs of the same global batch compared step by
step (training losses) and tensor by tensor (their final checkpoints, RNG states aside)."""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import checkpoint_h5  # noqa: E402 (tests/, after the path)

TOL = 1e-4


def losses(root, run):
    """{step: training loss} of ROOT/RUN/metrics.jsonl."""
    return {line["step"]: line["loss"] for line in map(json.loads, open(f"{root}/{run}/metrics.jsonl"))
            if "event" not in line}


def state(root, run):
    """Every tensor of the run's latest checkpoint by name, RNG states left out."""
    return {k: v for k, v in checkpoint_h5.load(f"{root}/{run}").items() if not k.startswith("rng.")}


def compare(root, ref, run, note=""):
    """Prints ok/FAIL for RUN against REF: the largest relative per-step loss difference and the
    largest final tensor difference (both within TOL), naming the tensor. Returns whether it passed."""
    a, sa, b, sb = losses(root, ref), state(root, ref), losses(root, run), state(root, run)
    assert sorted(b) == sorted(a) and set(sb) == set(sa), (run, sorted(b), set(sb) ^ set(sa))
    rel = max(abs(a[s] - b[s]) / abs(a[s]) for s in a)
    worst = max(sa, key=lambda k: float(np.abs(sa[k].astype(np.float64) - sb[k]).max()))
    diff = float(np.abs(sa[worst].astype(np.float64) - sb[worst]).max())
    ok = rel <= TOL and diff <= TOL
    print(f"{'ok  ' if ok else 'FAIL'} {run} vs {ref}: largest per-step loss difference {rel:.2e} (relative), "
          f"largest final tensor difference {diff:.2e} ({worst}) over {len(sa)} tensors{note}")
    return ok
