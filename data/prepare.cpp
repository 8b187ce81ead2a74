#include "data/prepare.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "common/check.h"
#include "common/errors.h"
#include "common/logging.h"
#include "common/progress.h"
#include "common/sha256.h"
#include "data/documents.h"
#include "data/format.h"
#include "common/random.h"
#include "data/shard_writer.h"
#include "data/tokenizer.h"

namespace some::data {
namespace fs = std::filesystem;

namespace {

constexpr int kMinVocab = 256;
constexpr int kMaxVocab = 1 << 22;
// Documents are encoded in batches of about this much text, split over two threads.
constexpr size_t kBatchBytes = size_t{8} << 20;
constexpr size_t kBatchDocs = 4096;

void validate(const PrepareOptions& o) {
  SOME_REQUIRE(!o.out_dir.empty(), ConfigError, "prepare: the output folder (--out) is empty");
  SOME_REQUIRE(o.vocab_size >= kMinVocab && o.vocab_size <= kMaxVocab, ConfigError,
               "prepare: vocab_size (--vocab-size) = {} is not allowed: expected {} ... {} "
               "(the 256 byte pieces need at least 256)",
               o.vocab_size, kMinVocab, kMaxVocab);
  SOME_REQUIRE(o.val_fraction >= 0.0 && o.val_fraction <= 0.5, ConfigError,
               "prepare: val_fraction (--val-fraction) = {} is not allowed: expected 0 ... 0.5",
               o.val_fraction);
  SOME_REQUIRE(o.num_threads >= 1 && o.num_threads <= 1024, ConfigError,
               "prepare: num_threads = {} is not allowed: expected 1 ... 1024", o.num_threads);
  SOME_REQUIRE(o.shard_tokens >= 1, ConfigError,
               "prepare: shard_tokens = {} is not allowed: expected a positive token count",
               o.shard_tokens);
}

// Files a previous prepare may have left; removed before writing so that meta.json can never
// list a mix of old and new shards, and no old shard lingers beside a smaller new dataset.
void remove_stale(const fs::path& dir) {
  static const std::regex kShard(R"((train|val)-\d{5}\.h5(\.tmp)?)");
  std::error_code ec;
  fs::remove(dir / kMetaFile, ec);  // first: the directory stops claiming to be a dataset
  fs::remove(dir / (std::string(kMetaFile) + ".tmp"), ec);
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::string name = e.path().filename().string();
    if (e.is_regular_file() && std::regex_match(name, kShard)) {
      fs::remove(e.path(), ec);
      SOME_REQUIRE(!ec, DataError, "cannot remove stale shard '{}': {}", e.path().string(),
                   ec.message());
    }
  }
}

void write_atomically(const fs::path& path, const std::string& bytes) {
  fs::path tmp = path;
  tmp += ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    SOME_REQUIRE(f.is_open(), DataError, "cannot write '{}'", tmp.string());
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    f.close();
    SOME_REQUIRE(f.good(), DataError, "cannot write '{}' (disk full?)", tmp.string());
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  SOME_REQUIRE(!ec, DataError, "cannot rename '{}' to '{}': {}", tmp.string(), path.string(),
               ec.message());
}

// The tokenizer goes into the dataset itself: training or copying it there.
void install_tokenizer(const PrepareOptions& o, const std::vector<SourceFile>& sources,
                       const fs::path& target) {
  auto log = some::log::get("data");
  if (o.tokenizer.empty()) {
    std::vector<std::string> files;
    for (const auto& s : sources) files.push_back(s.path);
    TokenizerTrainOptions topt;
    topt.seed = static_cast<uint32_t>(o.seed);
    train_tokenizer(files, target.string(), o.vocab_size, topt);
    return;
  }
  Tokenizer::load(o.tokenizer);  // a bad model fails here, naming the user's file
  std::error_code ec;
  if (fs::exists(target) && fs::equivalent(o.tokenizer, target, ec)) return;
  std::ifstream in(o.tokenizer, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  SOME_REQUIRE(in.good() || in.eof(), DataError, "cannot read tokenizer '{}'", o.tokenizer);
  write_atomically(target, bytes);
  log->info("tokenizer: using '{}'", o.tokenizer);
}

// Encodes a batch of documents on `threads` threads (SentencePiece encoding is const and
// thread-safe); document i goes to thread i % threads, and the order of `out` is the input's.
void encode_batch(const Tokenizer& tok, const std::vector<std::string>& docs, int threads,
                  std::vector<std::vector<int32_t>>& out) {
  out.resize(docs.size());
  const size_t n = static_cast<size_t>(std::max(1, threads));
  std::vector<std::exception_ptr> errors(n);
  auto work = [&](size_t t) {
    try {
      for (size_t i = t; i < docs.size(); i += n) out[i] = tok.encode(docs[i]);
    } catch (...) {
      errors[t] = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  for (size_t t = 1; t < n && t < docs.size(); ++t) pool.emplace_back(work, t);
  work(0);
  for (auto& th : pool) th.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

struct SplitCounts {
  int64_t documents = 0;
};

}  // namespace

void prepare_dataset(const PrepareOptions& opts) {
  auto log = some::log::get("data");
  validate(opts);
  fs::path dir(opts.out_dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  SOME_REQUIRE(!ec, DataError, "cannot create output folder '{}': {}", dir.string(), ec.message());
  remove_stale(dir);

  std::vector<std::string> inputs = opts.inputs;
  if (inputs.empty()) {
    log->info("prepare: no --input given, building the default corpus (King James Bible)");
    inputs.push_back(write_default_corpus(dir.string()));
  }
  auto sources = list_sources(inputs);

  fs::path tok_path = dir / kTokenizerFile;
  install_tokenizer(opts, sources, tok_path);
  Tokenizer tok = Tokenizer::load(tok_path.string());
  const std::string sha = sha256_file(tok_path.string());
  const int vocab = tok.vocab_size();
  const int32_t eos = tok.eos_id();

  ShardWriter train(dir.string(), "train", vocab, sha, opts.shard_tokens);
  ShardWriter val(dir.string(), "val", vocab, sha, opts.shard_tokens);
  SplitCounts train_n, val_n;
  auto emit = [&](const std::vector<int32_t>& ids, bool to_val) {
    ShardWriter& w = to_val ? val : train;
    w.append(ids.data(), ids.size());
    w.append(&eos, 1);
    ++(to_val ? val_n : train_n).documents;
  };

  // The latest document is held back one step: only at the end is it known whether a split
  // would otherwise stay empty, and then this one document goes there.
  std::vector<int32_t> pending;
  bool pending_val = false, have_pending = false;
  int64_t doc_index = 0;

  DocumentReader reader(sources);
  Progress progress(static_cast<double>(reader.total_bytes()));
  auto last_report = std::chrono::steady_clock::now();
  log->info("prepare: tokenizing {} file(s), {}B", sources.size(),
            format_count(static_cast<double>(reader.total_bytes())));

  std::vector<std::string> docs;
  std::vector<std::vector<int32_t>> encoded;
  bool more = true;
  while (more) {
    docs.clear();
    size_t batch_bytes = 0;
    std::string doc;
    while (docs.size() < kBatchDocs && batch_bytes < kBatchBytes) {
      if (!reader.next(doc)) {
        more = false;
        break;
      }
      batch_bytes += doc.size();
      docs.push_back(std::move(doc));
    }
    encode_batch(tok, docs, opts.num_threads, encoded);
    for (auto& ids : encoded) {
      bool to_val = to_unit(hash_u64(opts.seed, static_cast<uint64_t>(doc_index))) < opts.val_fraction;
      ++doc_index;
      if (have_pending) emit(pending, pending_val);
      pending = std::move(ids);
      pending_val = to_val;
      have_pending = true;
    }
    auto now = std::chrono::steady_clock::now();
    if (now - last_report >= std::chrono::seconds(2) || !more) {
      last_report = now;
      double done = static_cast<double>(reader.bytes_read());
      log->info("prepare: {}B / {}B ({}B/s), {} tokens, {} documents, ETA {}", format_count(done),
                format_count(static_cast<double>(reader.total_bytes())),
                format_count(progress.rate(done)),
                format_count(static_cast<double>(train.num_tokens() + val.num_tokens())),
                format_count(static_cast<double>(doc_index)), progress.eta(done));
    }
  }
  if (have_pending) {
    if (doc_index == 1) {
      pending_val = false;
    } else if (opts.val_fraction > 0 && val_n.documents == 0) {
      pending_val = true;
    } else if (train_n.documents == 0) {
      pending_val = false;
    }
    emit(pending, pending_val);
  }
  for (const auto& [path, b] : reader.binary_like_files()) {
    log->warn("prepare: '{}' does not look like text: {} NUL byte(s), {:.1f}% of its bytes not "
              "UTF-8; it was tokenized as text all the same (a binary file with a text name?)",
              path, b.nul, 100.0 * b.invalid_share());
  }
  SOME_REQUIRE(doc_index > 0, DataError, "the inputs ({}) hold no document (all files empty?)",
               fmt::format("{}", fmt::join(inputs, ", ")));
  if (opts.val_fraction > 0 && val_n.documents == 0) {
    log->warn("prepare: only one document, so the val split is empty");
  }
  train.finish();
  val.finish();

  nlohmann::json meta;
  meta["format_version"] = kFormatVersion;
  meta["vocab_size"] = vocab;
  meta["eos_id"] = eos;
  meta["dtype"] = dtype_for_vocab(vocab);
  meta["tokenizer"] = kTokenizerFile;
  meta["tokenizer_sha256"] = sha;
  auto split_json = [](const ShardWriter& w, const SplitCounts& n) {
    return nlohmann::json{{"files", w.files()},
                          {"num_tokens", w.num_tokens()},
                          {"num_documents", n.documents}};
  };
  meta["splits"] = {{"train", split_json(train, train_n)}, {"val", split_json(val, val_n)}};
  std::vector<std::string> source_paths;
  for (const auto& s : sources) source_paths.push_back(s.path);
  meta["sources"] = source_paths;
  meta["seed"] = opts.seed;
  meta["val_fraction"] = opts.val_fraction;
  meta["shard_tokens"] = opts.shard_tokens;
  write_atomically(dir / kMetaFile, meta.dump(2) + "\n");

  log->info("prepare: done in {}: train {} tokens ({} documents, {} shard(s)), val {} tokens "
            "({} documents), vocab {} -> {}",
            format_duration(progress.elapsed_s()), format_count(static_cast<double>(train.num_tokens())),
            train_n.documents, train.files().size(), format_count(static_cast<double>(val.num_tokens())),
            val_n.documents, vocab, dir.string());
}

}  // namespace some::data
