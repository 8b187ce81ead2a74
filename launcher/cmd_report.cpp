// `some report RUN [--out DIR] [--step N] [--method tsne|umap|both]`: the routing-analytics report of a
// run directory (plots + report.md), made by tools/some_tools/report of this source tree with the
// project's Python. The interpreter is SOME_PYTHON from the environment, else the venv Python
// this binary was configured with. The script's exit status becomes this command's
// (launcher/child_process.h).
#include <string>
#include <vector>

#include "launcher/child_process.h"
#include "launcher/commands.h"

namespace some::launcher {

void add_report_command(CLI::App& app) {
  struct Args {
    std::string run_dir, out_dir, method;
    int64_t step = -1;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("report", "Routing-analytics report of a run: plots and report.md (some_tools.report)");
  cmd->add_option("run", args->run_dir, "run directory (holds metrics.jsonl, analytics/, config.toml)")->required();
  cmd->add_option("--out", args->out_dir, "output directory (default: RUN/report)");
  cmd->add_option("--step", args->step, "analytics step to plot (default: the last analytics file)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--method", args->method, "2-D embedding of the keys: tsne (default), umap, or both side by side")
      ->check(CLI::IsMember({"tsne", "umap", "both"}));
  cmd->callback([args] {
    std::vector<std::string> argv = {args->run_dir};
    if (!args->out_dir.empty()) argv.insert(argv.end(), {"--out", args->out_dir});
    if (args->step >= 0) argv.insert(argv.end(), {"--step", std::to_string(args->step)});
    if (!args->method.empty()) argv.insert(argv.end(), {"--method", args->method});
    run_python_tool("some report", "report", argv);
  });
}

}  // namespace some::launcher
