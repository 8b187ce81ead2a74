"""scripts/gpu/report.py on hand-made stage outputs: the fields of gpu-report.json, parity
against hand-computed relative differences, MFU against 989 TFLOP/s, a failed and a cut stage,
bench JSON lines cut after the first config, env.txt, and the first errors of each failed
build target from a ninja -k 0 log."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REPORT = os.path.join(ROOT, "scripts", "gpu", "report.py")

JUNIT = """<?xml version="1.0" encoding="UTF-8"?>
<testsuite name="some" tests="4" failures="1" skipped="1">
  <testcase name="Cuda.A" classname="Cuda.A" time="1" status="run"/>
  <testcase name="Cuda.B" classname="Cuda.B" time="1" status="run"><failure message="x"/></testcase>
  <testcase name="Cuda.C" classname="Cuda.C" time="0" status="notrun"><skipped message="no GPU"/></testcase>
  <testcase name="Training.D" classname="Training.D" time="2" status="run"/>
</testsuite>
"""


BUILD_LOG = """[1/9] Building CXX object a.o
FAILED: src/model/CMakeFiles/some_model.dir/expert_shard.cpp.o
/usr/bin/c++ -c expert_shard.cpp
expert_shard.cpp:12:3: error: 'foo' was not declared in this scope
expert_shard.cpp:13:3: error: 'bar' was not declared in this scope
expert_shard.cpp:14:3: error: 'baz' was not declared in this scope
expert_shard.cpp:15:3: error: 'qux' was not declared in this scope
[3/9] Building CXX object b.o
FAILED: bin/test_cuda
/usr/bin/ld: test_cuda.cpp.o: undefined reference to `ncclCommInitRank'
collect2: error: ld returned 1 exit status
ninja: build stopped: subcommands failed.
"""


def write_run(path, losses, extra_done=None, step_extra=None):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        for i, loss in enumerate(losses, start=1):
            line = {"step": i, "loss": loss, "tokens_per_s": 1000.0 * i}
            line.update(step_extra or {})
            f.write(json.dumps(line) + "\n")
        done = {"event": "done", "step": len(losses), "tokens_per_s": 500.0, "val_ppl": 9.5}
        done.update(extra_done or {})
        f.write(json.dumps(done) + "\n")


class ReportTest(unittest.TestCase):
    def run_report(self, tmp, stages, mode="gpu", available=True):
        with open(os.path.join(tmp, "stages.tsv"), "w") as f:
            for name, status in stages:
                f.write(f"{name}\t{status}\t1.5\texit 0\n")
        out = os.path.join(tmp, "gpu-report.json")
        torch_info = json.dumps({"version": "2.11.0+cu130", "cuda": "13.0", "available": available,
                                 "device": "NVIDIA H100 80GB HBM3"})
        proc = subprocess.run([sys.executable, REPORT, "--stages", os.path.join(tmp, "stages.tsv"), "--out", out,
                               "--mode", mode, "--torch", torch_info, "--build-seconds", "200",
                               "--junit", os.path.join(tmp, "ctest.xml"), "--parity-dir", tmp,
                               "--train-metrics", os.path.join(tmp, "train", "metrics.jsonl"),
                               "--bench", os.path.join(tmp, "bench.jsonl"), "--jobs", "16", "--wall-seconds", "400",
                               "--env", os.path.join(tmp, "env.txt"), "--build-log", os.path.join(tmp, "build.log"),
                               "--budget", "540"],
                              capture_output=True, text=True)
        with open(out) as f:
            return proc.returncode, json.load(f)

    def make_outputs(self, tmp, dev_fp32, dev_bf16):
        with open(os.path.join(tmp, "ctest.xml"), "w") as f:
            f.write(JUNIT)
        write_run(os.path.join(tmp, "parity-cpu-float32"), [4.0, 2.0, 1.0])
        write_run(os.path.join(tmp, "parity-dev-float32"), dev_fp32)
        write_run(os.path.join(tmp, "parity-dev-bfloat16"), dev_bf16)
        write_run(os.path.join(tmp, "parity-dev-bfloat16-loop"), [dev_bf16[0], dev_bf16[1] + 0.03, dev_bf16[2]])
        write_run(os.path.join(tmp, "train"), [5.0, 4.0, 3.0], extra_done={"model_flops_per_token": 1e9},
                  step_extra={"peak_memory_gib": 12.5})
        # bench_train_step's JSON lines, cut during the second config: the first one survives.
        with open(os.path.join(tmp, "bench.jsonl"), "w") as f:
            f.write(json.dumps({"benchmark": "train_step", "gemm_peak_flops": 7e14, "gemm_peak_dtype": "bfloat16",
                                "gemm_peak_shape": "8192x8192x8192", "configs": ["150m", "1b"]}) + "\n")
            f.write(json.dumps({"benchmark": "train_step", "config": "150m", "tokens_per_s": 1e5,
                                "mfu_vs_measured_gemm_peak": 0.2}) + "\n")
        with open(os.path.join(tmp, "env.txt"), "w") as f:
            f.write("os: Ubuntu 24.04.1 LTS\ncuda_root: /usr/local/cuda-13.0\n"
                    "libcudart: /usr/local/cuda-13.0/lib64/libcudart.so\n")
        with open(os.path.join(tmp, "build.log"), "w") as f:
            f.write(BUILD_LOG)

    def test_fields_and_numbers(self):
        with tempfile.TemporaryDirectory() as tmp:
            self.make_outputs(tmp, [4.0, 2.0, 1.00005], [4.04, 2.0, 0.99])
            stages = [("env", "ok"), ("build", "ok"), ("tests", "failed"), ("parity", "ok")]
            rc, r = self.run_report(tmp, stages)
            self.assertEqual(rc, 1)  # the failed test stage makes the report not ok
            self.assertFalse(r["ok"])
            self.assertEqual(r["device"], "NVIDIA H100 80GB HBM3")
            self.assertEqual(r["torch_version"], "2.11.0+cu130")
            self.assertEqual(r["build_seconds"], 200)
            self.assertEqual(r["tests"]["passed"], 2)
            self.assertEqual(r["tests"]["failed"], 1)
            self.assertEqual(r["tests"]["skipped"], 1)
            self.assertEqual(r["tests"]["failed_names"], ["Cuda.B"])
            self.assertAlmostEqual(r["parity"]["loss_rel_diff_fp32"], 5e-5, places=12)  # |1.00005 - 1| / 1
            self.assertAlmostEqual(r["parity"]["loss_rel_diff_bf16"], 0.01, places=12)  # max(0.04/4, 0.01/1)
            self.assertTrue(r["parity"]["within_fp32_tolerance"])
            self.assertTrue(r["parity"]["within_bf16_tolerance"])
            self.assertAlmostEqual(r["parity"]["grouped_vs_loop_max_abs"], 0.03, places=12)  # |2.0 - 2.03|
            # train: tokens/s is the mean of the windows after the first: (2000 + 3000) / 2
            self.assertEqual(r["train"]["steps"], 3)
            self.assertAlmostEqual(r["train"]["tokens_per_s"], 2500.0)
            self.assertAlmostEqual(r["train"]["mfu"], 1e9 * 2500.0 / 989e12)
            self.assertEqual(r["train"]["peak_memory_gib"], 12.5)
            self.assertEqual(r["bench"]["configs"]["150m"]["tokens_per_s"], 1e5)
            self.assertEqual(r["bench"]["configs_missing"], ["1b"])  # cut while measuring 1b: 150m kept
            self.assertEqual(r["bench"]["gemm_peak_flops"], 7e14)
            self.assertEqual(r["stages"]["tests"]["status"], "failed")
            self.assertEqual(r["failed"], ["tests"])
            self.assertEqual(r["cut"], [])
            self.assertEqual(r["env"]["cuda_root"], "/usr/local/cuda-13.0")
            self.assertIsNone(r["build_errors"])  # the build stage was ok
            self.assertEqual(r["headline"]["bench"]["150m"]["tokens_per_s"], 1e5)
            self.assertEqual(r["headline"]["tests"], "2 passed, 1 failed, 1 skipped")

    def test_failed_build_names_each_target_and_its_first_errors(self):
        with tempfile.TemporaryDirectory() as tmp:
            self.make_outputs(tmp, [4.0, 2.0, 1.0], [4.0, 2.0, 1.0])
            rc, r = self.run_report(tmp, [("configure", "ok"), ("build", "failed"), ("bench", "cut")])
            self.assertEqual(rc, 1)
            self.assertIsNone(r["build_seconds"])
            self.assertEqual(r["failed"], ["build"])
            self.assertEqual(r["cut"], ["bench"])
            targets = [t["target"] for t in r["build_errors"]]
            self.assertEqual(targets, ["src/model/CMakeFiles/some_model.dir/expert_shard.cpp.o", "bin/test_cuda"])
            self.assertEqual(len(r["build_errors"][0]["errors"]), 3)  # the first three of four
            self.assertIn("'foo' was not declared", r["build_errors"][0]["errors"][0])
            self.assertIn("undefined reference to `ncclCommInitRank'", r["build_errors"][1]["errors"][0])
            printed = subprocess.run([sys.executable, REPORT, "--build-errors", os.path.join(tmp, "build.log")],
                                     capture_output=True, text=True, check=True).stdout
            self.assertIn("FAILED bin/test_cuda", printed)
            self.assertNotIn("'qux'", printed)
            # A configure that failed leaves no build.ninja: ninja's own error is what the build says.
            with open(os.path.join(tmp, "build.log"), "w") as f:
                f.write("ninja: error: loading 'build.ninja': No such file or directory\n")
            rc, r = self.run_report(tmp, [("configure", "failed"), ("build", "failed")])
            self.assertEqual(r["build_errors"], [{"target": "(ninja)",
                                                  "errors": ["ninja: error: loading 'build.ninja': No such file or "
                                                             "directory"]}])
            self.assertEqual(r["failed"], ["configure", "build"])

    def test_out_of_tolerance_and_missing_stage_output(self):
        with tempfile.TemporaryDirectory() as tmp:
            self.make_outputs(tmp, [4.0, 2.0, 1.001], [4.0, 2.0, 1.0])
            os.remove(os.path.join(tmp, "bench.jsonl"))  # the bench stage was cut before its first line
            rc, r = self.run_report(tmp, [("build", "ok"), ("bench", "cut")])
            self.assertEqual(rc, 1)
            self.assertFalse(r["parity"]["within_fp32_tolerance"])  # 1e-3 > 1e-4
            self.assertIsNone(r["bench"])
            self.assertIn("bench", r["errors"])

    def test_cpu_mode_all_ok(self):
        with tempfile.TemporaryDirectory() as tmp:
            self.make_outputs(tmp, [4.0, 2.0, 1.0], [4.0, 2.0, 1.0])
            rc, r = self.run_report(tmp, [("build", "ok"), ("launch_refuses_shared_gpu", "skipped")], mode="cpu",
                                    available=False)
            self.assertEqual(rc, 0, r)
            self.assertTrue(r["ok"])
            self.assertEqual(r["parity"]["compared_device"], "cpu")
            self.assertIsNone(r["train"]["mfu"])  # no 989 TFLOP/s basis for a CPU
            self.assertIsNone(r["train"]["peak_memory_gib"])


if __name__ == "__main__":
    unittest.main()
