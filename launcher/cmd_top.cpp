// `some top RUN [RUN ...] [--interval S] [--once]`: a live terminal dashboard of running or finished
// runs (docs/top.md), drawn by tools/some_tools/top of this source tree with the project's Python
// (SOME_PYTHON from the environment, else the venv Python this binary was configured with).
//
// Unlike `some report` (run_python_tool: a child with stdin from /dev/null), the dashboard needs
// the terminal itself — keys on stdin, the screen size — so this process *becomes* the Python
// tool (execv): the terminal, Ctrl-C and the exit status are the tool's with nothing in between.
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "common/errors.h"
#include "launcher/commands.h"

namespace some::launcher {
namespace {

[[noreturn]] void exec_top(const std::vector<std::string>& args) {
  const char* env = std::getenv("SOME_PYTHON");
  const bool from_env = env != nullptr && *env != '\0';
  const std::string python = from_env ? env : SOME_PYTHON_PATH;
  const auto tools_dir = std::string(SOME_SOURCE_DIR) + "/tools";
  const auto main_file = tools_dir + "/some_tools/top/__main__.py";
  if (access(python.c_str(), X_OK) != 0) {
    throw Error(fmt::format("some top: Python interpreter '{}' ({}) is not an executable file; set SOME_PYTHON to a "
                            "Python with numpy, h5py and rich",
                            python, from_env ? "from the SOME_PYTHON environment variable"
                                             : "the venv Python this binary was configured with"));
  }
  if (!std::filesystem::is_regular_file(main_file)) {
    throw Error(fmt::format("some top: module some_tools.top not found ({} is missing; this binary was built from {})",
                            main_file, SOME_SOURCE_DIR));
  }
  // tools/ of this source tree first, so `python -m` finds this package before anything else.
  const char* user_path = std::getenv("PYTHONPATH");
  const auto python_path = user_path != nullptr && *user_path != '\0' ? tools_dir + ":" + user_path : tools_dir;
  setenv("PYTHONPATH", python_path.c_str(), 1);
  std::vector<std::string> argv = {python, "-m", "some_tools.top"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  execv(python.c_str(), cargv.data());
  throw Error(fmt::format("some top: cannot run {}: {}", python, std::strerror(errno)));
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
