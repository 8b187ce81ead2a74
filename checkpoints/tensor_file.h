#pragma once
// Named tensors <-> one HDF5 file: one dataset per global tensor name (`layers.3.some.keys`),
// readable with h5py. Written under a temporary name, fsynced and renamed, so a file that
// exists under its final name is complete. The sharded, resumable checkpoint (SPEC §7) is built
// on these files.
#include <map>
#include <string>

#include <torch/torch.h>

namespace some::checkpoints {

using TensorMap = std::map<std::string, torch::Tensor>;

void write_tensors(const std::string& path, const TensorMap& tensors);
TensorMap read_tensors(const std::string& path);

// Copies `source` into the tensors of `target` (e.g. a model's state), in place, so that
// registered parameters and buffers keep their identity. Any missing, unexpected or
// mis-shaped tensor is a DataError listing every mismatch.
void load_into(TensorMap& target, const TensorMap& source, const std::string& source_path);

}  // namespace some::checkpoints
