#include "launcher/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "common/errors.h"

extern char** environ;

namespace some::launcher {
namespace {

constexpr int kStopSignals[] = {SIGINT, SIGTERM, SIGUSR1};

// Signal handlers can only reach statics.
volatile sig_atomic_t g_signal = 0;
volatile sig_atomic_t g_child = 0;

void on_stop_signal(int signo) {
  g_signal = signo;
  if (g_child > 0) kill(static_cast<pid_t>(g_child), signo);
}

}  // namespace

void forward_stop_signals() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  for (int s : kStopSignals) sigaction(s, &sa, nullptr);
}

int stop_signal_seen() { return g_signal; }

pid_t spawn_child(const std::vector<std::string>& argv, const std::string& log, int out_fd) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  if (!log.empty()) {
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
  } else if (out_fd >= 0) {
    posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
  }
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t defaults;
  sigemptyset(&defaults);
  for (int s : kStopSignals) sigaddset(&defaults, s);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> cargv;  // the strings outlive the call
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, argv.front().c_str(), &fa, &attr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) throw Error(fmt::format("cannot start {}: {}", argv.front(), std::strerror(rc)));
  return pid;
}

int wait_child(pid_t pid) {
  g_child = pid;
  if (g_signal != 0) kill(pid, g_signal);  // came while it was starting
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      g_child = 0;
      throw Error(fmt::format("waitpid({}): {}", pid, std::strerror(errno)));
    }
  }
  g_child = 0;
  return status;
}

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return fmt::format("exit code {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("killed by signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
  return "unknown wait status";
}

std::string capture_output(const std::vector<std::string>& argv) {
  int fds[2];  // close-on-exec: the child keeps only its stdout copy (dup2 clears the flag)
  if (pipe2(fds, O_CLOEXEC) != 0) throw Error(fmt::format("pipe: {}", std::strerror(errno)));
  std::vector<std::string> env_argv = {"/usr/bin/env"};  // PATH lookup
  env_argv.insert(env_argv.end(), argv.begin(), argv.end());
  pid_t pid;
  try {
    pid = spawn_child(env_argv, "", fds[1]);
  } catch (...) {
    close(fds[0]);
    close(fds[1]);
    throw;
  }
  close(fds[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  const int status = wait_child(pid);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw Error(fmt::format("{} failed ({}){}", argv.front(), describe_status(status), out.empty() ? "" : ": " + out));
  }
  return out;
}

std::string self_executable() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) throw Error(fmt::format("cannot resolve /proc/self/exe: {}", ec.message()));
  return exe.string();
}

ToolExitStatus::ToolExitStatus(const std::string& tool, int code)
    : CLI::ParseError("RuntimeError", fmt::format("{} exited with status {}", tool, code), code) {}

std::vector<std::string> python_tool_argv(const std::string& command, const std::string& tool,
                                          const std::vector<std::string>& args) {
  const char* env = std::getenv("SOME_PYTHON");
  const bool from_env = env != nullptr && *env != '\0';
  const std::string python = from_env ? env : SOME_PYTHON_PATH;
  const auto tools_dir = std::string(SOME_SOURCE_DIR) + "/tools";
  const auto module = "some_tools." + tool;
  const auto main_file = tools_dir + "/some_tools/" + tool + "/__main__.py";
  if (access(python.c_str(), X_OK) != 0) {
    throw Error(fmt::format("{}: Python interpreter '{}' ({}) is not an executable file; set SOME_PYTHON to a Python "
                            "with the packages scripts/setup.sh installs in .venv",
                            command, python,
                            from_env ? "from the SOME_PYTHON environment variable"
                                     : "the venv Python this binary was configured with"));
  }
  if (!std::filesystem::is_regular_file(main_file)) {
    throw Error(fmt::format("{}: module {} not found ({} is missing; this binary was built from {})", command,
                            module, main_file, SOME_SOURCE_DIR));
  }
  // `python -m` finds the package in this source tree, in front of anything the caller has on
  // PYTHONPATH. The tool inherits this process's environment, and `some` only waits for (or
  // becomes) the tool from here on, so setting it here changes nothing else.
  const char* user_path = std::getenv("PYTHONPATH");
  const auto python_path = user_path != nullptr && *user_path != '\0' ? tools_dir + ":" + user_path : tools_dir;
  setenv("PYTHONPATH", python_path.c_str(), 1);
  std::vector<std::string> argv = {python, "-m", module};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

void run_python_tool(const std::string& command, const std::string& tool, const std::vector<std::string>& args) {
  const auto argv = python_tool_argv(command, tool, args);
  forward_stop_signals();
  const int code = exit_code(wait_child(spawn_child(argv)));
  if (code != 0) throw ToolExitStatus("some_tools." + tool, code);
}

}  // namespace some::launcher
