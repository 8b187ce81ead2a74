#include "common/h5.h"

#include <filesystem>

#include "common/check.h"
#include "common/errors.h"

namespace some::h5 {

namespace {
// A file whose close failed (a full disk) stays in HDF5's table, and HDF5 1.10's exit handler
// then crashes closing it again: a clean "disk full" error would end in a segfault. Every file
// is closed by its Id before exit anyway, so the handler is switched off before any other HDF5
// call (H5dont_atexit only sets a flag and is allowed before the library initialises).
const bool kNoExitHandler = [] {
  H5dont_atexit();
  return true;
}();
}  // namespace

void quiet() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

Id create_file(const std::string& path) {
  quiet();
  hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  SOME_REQUIRE(f >= 0, DataError, "cannot create HDF5 file '{}'", path);
  return {f, H5Fclose};
}

Id open_file(const std::string& path, bool writable) {
  quiet();
  SOME_REQUIRE(std::filesystem::exists(path), DataError, "file '{}' does not exist", path);
  SOME_REQUIRE(H5Fis_hdf5(path.c_str()) > 0, DataError,
               "file '{}' is not a readable HDF5 file (corrupt or truncated?)", path);
  hid_t f = H5Fopen(path.c_str(), writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, H5P_DEFAULT);
  SOME_REQUIRE(f >= 0, DataError, "cannot open HDF5 file '{}' (damaged?): HDF5 says \"{}\"", path, last_error());
  return {f, H5Fclose};
}

bool has_link(hid_t loc, const std::string& name) {
  return H5Lexists(loc, name.c_str(), H5P_DEFAULT) > 0;
}

Id open_dataset(hid_t file, const std::string& name, const std::string& file_path) {
  SOME_REQUIRE(has_link(file, name), DataError, "file '{}' has no dataset '{}'", file_path, name);
  hid_t d = H5Dopen2(file, name.c_str(), H5P_DEFAULT);
  SOME_REQUIRE(d >= 0, DataError, "cannot open dataset '{}' in '{}'", name, file_path);
  return {d, H5Dclose};
}

void write_attr_i64(hid_t obj, const std::string& name, int64_t value) {
  Id space(SOME_HDF5_ID(H5Screate(H5S_SCALAR)), H5Sclose);
  if (H5Aexists(obj, name.c_str()) > 0) SOME_CHECK_HDF5(H5Adelete(obj, name.c_str()));
  Id attr(SOME_HDF5_ID(H5Acreate2(obj, name.c_str(), H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT)),
          H5Aclose);
  SOME_CHECK_HDF5(H5Awrite(attr, H5T_NATIVE_INT64, &value));
}

void write_attr_str(hid_t obj, const std::string& name, const std::string& value) {
  Id type(SOME_HDF5_ID(H5Tcopy(H5T_C_S1)), H5Tclose);
  SOME_CHECK_HDF5(H5Tset_size(type, value.empty() ? 1 : value.size()));
  SOME_CHECK_HDF5(H5Tset_strpad(type, H5T_STR_NULLPAD));
  Id space(SOME_HDF5_ID(H5Screate(H5S_SCALAR)), H5Sclose);
  if (H5Aexists(obj, name.c_str()) > 0) SOME_CHECK_HDF5(H5Adelete(obj, name.c_str()));
  Id attr(SOME_HDF5_ID(H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT)),
          H5Aclose);
  std::string padded = value.empty() ? std::string(1, '\0') : value;
  SOME_CHECK_HDF5(H5Awrite(attr, type, padded.data()));
}

namespace {
// Opens an attribute that must exist: DataError naming `where` when it is missing, or when the
// object header holding it cannot be read (a damaged file).
Id open_attr(hid_t obj, const std::string& name, const std::string& where) {
  htri_t exists = H5Aexists(obj, name.c_str());
  SOME_REQUIRE(exists >= 0, DataError, "{}: cannot read attribute '{}' (damaged?): HDF5 says \"{}\"", where,
               name, last_error());
  SOME_REQUIRE(exists > 0, DataError, "{}: missing attribute '{}'", where, name);
  return {SOME_HDF5_ID(H5Aopen(obj, name.c_str(), H5P_DEFAULT)), H5Aclose};
}
}  // namespace

int64_t read_attr_i64(hid_t obj, const std::string& name, const std::string& where) {
  Id attr = open_attr(obj, name, where);
  int64_t v = 0;
  SOME_CHECK_HDF5(H5Aread(attr, H5T_NATIVE_INT64, &v));
  return v;
}

std::string read_attr_str(hid_t obj, const std::string& name, const std::string& where) {
  Id attr = open_attr(obj, name, where);
  Id type(SOME_HDF5_ID(H5Aget_type(attr)), H5Tclose);
  SOME_REQUIRE(H5Tget_class(type) == H5T_STRING, DataError, "{}: attribute '{}' is not a string",
               where, name);
  size_t n = H5Tget_size(type);
  std::string s(n, '\0');
  SOME_CHECK_HDF5(H5Aread(attr, type, s.data()));
  s.erase(s.find_last_not_of('\0') + 1);
  return s;
}

std::string last_error() {
  std::string innermost;
  // Walking upward starts at the function that detected the error; the first entry is enough.
  auto first = [](unsigned n, const H5E_error2_t* e, void* out) -> herr_t {
    if (n == 0 && e->desc) *static_cast<std::string*>(out) = e->desc;
    return 0;
  };
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, first, &innermost);
  return innermost;
}

std::vector<hsize_t> dataset_shape(hid_t dset) {
  Id space(SOME_HDF5_ID(H5Dget_space(dset)), H5Sclose);
  int rank = H5Sget_simple_extent_ndims(space);
  SOME_CHECK_HDF5(rank);
  std::vector<hsize_t> dims(rank);
  SOME_CHECK_HDF5(H5Sget_simple_extent_dims(space, dims.data(), nullptr));
  return dims;
}

}  // namespace some::h5
