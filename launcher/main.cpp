// `some`: the SoME trainer's command line (docs/design.md §8). Any error ends the process here with the
// message logged and a non-zero exit code (2 for a bad config, 1 otherwise).
#include <iostream>

#include <CLI/CLI.hpp>
#include <c10/util/Exception.h>

#include "common/errors.h"
#include "common/logging.h"
#include "launcher/commands.h"
#include "parallel/mpi_communicator.h"

namespace {
// One rank failing ends the whole job (MPI_Abort) after logging why; never a hang.
int fail(const some::parallel::MpiRuntime& mpi, int code) {
  if (mpi.active()) {
    spdlog::shutdown();
    some::parallel::MpiRuntime::abort(code);
  }
  return code;
}
}  // namespace

int main(int argc, char** argv) {
  some::parallel::MpiRuntime mpi(&argc, &argv);  // active only under mpirun / srun
  CLI::App app{"SoME: Self-Organizing Mixture-of-Experts trainer"};
  app.require_subcommand(1);
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "debug logging");
  some::launcher::add_prepare_command(app);
  some::launcher::add_train_command(app);
  some::launcher::add_eval_command(app);
  some::launcher::add_generate_command(app);
  some::launcher::add_config_command(app);
  some::launcher::add_checkpoint_command(app);
  some::launcher::add_sweep_command(app);
  some::launcher::add_experiment_command(app);
  some::launcher::add_report_command(app);
  some::launcher::add_top_command(app);
  app.parse_complete_callback([&] { some::log::setup(0, 1, verbose); });
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const some::ConfigError& e) {
    some::log::get("some")->error("config error: {}", e.what());
    return fail(mpi, 2);
  } catch (const c10::Error& e) {
    // LibTorch's message carries its C++ backtrace ("frame #0 ..."): one line for the user, the
    // whole of it with --verbose.
    some::log::get("some")->error("LibTorch: {}", e.what_without_backtrace());
    some::log::get("some")->debug("{}", e.what());
    return fail(mpi, 1);
  } catch (const std::exception& e) {
    some::log::get("some")->error("{}", e.what());
    return fail(mpi, 1);
  }
  return 0;
}
