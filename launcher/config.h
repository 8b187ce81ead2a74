#pragma once
// The typed config tree, mapped one-to-one onto TOML sections ([model], [router], [expert],
// [gravity], [moe], [optim], [train], [data]). Defaults < --config FILE < --set section.key=value;
// validated once, up front: an unknown key, a wrong type or a value out of range is a
// ConfigError naming the key, the value and what is allowed.
#include <string>
#include <vector>

#include "src/model/options.h"
#include "src/train/options.h"

namespace some::launcher {

struct Config {
  model::ModelOptions model;   // [model] plus [router], [expert], [gravity], [moe]
  train::OptimOptions optim;   // [optim]
  train::TrainOptions train;   // [train]
  train::ParallelOptions parallel;  // [parallel]
  std::string data_dir = "data/default";  // [data] dir
};

// Applies a TOML file over `cfg` (ConfigError / DataError naming the file).
void apply_file(Config& cfg, const std::string& path);
// The same from TOML text; `source` names it in errors (e.g. a checkpoint's manifest).
void apply_text(Config& cfg, const std::string& text, const std::string& source);
// Applies one `section.key=value` override.
void apply_override(Config& cfg, const std::string& assignment);
// Cross-key checks (global_batch vs micro_batch, top_k vs num_experts, heads vs width, ...).
void validate(const Config& cfg);
// The resolved config as TOML (written to RUN/config.toml; reads back to the same Config).
std::string to_toml(const Config& cfg);
// docs/config.md: every key with type, default, allowed values and meaning, a table per section.
std::string markdown_reference();

// Defaults < file < overrides, then validate().
Config load_config(const std::string& file, const std::vector<std::string>& overrides);
Config load_config_text(const std::string& text, const std::string& source, const std::vector<std::string>& overrides);

}  // namespace some::launcher
