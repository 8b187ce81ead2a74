// Tests of the data library: tokenizer, document reader, prepare, shards, samplers.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <hdf5.h>
#include <nlohmann/json.hpp>

#include "common/errors.h"
#include "common/h5.h"
#include "common/sha256.h"
#include "data/batch_sampler.h"
#include "data/dataset.h"
#include "data/documents.h"
#include "data/prepare.h"
#include "data/tokenizer.h"

namespace fs = std::filesystem;
using namespace some;
using namespace some::data;

namespace {

// A fresh folder per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = info ? std::string(info->test_suite_name()) + "_" + info->name() : "suite";
    path_ = fs::path("/tmp") / ("some_test_data_" + std::to_string(::getpid()) + "_" + name);
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

void write_file(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream f(path, std::ios::binary);
  f << text;
  ASSERT_TRUE(f.good()) << path;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// A few hundred distinct English-like sentences, deterministic.
std::vector<std::string> sentences(int n) {
  static const std::vector<std::string> subj = {
      "The old miller", "A young shepherd", "My neighbour", "The quiet teacher", "Every sailor",
      "Her brother",    "The king",         "A tired farmer", "Our captain",     "The baker",
      "His daughter",   "The stranger",     "A clever fox"};
  static const std::vector<std::string> verb = {
      "carried", "painted", "watched", "found", "mended", "sold", "followed", "remembered",
      "praised", "burned",  "counted"};
  static const std::vector<std::string> obj = {
      "the broken wheel",   "seven golden apples", "a letter from the city", "the long river",
      "the northern hills", "an empty basket",     "the wooden bridge",      "three grey horses",
      "the morning bread",  "a silver coin",       "the lantern",            "the winter stars",
      "a small boat",       "the village well",    "forty sheep",            "the tall tower",
      "a song of the sea"};
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(subj[i % 13] + " " + verb[(i / 13) % 11] + " " + obj[(i / 143) % 17] +
                  (i % 3 == 0 ? " at dawn." : i % 3 == 1 ? ", and then rested." : " again!"));
  }
  return out;
}

// Writes the sentences as a plain-text corpus (one sentence per paragraph) and returns it.
std::string write_corpus(const TempDir& dir, int n) {
  std::string text;
  for (const auto& s : sentences(n)) text += s + "\n\n";
  std::string path = dir / "corpus.txt";
  write_file(path, text);
  return path;
}

std::string escape_json(const std::string& s) { return nlohmann::json(s).dump(); }

// Tokens of documents as prepare writes them: each document, then EOS.
std::vector<int32_t> token_stream(const Tokenizer& tok, const std::vector<std::string>& docs) {
  std::vector<int32_t> out;
  for (const auto& d : docs) {
    auto ids = tok.encode(d);
    out.insert(out.end(), ids.begin(), ids.end());
    out.push_back(tok.eos_id());
  }
  return out;
}

// The mixed input folder of several tests, with the documents it holds, in reading order.
struct MixedInputs {
  std::string folder;
  std::vector<std::string> docs;
};

MixedInputs write_mixed_inputs(const TempDir& dir) {
  MixedInputs m;
  m.folder = dir / "inputs";
  auto s = sentences(240);
  // a.txt: paragraphs of three lines each (lines joined by one space), odd blank lines and
  // surrounding whitespace on purpose.
  std::string txt = "\n\n";
  for (int p = 0; p < 60; ++p) {
    txt += "  " + s[3 * p] + "\r\n" + s[3 * p + 1] + "\t\n" + s[3 * p + 2] + "\n\n";
    if (p % 7 == 0) txt += "   \n\n";
    m.docs.push_back(s[3 * p] + " " + s[3 * p + 1] + " " + s[3 * p + 2]);
  }
  write_file(m.folder + "/a.txt", txt);
  // sub/b.jsonl: one document per line; a blank line is skipped, extra fields ignored.
  std::string jsonl;
  for (int i = 180; i < 240; ++i) {
    std::string doc = s[i] + "\n" + s[(i * 7) % 240];
    jsonl += "{\"id\": " + std::to_string(i) + ", \"text\": " + escape_json(doc) + "}\n";
    if (i == 200) jsonl += "\n";
    m.docs.push_back(doc);
  }
  write_file(m.folder + "/sub/b.jsonl", jsonl);
  write_file(m.folder + "/notes.csv", "ignored,1,2\n");
  return m;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Runs f, expecting a DataError whose message contains every needle.
template <class F>
void expect_data_error(F&& f, const std::vector<std::string>& needles) {
  try {
    f();
    ADD_FAILURE() << "expected a DataError";
  } catch (const DataError& e) {
    if (std::getenv("SOME_TEST_SHOW_ERRORS")) std::fprintf(stderr, "DataError: %s\n", e.what());
    for (const auto& n : needles) {
      EXPECT_TRUE(contains(e.what(), n)) << "message '" << e.what() << "' lacks '" << n << "'";
    }
  }
}

}  // namespace

// ---- sha256 -----------------------------------------------------------------------------

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_bytes("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_bytes(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  TempDir dir;
  std::string big(3 << 20, 'x');  // several read blocks
  write_file(dir / "f.bin", big);
  EXPECT_EQ(sha256_file(dir / "f.bin"), sha256_bytes(big));
  expect_data_error([&] { sha256_file(dir / "missing"); }, {"missing"});
}

// ---- tokenizer --------------------------------------------------------------------------

TEST(Tokenizer, TrainRoundTripAndDeterminism) {
  TempDir dir;
  std::string corpus = write_corpus(dir, 400);
  train_tokenizer({corpus}, dir / "a.model", 320);
  auto tok = Tokenizer::load(dir / "a.model");
  EXPECT_EQ(tok.path(), dir / "a.model");
  EXPECT_EQ(tok.eos_id(), 1);
  EXPECT_GE(tok.vocab_size(), 300);
  EXPECT_LE(tok.vocab_size(), 400);
  EXPECT_FALSE(fs::exists(dir / "a.model.tmp"));

  for (const auto& s : sentences(400)) {
    auto ids = tok.encode(s);
    ASSERT_FALSE(ids.empty());
    for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < tok.vocab_size() && id != tok.eos_id());
    ASSERT_EQ(tok.decode(ids), s);
  }
  // Unseen characters go through the byte pieces and still round-trip exactly.
  const std::string odd = "Zürich, naïve café — 日本語 😀  two  spaces\tand tab";
  EXPECT_EQ(tok.decode(tok.encode(odd)), odd);
  // Merges were learned: a common word is shorter than its characters.
  EXPECT_LT(tok.encode("The old miller carried the broken wheel").size(), 30u);

  // Same inputs -> same model bytes.
  train_tokenizer({corpus}, dir / "b.model", 320);
  EXPECT_EQ(sha256_file(dir / "a.model"), sha256_file(dir / "b.model"));
}

TEST(Tokenizer, TooSmallVocabIsRaisedToTheCorpusMinimum) {
  TempDir dir;
  std::string corpus = write_corpus(dir, 100);
  // 256 byte pieces + unk + eos + ~40 characters do not fit in 260.
  train_tokenizer({corpus}, dir / "small.model", 260);
  auto tok = Tokenizer::load(dir / "small.model");
  EXPECT_GT(tok.vocab_size(), 260);
  EXPECT_EQ(tok.decode(tok.encode(sentences(1)[0])), sentences(1)[0]);
}

TEST(Tokenizer, LoadErrorsNameTheFile) {
  TempDir dir;
  expect_data_error([&] { Tokenizer::load(dir / "nope.model"); }, {"nope.model"});
  write_file(dir / "garbage.model", "this is not a protobuf");
  expect_data_error([&] { Tokenizer::load(dir / "garbage.model"); }, {"garbage.model"});
}

// ---- documents --------------------------------------------------------------------------

TEST(Documents, FolderOfTextAndJsonLines) {
  TempDir dir;
  auto m = write_mixed_inputs(dir);
  auto sources = list_sources({m.folder});
  ASSERT_EQ(sources.size(), 2u);  // notes.csv skipped
  EXPECT_EQ(sources[0].format, SourceFormat::Text);
  EXPECT_EQ(sources[1].format, SourceFormat::JsonLines);
  DocumentReader reader(sources);
  std::vector<std::string> docs;
  std::string doc;
  while (reader.next(doc)) docs.push_back(doc);
  EXPECT_EQ(docs, m.docs);
  EXPECT_EQ(reader.bytes_read(), reader.total_bytes());
  EXPECT_EQ(reader.documents_read(), static_cast<int64_t>(m.docs.size()));
}

TEST(Documents, OverlongTextDocumentIsCut) {
  TempDir dir;
  std::string text;
  for (int i = 0; i < 100; ++i) text += "line number " + std::to_string(i) + "\n";
  write_file(dir / "one.txt", text);
  DocumentReader reader(list_sources({dir / "one.txt"}), 200);
  std::string doc, joined;
  int n = 0;
  while (reader.next(doc)) {
    EXPECT_LT(doc.size(), 200u + 20u);
    joined += (joined.empty() ? "" : " ") + doc;
    ++n;
  }
  EXPECT_GT(n, 5);
  EXPECT_TRUE(joined.starts_with("line number 0 line number 1 "));
  EXPECT_TRUE(joined.ends_with("line number 99"));
}

TEST(Documents, BadJsonLineNamesFileAndLine) {
  TempDir dir;
  write_file(dir / "bad.jsonl", "{\"text\": \"fine\"}\n{\"text\": \"also fine\"}\n{not json\n");
  write_file(dir / "notext.jsonl", "{\"text\": \"fine\"}\n{\"body\": \"no text field\"}\n");
  write_file(dir / "number.jsonl", "{\"text\": 5}\n");
  auto read_all = [](const std::string& path) {
    DocumentReader r(list_sources({path}));
    std::string d;
    while (r.next(d)) {
    }
  };
  expect_data_error([&] { read_all(dir / "bad.jsonl"); }, {dir / "bad.jsonl", ":3"});
  expect_data_error([&] { read_all(dir / "notext.jsonl"); }, {dir / "notext.jsonl", ":2", "text"});
  expect_data_error([&] { read_all(dir / "number.jsonl"); }, {dir / "number.jsonl", ":1"});
  // The same error surfaces from prepare (it is first hit while training the tokenizer).
  PrepareOptions o;
  o.inputs = {dir / "bad.jsonl"};
  o.out_dir = dir / "out";
  o.vocab_size = 300;
  expect_data_error([&] { prepare_dataset(o); }, {dir / "bad.jsonl", ":3"});
}

TEST(Documents, MissingAndUnsupportedInputs) {
  TempDir dir;
  expect_data_error([&] { list_sources({dir / "absent.txt"}); }, {"absent.txt"});
  write_file(dir / "x.csv", "a,b\n");
  expect_data_error([&] { list_sources({dir / "x.csv"}); }, {"x.csv"});
  fs::create_directories(dir / "empty");
  expect_data_error([&] { list_sources({dir / "empty"}); }, {"empty"});
}

TEST(Documents, DefaultCorpusIsKjvByChapter) {
  if (std::system("command -v bible >/dev/null 2>&1") != 0) GTEST_SKIP() << "bible-kjv not installed";
  TempDir dir;
  std::string path = write_default_corpus(dir.path().string());
  EXPECT_EQ(path, dir / "source/kjv.txt");
  DocumentReader reader(list_sources({path}));
  std::string doc, first, last;
  int64_t n = 0;
  while (reader.next(doc)) {
    if (n == 0) first = doc;
    last = doc;
    ++n;
  }
  EXPECT_EQ(n, 1189);  // chapters of the Bible
  EXPECT_TRUE(first.starts_with(
      "In the beginning God created the heaven and the earth. And the earth was without form"))
      << first.substr(0, 100);
  EXPECT_FALSE(contains(first, "Ge1:"));
  EXPECT_TRUE(last.ends_with("The grace of our Lord Jesus Christ be with you all. Amen.")) << last;
}

// ---- prepare ----------------------------------------------------------------------------

TEST(Prepare, MixedFolderWritesConsistentDataset) {
  TempDir dir;
  auto m = write_mixed_inputs(dir);
  std::string out = dir / "ds";
  fs::create_directories(out);
  write_file(out + "/train-00007.h5", "stale");  // from an imagined earlier run
  PrepareOptions o;
  o.inputs = {m.folder};
  o.out_dir = out;
  o.vocab_size = 400;
  o.val_fraction = 0.2;
  o.shard_tokens = 1000;
  prepare_dataset(o);

  auto meta = nlohmann::json::parse(read_file(out + "/meta.json"));
  auto tok = Tokenizer::load(out + "/tokenizer.model");
  EXPECT_EQ(meta["format_version"], 1);
  EXPECT_EQ(meta["vocab_size"], tok.vocab_size());
  EXPECT_EQ(meta["eos_id"], tok.eos_id());
  EXPECT_EQ(meta["dtype"], "uint16");
  EXPECT_EQ(meta["tokenizer_sha256"], sha256_file(out + "/tokenizer.model"));
  ASSERT_EQ(meta["sources"].size(), 2u);
  EXPECT_TRUE(contains(meta["sources"][0].get<std::string>(), "a.txt"));
  EXPECT_TRUE(contains(meta["sources"][1].get<std::string>(), "b.jsonl"));

  const auto& train = meta["splits"]["train"];
  const auto& val = meta["splits"]["val"];
  int64_t docs = train["num_documents"].get<int64_t>() + val["num_documents"].get<int64_t>();
  EXPECT_EQ(docs, static_cast<int64_t>(m.docs.size()));
  EXPECT_GT(val["num_documents"].get<int64_t>(), 0);
  EXPECT_GT(train["num_documents"].get<int64_t>(), val["num_documents"].get<int64_t>());
  int64_t expected = static_cast<int64_t>(token_stream(tok, m.docs).size());
  EXPECT_EQ(train["num_tokens"].get<int64_t>() + val["num_tokens"].get<int64_t>(), expected);

  std::set<std::string> listed;
  for (const auto& split : {train, val}) {
    int64_t n = split["num_tokens"];
    EXPECT_EQ(split["files"].size(), static_cast<size_t>((n + 999) / 1000));
    for (const auto& f : split["files"]) listed.insert(f.get<std::string>());
  }
  EXPECT_TRUE(listed.count("train-00000.h5"));
  EXPECT_TRUE(listed.count("val-00000.h5"));
  // Exactly the listed shards are on disk: no .tmp left over, the stale shard removed.
  std::set<std::string> on_disk;
  for (const auto& e : fs::directory_iterator(out)) {
    std::string name = e.path().filename().string();
    EXPECT_FALSE(name.ends_with(".tmp")) << name;
    if (name.ends_with(".h5")) on_disk.insert(name);
  }
  EXPECT_EQ(on_disk, listed);

  // Reading back: each split's stream is the documents assigned to it, each + EOS.
  auto dm = read_meta(out);
  TokenSplit tr(dm, "train"), va(dm, "val");
  EXPECT_EQ(tr.num_tokens() + va.num_tokens(), expected);
  std::vector<int32_t> all(static_cast<size_t>(tr.num_tokens()));
  tr.read(0, tr.num_tokens(), all.data());
  EXPECT_EQ(std::count(all.begin(), all.end(), tok.eos_id()), train["num_documents"].get<int64_t>());
  EXPECT_EQ(all.back(), tok.eos_id());

  // Same options, same dataset (the whole pipeline is deterministic), whatever the threads.
  std::string out2 = dir / "ds2";
  o.out_dir = out2;
  o.num_threads = 3;
  prepare_dataset(o);
  auto meta2 = nlohmann::json::parse(read_file(out2 + "/meta.json"));
  EXPECT_EQ(meta2["tokenizer_sha256"], meta["tokenizer_sha256"]);
  EXPECT_EQ(meta2["splits"], meta["splits"]);
  EXPECT_EQ(read_file(out2 + "/train-00000.h5").size(), read_file(out + "/train-00000.h5").size());
  auto dm2 = read_meta(out2);
  TokenSplit tr2(dm2, "train");
  std::vector<int32_t> all2(static_cast<size_t>(tr2.num_tokens()));
  tr2.read(0, tr2.num_tokens(), all2.data());
  EXPECT_EQ(all2, all);
}

TEST(Prepare, RejectsBadOptions) {
  TempDir dir;
  PrepareOptions o;
  o.inputs = {write_corpus(dir, 10)};
  o.out_dir = dir / "out";
  o.vocab_size = 100;
  EXPECT_THROW(prepare_dataset(o), ConfigError);
  o.vocab_size = 1000;
  o.val_fraction = 0.7;
  EXPECT_THROW(prepare_dataset(o), ConfigError);
  o.val_fraction = 0.1;
  o.shard_tokens = 0;
  EXPECT_THROW(prepare_dataset(o), ConfigError);
}

TEST(Prepare, InputWithoutTextIsAnError) {
  TempDir dir;
  write_file(dir / "blank.txt", "\n   \n\n");
  PrepareOptions o;
  o.inputs = {dir / "blank.txt"};
  o.out_dir = dir / "out";
  o.vocab_size = 300;
  expect_data_error([&] { prepare_dataset(o); }, {"blank.txt"});
  EXPECT_FALSE(fs::exists(dir / "out/meta.json"));
}

TEST(Prepare, TwoDocumentsGiveOneToEachSplit) {
  TempDir dir;
  auto s = sentences(2);
  write_file(dir / "two.txt", s[0] + "\n\n" + s[1] + "\n");
  PrepareOptions o;
  o.inputs = {dir / "two.txt"};
  o.out_dir = dir / "out";
  o.vocab_size = 300;
  o.val_fraction = 0.001;
  prepare_dataset(o);
  auto meta = read_meta(o.out_dir);
  EXPECT_EQ(meta.splits.at("train").num_documents, 1);
  EXPECT_EQ(meta.splits.at("val").num_documents, 1);
}

TEST(Prepare, ReusesAGivenTokenizer) {
  TempDir dir;
  std::string corpus = write_corpus(dir, 300);
  train_tokenizer({corpus}, dir / "given.model", 350);
  PrepareOptions o;
  o.inputs = {corpus};
  o.out_dir = dir / "out";
  o.tokenizer = dir / "given.model";
  o.val_fraction = 0.0;
  prepare_dataset(o);
  EXPECT_EQ(sha256_file(dir / "out/tokenizer.model"), sha256_file(dir / "given.model"));
  auto meta = read_meta(o.out_dir);
  EXPECT_EQ(meta.splits.at("val").num_tokens, 0);
  EXPECT_TRUE(meta.splits.at("val").files.empty());
  auto tok = Tokenizer::load(dir / "given.model");
  EXPECT_EQ(meta.splits.at("train").num_tokens,
            static_cast<int64_t>(token_stream(tok, sentences(300)).size()));
}

TEST(Prepare, DefaultCorpus) {
  if (std::system("command -v bible >/dev/null 2>&1") != 0) GTEST_SKIP() << "bible-kjv not installed";
  TempDir dir;
  PrepareOptions o;
  o.out_dir = dir / "default";
  o.vocab_size = 512;
  prepare_dataset(o);
  auto meta = read_meta(o.out_dir);
  EXPECT_EQ(meta.splits.at("train").num_documents + meta.splits.at("val").num_documents, 1189);
  EXPECT_GT(meta.splits.at("val").num_documents, 0);
  EXPECT_GT(meta.splits.at("train").num_tokens, 1'000'000);
  TokenSplit train(meta, "train");
  std::vector<int32_t> head(64);
  train.read(0, 64, head.data());
  auto tok = Tokenizer::load(meta.tokenizer_path());
  EXPECT_TRUE(tok.decode(head).starts_with("In the beginning God created"));
}

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
