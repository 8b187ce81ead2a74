#pragma once
// A checkpoint's manifest.json (docs/design.md §7): the run it belongs to, every file with its
// size and SHA-256, every tensor with its file, shape and dtype. Reading one checks every key
// and that each tensor's claimed bytes fit in its file, so nothing is allocated for a damaged
// or hand-edited manifest.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace some::checkpoints {

inline constexpr int kFormatVersion = 1;

// What a checkpoint says about the run besides its tensors.
struct CheckpointInfo {
  int64_t step = 0;
  int64_t tokens = 0;          // training tokens seen up to and including `step`
  int world_size = 1;          // W and P of the run that wrote it (informative: loads at any)
  int expert_parallel = 1;
  std::string config;          // the run's resolved TOML
  nlohmann::json trainer = nlohmann::json::object();  // non-tensor state: sampler position, time
};

struct TensorRecord {
  std::string file;              // e.g. rank_00001.h5 (relative to the manifest)
  std::vector<int64_t> shape;
  std::string dtype;             // float32 | float64 | int64 | int32 | uint8
};

struct FileRecord {
  std::string sha256;
  int64_t bytes = 0;
};

struct Manifest {
  CheckpointInfo info;
  // Directory (relative to this one, e.g. "../experts_00000100") of an expert library whose
  // tensors belong to this checkpoint too; empty: none. A reader merges its manifest in.
  std::string library;
  std::map<std::string, FileRecord> files;
  std::map<std::string, TensorRecord> tensors;

  nlohmann::json to_json() const;
  // DataError naming `path` and the bad key.
  static Manifest from_json(const nlohmann::json& j, const std::string& path);
  static Manifest read(const std::string& path);
};

}  // namespace some::checkpoints
