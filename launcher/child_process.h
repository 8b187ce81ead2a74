#pragma once
// Child processes of `some`, started without a shell: a `some train` per sweep run, the Python
// tools behind `some report` and `some experiment claims`, `sbatch`. A stop signal (SIGINT,
// SIGTERM, SIGUSR1: Ctrl-C, scancel, Slurm's time-limit warning) that arrives while a child runs
// is passed on to it — a trainer then checkpoints and exits — and remembered for the caller.
#include <sys/types.h>

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace some::launcher {

// From now on this process forwards the stop signals to its running child instead of dying.
void forward_stop_signals();
// The last stop signal received since forward_stop_signals() (0: none).
int stop_signal_seen();

// Starts argv[0] (a path) with argv and stdin from /dev/null. A `log` receives its stdout and
// stderr appended; else `out_fd` (>= 0) becomes its stdout. The stop signals have
// their default action in the child. Error naming the program when it cannot start.
pid_t spawn_child(const std::vector<std::string>& argv, const std::string& log = "", int out_fd = -1);
// Waits for `pid` (through signal interruptions), forwarding stop signals to it meanwhile;
// returns its wait status.
int wait_child(pid_t pid);
// 0..255 for an exit, 128 + N when signal N killed it (the shell's convention).
int exit_code(int wait_status);
std::string describe_status(int wait_status);  // "exit code 3", "killed by signal 9 (Killed)"
// Runs a command found on PATH and returns its stdout (stderr goes to ours); Error on a
// non-zero exit.
std::string capture_output(const std::vector<std::string>& argv);
// The path of the running `some` executable.
std::string self_executable();

// Ends `some` with a tool's exit status, silently and through main()'s normal return: CLI11's
// App::exit returns the code of an error named "RuntimeError" without printing anything (the
// tool has already said why it failed), and main() hands every ParseError to App::exit.
struct ToolExitStatus : CLI::ParseError {
  ToolExitStatus(const std::string& tool, int code);
};

// Runs `python -m some_tools.<tool> args...` (tools/some_tools/<tool>/__main__.py of this source
// tree, tools/ put in front of PYTHONPATH) with the project's Python (SOME_PYTHON from the
// environment, else the venv this binary was configured with), forwarding stop signals; a
// non-zero exit becomes ToolExitStatus. `command` ("some report") names the caller in errors.
void run_python_tool(const std::string& command, const std::string& tool, const std::vector<std::string>& args);
// The command line of that tool, `python -m some_tools.<tool> args...`, with tools/ put in front of
// this process's PYTHONPATH; an Error naming `command` when the interpreter or the tool is missing.
// For a caller that must become the tool (`some top` needs the terminal) rather than wait for it.
std::vector<std::string> python_tool_argv(const std::string& command, const std::string& tool,
                                          const std::vector<std::string>& args);

}  // namespace some::launcher
