#include "data/dataset.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/check.h"
#include "common/errors.h"
#include "common/logging.h"
#include "common/sha256.h"
#include "data/format.h"

namespace some::data {
namespace fs = std::filesystem;
using nlohmann::json;

std::string DatasetMeta::tokenizer_path() const { return (fs::path(dir) / kTokenizerFile).string(); }

namespace {

// Typed access to meta.json whose errors name the file and the full key ("splits.val.files").
class MetaReader {
 public:
  explicit MetaReader(std::string file) : file_(std::move(file)) {}

  const json& get(const json& obj, const std::string& key, const std::string& path) const {
    SOME_REQUIRE(obj.is_object() && obj.contains(key), DataError, "'{}': missing key '{}'", file_,
                 path);
    return obj.at(key);
  }
  int64_t integer(const json& obj, const std::string& key, const std::string& path, int64_t lo,
                  int64_t hi) const {
    const json& v = get(obj, key, path);
    SOME_REQUIRE(v.is_number_integer(), DataError, "'{}': key '{}' must be an integer, got {}",
                 file_, path, v.dump());
    int64_t x = v.get<int64_t>();
    SOME_REQUIRE(x >= lo && x <= hi, DataError, "'{}': key '{}' = {} is outside [{}, {}]", file_,
                 path, x, lo, hi);
    return x;
  }
  std::string string(const json& obj, const std::string& key, const std::string& path) const {
    const json& v = get(obj, key, path);
    SOME_REQUIRE(v.is_string(), DataError, "'{}': key '{}' must be a string, got {}", file_, path,
                 v.dump());
    return v.get<std::string>();
  }
  const std::string& file() const { return file_; }

 private:
  std::string file_;
};

// Whether the dataset's chunks carry Fletcher-32 checksums (older shards have none and read
// the same, unverified).
bool has_fletcher32(hid_t dset) {
  h5::Id dcpl(SOME_HDF5_ID(H5Dget_create_plist(dset)), H5Pclose);
  unsigned flags = 0, config = 0;
  size_t num_values = 0;
  return H5Pget_filter_by_id2(dcpl, H5Z_FILTER_FLETCHER32, &flags, &num_values, nullptr, 0, nullptr,
                              &config) >= 0;
}

// What a failed chunk read most likely was, from HDF5's innermost error message.
std::string read_failure(std::string why) {  // by value: lowered here
  std::transform(why.begin(), why.end(), why.begin(), [](unsigned char c) { return std::tolower(c); });
  return why.find("checksum") != std::string::npos ? "its checksum failed" : "HDF5 failed";
}

}  // namespace

DatasetMeta read_meta(const std::string& dir) {
  const std::string file = (fs::path(dir) / kMetaFile).string();
  SOME_REQUIRE(fs::is_regular_file(file), DataError,
               "'{}' does not exist: '{}' is not a prepared dataset (run 'some prepare --out {}')",
               file, dir, dir);
  json j;
  {
    std::ifstream in(file);
    SOME_REQUIRE(in.is_open(), DataError, "cannot open '{}'", file);
    try {
      j = json::parse(in);
    } catch (const json::exception& e) {
      throw DataError(fmt::format("'{}' is not valid JSON: {}", file, e.what()));
    }
  }
  MetaReader r(file);
  SOME_REQUIRE(j.is_object(), DataError, "'{}' must hold a JSON object", file);

  DatasetMeta m;
  m.dir = dir;
  m.format_version = static_cast<int>(r.integer(j, "format_version", "format_version", 0, 1 << 30));
  SOME_REQUIRE(m.format_version == kFormatVersion, DataError,
               "'{}': format_version {} is not supported (this build reads version {}); prepare "
               "the dataset again",
               file, m.format_version, kFormatVersion);
  m.vocab_size = static_cast<int>(r.integer(j, "vocab_size", "vocab_size", 1, int64_t{1} << 31));
  m.eos_id = static_cast<int>(r.integer(j, "eos_id", "eos_id", 0, m.vocab_size - 1));
  m.tokenizer_sha256 = r.string(j, "tokenizer_sha256", "tokenizer_sha256");
  m.dtype = r.string(j, "dtype", "dtype");
  SOME_REQUIRE(m.dtype == "uint16" || m.dtype == "uint32", DataError,
               "'{}': key 'dtype' = '{}' is not allowed: expected \"uint16\" or \"uint32\"", file,
               m.dtype);
  SOME_REQUIRE(m.dtype == "uint32" || m.vocab_size <= kMaxUint16Vocab, DataError,
               "'{}': key 'dtype' = 'uint16' cannot hold vocab_size {}", file, m.vocab_size);

  const json& splits = r.get(j, "splits", "splits");
  SOME_REQUIRE(splits.is_object(), DataError, "'{}': key 'splits' must be an object", file);
  for (const auto& [name, s] : splits.items()) {
    const std::string p = "splits." + name;
    SplitInfo info;
    const json& files = r.get(s, "files", p + ".files");
    SOME_REQUIRE(files.is_array(), DataError, "'{}': key '{}.files' must be an array of file names",
                 file, p);
    for (const auto& f : files) {
      SOME_REQUIRE(f.is_string(), DataError, "'{}': key '{}.files' holds a non-string {}", file, p,
                   f.dump());
      info.files.push_back(f.get<std::string>());
    }
    info.num_tokens = r.integer(s, "num_tokens", p + ".num_tokens", 0, INT64_MAX);
    if (s.contains("num_documents")) {
      info.num_documents = r.integer(s, "num_documents", p + ".num_documents", 0, INT64_MAX);
    }
    m.splits.emplace(name, std::move(info));
  }

  const std::string tok = m.tokenizer_path();
  SOME_REQUIRE(fs::is_regular_file(tok), DataError,
               "tokenizer '{}' of the dataset does not exist (listed by '{}')", tok, file);
  const std::string sha = sha256_file(tok);
  SOME_REQUIRE(sha == m.tokenizer_sha256, DataError,
               "tokenizer '{}' has SHA-256 {} but '{}' records {}: it is not the tokenizer this "
               "dataset was prepared with",
               tok, sha, file, m.tokenizer_sha256);
  return m;
}

TokenSplit::TokenSplit(const DatasetMeta& meta, const std::string& split) : name_(split), vocab_size_(meta.vocab_size) {
  const std::string meta_file = (fs::path(meta.dir) / kMetaFile).string();
  auto it = meta.splits.find(split);
  if (it == meta.splits.end()) {
    std::string have;
    for (const auto& [n, _] : meta.splits) have += (have.empty() ? "" : ", ") + n;
    throw DataError(fmt::format("'{}' has no split '{}' (it has: {})", meta_file, split, have));
  }
  const SplitInfo& info = it->second;

  // Random windows rarely meet a chunk again before it would be evicted, so HDF5's chunk
  // cache is turned off: a read fetches (and, for checksummed shards, verifies) the chunks it
  // touches and keeps nothing.
  h5::Id dapl(SOME_HDF5_ID(H5Pcreate(H5P_DATASET_ACCESS)), H5Pclose);
  SOME_CHECK_HDF5(H5Pset_chunk_cache(dapl, 0, 0, H5D_CHUNK_CACHE_W0_DEFAULT));

  std::vector<std::string> unchecked;  // shards written before tokens carried checksums
  for (const auto& name : info.files) {
    Shard s;
    s.path = (fs::path(meta.dir) / name).string();
    s.file = h5::open_file(s.path);  // DataError naming the file if missing or corrupt
    try {
      open_tokens(s, meta, dapl);
      if (!has_fletcher32(s.dset)) unchecked.push_back(name);
    } catch (const CallError& e) {
      // Damaged metadata can fail any HDF5 call there; the failure names the call, this the
      // file the user has to replace.
      throw DataError(fmt::format("shard '{}' is damaged: {}", s.path, e.what()));
    }
    s.begin = total_;
    total_ += s.size;
    shards_.push_back(std::move(s));
  }
  SOME_REQUIRE(total_ == info.num_tokens, DataError,
               "split '{}': its shards hold {} tokens but '{}' says num_tokens = {}", split, total_,
               meta_file, info.num_tokens);
  if (!unchecked.empty()) {
    some::log::get("data")->warn(
        "split '{}' of '{}': {} of {} shard(s) (first '{}') carry no checksums (prepared before "
        "shards had them): damaged bytes there would be read as other tokens; run 'some "
        "prepare' again to add them",
        split, meta.dir, unchecked.size(), info.files.size(), unchecked.front());
  }
}

void TokenSplit::open_tokens(Shard& s, const DatasetMeta& meta, hid_t dapl) {
  const std::string meta_file = (fs::path(meta.dir) / kMetaFile).string();
  const size_t elem_size = meta.dtype == "uint16" ? 2 : 4;
  const std::string& where = s.path;
  auto check_i64 = [&](const char* attr, int64_t expected) {
    int64_t v = h5::read_attr_i64(s.file, attr, where);
    SOME_REQUIRE(v == expected, DataError,
                 "shard '{}': attribute '{}' = {} does not match '{}' ({})", s.path, attr, v,
                 meta_file, expected);
    return v;
  };
  check_i64(kAttrFormatVersion, meta.format_version);
  check_i64(kAttrVocabSize, meta.vocab_size);
  std::string sha = h5::read_attr_str(s.file, kAttrTokenizerSha, where);
  SOME_REQUIRE(sha == meta.tokenizer_sha256, DataError,
               "shard '{}': attribute '{}' = {} does not match '{}' ({}): the shard was made "
               "with another tokenizer",
               s.path, kAttrTokenizerSha, sha, meta_file, meta.tokenizer_sha256);
  int64_t n = h5::read_attr_i64(s.file, kAttrNumTokens, where);
  SOME_REQUIRE(n >= 0, DataError, "shard '{}': attribute '{}' = {} is negative", s.path,
               kAttrNumTokens, n);

  SOME_REQUIRE(h5::has_link(s.file, kTokensDataset), DataError, "shard '{}' has no dataset '/{}'",
               s.path, kTokensDataset);
  hid_t d = H5Dopen2(s.file, kTokensDataset, dapl);
  SOME_REQUIRE(d >= 0, DataError, "shard '{}' is damaged: cannot open dataset '/{}' (HDF5 says \"{}\")",
               s.path, kTokensDataset, h5::last_error());
  s.dset = h5::Id(d, H5Dclose);
  auto shape = h5::dataset_shape(s.dset);
  SOME_REQUIRE(shape.size() == 1, DataError, "shard '{}': dataset '/{}' has {} dimensions, expected 1",
               s.path, kTokensDataset, shape.size());
  SOME_REQUIRE(static_cast<int64_t>(shape[0]) == n, DataError,
               "shard '{}': dataset '/{}' holds {} tokens but attribute '{}' says {}", s.path,
               kTokensDataset, shape[0], kAttrNumTokens, n);
  h5::Id type(SOME_HDF5_ID(H5Dget_type(s.dset)), H5Tclose);
  SOME_REQUIRE(H5Tget_class(type) == H5T_INTEGER && H5Tget_sign(type) == H5T_SGN_NONE &&
                   H5Tget_size(type) == elem_size,
               DataError, "shard '{}': dataset '/{}' is not of type {} as '{}' says", s.path,
               kTokensDataset, meta.dtype, meta_file);
  s.size = n;
}

void TokenSplit::read(int64_t offset, int64_t count, int32_t* out) const {
  SOME_REQUIRE(offset >= 0 && count >= 0 && offset <= total_ - count, DataError,
               "split '{}': read of tokens [{}, {}) is outside [0, {})", name_, offset,
               offset + count, total_);
  // First shard holding `offset`: the last one that begins at or before it (skipping empty
  // shards, which begin where the next one does).
  auto it = std::upper_bound(shards_.begin(), shards_.end(), offset,
                             [](int64_t o, const Shard& s) { return o < s.begin; });
  size_t i = it == shards_.begin() ? 0 : static_cast<size_t>(it - shards_.begin()) - 1;
  while (count > 0) {
    const Shard& s = shards_[i++];
    int64_t local = offset - s.begin;
    if (local >= s.size) continue;
    int64_t n = std::min(count, s.size - local);
    hsize_t start[1] = {static_cast<hsize_t>(local)}, cnt[1] = {static_cast<hsize_t>(n)};
    h5::Id fspace(SOME_HDF5_ID(H5Dget_space(s.dset)), H5Sclose);
    SOME_CHECK_HDF5(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, nullptr, cnt, nullptr));
    h5::Id mspace(SOME_HDF5_ID(H5Screate_simple(1, cnt, nullptr)), H5Sclose);
    if (H5Dread(s.dset, H5T_NATIVE_INT32, mspace, fspace, H5P_DEFAULT, out) < 0) {
      const std::string why = h5::last_error();
      throw DataError(fmt::format("shard '{}' is damaged: {} reading tokens [{}, {}) of '/{}' (HDF5 says "
                                  "\"{}\"); restore the file or prepare the dataset again",
                                  s.path, read_failure(why), local, local + n, kTokensDataset, why));
    }
    // An id outside the vocabulary would surface as LibTorch's "index out of range in self" in
    // the embedding: name the shard, the position and the id instead (a pass over what was read).
    for (int64_t t = 0; t < n; ++t) {
      if (out[t] < 0 || out[t] >= vocab_size_) {
        throw DataError(fmt::format("shard '{}': token {} of '/{}' is id {}, outside the vocabulary of {} "
                                    "(vocab_size in meta.json): the shard is damaged or from another dataset",
                                    s.path, local + t, kTokensDataset, out[t], vocab_size_));
      }
    }
    out += n;
    offset += n;
    count -= n;
  }
}

}  // namespace some::data
