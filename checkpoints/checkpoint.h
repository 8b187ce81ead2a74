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

#include "checkpoints/manifest.h"
#include "checkpoints/tensor_file.h"

namespace some::parallel {
class Communicator;
}

namespace some::checkpoints {

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
