#pragma once
// Named tensors <-> one HDF5 file: one dataset per global tensor name (`layers.3.some.keys`),
// readable with h5py. Written under a temporary name, fsynced and renamed, so a file that
// exists under its final name is complete. The sharded, resumable checkpoint (docs/design.md §7) is built
// on these files.
#include <map>
#include <string>

#include <hdf5.h>
#include <torch/torch.h>

namespace some::checkpoints {

using TensorMap = std::map<std::string, torch::Tensor>;

// `attrs` become string attributes of the file's root group. Any failure (a full disk) is a
// DataError naming `path`, and no file is left under either name.
void write_tensors(const std::string& path, const TensorMap& tensors,
                   const std::map<std::string, std::string>& attrs = {});
TensorMap read_tensors(const std::string& path);
// One dataset of an open file (`path` names the file in errors).
torch::Tensor read_tensor(hid_t file, const std::string& name, const std::string& path);
// "float32", "int64", ... as stored, and back.
std::string dtype_name(torch::ScalarType t);
torch::ScalarType dtype_from_name(const std::string& name);

// Copies `source` into the tensors of `target` (e.g. a model's state), in place, so that
// registered parameters and buffers keep their identity. Any missing, unexpected or
// mis-shaped tensor is a DataError listing every mismatch.
void load_into(TensorMap& target, const TensorMap& source, const std::string& source_path);

}  // namespace some::checkpoints
