#pragma once
// Reading a prepared dataset: meta.json, and the token stream of one split as one
// concatenated array over its shards.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/h5.h"

namespace some::data {

struct SplitInfo {
  std::vector<std::string> files;  // shard names, relative to the dataset directory
  int64_t num_tokens = 0;
  int64_t num_documents = 0;
};

struct DatasetMeta {
  int format_version = 0;
  int vocab_size = 0;
  int eos_id = 0;
  std::string tokenizer_sha256, dtype;
  std::map<std::string, SplitInfo> splits;
  std::string dir;

  std::string tokenizer_path() const;  // dir/tokenizer.model
};

// Reads and checks DIR/meta.json: DataError naming the file and key for a missing or
// ill-typed field or an unsupported format_version, and naming tokenizer.model when it is
// missing or its SHA-256 differs from the one recorded (a dataset used with another
// tokenizer would train on garbage without any error).
DatasetMeta read_meta(const std::string& dir);

// One split's shards, read as a single token array. Opening checks every shard against
// meta.json (format_version, vocab_size, tokenizer_sha256, num_tokens, dtype and the dataset
// length); reads touch only the requested range, so memory does not grow with the shards.
// Shards carry checksums (docs/design.md §6): a damaged one is a DataError naming the file, at
// open (metadata) or at the read that meets the damaged chunk (tokens), never other tokens.
// The HDF5 handles stay open for the object's lifetime. Not thread-safe.
class TokenSplit {
 public:
  TokenSplit(const DatasetMeta& meta, const std::string& split);

  const std::string& name() const { return name_; }
  int64_t num_tokens() const { return total_; }
  // Tokens [offset, offset + count) of the concatenated split into out[0 .. count).
  void read(int64_t offset, int64_t count, int32_t* out) const;

 private:
  struct Shard {
    std::string path;
    h5::Id file, dset;
    int64_t begin = 0, size = 0;  // position in the concatenated split
  };
  // Checks an opened shard's attributes against meta.json and opens its tokens (s.dset, s.size).
  static void open_tokens(Shard& s, const DatasetMeta& meta, hid_t dapl);

  std::string name_;
  std::vector<Shard> shards_;
  int64_t total_ = 0;
  int32_t vocab_size_ = 0;
};

}  // namespace some::data
