#pragma once
// Appends the token stream of one split to HDF5 shards of a fixed size. A shard is written as
// NAME.h5.tmp and renamed to NAME.h5 only once complete (attributes written, file closed), so
// a dataset directory never holds a shard that looks whole but is not. Tokens and metadata are
// checksummed (Fletcher-32 per chunk, HDF5 1.10 metadata checksums), so damage is read as an
// error naming the shard, never as other tokens.
#include <cstdint>
#include <string>
#include <vector>

#include "common/h5.h"

namespace some::data {

class ShardWriter {
 public:
  ShardWriter(std::string dir, std::string split, int vocab_size, std::string tokenizer_sha256,
              int64_t shard_tokens);
  // An unfinished shard (an error unwound past the writer) is removed, never renamed.
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // Ids outside [0, vocab_size) are a DataError: they would not fit the shard's dtype.
  void append(const int32_t* ids, size_t n);
  // Completes the last shard. No shard at all is written for a split that got no tokens.
  void finish();

  const std::vector<std::string>& files() const { return files_; }  // names, relative to dir
  int64_t num_tokens() const { return total_; }

 private:
  void open_shard();
  void flush();
  void close_shard();

  std::string dir_, split_, sha_;
  int vocab_size_;
  int64_t shard_tokens_;
  hid_t file_type_;
  // A raw id, so that its H5Fclose (which writes the last metadata) can be checked.
  hid_t file_ = H5I_INVALID_HID;
  h5::Id dset_;
  std::string tmp_path_, final_path_;
  int64_t in_shard_ = 0;      // tokens written + buffered in the open shard
  int64_t written_ = 0;       // tokens written to the open shard's dataset
  std::vector<uint32_t> buf_;
  int64_t total_ = 0;
  std::vector<std::string> files_;
};

}  // namespace some::data
