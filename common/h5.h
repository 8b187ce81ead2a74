#pragma once
// RAII handles and small helpers over the HDF5 C API. Every call is checked; errors name the
// file (and dataset / attribute) involved.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <hdf5.h>

namespace some::h5 {

// Owns one hid_t and closes it with the matching H5*close.
class Id {
 public:
  using Closer = herr_t (*)(hid_t);
  Id() = default;
  Id(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  Id(Id&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)), closer_(o.closer_) {}
  Id& operator=(Id&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, H5I_INVALID_HID);
      closer_ = o.closer_;
    }
    return *this;
  }
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;
  ~Id() { reset(); }
  void reset() {
    if (id_ >= 0 && closer_) closer_(id_);
    id_ = H5I_INVALID_HID;
  }
  hid_t get() const { return id_; }
  operator hid_t() const { return id_; }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
};

// Silences HDF5's own error-stack printing (we report errors ourselves). Idempotent.
void quiet();

Id create_file(const std::string& path);     // truncates
Id open_file(const std::string& path, bool writable = false);  // DataError naming the file
bool has_link(hid_t loc, const std::string& name);
Id open_dataset(hid_t file, const std::string& name, const std::string& file_path);

void write_attr_i64(hid_t obj, const std::string& name, int64_t value);
void write_attr_str(hid_t obj, const std::string& name, const std::string& value);
int64_t read_attr_i64(hid_t obj, const std::string& name, const std::string& where);
std::string read_attr_str(hid_t obj, const std::string& name, const std::string& where);

// What the HDF5 library says went wrong in the call that just failed on this thread: the
// innermost message of its error stack ("data error detected by fletcher32 checksum"), or ""
// when the stack is empty. Read it right after the failing call: the next call clears it.
std::string last_error();

// Shape of a dataset.
std::vector<hsize_t> dataset_shape(hid_t dset);

}  // namespace some::h5
