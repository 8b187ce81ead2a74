// Tests of the data library: reading shards (TokenSplit) and the samplers.
#include <random>

#include "data_test_util.h"

// ---- reading shards ---------------------------------------------------------------------

namespace {

// A small dataset with every document in train (in order) and many tiny shards.
struct SmallDataset {
  std::string dir;
  std::vector<int32_t> stream;  // the expected concatenated train split
};

SmallDataset make_small_dataset(const TempDir& tmp, int64_t shard_tokens = 50) {
  SmallDataset d;
  d.dir = tmp / "ds";
  std::string corpus = write_corpus(tmp, 60);
  PrepareOptions o;
  o.inputs = {corpus};
  o.out_dir = d.dir;
  o.vocab_size = 320;
  o.val_fraction = 0.0;
  o.shard_tokens = shard_tokens;
  prepare_dataset(o);
  auto tok = Tokenizer::load(d.dir + "/tokenizer.model");
  d.stream = token_stream(tok, sentences(60));
  return d;
}

void set_attr_i64(const std::string& file, const char* name, int64_t v) {
  auto f = h5::open_file(file, /*writable=*/true);
  h5::Id root(H5Gopen2(f, "/", H5P_DEFAULT), H5Gclose);
  ASSERT_GE(root.get(), 0);
  h5::write_attr_i64(root, name, v);
}

void set_attr_str(const std::string& file, const char* name, const std::string& v) {
  auto f = h5::open_file(file, /*writable=*/true);
  h5::Id root(H5Gopen2(f, "/", H5P_DEFAULT), H5Gclose);
  ASSERT_GE(root.get(), 0);
  h5::write_attr_str(root, name, v);
}

}  // namespace

TEST(TokenSplit, ReadsAcrossShardBoundaries) {
  TempDir tmp;
  auto d = make_small_dataset(tmp, 50);
  auto meta = read_meta(d.dir);
  const int64_t n = static_cast<int64_t>(d.stream.size());
  ASSERT_EQ(meta.splits.at("train").files.size(), static_cast<size_t>((n + 49) / 50));
  ASSERT_GE(meta.splits.at("train").files.size(), 5u);
  TokenSplit split(meta, "train");
  ASSERT_EQ(split.num_tokens(), n);
  EXPECT_EQ(split.name(), "train");

  std::vector<int32_t> all(static_cast<size_t>(n));
  split.read(0, n, all.data());
  EXPECT_EQ(all, d.stream);
  for (auto [off, cnt] : std::vector<std::pair<int64_t, int64_t>>{
           {45, 20}, {49, 2}, {50, 50}, {0, 1}, {n - 1, 1}, {37, 140}, {10, 0}}) {
    std::vector<int32_t> got(static_cast<size_t>(cnt), -1);
    split.read(off, cnt, got.data());
    EXPECT_TRUE(std::equal(got.begin(), got.end(), d.stream.begin() + off)) << off << "+" << cnt;
  }
  std::vector<int32_t> buf(2);
  EXPECT_THROW(split.read(n - 1, 2, buf.data()), DataError);
  EXPECT_THROW(split.read(-1, 1, buf.data()), DataError);
  expect_data_error([&] { TokenSplit{meta, "test"}; }, {"test", "meta.json"});
}

TEST(TokenSplit, TamperedShardAttributesAreErrors) {
  TempDir tmp;
  auto d = make_small_dataset(tmp, 50);
  const std::string shard = d.dir + "/train-00001.h5";
  auto meta = read_meta(d.dir);
  TokenSplit{meta, "train"};  // intact: fine

  set_attr_i64(shard, "num_tokens", 49);
  expect_data_error([&] { TokenSplit{meta, "train"}; }, {"train-00001.h5", "num_tokens"});
  set_attr_i64(shard, "num_tokens", 50);
  TokenSplit{meta, "train"};  // restored

  set_attr_str(shard, "tokenizer_sha256", std::string(64, '0'));
  expect_data_error([&] { TokenSplit{meta, "train"}; }, {"train-00001.h5", "tokenizer_sha256"});
  set_attr_str(shard, "tokenizer_sha256", meta.tokenizer_sha256);

  set_attr_i64(shard, "vocab_size", meta.vocab_size + 1);
  expect_data_error([&] { TokenSplit{meta, "train"}; }, {"train-00001.h5", "vocab_size"});
  set_attr_i64(shard, "vocab_size", meta.vocab_size);

  set_attr_i64(shard, "format_version", 2);
  expect_data_error([&] { TokenSplit{meta, "train"}; }, {"train-00001.h5", "format_version"});
  set_attr_i64(shard, "format_version", 1);
  TokenSplit{meta, "train"};
}

TEST(TokenSplit, MissingOrCorruptFilesAreErrors) {
  TempDir tmp;
  auto d = make_small_dataset(tmp, 400);
  // Truncated shard.
  const std::string shard = d.dir + "/train-00000.h5";
  auto meta = read_meta(d.dir);
  fs::resize_file(shard, fs::file_size(shard) / 2);
  expect_data_error([&] { TokenSplit{meta, "train"}; }, {"train-00000.h5"});
  // Missing shard.
  fs::remove(shard);
  expect_data_error([&] { TokenSplit{meta, "train"}; }, {"train-00000.h5"});
  // A tokenizer that is not the dataset's.
  {
    std::ofstream f(d.dir + "/tokenizer.model", std::ios::app | std::ios::binary);
    f << 'x';
  }
  expect_data_error([&] { read_meta(d.dir); }, {"tokenizer.model", "SHA-256"});
  // Bad meta.json fields.
  auto j = nlohmann::json::parse(read_file(d.dir + "/meta.json"));
  j["vocab_size"] = "many";
  write_file(d.dir + "/meta.json", j.dump());
  expect_data_error([&] { read_meta(d.dir); }, {"meta.json", "vocab_size"});
  j.erase("vocab_size");
  write_file(d.dir + "/meta.json", j.dump());
  expect_data_error([&] { read_meta(d.dir); }, {"meta.json", "vocab_size"});
  write_file(d.dir + "/meta.json", "{\"format_version\": 1, ");
  expect_data_error([&] { read_meta(d.dir); }, {"meta.json"});
  // Missing meta.json.
  fs::remove(d.dir + "/meta.json");
  expect_data_error([&] { read_meta(d.dir); }, {"meta.json"});
}

TEST(TokenSplit, TokenIdOutsideTheVocabularyIsNamed) {
  TempDir tmp;
  auto d = make_small_dataset(tmp, 50);
  const std::string shard = d.dir + "/train-00001.h5";
  {  // token 7 of the second shard becomes an id past the vocabulary of 320
    auto f = h5::open_file(shard, /*writable=*/true);
    h5::Id dset(H5Dopen2(f, "/tokens", H5P_DEFAULT), H5Dclose);
    ASSERT_GE(dset.get(), 0);
    h5::Id fspace(H5Dget_space(dset), H5Sclose);
    hsize_t start[1] = {7}, count[1] = {1};
    ASSERT_GE(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, nullptr, count, nullptr), 0);
    h5::Id mspace(H5Screate_simple(1, count, nullptr), H5Sclose);
    const int32_t bad = 400;
    ASSERT_GE(H5Dwrite(dset, H5T_NATIVE_INT32, mspace, fspace, H5P_DEFAULT, &bad), 0);
  }
  auto meta = read_meta(d.dir);
  TokenSplit split(meta, "train");
  std::vector<int32_t> buf(60);
  split.read(0, 50, buf.data());  // the first shard: intact
  split.read(58, 20, buf.data());  // past the damaged token
  expect_data_error([&] { split.read(40, 20, buf.data()); }, {"train-00001.h5", "token 7", "id 400", "320"});
}

// ---- damaged shards: checksums ------------------------------------------------------------

namespace {

// Where the first chunk of a shard's tokens lies in the file: [offset, offset + size).
std::pair<uint64_t, uint64_t> first_chunk(const std::string& shard) {
  auto f = h5::open_file(shard);
  h5::Id dset(H5Dopen2(f, "/tokens", H5P_DEFAULT), H5Dclose);
  h5::Id space(H5Dget_space(dset), H5Sclose);
  hsize_t offset[1] = {0}, size = 0;
  unsigned filter_mask = 0;
  haddr_t addr = 0;
  EXPECT_GE(H5Dget_chunk_info(dset, space, 0, offset, &filter_mask, &addr, &size), 0) << shard;
  return {addr, size};
}

void flip_byte(const std::string& path, uint64_t at, uint8_t mask) {
  std::string bytes = read_file(path);
  ASSERT_LT(at, bytes.size()) << path;
  bytes[at] = static_cast<char>(bytes[at] ^ mask);
  write_file(path, bytes);
}

// The train split read whole, or the DataError that reading it gave.
struct ReadOutcome {
  std::vector<int32_t> tokens;
  std::string error;
};
ReadOutcome read_train(const std::string& dir) {
  ReadOutcome r;
  try {
    TokenSplit split(read_meta(dir), "train");
    r.tokens.resize(static_cast<size_t>(split.num_tokens()));
    split.read(0, split.num_tokens(), r.tokens.data());
  } catch (const DataError& e) {
    r.error = e.what();
    if (std::getenv("SOME_TEST_SHOW_ERRORS")) std::fprintf(stderr, "DataError: %s\n", e.what());
  }
  return r;
}

// Rewrites a shard as shards were written before they carried checksums (HDF5's default file
// format, no Fletcher-32 filter), with the same tokens and attributes.
void rewrite_without_checksums(const std::string& shard) {
  std::vector<uint32_t> tokens;
  int64_t version, vocab, n;
  std::string sha;
  {
    auto f = h5::open_file(shard);
    version = h5::read_attr_i64(f, "format_version", shard);
    vocab = h5::read_attr_i64(f, "vocab_size", shard);
    n = h5::read_attr_i64(f, "num_tokens", shard);
    sha = h5::read_attr_str(f, "tokenizer_sha256", shard);
    h5::Id dset(H5Dopen2(f, "/tokens", H5P_DEFAULT), H5Dclose);
    tokens.resize(static_cast<size_t>(n));
    ASSERT_GE(H5Dread(dset, H5T_NATIVE_UINT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, tokens.data()), 0);
  }
  auto f = h5::create_file(shard);
  hsize_t dims[1] = {static_cast<hsize_t>(n)}, maxdims[1] = {H5S_UNLIMITED}, chunk[1] = {64};
  h5::Id space(H5Screate_simple(1, dims, maxdims), H5Sclose);
  h5::Id dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  ASSERT_GE(H5Pset_chunk(dcpl, 1, chunk), 0);
  h5::Id dset(H5Dcreate2(f, "tokens", H5T_STD_U16LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), H5Dclose);
  ASSERT_GE(H5Dwrite(dset, H5T_NATIVE_UINT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, tokens.data()), 0);
  h5::write_attr_i64(f, "format_version", version);
  h5::write_attr_i64(f, "vocab_size", vocab);
  h5::write_attr_i64(f, "num_tokens", n);
  h5::write_attr_str(f, "tokenizer_sha256", sha);
}

}  // namespace

TEST(TokenSplit, DamagedTokenBytesAreANamedChecksumError) {
  TempDir tmp;
  auto d = make_small_dataset(tmp, 50);
  const std::string shard = d.dir + "/train-00001.h5";
  auto [addr, size] = first_chunk(shard);
  ASSERT_EQ(size, 50u * 2 + 4);  // 50 uint16 tokens in one chunk, and its Fletcher-32 checksum
  // Token 20 of the shard goes from its id to another id inside the vocabulary: without a
  // checksum this would be read as a plausible token.
  flip_byte(shard, addr + 2 * 20, 0x01);
  auto meta = read_meta(d.dir);
  TokenSplit split(meta, "train");  // the metadata is intact: opening is fine
  std::vector<int32_t> buf(50);
  split.read(0, 50, buf.data());    // the first shard: intact
  expect_data_error([&] { split.read(60, 30, buf.data()); },
                    {"train-00001.h5", "damaged", "checksum failed", "tokens [10, 40)"});
}

// Single flipped bytes anywhere in a shard's first 4 KiB (its metadata, and here its tokens
// too) and in its token chunk: each must read as the same tokens (the byte was unused) or be a
// DataError naming the shard; never other tokens, never a crash.
TEST(TokenSplit, FlippedBytesAreNamedOrHarmless) {
  TempDir tmp;
  auto d = make_small_dataset(tmp, 1 << 20);  // one shard
  const std::string shard = d.dir + "/train-00000.h5";
  const std::string pristine = read_file(shard);
  auto [addr, size] = first_chunk(shard);
  ASSERT_EQ(read_train(d.dir).tokens, d.stream);

  std::mt19937_64 rng(20261128);
  const uint64_t head = std::min<uint64_t>(4096, pristine.size());
  int named[2] = {0, 0}, harmless[2] = {0, 0};  // [in metadata, in the token chunk]
  for (int i = 0; i < 48; ++i) {
    // Two thirds anywhere in the first 4 KiB, one third inside the token chunk.
    uint64_t at = i % 3 != 2 ? rng() % head : addr + rng() % size;
    auto mask = static_cast<uint8_t>(1 + rng() % 255);
    write_file(shard, pristine);
    flip_byte(shard, at, mask);
    auto r = read_train(d.dir);
    const int region = at >= addr && at < addr + size;
    if (!r.error.empty()) {
      EXPECT_TRUE(contains(r.error, "train-00000.h5")) << "byte " << at << ": " << r.error;
      ++named[region];
    } else {
      EXPECT_EQ(r.tokens, d.stream) << "byte " << at << " ^ " << int{mask} << " was read as other tokens";
      ++harmless[region];
    }
  }
  std::printf("[ shard fuzz ] %zu-byte shard, token chunk at [%llu, %llu): metadata flips %d named, %d "
              "harmless; token flips %d named, %d harmless\n",
              pristine.size(), static_cast<unsigned long long>(addr), static_cast<unsigned long long>(addr + size),
              named[0], harmless[0], named[1], harmless[1]);
  EXPECT_EQ(harmless[1], 0);  // the checksum covers every byte of the chunk
  EXPECT_GE(named[1], 16);
}

TEST(TokenSplit, ShardsWithoutChecksumsStillRead) {
  TempDir tmp;
  auto d = make_small_dataset(tmp, 50);
  rewrite_without_checksums(d.dir + "/train-00002.h5");
  CapturedLog log("data");
  auto r = read_train(d.dir);
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(r.tokens, d.stream);
  EXPECT_TRUE(contains(log.text(), "1 of")) << log.text();
  EXPECT_TRUE(contains(log.text(), "train-00002.h5")) << log.text();
  EXPECT_TRUE(contains(log.text(), "no checksums")) << log.text();
}

// ---- samplers ---------------------------------------------------------------------------

TEST(BatchSampler, DeterministicAndSliceable) {
  TempDir tmp;
  auto d = make_small_dataset(tmp, 50);
  auto meta = read_meta(d.dir);
  TokenSplit split(meta, "train");
  const int64_t seq = 16, w = seq + 1, batch = 12;
  BatchSampler a(split, seq, 7), b(split, seq, 7), other_seed(split, seq, 8);

  auto o1 = a.offsets(3, batch);
  EXPECT_EQ(o1, b.offsets(3, batch));
  EXPECT_NE(o1, a.offsets(4, batch));
  EXPECT_NE(o1, other_seed.offsets(3, batch));
  // A batch's first rows do not depend on the batch size.
  auto o_small = a.offsets(3, 5);
  EXPECT_TRUE(std::equal(o_small.begin(), o_small.end(), o1.begin()));
  // Offsets cover the valid range [0, N - seq - 1] and nothing else.
  int64_t lo = INT64_MAX, hi = -1;
  for (int64_t step = 0; step < 200; ++step) {
    for (int64_t off : a.offsets(step, batch)) {
      lo = std::min(lo, off);
      hi = std::max(hi, off);
    }
  }
  EXPECT_GE(lo, 0);
  EXPECT_LE(hi, split.num_tokens() - seq - 1);
  EXPECT_LT(lo, 20);
  EXPECT_GT(hi, split.num_tokens() - seq - 30);

  std::vector<int32_t> full(static_cast<size_t>(batch * w));
  a.fill(3, batch, 0, batch, full.data());
  for (int64_t j = 0; j < batch; ++j) {
    EXPECT_TRUE(std::equal(full.begin() + j * w, full.begin() + (j + 1) * w,
                           d.stream.begin() + o1[static_cast<size_t>(j)]))
        << "row " << j;
  }
  // Rank-style slices [4, 8) equal the matching rows of the full batch.
  std::vector<int32_t> slice(static_cast<size_t>(4 * w));
  a.fill(3, batch, 4, 4, slice.data());
  EXPECT_TRUE(std::equal(slice.begin(), slice.end(), full.begin() + 4 * w));
  EXPECT_THROW(a.fill(3, batch, 10, 4, slice.data()), DataError);

  expect_data_error([&] { BatchSampler{split, split.num_tokens(), 1}; }, {"train"});
}

TEST(EvalWindows, SequentialWindows) {
  TempDir tmp;
  auto d = make_small_dataset(tmp, 50);
  auto meta = read_meta(d.dir);
  TokenSplit split(meta, "train");
  const int64_t n = split.num_tokens(), seq = 16, w = seq + 1;
  EvalWindows ev(split, seq);
  EXPECT_EQ(ev.num_windows(), (n - 1) / seq);
  std::vector<int32_t> rows(static_cast<size_t>(ev.num_windows() * w));
  ev.fill(0, ev.num_windows(), rows.data());
  for (int64_t i = 0; i < ev.num_windows(); ++i) {
    ASSERT_TRUE(std::equal(rows.begin() + i * w, rows.begin() + (i + 1) * w,
                           d.stream.begin() + i * seq))
        << "window " << i;
  }
  std::vector<int32_t> part(static_cast<size_t>(3 * w));
  ev.fill(2, 3, part.data());
  EXPECT_TRUE(std::equal(part.begin(), part.end(), rows.begin() + 2 * w));
  EXPECT_THROW(ev.fill(ev.num_windows() - 1, 2, part.data()), DataError);

  EvalWindows exact(split, n - 1);  // exactly one window fits
  EXPECT_EQ(exact.num_windows(), 1);
  expect_data_error([&] { EvalWindows{split, n}; }, {"train", std::to_string(n)});
}
