// `some experiment`: placeholder registration (being written this session).
#include "common/errors.h"
#include "launcher/commands.h"

namespace some::launcher {

void add_experiment_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("experiment", "(in progress)");
  cmd->callback([] { throw Error("some experiment: not built yet"); });
}

}  // namespace some::launcher
