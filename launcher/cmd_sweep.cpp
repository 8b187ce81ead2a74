// `some sweep SWEEP.toml`: every run of a sweep file (launcher/sweep.h), one after another as
// child processes `some train ... --resume auto` (finished runs skipped, interrupted ones
// continued), or as one Slurm job array plus a summary job; then summary.csv / summary.md.
#include <sys/wait.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>

#include <fmt/chrono.h>
#include <fmt/format.h>

#include "common/errors.h"
#include "common/progress.h"
#include "launcher/child_process.h"
#include "launcher/commands.h"
#include "launcher/session.h"
#include "launcher/sweep.h"

namespace fs = std::filesystem;

namespace some::launcher {
namespace {

struct SweepArgs {
  std::string file;
  std::string out = "runs/sweeps";
  std::string scale;
  std::string data;
  std::vector<std::string> sets;
  int only = -1;
  bool dry_run = false, slurm = false, summary = false;
  int max_parallel = 0;
  std::vector<std::string> sbatch_args;
};

std::string last_lines(const std::string& path, size_t n) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) {
    lines.push_back(l);
    if (lines.size() > n) lines.erase(lines.begin());
  }
  std::string out;
  for (const auto& l : lines) out += "      | " + l + "\n";
  return out;
}

// ---- dry run ---------------------------------------------------------------------------------
void print_plan(const sweep::Sweep& sw, int only) {
  std::cout << fmt::format("sweep {}: {} runs{} from {}\n", sw.name, sw.runs.size(),
                           sw.scale.empty() ? "" : fmt::format(" at scale '{}'", sw.scale), sw.file);
  std::cout << fmt::format("  base config  {}\n  directory    {}\n", sw.base, sw.dir);
  std::cout << "  every run   ";
  for (const auto& s : sw.common_sets) std::cout << " " << s;
  std::cout << "\n";
  size_t width = 4;
  for (const auto& r : sw.runs) width = std::max(width, r.name.size());
  std::cout << fmt::format("  {:>4}  {:<{}}  {:<7}  overrides\n", "run", "name", width, "state");
  for (const auto& r : sw.runs) {
    if (only >= 0 && r.index != only) continue;
    const auto status = sweep::read_run(r.dir).status;
    const char* state = status == sweep::Status::Done ? "done" : status == sweep::Status::Failed ? "started" : "new";
    if (status != sweep::Status::Missing && !sweep::changed_keys(r).empty()) state = "stale";
    std::string own;
    for (const auto& s : r.sets) {
      if (std::find(sw.common_sets.begin(), sw.common_sets.end(), s) == sw.common_sets.end()) own += " " + s;
    }
    std::cout << fmt::format("  {:>4}  {:<{}}  {:<7} {}\n", r.index, r.name, width, state, own);
  }
}

// ---- local runs ------------------------------------------------------------------------------
struct Outcome {
  bool ok = false;
  std::string why;  // for a failure
};

Outcome run_one(const SweepArgs& args, const sweep::Sweep& sw, const sweep::Run& run, const std::string& exe) {
  fs::create_directories(run.dir);
  std::vector<std::string> cmd = {exe, "train", "--config", sw.base, "--run-dir", run.dir, "--resume", "auto"};
  if (!args.data.empty()) cmd.insert(cmd.end(), {"--data", args.data});
  for (const auto& s : run.sets) cmd.insert(cmd.end(), {"--set", s});
  const auto log = run.dir + "/stdout.log";
  {
    std::ofstream header(log, std::ios::app);
    auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    header << fmt::format("==== some sweep {} run {} '{}' started {:%Y-%m-%d %H:%M:%S}:", sw.name, run.index, run.name,
                          fmt::localtime(now));
    for (const auto& a : cmd) header << " " << a;
    header << "\n";
  }
  const int status = wait_child(spawn_child(cmd, log));
  const auto result = sweep::read_run(run.dir);
  if (result.status == sweep::Status::Done) return {true, ""};
  if (result.last_event == "preempted") return {false, fmt::format("stopped with a checkpoint at step {}", result.steps)};
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    return {false, fmt::format("{} but metrics.jsonl does not end with the done event", describe_status(status))};
  }
  return {false, describe_status(status)};
}

void run_local(const SweepArgs& args, const sweep::Sweep& sw) {
  const auto exe = self_executable();
  forward_stop_signals();
  std::vector<const sweep::Run*> todo;
  for (const auto& r : sw.runs) {
    if (args.only < 0 || r.index == args.only) todo.push_back(&r);
  }
  const auto total = sw.runs.size();
  const auto start = std::chrono::steady_clock::now();
  auto since = [](auto t0) { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  double trained_s = 0;
  int trained = 0, skipped = 0;
  std::vector<std::string> failed;
  for (size_t i = 0; i < todo.size(); ++i) {
    const auto& run = *todo[i];
    const auto tag = fmt::format("[sweep {}] run {}/{} {}", sw.name, run.index + 1, total, run.name);
    // A directory holding a run of another config (the sweep file changed since): never mixed in.
    if (auto changed = sweep::changed_keys(run); !changed.empty()) {
      failed.push_back(run.name);
      std::cout << fmt::format("{}: FAILED: {}/config.toml is another config ({}): remove the directory to run it "
                               "again, or use another --out\n",
                               tag, run.dir, fmt::join(changed, ", "))
                << std::flush;
      continue;
    }
    if (sweep::run_done(run.dir)) {
      ++skipped;
      const auto r = sweep::read_run(run.dir);
      std::cout << fmt::format("{}: skipped (already done{})\n", tag,
                               r.val_ppl ? fmt::format(", val PPL {:.3f}", *r.val_ppl) : "")
                << std::flush;
      continue;
    }
    std::cout << fmt::format("{}: {} (output in {}/stdout.log)\n", tag,
                             fs::exists(run.dir + "/metrics.jsonl") ? "resuming" : "starting", run.dir)
              << std::flush;
    const auto t0 = std::chrono::steady_clock::now();
    const auto outcome = run_one(args, sw, run, exe);
    const double took = since(t0);
    if (const int signo = stop_signal_seen(); signo != 0) {
      throw Error(fmt::format("sweep {} stopped by signal {} ({}) during run {} '{}' ({}); the same command "
                              "continues it (runs resume from their last checkpoint)",
                              sw.name, signo, strsignal(signo), run.index, run.name,
                              outcome.ok ? "which finished" : outcome.why));
    }
    ++trained;
    trained_s += took;
    size_t left = 0;
    for (size_t j = i + 1; j < todo.size(); ++j) left += !sweep::run_done(todo[j]->dir);
    const auto eta = format_duration(trained_s / trained * static_cast<double>(left));
    if (outcome.ok) {
      const auto r = sweep::read_run(run.dir);
      std::cout << fmt::format("{}: done in {}{} | sweep elapsed {} | ETA {}\n", tag, format_duration(took),
                               r.val_ppl ? fmt::format(", val PPL {:.3f}", *r.val_ppl) : "",
                               format_duration(since(start)), eta);
    } else {
      failed.push_back(run.name);
      std::cout << fmt::format("{}: FAILED after {}: {} | sweep elapsed {} | ETA {}\n{}", tag, format_duration(took),
                               outcome.why, format_duration(since(start)), eta, last_lines(run.dir + "/stdout.log", 6));
    }
    std::cout << std::flush;
  }
  std::cout << fmt::format("[sweep {}] {} run(s) trained, {} skipped, {} failed in {}\n", sw.name, trained, skipped,
                           failed.size(), format_duration(since(start)));
  if (args.only < 0) {
    sweep::write_summary(sw);
    std::cout << fmt::format("[sweep {}] summary: {}/summary.md, {}/summary.csv\n", sw.name, sw.dir, sw.dir);
  }
  std::cout << std::flush;
  if (!failed.empty()) {
    throw Error(fmt::format("sweep {}: {} of {} run(s) failed: {} (see each run's stdout.log in {})", sw.name,
                            failed.size(), todo.size(), fmt::join(failed, "; "), sw.dir));
  }
}

// ---- Slurm -----------------------------------------------------------------------------------
std::string find_sbatch_script() {
  for (const auto& p : {fs::current_path() / "slurm/sweep.sbatch", fs::path(SOME_SOURCE_DIR) / "slurm/sweep.sbatch"}) {
    if (fs::is_regular_file(p)) return fs::absolute(p).lexically_normal().string();
  }
  throw Error(fmt::format("slurm/sweep.sbatch not found in {} or {}", fs::current_path().string(), SOME_SOURCE_DIR));
}

int64_t job_id(const std::string& parsable, const std::string& what) {
  // --parsable prints "<id>" or "<id>;<cluster>"
  try {
    size_t used = 0;
    auto id = std::stoll(parsable, &used);
    if (used > 0 && id > 0) return id;
  } catch (const std::exception&) {
  }
  throw Error(fmt::format("sbatch printed no job id for the {}: '{}'", what, parsable));
}

void submit(const SweepArgs& args, const sweep::Sweep& sw) {
  const auto script = find_sbatch_script();
  // What each job runs: `some sweep` with the same file and options (absolute paths: the jobs
  // start in the submit directory, but a relative --out would be read twice).
  std::vector<std::string> sweep_args = {fs::absolute(args.file).lexically_normal().string(), "--out",
                                         fs::absolute(args.out).lexically_normal().string()};
  if (!args.scale.empty()) sweep_args.insert(sweep_args.end(), {"--scale", args.scale});
  if (!args.data.empty()) sweep_args.insert(sweep_args.end(), {"--data", args.data});
  for (const auto& s : args.sets) sweep_args.insert(sweep_args.end(), {"--set", s});
  const auto logs = fs::absolute(sw.dir + "/slurm").lexically_normal().string();
  const auto n = sw.runs.size();
  std::vector<std::string> array = {"sbatch", "--parsable",
                                    fmt::format("--array=0-{}{}", n - 1,
                                                args.max_parallel > 0 ? fmt::format("%{}", args.max_parallel) : ""),
                                    "--job-name=some-sweep-" + sw.name, "--output=" + logs + "/%A_%a.out"};
  array.insert(array.end(), args.sbatch_args.begin(), args.sbatch_args.end());
  array.push_back(script);
  array.insert(array.end(), sweep_args.begin(), sweep_args.end());
  auto summary = [&](const std::string& after) {
    std::vector<std::string> cmd = {"sbatch", "--parsable", "--dependency=afterany:" + after,
                                    "--job-name=some-sweep-" + sw.name + "-summary",
                                    "--output=" + logs + "/summary-%j.out"};
    cmd.insert(cmd.end(), args.sbatch_args.begin(), args.sbatch_args.end());
    cmd.push_back(script);
    cmd.insert(cmd.end(), sweep_args.begin(), sweep_args.end());
    cmd.push_back("--summary");
    return cmd;
  };
  if (args.dry_run) {
    std::cout << fmt::format("would submit:\n  {}\n  {}\n", fmt::join(array, " "), fmt::join(summary("<array job>"), " "));
    return;
  }
  fs::create_directories(logs);
  setenv("SOME_BIN", self_executable().c_str(), /*overwrite=*/0);  // the jobs run this binary
  const auto array_id = job_id(capture_output(array), "job array");
  std::cout << fmt::format("submitted array job {}: {} run(s) of sweep {} (tasks 0-{}{}), output {}/{}_<task>.out\n",
                           array_id, n, sw.name, n - 1,
                           args.max_parallel > 0 ? fmt::format(", at most {} at once", args.max_parallel) : "", logs,
                           array_id)
            << std::flush;
  int64_t summary_id = 0;
  try {
    summary_id = job_id(capture_output(summary(std::to_string(array_id))), "summary job");
  } catch (const Error& e) {
    throw Error(fmt::format("array job {} is submitted, but the summary job is not ({}): once the array has ended, "
                            "write the summary with: some sweep {} --out {}{} --summary",
                            array_id, e.what(), args.file, args.out, args.scale.empty() ? "" : " --scale " + args.scale));
  }
  std::cout << fmt::format("submitted summary job {} (runs once array job {} has ended): {}/summary.md\n", summary_id,
                           array_id, sw.dir)
            << fmt::format("follow with: squeue -j {},{}\n", array_id, summary_id) << std::flush;
}

void run_sweep(const SweepArgs& args) {
  if (args.summary && (args.only >= 0 || args.slurm || args.dry_run)) {
    throw ConfigError("--summary writes the summary of the runs there are: it takes no --only, --slurm or --dry-run");
  }
  if (args.slurm && args.only >= 0) throw ConfigError("--slurm submits every run (one array task each): drop --only");
  const auto sw = sweep::load_sweep(args.file, {args.scale, args.sets, args.data, args.out});
  if (args.only >= static_cast<int>(sw.runs.size())) {
    throw ConfigError(fmt::format("{}: --only {} is out of range: the sweep has {} run(s), 0..{}", args.file, args.only,
                                  sw.runs.size(), sw.runs.size() - 1));
  }
  if (args.dry_run) {
    print_plan(sw, args.only);
    if (args.slurm) submit(args, sw);
    return;
  }
  if (args.summary) {
    const auto results = sweep::write_summary(sw);
    std::map<sweep::Status, int> count;
    for (const auto& r : results) ++count[r.status];
    std::cout << fmt::format("[sweep {}] summary of {} run(s) ({} done, {} failed, {} missing): {}/summary.md, "
                             "{}/summary.csv\n",
                             sw.name, results.size(), count[sweep::Status::Done], count[sweep::Status::Failed],
                             count[sweep::Status::Missing], sw.dir, sw.dir);
    return;
  }
  // Every dataset the runs read, before anything starts (the default corpus is built here once
  // rather than by several runs or array tasks at the same time).
  std::set<std::string> data_dirs;
  for (const auto& r : sw.runs) data_dirs.insert(r.config.data_dir);
  for (const auto& d : data_dirs) ensure_dataset(d);
  if (args.slurm) submit(args, sw);
  else run_local(args, sw);
}

}  // namespace

void add_sweep_command(CLI::App& app) {
  auto args = std::make_shared<SweepArgs>();
  auto* cmd = app.add_subcommand("sweep", "Run every run of a sweep file (experiments/README.md), then summarise");
  cmd->add_option("file", args->file, "sweep file (TOML)")->required();
  cmd->add_option("--out", args->out, "sweeps directory: runs go to OUT/<sweep name>[-<scale>]/<run name>/")
      ->capture_default_str();
  cmd->add_option("--scale", args->scale, "apply the file's [scale.NAME] on top (e.g. small: minutes on a CPU)");
  cmd->add_option("--data", args->data, "dataset directory for every run (overrides data.dir)");
  cmd->add_option("--set", args->sets, "section.key=value for every run, after the file (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--only", args->only, "run only run number I (0-based; a Slurm array task)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--dry-run", args->dry_run, "print the runs and their overrides (and, with --slurm, the sbatch "
                                            "commands); start nothing");
  cmd->add_flag("--slurm", args->slurm, "submit a Slurm job array (slurm/sweep.sbatch) and a summary job after it");
  cmd->add_option("--max-parallel", args->max_parallel, "with --slurm: at most this many array tasks at once")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--sbatch-arg", args->sbatch_args,
                  "with --slurm: an sbatch option for both jobs, written --sbatch-arg=--time=60 (repeatable)")
      ->allow_extra_args(false);
  cmd->add_flag("--summary", args->summary, "only (re)write summary.csv and summary.md from the run directories");
  cmd->callback([args] { run_sweep(*args); });
}

}  // namespace some::launcher
