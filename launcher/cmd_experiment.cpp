// `some experiment claims [--out DIR] [--scale tiny|small] [--data DIR] [--dry-run]`: the seeds'
// three claims (reservoir, composition, forgetting; seeds 002 / 004, SPEC §10) as one resumable
// experiment. tools/claims.py of this source tree plans the runs and writes OUT/report.md; every
// training and evaluation it starts is a child process of this very executable (/proc/self/exe),
// so the report always describes the binary that was asked for. The interpreter is SOME_PYTHON
// from the environment, else the venv Python this binary was configured with (as `some report`).
// The script's exit status becomes this command's; SIGTERM / SIGUSR1 / SIGINT sent to this
// process are passed on to the script, which passes them to its running trainer (checkpoint and
// exit) and stops: the same command later continues where it stopped.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
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

// Ends `some` with the script's status without a second message (it has said why): CLI11's
// App::exit returns the code of a ParseError named "RuntimeError" silently (see cmd_report.cpp).
struct ScriptExitStatus : CLI::ParseError {
  explicit ScriptExitStatus(int code)
      : CLI::ParseError("RuntimeError", fmt::format("tools/claims.py exited with status {}", code), code) {}
};

// The stop signals reach the script through these (a signal handler can only touch statics).
volatile sig_atomic_t g_script_pid = 0;

void forward_signal(int signo) {
  if (g_script_pid > 0) kill(static_cast<pid_t>(g_script_pid), signo);
}

std::string python_interpreter() {
  const char* env = std::getenv("SOME_PYTHON");
  if (env != nullptr && *env != '\0') return env;
  return SOME_PYTHON_PATH;
}

// The path of the running `some` binary: the children the script starts are this executable.
std::string self_executable() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) throw Error(fmt::format("some experiment: cannot resolve /proc/self/exe: {}", ec.message()));
  return exe.string();
}

// Runs argv (no shell), forwarding SIGINT / SIGTERM / SIGUSR1 while it runs; its exit status
// (128 + signal when it was killed).
int run_script(const std::vector<std::string>& argv) {
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  struct sigaction forward {}, previous[3];
  forward.sa_handler = forward_signal;
  sigemptyset(&forward.sa_mask);
  const int signals[3] = {SIGINT, SIGTERM, SIGUSR1};
  for (int i = 0; i < 3; ++i) sigaction(signals[i], &forward, &previous[i]);
  pid_t pid = 0;
  const int err = posix_spawn(&pid, cargv[0], nullptr, nullptr, cargv.data(), environ);
  if (err != 0) {
    for (int i = 0; i < 3; ++i) sigaction(signals[i], &previous[i], nullptr);
    throw Error(fmt::format("some experiment: cannot start {}: {}", argv[0], std::strerror(err)));
  }
  g_script_pid = pid;
  int status = 0;
  int rc = 0;
  while ((rc = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
  }
  const int wait_errno = errno;
  g_script_pid = 0;
  for (int i = 0; i < 3; ++i) sigaction(signals[i], &previous[i], nullptr);
  if (rc < 0) throw Error(fmt::format("some experiment: waitpid for {}: {}", argv[0], std::strerror(wait_errno)));
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

void add_claims_command(CLI::App& experiment) {
  struct Args {
    std::string out = "runs/claims", scale = "small", data;
    bool dry_run = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = experiment.add_subcommand(
      "claims", "The seeds' claims A (reservoir), B (composition), C (forgetting) at equal active parameters: "
                "trains, evaluates, writes OUT/report.md (tools/claims.py)");
  cmd->add_option("--out", args->out, "output directory: one run directory per run, report.md, plots")
      ->capture_default_str();
  cmd->add_option("--scale", args->scale, "tiny (about 2-3 minutes, for tests) or small (under an hour on 2 cores)")
      ->check(CLI::IsMember({"tiny", "small"}))
      ->capture_default_str();
  cmd->add_option("--data", args->data, "domain-A dataset directory (default: data/default, the King James Bible)");
  cmd->add_flag("--dry-run", args->dry_run, "print the plan (runs, commands, settings) and start nothing");
  cmd->callback([args] {
    const auto python = python_interpreter();
    const auto script = std::string(SOME_SOURCE_DIR) + "/tools/claims.py";
    if (access(python.c_str(), X_OK) != 0) {
      throw Error(fmt::format("some experiment: Python interpreter '{}' is not an executable file; set SOME_PYTHON "
                              "to a Python with numpy, h5py, matplotlib and scikit-learn",
                              python));
    }
    if (!std::filesystem::is_regular_file(script)) {
      throw Error(fmt::format("some experiment: script '{}' not found (this binary was built from {})", script,
                              SOME_SOURCE_DIR));
    }
    std::vector<std::string> argv = {python, script, "--some", self_executable(), "--out", args->out, "--scale",
                                     args->scale};
    if (!args->data.empty()) argv.insert(argv.end(), {"--data", args->data});
    if (args->dry_run) argv.emplace_back("--dry-run");
    const int code = run_script(argv);
    if (code != 0) throw ScriptExitStatus(code);
  });
}

}  // namespace

void add_experiment_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("experiment", "Multi-run experiments with a written report (claims)");
  cmd->require_subcommand(1);
  add_claims_command(*cmd);
}

}  // namespace some::launcher
