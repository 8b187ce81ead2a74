#!/usr/bin/env python3
"""Writes gpu-report.json for scripts/gpu/check.sh from what its stages left behind.

Standard library only (it runs on a bare node's python3). A stage that failed or never ran
leaves its fields null and its reason under "stages"; "failed" and "cut" name them; the report
itself is always written. `report.py --build-errors BUILD_LOG` prints the first errors of each
failed build target instead (check.sh puts them in check.log).
"""
import argparse
import json
import math
import os
import re
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


def read_env(path):
    """env.txt's `key: value` lines (check.sh's env stage) as a dict."""
    out = {}
    with open(path) as f:
        for line in f:
            key, sep, value = line.rstrip("\n").partition(": ")
            if sep:
                out[key] = value
    return out


def build_errors(path, per_target=3):
    """[{target, errors}] of a ninja log: each FAILED target with its first `per_target` lines
    that carry a compiler or linker error (ninja -k 0 prints every failed target)."""
    failed, current, ninja = [], None, []
    error = re.compile(r"(error:|error [A-Z]+\d+|undefined reference|cannot find -l|No such file|fatal)", re.I)
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("ninja: error"):
                ninja.append(line.strip())
            if line.startswith("FAILED: "):
                current = {"target": line[len("FAILED: "):].strip(), "errors": []}
                failed.append(current)
            elif current is not None and len(current["errors"]) < per_target and error.search(line):
                current["errors"].append(line.strip()[:400])
    if not failed and ninja:  # nothing compiled: ninja itself stopped (no build.ninja: configure failed)
        failed.append({"target": "(ninja)", "errors": ninja[:per_target]})
    return failed


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
    # bf16 under expert.compute = auto (the grouped kernel) against the per-expert loop, same
    # device: the step losses' largest gap.
    loop_dir = os.path.join(work_dir, "parity-dev-bfloat16-loop")
    if os.path.isdir(loop_dir):
        grouped, loop = step_losses(os.path.join(work_dir, "parity-dev-bfloat16")), step_losses(loop_dir)
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
    """bench_train_step's JSON lines: a header, then one line per config measured (a cut run
    keeps the configs it finished)."""
    lines = [line for line in read_jsonl(path) if line.get("benchmark") == "train_step"]
    if not lines:
        raise ValueError(f"{path}: no bench_train_step line")
    header = next((line for line in lines if "gemm_peak_flops" in line), {})
    keep = ("tokens_per_s", "step_ms", "phase_ms", "mfu_vs_measured_gemm_peak", "mfu_vs_h100_bf16_989_tflops",
            "peak_memory_gib", "parameters_total", "parameters_trainable", "tokens_per_step")
    results = [line for line in lines if "config" in line]
    asked = header.get("configs")
    return {"gemm_peak_flops": header.get("gemm_peak_flops"), "gemm_peak_dtype": header.get("gemm_peak_dtype"),
            "gemm_peak_shape": header.get("gemm_peak_shape"), "dtype": header.get("dtype"),
            "configs": {r["config"]: {k: r.get(k) for k in keep if k in r} for r in results},
            "configs_missing": [c for c in (asked or []) if c not in {r["config"] for r in results}]}


def headline(report):
    """The figures a README line needs, from the sections that were read (None where absent)."""
    t, p, tr, b = report["tests"], report["parity"], report["train"], report["bench"]
    out = {"tests": f"{t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped" if t else None,
           "parity_loss_rel_diff": {k: p.get(f"loss_rel_diff_{k}") for k in ("fp32", "bf16")} if p else None,
           "grouped_vs_loop_max_abs": p.get("grouped_vs_loop_max_abs") if p else None,
           "train_150m": {k: tr.get(k) for k in ("tokens_per_s", "mfu", "peak_memory_gib")} if tr else None,
           "bench": None}
    if b:
        out["bench"] = {name: {k: c.get(k) for k in ("tokens_per_s", "mfu_vs_measured_gemm_peak",
                                                     "mfu_vs_h100_bf16_989_tflops", "peak_memory_gib")}
                        for name, c in b["configs"].items()}
        out["gemm_peak_flops"] = b.get("gemm_peak_flops")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--build-errors", metavar="BUILD_LOG", help="print the first errors of each failed target")
    ap.add_argument("--stages")
    ap.add_argument("--out")
    ap.add_argument("--mode", choices=["gpu", "cpu", "link"], help="link: check.sh --link-only (no runs)")
    ap.add_argument("--env", help="env.txt of the env stage")
    ap.add_argument("--build-log")
    ap.add_argument("--budget", type=float, default=None, help="seconds (0: none)")
    ap.add_argument("--torch", default="{}", help="JSON: version, cuda, available, device")
    ap.add_argument("--build-seconds", type=float, default=None)
    ap.add_argument("--junit")
    ap.add_argument("--parity-dir")
    ap.add_argument("--train-metrics")
    ap.add_argument("--bench")
    ap.add_argument("--jobs", type=int)
    ap.add_argument("--wall-seconds", type=float)
    a = ap.parse_args()
    if a.build_errors:
        for t in build_errors(a.build_errors):
            print(f"FAILED {t['target']}")
            for e in t["errors"] or ["(no error line found: see build.log)"]:
                print(f"    {e}")
        return 0
    if not (a.stages and a.out and a.mode):
        ap.error("--stages, --out and --mode are required")

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
        "budget_seconds": a.budget or None,
        "env": None, "build_errors": None,
        "tests": None, "parity": None, "train": None, "bench": None,
        "errors": {},
    }
    sections = [("env", lambda: read_env(a.env)),
                ("tests", lambda: tests_from_junit(a.junit)),
                ("parity", lambda: parity(a.parity_dir, "cuda" if gpu else "cpu")),
                ("train", lambda: train(a.train_metrics, gpu)),
                ("bench", lambda: bench(a.bench))]
    if a.mode == "link":  # configure, build and link only: nothing ran
        sections = sections[:1]
    for key, read in sections:
        try:
            report[key] = read()
        except Exception as e:  # a stage that failed left nothing (or something partial) to read
            report["errors"][key] = f"{type(e).__name__}: {e}"
    if stages.get("build", {}).get("status") not in (None, "ok") and a.build_log and os.path.exists(a.build_log):
        report["build_errors"] = build_errors(a.build_log)
    report["stages"] = stages
    report["failed"] = [name for name, s in stages.items() if s["status"] == "failed"]
    report["cut"] = [name for name, s in stages.items() if s["status"] == "cut"]
    report["ok"] = all(s["status"] in ("ok", "skipped") for s in stages.values()) and not report["errors"]
    report["headline"] = headline(report)
    with open(a.out, "w") as f:
        json.dump(report, f, indent=2)
    summary = {k: report[k]
               for k in ("device", "torch_version", "build_seconds", "wall_seconds", "ok", "failed", "cut")}
    summary["stages"] = {k: v["status"] for k, v in stages.items()}
    summary["headline"] = report["headline"]
    print(json.dumps(summary))
    print(f"report: {a.out}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
