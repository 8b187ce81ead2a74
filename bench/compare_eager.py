#!/usr/bin/env python3
"""The C++ train step against an independent PyTorch eager one (bench/eager_reference.py), in one
invocation: for each shape, PAIRS rounds of [C++ (bench_train_step), eager with the expert loop,
eager with grouped experts], each side's best tokens/s kept, and the ratios C++ / eager. Paired
and interleaved because this VM's speed drifts by +-20% between minutes. Prints one JSON object.

  bench/compare_eager.py [--pairs 3] [--steps 8] [--threads 2] [--shapes e64_d256,default]
                         [--dtype float32|bfloat16]

--dtype bfloat16 runs both under bf16 autocast (C++: train.dtype = "bfloat16"; eager:
torch.autocast, its grouped experts on bf16 copies of the frozen weights made once).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# name -> (model / train overrides on configs/default.toml); the eager side gets the same numbers.
SHAPES = {
    "e64_d256": {"d_model": 256, "n_layers": 4, "n_heads": 4, "num_experts": 64, "d_expert": 256, "top_k": 2,
                "micro_batch": 16, "global_batch": 16, "seq_len": 128},
    "default": {"d_model": 192, "n_layers": 4, "n_heads": 4, "num_experts": 32, "d_expert": 192, "top_k": 2,
                "micro_batch": 16, "global_batch": 32, "seq_len": 128},
}
TRAIN_KEYS = ("micro_batch", "global_batch", "seq_len")


def cpp_tokens_per_s(shape, args):
    sets = [f"{'train' if k in TRAIN_KEYS else 'model'}.{k}={v}" for k, v in shape.items()]
    cmd = [os.path.join(ROOT, "build", "bin", "bench_train_step"), "--configs", "default", "--steps", str(args.steps),
           "--warmup", "2", "--dtype", args.dtype, "--set", *sets, f"train.threads={args.threads}"]
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    # JSON lines: a header, then one line per config.
    result = next(line for line in map(json.loads, out.splitlines()) if "config" in line)
    return result["tokens_per_s"]


def eager_tokens_per_s(shape, experts, args):
    flags = {"d-model": shape["d_model"], "layers": shape["n_layers"], "heads": shape["n_heads"],
             "experts-count": shape["num_experts"], "d-expert": shape["d_expert"], "top-k": shape["top_k"],
             "micro-batch": shape["micro_batch"], "global-batch": shape["global_batch"], "seq-len": shape["seq_len"],
             "steps": args.steps, "threads": args.threads, "dtype": args.dtype}
    cmd = [sys.executable, os.path.join(HERE, "eager_reference.py"), "--experts", experts]
    for k, v in flags.items():
        cmd += [f"--{k}", str(v)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["tokens_per_s"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--shapes", default="e64_d256,default")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    args = ap.parse_args()
    report = {"pairs": args.pairs, "steps": args.steps, "threads": args.threads, "dtype": args.dtype, "shapes": {}}
    for name in args.shapes.split(","):
        shape = SHAPES[name]
        best = {"cpp": 0.0, "eager_loop": 0.0, "eager_grouped": 0.0}
        for _ in range(args.pairs):
            best["cpp"] = max(best["cpp"], cpp_tokens_per_s(shape, args))
            best["eager_loop"] = max(best["eager_loop"], eager_tokens_per_s(shape, "loop", args))
            best["eager_grouped"] = max(best["eager_grouped"], eager_tokens_per_s(shape, "grouped", args))
        report["shapes"][name] = {
            "shape": shape,
            "tokens_per_s_best": best,
            "ratio_cpp_over_eager_loop": best["cpp"] / best["eager_loop"],
            "ratio_cpp_over_eager_grouped": best["cpp"] / best["eager_grouped"],
        }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
