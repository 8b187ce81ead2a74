// `some experiment claims [--out DIR] [--scale tiny|small] [--part claims|gap|recycling|all] [--data DIR]
// [--dry-run]`: the seeds' three claims (reservoir, composition, forgetting; seeds 002 / 004, docs/design.md
// §10) as one resumable experiment, and two follow-up parts (docs/claims.md): gap (which router / expert
// options close the gap to the dense FFN) and recycling (a trained dense FFN as the expert library).
// tools/some_tools/claims of this source tree plans the runs and writes OUT/report.md (report-gap.md,
// report-recycling.md); every training and evaluation it starts is a child process of this very
// executable (/proc/self/exe), so the report always describes the binary that was asked for. The
// interpreter is SOME_PYTHON from the environment, else the venv Python this binary was configured
// with (as `some report`).
// The script's exit status becomes this command's; SIGTERM / SIGUSR1 / SIGINT sent to this
// process are passed on to the script, which passes them to its running trainer (checkpoint and
// exit) and stops: the same command later continues where it stopped.
#include <string>
#include <vector>

#include "launcher/child_process.h"
#include "launcher/commands.h"

namespace some::launcher {
namespace {

void add_claims_command(CLI::App& experiment) {
  struct Args {
    std::string out = "runs/claims", scale = "small", part = "claims", data;
    bool dry_run = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = experiment.add_subcommand(
      "claims", "The seeds' claims A (reservoir), B (composition), C (forgetting) at equal active parameters, "
                "and the parts gap and recycling (--part): trains, evaluates, writes OUT/report*.md "
                "(some_tools.claims)");
  cmd->add_option("--out", args->out, "output directory: one run directory per run, report.md, plots")
      ->capture_default_str();
  cmd->add_option("--scale", args->scale,
                  "tiny (a few minutes, for tests) or small (each part under an hour on 2 cores)")
      ->check(CLI::IsMember({"tiny", "small"}))
      ->capture_default_str();
  cmd->add_option("--part", args->part,
                  "claims (the seeds' claims A, B, C -> OUT/report.md), gap (what closes the gap to the dense FFN -> "
                  "OUT/report-gap.md), recycling (a trained dense FFN as the expert library -> "
                  "OUT/report-recycling.md), or all three (shared runs trained once)")
      ->check(CLI::IsMember({"claims", "gap", "recycling", "all"}))
      ->capture_default_str();
  cmd->add_option("--data", args->data, "domain-A dataset directory (default: data/default, the King James Bible)");
  cmd->add_flag("--dry-run", args->dry_run, "print the plan (runs, commands, settings) and start nothing");
  cmd->callback([args] {
    std::vector<std::string> argv = {"--some", self_executable(), "--out", args->out, "--scale", args->scale,
                                     "--part", args->part};
    if (!args->data.empty()) argv.insert(argv.end(), {"--data", args->data});
    if (args->dry_run) argv.emplace_back("--dry-run");
    run_python_tool("some experiment", "claims", argv);
  });
}

}  // namespace

void add_experiment_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("experiment", "Multi-run experiments with a written report (claims)");
  cmd->require_subcommand(1);
  add_claims_command(*cmd);
}

}  // namespace some::launcher
