// `some config`: every config key with its default (Markdown), or a resolved config as TOML.
#include <iostream>

#include "launcher/commands.h"
#include "launcher/config.h"

namespace some::launcher {

void add_config_command(CLI::App& app) {
  struct Args {
    std::string file;
    std::vector<std::string> overrides;
    bool markdown = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("config", "Print the resolved config (TOML) or the table of every key");
  cmd->add_option("--config", args->file, "TOML config file");
  cmd->add_option("--set", args->overrides, "section.key=value override (repeatable)");
  cmd->add_flag("--markdown", args->markdown, "print the key reference (docs/config.md): every key, type, default and meaning, as Markdown");
  cmd->callback([args] {
    if (args->markdown) {
      std::cout << markdown_reference();
    } else {
      std::cout << to_toml(load_config(args->file, args->overrides));
    }
  });
}

}  // namespace some::launcher
