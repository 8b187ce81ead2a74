// `some report`: placeholder registration (being written this session).
#include "common/errors.h"
#include "launcher/commands.h"

namespace some::launcher {

void add_report_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("report", "(in progress)");
  cmd->callback([] { throw Error("some report: not built yet"); });
}

}  // namespace some::launcher
