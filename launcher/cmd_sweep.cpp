// `some sweep`: placeholder registration (being written this session).
#include "common/errors.h"
#include "launcher/commands.h"

namespace some::launcher {

void add_sweep_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("sweep", "(in progress)");
  cmd->callback([] { throw Error("some sweep: not built yet"); });
}

}  // namespace some::launcher
