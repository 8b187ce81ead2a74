#pragma once
// The sub-commands of `some`, one file each. Each registers itself on the CLI11 app and runs
// through its callback; errors propagate as exceptions to main().
#include <CLI/CLI.hpp>

namespace some::launcher {

void add_prepare_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_config_command(CLI::App& app);
void add_checkpoint_command(CLI::App& app);
void add_sweep_command(CLI::App& app);
void add_experiment_command(CLI::App& app);
void add_report_command(CLI::App& app);
void add_top_command(CLI::App& app);

}  // namespace some::launcher
