// `some top RUN [RUN ...] [--interval S] [--once]`: a live terminal dashboard of running or finished
// runs (docs/top.md), drawn by tools/some_tools/top of this source tree with the project's Python
// (SOME_PYTHON from the environment, else the venv Python this binary was configured with).
//
// Unlike `some report` (run_python_tool: a child with stdin from /dev/null), the dashboard needs
// the terminal itself — keys on stdin, the screen size — so this process *becomes* the Python
// tool (execv): the terminal, Ctrl-C and the exit status are the tool's with nothing in between.
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "common/errors.h"
#include "launcher/child_process.h"
#include "launcher/commands.h"

namespace some::launcher {
namespace {

[[noreturn]] void exec_top(const std::vector<std::string>& args) {
  auto argv = python_tool_argv("some top", "top", args);
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  execv(argv.front().c_str(), cargv.data());
  throw Error(fmt::format("some top: cannot run {}: {}", argv.front(), std::strerror(errno)));
}

}  // namespace

void add_top_command(CLI::App& app) {
  struct Args {
    std::vector<std::string> runs;
    double interval = 1.0;
    bool once = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("top", "Live terminal dashboard of running or finished runs (some_tools.top)");
  cmd->add_option("runs", args->runs, "run directories (each holds metrics.jsonl)")->required()->expected(1, -1);
  cmd->add_option("--interval", args->interval, "seconds between reads of the run's files (default 1)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--once", args->once, "print one frame and exit (what it does without a terminal)");
  cmd->callback([args] {
    std::vector<std::string> argv = args->runs;
    argv.insert(argv.end(), {"--interval", fmt::format("{}", args->interval)});
    if (args->once) argv.emplace_back("--once");
    exec_top(argv);
  });
}

}  // namespace some::launcher
