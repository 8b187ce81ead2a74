#pragma once
// One named spdlog logger per component, all writing to the console and, once a run
// directory exists, to RUN/train.log. Only rank 0 logs to the console by default.
#include <memory>
#include <string>

#include <spdlog/spdlog.h>

namespace some::log {

// Sets the pattern and level; `rank` is shown in the pattern when world_size > 1.
void setup(int rank = 0, int world_size = 1, bool verbose = false);
// Adds RUN/train.log as a sink of every logger created from now on and of existing ones.
void add_file_sink(const std::string& path);
// The logger of one component ("train", "data", "model", ...).
std::shared_ptr<spdlog::logger> get(const std::string& component);

}  // namespace some::log
