#pragma once
// Durable file writes: what a crash or a full disk must never leave half-written (manifests,
// `latest`, metrics.jsonl when a resume cuts it, a run's config.toml).
#include <string>

namespace some {

// fsync of a file or a folder (a rename is durable once its folder is synced). DataError on failure.
void fsync_path(const std::string& path);
// Writes `text` to `path` atomically: a temporary beside it, checked, fsynced, renamed over
// `path`. On any failure a DataError names the file, the temporary is removed and `path` keeps
// its old contents.
void write_file_atomic(const std::string& path, const std::string& text);

}  // namespace some
