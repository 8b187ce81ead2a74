// `some report RUN [--out DIR] [--step N] [--method tsne|umap]`: the routing-analytics report of a
// run directory (plots + report.md), made by tools/report.py of this source tree with the
// project's Python. The interpreter is SOME_PYTHON from the environment, else the venv Python
// this binary was configured with. The script's exit status becomes this command's.
#include <spawn.h>
#include <sys/wait.h>
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

extern char** environ;

namespace some::launcher {
namespace {

// Ends `some` with the child's status, silently and through main()'s normal return: CLI11's
// App::exit returns the code of an error named "RuntimeError" without printing anything (the
// script has already said why it failed), and main() hands every ParseError to App::exit.
struct ChildExitStatus : CLI::ParseError {
  explicit ChildExitStatus(int code)
      : CLI::ParseError("RuntimeError", fmt::format("tools/report.py exited with status {}", code), code) {}
};

std::string report_interpreter() {
  const char* env = std::getenv("SOME_PYTHON");
  if (env != nullptr && *env != '\0') return env;
  return SOME_PYTHON_PATH;
}

// Runs argv[0] with argv (no shell), waits, returns its exit status (128 + signal if killed).
int run_child(const std::vector<std::string>& argv) {
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  pid_t pid = 0;
  const int err = posix_spawn(&pid, cargv[0], nullptr, nullptr, cargv.data(), environ);
  if (err != 0) throw Error(fmt::format("some report: cannot start {}: {}", argv[0], std::strerror(err)));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw Error(fmt::format("some report: waitpid for {}: {}", argv[0], std::strerror(errno)));
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

void add_report_command(CLI::App& app) {
  struct Args {
    std::string run_dir, out_dir, method;
    int64_t step = -1;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("report", "Routing-analytics report of a run: plots and report.md (tools/report.py)");
  cmd->add_option("run", args->run_dir, "run directory (holds metrics.jsonl, analytics/, config.toml)")->required();
  cmd->add_option("--out", args->out_dir, "output directory (default: RUN/report)");
  cmd->add_option("--step", args->step, "analytics step to plot (default: the last analytics file)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--method", args->method, "2-D embedding of the keys: tsne (default) or umap")
      ->check(CLI::IsMember({"tsne", "umap"}));
  cmd->callback([args] {
    const auto python = report_interpreter();
    const auto script = std::string(SOME_SOURCE_DIR) + "/tools/report.py";
    if (access(python.c_str(), X_OK) != 0) {
      const bool from_env = std::getenv("SOME_PYTHON") != nullptr && *std::getenv("SOME_PYTHON") != '\0';
      throw Error(fmt::format("some report: Python interpreter '{}' ({}) is not an executable file; set SOME_PYTHON "
                              "to a Python with numpy, h5py, matplotlib and scikit-learn",
                              python, from_env ? "from the SOME_PYTHON environment variable"
                                               : "the venv Python this binary was configured with"));
    }
    if (!std::filesystem::is_regular_file(script)) {
      throw Error(fmt::format("some report: report script '{}' not found (this binary was built from {})", script,
                              SOME_SOURCE_DIR));
    }
    std::vector<std::string> argv = {python, script, args->run_dir};
    if (!args->out_dir.empty()) argv.insert(argv.end(), {"--out", args->out_dir});
    if (args->step >= 0) argv.insert(argv.end(), {"--step", std::to_string(args->step)});
    if (!args->method.empty()) argv.insert(argv.end(), {"--method", args->method});
    const int code = run_child(argv);
    if (code != 0) throw ChildExitStatus(code);
  });
}

}  // namespace some::launcher
