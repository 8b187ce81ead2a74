#!/usr/bin/env python3
"""Writes gpu-report.json for scripts/gpu/check.sh from what its stages left behind.

Standard library only (it runs on a bare node's python3). A stage that failed or never ran
leaves its fields null and its reason under "stages"; the report itself is always written.
"""
import argparse
import json
import math
import os
import sys
import xml.etree.ElementTree as ET

H100_BF16_PEAK_FLOPS = 989e12  # dense bf16, H100 SXM datasheet
FP32_TOLERANCE, BF16_TOLERANCE = 1e-4, 2e-2


def read_stages(path):
    stages = {}
    with open(path) as f:
        for line in f:
            name, status, seconds, detail = (line.rstrip("\n").split("\t") + ["", "", ""])[:4]
            stages[name] = {"status": status, "seconds": float(seconds or 0), "detail": detail}
    return stages


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def tests_from_junit(path):
    """Counts of CTest's JUnit file: passed, failed, skipped, and the names that did not pass."""
    root = ET.parse(path).getroot()
    out = {"passed": 0, "failed": 0, "skipped": 0, "failed_names": [], "skipped_names": []}
    for case in root.iter("testcase"):
        name = case.get("name")
        if case.find("failure") is not None or case.find("error") is not None:
            out["failed"] += 1
            out["failed_names"].append(name)
        elif case.find("skipped") is not None or case.get("status") in ("notrun", "disabled"):
            out["skipped"] += 1
            out["skipped_names"].append(name)
        else:
            out["passed"] += 1
    return out


def step_losses(run_dir):
    """step -> training loss of a run's metrics.jsonl (the per-step lines, not events)."""
    lines = read_jsonl(os.path.join(run_dir, "metrics.jsonl"))
    return {line["step"]: line["loss"] for line in lines if "event" not in line and "loss" in line}


def max_rel_diff(run, reference):
    steps = sorted(set(run) & set(reference))
    if not steps or len(steps) != len(reference):
        raise ValueError(f"runs cover different steps: {sorted(run)} vs {sorted(reference)}")
    return max(abs(run[s] - reference[s]) / abs(reference[s]) for s in steps), len(steps)


def parity(work_dir, device):
    ref = step_losses(os.path.join(work_dir, "parity-cpu-float32"))
    out = {"compared_device": device, "reference": "cpu float32"}
    for dtype, tol in (("fp32", FP32_TOLERANCE), ("bf16", BF16_TOLERANCE)):
        name = "float32" if dtype == "fp32" else "bfloat16"
        diff, steps = max_rel_diff(step_losses(os.path.join(work_dir, f"parity-dev-{name}")), ref)
        out[f"loss_rel_diff_{dtype}"] = diff
        out[f"within_{dtype}_tolerance"] = diff <= tol
        out["steps"] = steps
    out["tolerances"] = {"fp32": FP32_TOLERANCE, "bf16": BF16_TOLERANCE}
    # expert.compute = grouped against loop, same device, bf16: the step losses' largest gap.
    grouped_dir, loop_dir = (os.path.join(work_dir, f"parity-dev-bfloat16-{c}") for c in ("grouped", "loop"))
    if os.path.isdir(grouped_dir) and os.path.isdir(loop_dir):
        grouped, loop = step_losses(grouped_dir), step_losses(loop_dir)
        if sorted(grouped) != sorted(loop):
            raise ValueError(f"grouped and loop runs cover different steps: {sorted(grouped)} vs {sorted(loop)}")
        out["grouped_vs_loop_max_abs"] = max(abs(grouped[s] - loop[s]) for s in grouped)
    return out


def train(metrics_path, gpu):
    lines = read_jsonl(metrics_path)
    steps = [line for line in lines if "event" not in line and "step" in line]
    done = next((line for line in lines if line.get("event") == "done"), None)
    if not steps or done is None:
        raise ValueError(f"{metrics_path}: no finished run (step lines: {len(steps)}, done line: {done is not None})")
    # Throughput of the logged windows after the first one (compilation, allocator warm-up), and
    # of the whole run (its final eval and checkpoint included).
    windows = [line["tokens_per_s"] for line in steps[1:]] or [steps[0]["tokens_per_s"]]
    tok_s = sum(windows) / len(windows)
    flops = done.get("model_flops_per_token")
    out = {"steps": done["step"], "tokens_per_s": tok_s, "tokens_per_s_whole_run": done["tokens_per_s"],
           "loss_first": steps[0]["loss"], "loss_last": steps[-1]["loss"], "val_ppl": done.get("val_ppl"),
           "model_flops_per_token": flops, "mfu": None,
           "peak_memory_gib": max((line.get("peak_memory_gib", 0.0) for line in steps), default=0.0) if gpu else None}
    if gpu and flops:
        out["mfu"] = flops * tok_s / H100_BF16_PEAK_FLOPS
        out["mfu_basis"] = "989 TFLOP/s (H100 dense bf16)"
    if not all(math.isfinite(line["loss"]) for line in steps):
        raise ValueError("non-finite loss in the 150M run")
    return out


def bench(path):
    with open(path) as f:
        b = json.load(f)
    keep = ("tokens_per_s", "step_ms", "phase_ms", "mfu_vs_measured_gemm_peak", "mfu_vs_h100_bf16_989_tflops",
            "peak_memory_gib", "parameters_total", "parameters_trainable", "tokens_per_step")
    return {"gemm_peak_flops": b.get("gemm_peak_flops"), "gemm_peak_dtype": b.get("gemm_peak_dtype"),
            "gemm_peak_shape": b.get("gemm_peak_shape"), "dtype": b.get("dtype"),
            "configs": {r["config"]: {k: r.get(k) for k in keep if k in r} for r in b.get("results", [])}}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--stages", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--mode", choices=["gpu", "cpu"], required=True)
    ap.add_argument("--torch", default="{}", help="JSON: version, cuda, available, device")
    ap.add_argument("--build-seconds", type=float, default=None)
    ap.add_argument("--junit")
    ap.add_argument("--parity-dir")
    ap.add_argument("--train-metrics")
    ap.add_argument("--bench")
    ap.add_argument("--jobs", type=int)
    ap.add_argument("--wall-seconds", type=float)
    a = ap.parse_args()

    torch_info = json.loads(a.torch or "{}")
    gpu = a.mode == "gpu" and bool(torch_info.get("available"))
    stages = read_stages(a.stages)
    report = {
        "mode": a.mode,
        "device": torch_info.get("device") or "unknown",
        "torch_version": torch_info.get("version"),
        "torch_cuda": torch_info.get("cuda"),
        "cores": a.jobs,
        "build_seconds": a.build_seconds if stages.get("build", {}).get("status") == "ok" else None,
        "wall_seconds": a.wall_seconds,
        "tests": None, "parity": None, "train": None, "bench": None,
        "errors": {},
    }
    sections = [("tests", lambda: tests_from_junit(a.junit)),
                ("parity", lambda: parity(a.parity_dir, "cuda" if gpu else "cpu")),
                ("train", lambda: train(a.train_metrics, gpu)),
                ("bench", lambda: bench(a.bench))]
    for key, read in sections:
        try:
            report[key] = read()
        except Exception as e:  # a stage that failed left nothing (or something partial) to read
            report["errors"][key] = f"{type(e).__name__}: {e}"
    report["stages"] = stages
    report["ok"] = all(s["status"] in ("ok", "skipped") for s in stages.values()) and not report["errors"]
    with open(a.out, "w") as f:
        json.dump(report, f, indent=2)
    summary = {k: report[k] for k in ("device", "torch_version", "build_seconds", "ok")}
    summary["stages"] = {k: v["status"] for k, v in stages.items()}
    print(json.dumps(summary))
    print(f"report: {a.out}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
