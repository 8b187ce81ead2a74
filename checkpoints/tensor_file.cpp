#include "checkpoints/tensor_file.h"

#include <filesystem>
#include <vector>

#include "common/check.h"
#include "common/errors.h"
#include "common/files.h"
#include "common/h5.h"

namespace some::checkpoints {

namespace {

struct H5Types {
  hid_t file_type, mem_type;
};

H5Types h5_types(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return {H5T_IEEE_F32LE, H5T_NATIVE_FLOAT};
    case torch::kFloat64: return {H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE};
    case torch::kInt64: return {H5T_STD_I64LE, H5T_NATIVE_INT64};
    case torch::kInt32: return {H5T_STD_I32LE, H5T_NATIVE_INT32};
    case torch::kUInt8:
    case torch::kBool: return {H5T_STD_U8LE, H5T_NATIVE_UINT8};
    default: throw Error(std::string("cannot store tensors of type ") + c10::toString(t));
  }
}

torch::ScalarType torch_type(hid_t type, const std::string& where) {
  H5T_class_t cls = H5Tget_class(type);
  size_t size = H5Tget_size(type);
  if (cls == H5T_FLOAT && size == 4) return torch::kFloat32;
  if (cls == H5T_FLOAT && size == 8) return torch::kFloat64;
  if (cls == H5T_INTEGER && size == 8) return torch::kInt64;
  if (cls == H5T_INTEGER && size == 4) return torch::kInt32;
  if (cls == H5T_INTEGER && size == 1) return torch::kUInt8;
  throw DataError(where + ": unsupported element type");
}

}  // namespace

std::string dtype_name(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return "float32";
    case torch::kFloat64: return "float64";
    case torch::kInt64: return "int64";
    case torch::kInt32: return "int32";
    case torch::kUInt8:
    case torch::kBool: return "uint8";
    case torch::kBFloat16:
    case torch::kHalf: return "float32";  // stored widened (write_tensors)
    default: throw Error(std::string("cannot store tensors of type ") + c10::toString(t));
  }
}

torch::ScalarType dtype_from_name(const std::string& name) {
  for (auto t : {torch::kFloat32, torch::kFloat64, torch::kInt64, torch::kInt32, torch::kUInt8}) {
    if (dtype_name(t) == name) return t;
  }
  throw DataError("unknown stored dtype '" + name + "'");
}

void write_tensors(const std::string& path, const TensorMap& tensors,
                   const std::map<std::string, std::string>& attrs) {
  const std::string tmp = path + ".tmp";
  try {
    auto file = h5::create_file(tmp);
    for (const auto& [key, value] : attrs) h5::write_attr_str(file, key, value);
    // Names with '/' (analytics: `layers/0/keys`) create their groups on the way.
    h5::Id lcpl(SOME_HDF5_ID(H5Pcreate(H5P_LINK_CREATE)), H5Pclose);
    SOME_CHECK_HDF5(H5Pset_create_intermediate_group(lcpl, 1));
    // No modification times in object headers: the same tensors give the same bytes (and the
    // same SHA-256) whenever they are written.
    h5::Id dcpl(SOME_HDF5_ID(H5Pcreate(H5P_DATASET_CREATE)), H5Pclose);
    SOME_CHECK_HDF5(H5Pset_obj_track_times(dcpl, 0));
    for (const auto& [name, tensor] : tensors) {
      auto t = tensor.detach().to(torch::kCPU).contiguous();
      if (t.scalar_type() == torch::kBFloat16 || t.scalar_type() == torch::kHalf) t = t.to(torch::kFloat32);
      auto types = h5_types(t.scalar_type());
      std::vector<hsize_t> dims(t.sizes().begin(), t.sizes().end());
      h5::Id space(SOME_HDF5_ID(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr)),
                   H5Sclose);
      h5::Id dset(SOME_HDF5_ID(H5Dcreate2(file, name.c_str(), types.file_type, space, lcpl, dcpl, H5P_DEFAULT)),
                  H5Dclose);
      if (t.numel() > 0) {
        SOME_CHECK_HDF5(H5Dwrite(dset, types.mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr()));
      }
    }
    SOME_CHECK_HDF5(H5Fflush(file, H5F_SCOPE_GLOBAL));
    file.reset();
    fsync_path(tmp);
    std::filesystem::rename(tmp, path);
  } catch (const std::exception& e) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    throw DataError(fmt::format("cannot write '{}' (disk full?): {}", path, e.what()));
  }
}

TensorMap read_tensors(const std::string& path) {
  auto file = h5::open_file(path);
  TensorMap out;
  std::vector<std::string> names;
  auto collect = [](hid_t, const char* name, const H5L_info_t*, void* data) -> herr_t {
    static_cast<std::vector<std::string>*>(data)->push_back(name);
    return 0;
  };
  SOME_CHECK_HDF5(H5Literate(file, H5_INDEX_NAME, H5_ITER_INC, nullptr, collect, &names));
  for (const auto& name : names) out.emplace(name, read_tensor(file, name, path));
  return out;
}

torch::Tensor read_tensor(hid_t file, const std::string& name, const std::string& path) {
  auto dset = h5::open_dataset(file, name, path);
  h5::Id type(SOME_HDF5_ID(H5Dget_type(dset)), H5Tclose);
  auto st = torch_type(type, path + ":" + name);
  auto dims = h5::dataset_shape(dset);
  std::vector<int64_t> shape(dims.begin(), dims.end());
  auto t = torch::empty(shape, torch::dtype(st));
  if (t.numel() > 0) {
    herr_t rc = H5Dread(dset, h5_types(st).mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr());
    SOME_REQUIRE(rc >= 0, DataError, "cannot read tensor '{}' from '{}' (corrupt file?)", name, path);
  }
  return t;
}

void load_into(TensorMap& target, const TensorMap& source, const std::string& source_path) {
  std::vector<std::string> problems;
  for (const auto& [name, t] : target) {
    auto it = source.find(name);
    if (it == source.end()) {
      problems.push_back("missing '" + name + "'");
    } else if (it->second.sizes() != t.sizes()) {
      problems.push_back(fmt::format("'{}' has shape {} in the file, the model expects {}", name,
                                     fmt::join(it->second.sizes(), "x"), fmt::join(t.sizes(), "x")));
    }
  }
  for (const auto& [name, t] : source) {
    if (!target.count(name)) problems.push_back("unexpected '" + name + "'");
  }
  SOME_REQUIRE(problems.empty(), DataError, "'{}' does not match the model: {}", source_path,
               fmt::join(problems, "; "));
  torch::NoGradGuard no_grad;
  for (auto& [name, t] : target) t.copy_(source.at(name));
}

}  // namespace some::checkpoints
