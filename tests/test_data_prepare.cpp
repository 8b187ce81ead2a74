// Tests of the data library: SHA-256, tokenizer, document reader, prepare.
#include <random>

#include "data_test_util.h"

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

TEST(Documents, TextBytesTellBinaryFromText) {
  TextBytes text;
  text.add("plain ASCII, then caf\xC3\xA9, \xE2\x82\xAC and \xF0\x9F\x98\x80");  // é, €, an emoji
  EXPECT_EQ(text.nul, 0u);
  EXPECT_EQ(text.invalid_utf8, 0u);
  EXPECT_FALSE(text.looks_binary());

  // Latin-1 (a lone 0xE9), a stray continuation byte, an overlong '/', a surrogate, a cut
  // sequence at the end: one invalid byte each, except the 2-byte overlong form (both bytes).
  TextBytes bad;
  bad.add("caf\xE9 \x80 \xC0\xAF \xED\xA0\x80 \xE2\x82");
  EXPECT_EQ(bad.invalid_utf8, 1u + 1 + 2 + 3 + 2);
  EXPECT_TRUE(bad.looks_binary());

  TextBytes mostly;  // one stray byte in 200: under the 1% a warning needs
  mostly.add(std::string(199, 'a') + "\xFF");
  EXPECT_EQ(mostly.invalid_utf8, 1u);
  EXPECT_FALSE(mostly.looks_binary());
  TextBytes nul;  // but one NUL byte is enough
  nul.add(std::string(1000, 'a') + std::string(1, '\0'));
  EXPECT_EQ(nul.nul, 1u);
  EXPECT_TRUE(nul.looks_binary());
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

// A binary file named .txt is tokenized as text, but with a warning naming it and its counts;
// the text beside it is not named.
TEST(Prepare, BinaryFileWithATextNameIsNamedInAWarning) {
  TempDir dir;
  write_corpus(dir, 60);
  std::string binary;
  std::mt19937 rng(7);
  for (int i = 0; i < 4096; ++i) binary += static_cast<char>(rng() % 256);
  binary[100] = '\0';  // at least one NUL, whatever the generator gives
  write_file(dir / "weights.txt", binary);
  PrepareOptions o;
  o.inputs = {dir / "corpus.txt", dir / "weights.txt"};
  o.out_dir = dir / "out";
  o.vocab_size = 400;
  CapturedLog log("data");
  prepare_dataset(o);
  EXPECT_TRUE(fs::exists(dir / "out/meta.json"));
  const std::string text = log.text();
  EXPECT_TRUE(contains(text, "weights.txt' does not look like text")) << text;
  EXPECT_TRUE(contains(text, "NUL byte(s)")) << text;
  EXPECT_TRUE(contains(text, "% of its bytes not UTF-8")) << text;
  EXPECT_FALSE(contains(text, "corpus.txt' does not look like text")) << text;
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

