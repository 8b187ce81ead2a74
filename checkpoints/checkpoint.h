#pragma once
// Sharded, atomic, resumable checkpoints (docs/design.md §7) over maps of globally named tensors; this
// library never sees a model class.
//
//   RUN/checkpoints/step_00001000/manifest.json   step, tokens, W, P, config, trainer state,
//                                                 SHA-256 per file, every tensor's file/shape/dtype
//   RUN/checkpoints/step_00001000/rank_00000.h5   the tensors rank 0 wrote (one per writing rank)
//   RUN/checkpoints/latest                        "step_00001000": the newest complete one
//
// A save goes to `.tmp.step_XXXXXXXX/`, every file fsynced, the manifest last; the directory is
// then renamed into place and `latest` replaced by rename. A directory named step_* is therefore
// complete, and a reader still verifies every checksum. Tensor names carry no rank, so a
// checkpoint loads at any world size W and expert-parallel size P.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "checkpoints/tensor_file.h"

namespace some::parallel {
class Communicator;
}

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

// "step_00001000"
std::string step_dir_name(int64_t step);

// Collective over `comm` (every rank calls it): each rank passes the tensors it writes, or none
// (then it writes no file). Rank 0 writes the manifest, commits the directory, moves `latest`
// and then prunes to the newest `keep_last` checkpoints (0 keeps all). Returns the committed
// directory. Any failure (a full disk) is a DataError naming the file; what was committed
// before stays intact and the partial `.tmp.*` directory is never mistaken for a checkpoint.
// `library`: the name of an expert library directory in `checkpoints_dir` (save_library) that
// this checkpoint references instead of holding the experts itself; libraries no remaining
// checkpoint references are pruned with the checkpoints.
std::string save_checkpoint(const std::string& checkpoints_dir, const CheckpointInfo& info,
                            const TensorMap& mine, parallel::Communicator& comm, int keep_last,
                            const std::string& library = "");

// Frozen tensors that never change (the experts), committed once as `checkpoints_dir/name` with
// the same protocol (files, manifest, rename) and referenced by later checkpoints. Collective.
std::string save_library(const std::string& checkpoints_dir, const std::string& name, const CheckpointInfo& info,
                         const TensorMap& mine, parallel::Communicator& comm);

// A committed checkpoint opened for reading, by global tensor name.
class CheckpointReader {
 public:
  // `path`: a step_* directory, a checkpoints directory or a run directory (then its `latest`).
  // verify: check every file's size and SHA-256 first (DataError naming the damaged file).
  // With `comm` the verification is collective: its ranks share the hashing, and all of them
  // accept or refuse the checkpoint together.
  explicit CheckpointReader(const std::string& path, bool verify = true, parallel::Communicator* comm = nullptr);

  const std::string& dir() const { return dir_; }
  const Manifest& manifest() const { return manifest_; }
  bool has(const std::string& name) const { return manifest_.tensors.count(name) > 0; }
  torch::Tensor read(const std::string& name) const;
  // Copies a tensor of the checkpoint into every tensor of `target` by name, in place (views
  // included, so a rank fills just its slice of experts). Missing or mis-shaped tensors are one
  // DataError listing all of them. Names in the checkpoint that `target` lacks are ignored
  // (another rank's experts, optimizer state read separately).
  void load_into(TensorMap& target) const;

 private:
  std::string dir_;
  Manifest manifest_;
};

// Resolves `path` (step dir, checkpoints dir or run dir) to a step_* directory; DataError if
// there is none.
std::string resolve_checkpoint_dir(const std::string& path);

// The newest intact checkpoint under `checkpoints_dir` (step_* directories newest first, each
// verified, collectively over `comm` when given; `latest` normally names the same one). Each one passed over is appended to
// `refused` with its reason. nullopt when there is none.
std::optional<std::string> find_latest_intact(const std::string& checkpoints_dir,
                                              std::vector<std::string>* refused = nullptr,
                                              parallel::Communicator* comm = nullptr);

// Every tensor of a checkpoint into one HDF5 file (for sharing, or h5py), with the manifest as
// the file attribute `manifest`.
void consolidate(const CheckpointReader& reader, const std::string& out_path);

}  // namespace some::checkpoints
