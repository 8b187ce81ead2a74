#include "common/logging.h"

#include <mutex>
#include <vector>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

namespace some::log {
namespace {
std::mutex g_mutex;
std::vector<spdlog::sink_ptr> g_sinks;
std::string g_pattern = "[%H:%M:%S] [%n] %^%l%$: %v";
spdlog::level::level_enum g_level = spdlog::level::info;

std::vector<spdlog::sink_ptr>& sinks() {
  if (g_sinks.empty()) g_sinks.push_back(std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  return g_sinks;
}
}  // namespace

void setup(int rank, int world_size, bool verbose) {
  std::lock_guard lock(g_mutex);
  if (world_size > 1) g_pattern = fmt::format("[%H:%M:%S] [rank {}] [%n] %^%l%$: %v", rank);
  g_level = verbose ? spdlog::level::debug : spdlog::level::info;
  if (rank != 0) sinks().front()->set_level(spdlog::level::warn);
  spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& l) {
    l->set_pattern(g_pattern);
    l->set_level(g_level);
  });
}

void add_file_sink(const std::string& path) {
  std::lock_guard lock(g_mutex);
  auto file = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, /*truncate=*/false);
  file->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%n] %l: %v");
  sinks().push_back(file);
  spdlog::apply_all([&](const std::shared_ptr<spdlog::logger>& l) { l->sinks().push_back(file); });
}

std::shared_ptr<spdlog::logger> get(const std::string& component) {
  std::lock_guard lock(g_mutex);
  if (auto existing = spdlog::get(component)) return existing;
  auto logger = std::make_shared<spdlog::logger>(component, sinks().begin(), sinks().end());
  logger->set_pattern(g_pattern);
  logger->set_level(g_level);
  logger->flush_on(spdlog::level::info);
  spdlog::register_logger(logger);
  return logger;
}

}  // namespace some::log
