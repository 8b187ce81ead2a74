#include "data/shard_writer.h"

#include <algorithm>
#include <filesystem>
#include <utility>

#include "common/check.h"
#include "common/errors.h"
#include "data/format.h"

namespace some::data {
namespace fs = std::filesystem;

namespace {
// Writes go to HDF5 in blocks of this many tokens (bounded memory, few calls).
constexpr size_t kWriteBlock = size_t{1} << 20;
// 8Ki tokens (16 KiB as uint16) per chunk. Every chunk carries a Fletcher-32 checksum, which
// HDF5 verifies over the whole chunk on each read: a random training window (seq_len + 1
// tokens) then costs a few chunks' worth of reading, not 64Ki tokens' worth, and the index of
// even a 64Mi-token shard (8Ki chunks) stays small. No compression: token ids barely
// compress, and random windows would then each inflate a whole chunk.
constexpr int64_t kChunkTokens = int64_t{1} << 13;

// The file format of HDF5 1.10 (superblock v3, object headers v2, extensible-array chunk
// index) checksums every piece of metadata, and Fletcher-32 covers the tokens: a flipped byte
// anywhere a reader looks is an error, never a different token (docs/design.md §6). Pinned to
// 1.10 at both ends, so that a newer library does not write what a 1.10 reader cannot read.
h5::Id checksummed_file_access() {
  h5::Id fapl(SOME_HDF5_ID(H5Pcreate(H5P_FILE_ACCESS)), H5Pclose);
  SOME_CHECK_HDF5(H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110));
  return fapl;
}
}  // namespace

ShardWriter::ShardWriter(std::string dir, std::string split, int vocab_size,
                         std::string tokenizer_sha256, int64_t shard_tokens)
    : dir_(std::move(dir)), split_(std::move(split)), sha_(std::move(tokenizer_sha256)),
      vocab_size_(vocab_size), shard_tokens_(shard_tokens),
      file_type_(vocab_size <= kMaxUint16Vocab ? H5T_STD_U16LE : H5T_STD_U32LE) {
  SOME_REQUIRE(shard_tokens_ > 0, DataError, "shard size must be positive, got {}", shard_tokens_);
  buf_.reserve(std::min<size_t>(kWriteBlock, static_cast<size_t>(shard_tokens_)));
}

ShardWriter::~ShardWriter() {
  if (file_ >= 0) {
    dset_.reset();
    H5Fclose(file_);
    std::error_code ec;
    fs::remove(tmp_path_, ec);
  }
}

void ShardWriter::open_shard() {
  std::string name = shard_name(split_, static_cast<int>(files_.size()));
  final_path_ = (fs::path(dir_) / name).string();
  tmp_path_ = final_path_ + ".tmp";
  h5::quiet();
  file_ = H5Fcreate(tmp_path_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, checksummed_file_access());
  SOME_REQUIRE(file_ >= 0, DataError, "cannot create shard '{}'", tmp_path_);
  hsize_t dims[1] = {0}, maxdims[1] = {H5S_UNLIMITED};
  h5::Id space(SOME_HDF5_ID(H5Screate_simple(1, dims, maxdims)), H5Sclose);
  h5::Id dcpl(SOME_HDF5_ID(H5Pcreate(H5P_DATASET_CREATE)), H5Pclose);
  hsize_t chunk[1] = {static_cast<hsize_t>(std::min(kChunkTokens, shard_tokens_))};
  SOME_CHECK_HDF5(H5Pset_chunk(dcpl, 1, chunk));
  SOME_CHECK_HDF5(H5Pset_fletcher32(dcpl));
  dset_ = h5::Id(SOME_HDF5_ID(H5Dcreate2(file_, kTokensDataset, file_type_, space, H5P_DEFAULT,
                                         dcpl, H5P_DEFAULT)),
                 H5Dclose);
  in_shard_ = 0;
  written_ = 0;
}

void ShardWriter::flush() {
  if (buf_.empty()) return;
  hsize_t start[1] = {static_cast<hsize_t>(written_)}, count[1] = {buf_.size()};
  hsize_t new_size[1] = {start[0] + count[0]};
  SOME_CHECK_HDF5(H5Dset_extent(dset_, new_size));
  h5::Id fspace(SOME_HDF5_ID(H5Dget_space(dset_)), H5Sclose);
  SOME_CHECK_HDF5(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, nullptr, count, nullptr));
  h5::Id mspace(SOME_HDF5_ID(H5Screate_simple(1, count, nullptr)), H5Sclose);
  SOME_CHECK_HDF5(H5Dwrite(dset_, H5T_NATIVE_UINT32, mspace, fspace, H5P_DEFAULT, buf_.data()));
  written_ += static_cast<int64_t>(buf_.size());
  buf_.clear();
}

void ShardWriter::close_shard() {
  flush();
  h5::Id root(SOME_HDF5_ID(H5Gopen2(file_, "/", H5P_DEFAULT)), H5Gclose);
  h5::write_attr_i64(root, kAttrFormatVersion, kFormatVersion);
  h5::write_attr_i64(root, kAttrVocabSize, vocab_size_);
  h5::write_attr_str(root, kAttrTokenizerSha, sha_);
  h5::write_attr_i64(root, kAttrNumTokens, written_);
  root.reset();
  dset_.reset();
  SOME_CHECK_HDF5(H5Fflush(file_, H5F_SCOPE_GLOBAL));
  hid_t file = std::exchange(file_, H5I_INVALID_HID);
  SOME_REQUIRE(H5Fclose(file) >= 0, DataError, "cannot close shard '{}' (disk full?)", tmp_path_);
  std::error_code ec;
  fs::rename(tmp_path_, final_path_, ec);
  SOME_REQUIRE(!ec, DataError, "cannot rename shard '{}' to '{}': {}", tmp_path_, final_path_,
               ec.message());
  files_.push_back(fs::path(final_path_).filename().string());
}

void ShardWriter::append(const int32_t* ids, size_t n) {
  while (n > 0) {
    if (file_ < 0) open_shard();
    size_t take = static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(n), shard_tokens_ - in_shard_));
    take = std::min(take, kWriteBlock - buf_.size());
    for (size_t i = 0; i < take; ++i) {
      int32_t id = ids[i];
      SOME_REQUIRE(id >= 0 && id < vocab_size_, DataError,
                   "token id {} outside the vocabulary [0, {}) while writing '{}'", id, vocab_size_,
                   tmp_path_);
      buf_.push_back(static_cast<uint32_t>(id));
    }
    ids += take;
    n -= take;
    in_shard_ += static_cast<int64_t>(take);
    total_ += static_cast<int64_t>(take);
    if (buf_.size() >= kWriteBlock) flush();
    if (in_shard_ >= shard_tokens_) close_shard();
  }
}

void ShardWriter::finish() {
  if (file_ >= 0) close_shard();
}

}  // namespace some::data
