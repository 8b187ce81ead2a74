#include "data/tokenizer.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <exception>
#include <filesystem>
#include <fstream>
#include <regex>
#include <unordered_map>

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include "common/check.h"
#include "common/errors.h"
#include "common/logging.h"
#include "common/progress.h"
#include "data/documents.h"

namespace some::data {
namespace fs = std::filesystem;

Tokenizer Tokenizer::load(const std::string& model_path) {
  SOME_REQUIRE(fs::is_regular_file(model_path), DataError, "tokenizer model '{}' does not exist",
               model_path);
  auto sp = std::make_shared<sentencepiece::SentencePieceProcessor>();
  auto status = sp->Load(model_path);
  SOME_REQUIRE(status.ok(), DataError,
               "tokenizer model '{}' is not a valid SentencePiece model (corrupt?): {}", model_path,
               status.ToString());
  SOME_REQUIRE(sp->eos_id() >= 0, DataError,
               "tokenizer model '{}' has no EOS piece; datasets separate documents with EOS, so "
               "train the tokenizer with 'some prepare' (or with eos_id defined)",
               model_path);
  return Tokenizer(std::move(sp), model_path);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int> ids;
  auto status = sp_->Encode(text, &ids);
  SOME_REQUIRE(status.ok(), DataError, "tokenizer '{}' cannot encode a text of {} bytes: {}", path_,
               text.size(), status.ToString());
  return {ids.begin(), ids.end()};
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::vector<int> v(ids.begin(), ids.end());
  const int n = sp_->GetPieceSize();
  for (int id : v) {
    SOME_REQUIRE(id >= 0 && id < n, DataError, "token id {} is outside the vocabulary [0, {}) of '{}'",
                 id, n, path_);
  }
  std::string text;
  auto status = sp_->Decode(v, &text);
  SOME_REQUIRE(status.ok(), DataError, "tokenizer '{}' cannot decode {} ids: {}", path_, v.size(),
               status.ToString());
  return text;
}

int Tokenizer::vocab_size() const { return sp_->GetPieceSize(); }
int Tokenizer::eos_id() const { return sp_->eos_id(); }

std::string Tokenizer::piece(int id) const {
  SOME_REQUIRE(id >= 0 && id < sp_->GetPieceSize(), DataError,
               "token id {} is outside the vocabulary [0, {}) of '{}'", id, sp_->GetPieceSize(), path_);
  return sp_->IdToPiece(id);
}

namespace {

// Feeds SentencePiece the document stream one piece at a time, so training never needs the
// corpus in memory or in a temporary one-sentence-per-line file (which JSON lines would
// need). Documents are cut at newlines and then at spaces into pieces of at most
// `max_bytes`: BPE only counts whitespace-delimited words, so the cuts do not change what it
// learns, while SentencePiece would silently drop an over-long "sentence".
class DocumentSentences : public sentencepiece::SentenceIterator {
 public:
  DocumentSentences(std::vector<SourceFile> sources, size_t max_bytes)
      : reader_(std::move(sources)), max_bytes_(std::max<size_t>(max_bytes, 16)),
        progress_(static_cast<double>(reader_.total_bytes())) {
    advance();
  }

  bool done() const override { return done_; }
  void Next() override { advance(); }
  const std::string& value() const override { return value_; }
  sentencepiece::util::Status status() const override {
    if (error_) return {sentencepiece::util::StatusCode::kInternal, "reading the documents failed"};
    return {};
  }
  // An error while reading is kept and rethrown after training, as the DataError it was
  // (instead of letting an exception unwind through SentencePiece).
  void rethrow_if_failed() const {
    if (error_) std::rethrow_exception(error_);
  }
  int64_t sentences() const { return sentences_; }
  const DocumentReader& reader() const { return reader_; }

 private:
  void advance() {
    if (done_) return;
    try {
      while (!cut_next()) {
        if (!reader_.next(doc_)) {
          done_ = true;
          return;
        }
        pos_ = 0;
        report();
      }
      ++sentences_;
    } catch (...) {
      error_ = std::current_exception();
      done_ = true;
    }
  }

  // Cuts the next non-blank piece of the current document into value_; false when the
  // document is used up.
  bool cut_next() {
    while (pos_ < doc_.size()) {
      size_t end = std::min(doc_.find('\n', pos_), doc_.size());
      size_t next = end + 1;
      if (end - pos_ > max_bytes_) {
        size_t limit = pos_ + max_bytes_;
        size_t space = doc_.rfind(' ', limit);
        if (space != std::string::npos && space > pos_) {
          end = space;
        } else {  // no space: cut at a UTF-8 character boundary
          end = limit;
          while (end > pos_ + 1 && (static_cast<unsigned char>(doc_[end]) & 0xC0) == 0x80) --end;
        }
        next = end;
      }
      std::string_view piece(doc_.data() + pos_, end - pos_);
      pos_ = next;
      while (!piece.empty() && std::isspace(static_cast<unsigned char>(piece.front()))) piece.remove_prefix(1);
      while (!piece.empty() && std::isspace(static_cast<unsigned char>(piece.back()))) piece.remove_suffix(1);
      if (!piece.empty()) {
        value_.assign(piece);
        return true;
      }
    }
    return false;
  }

  void report() {
    auto now = std::chrono::steady_clock::now();
    if (now - last_report_ < std::chrono::seconds(2)) return;
    last_report_ = now;
    double done = static_cast<double>(reader_.bytes_read());
    some::log::get("data")->info("tokenizer: read {}B / {}B ({}B/s), {} documents, ETA {}",
                                 format_count(done), format_count(reader_.total_bytes()),
                                 format_count(progress_.rate(done)),
                                 format_count(static_cast<double>(reader_.documents_read())),
                                 progress_.eta(done));
  }

  DocumentReader reader_;
  size_t max_bytes_;
  Progress progress_;
  std::chrono::steady_clock::time_point last_report_ = std::chrono::steady_clock::now();
  std::string doc_;
  size_t pos_ = 0;
  std::string value_;
  bool done_ = false;
  int64_t sentences_ = 0;
  std::exception_ptr error_;
};

struct TrainResult {
  sentencepiece::util::Status status;
  std::string model;
};

TrainResult train_once(const std::vector<SourceFile>& sources, int vocab_size,
                       const TokenizerTrainOptions& opt) {
  auto log = some::log::get("data");
  std::unordered_map<std::string, std::string> kwargs = {
      {"model_type", "bpe"},
      {"vocab_size", std::to_string(vocab_size)},
      // A soft limit: a small corpus yields fewer pieces instead of an error.
      {"hard_vocab_limit", "false"},
      // Documents are separated by EOS; nothing else is special. Bytes outside the learned
      // characters fall back to the 256 byte pieces, so every text is encodable.
      {"unk_id", "0"},
      {"eos_id", "1"},
      {"bos_id", "-1"},
      {"pad_id", "-1"},
      {"byte_fallback", "true"},
      {"character_coverage", "0.9995"},
      {"split_digits", "true"},
      // No NFKC and no whitespace folding: decode(encode(text)) == text, so generated text and
      // evaluation are on the exact corpus text.
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"input_sentence_size", std::to_string(opt.input_sentence_size)},
      {"shuffle_input_sentence", "true"},
      {"max_sentence_length", std::to_string(std::max<size_t>(4192, opt.max_sentence_bytes + 16))},
      {"num_threads", std::to_string(std::max(opt.num_threads, 1))},
      // SentencePiece logs every step at INFO on stderr; keep its warnings only.
      {"minloglevel", log->should_log(spdlog::level::debug) ? "0" : "1"},
  };
  // The reservoir sampling and shuffling draw from SentencePiece's global generator.
  sentencepiece::SetRandomGeneratorSeed(opt.seed);
  DocumentSentences sentences(sources, opt.max_sentence_bytes);
  TrainResult result;
  result.status = sentencepiece::SentencePieceTrainer::Train(kwargs, &sentences, &result.model);
  sentences.rethrow_if_failed();
  SOME_REQUIRE(sentences.sentences() > 0, DataError,
               "the inputs (first: '{}') hold no text to train a tokenizer on", sources.front().path);
  log->info("tokenizer: trained on {} sentences from {} documents", sentences.sentences(),
            sentences.reader().documents_read());
  return result;
}

}  // namespace

void train_tokenizer(const std::vector<std::string>& input_files, const std::string& out_model_path,
                     int vocab_size, const TokenizerTrainOptions& options) {
  auto log = some::log::get("data");
  SOME_REQUIRE(vocab_size >= 1, DataError, "tokenizer vocab_size must be positive, got {}",
               vocab_size);
  auto sources = list_sources(input_files);
  log->info("tokenizer: training a BPE model of up to {} pieces on {} file(s)", vocab_size,
            sources.size());
  TrainResult r = train_once(sources, vocab_size, options);
  if (!r.status.ok()) {
    // The minimum vocabulary depends on the corpus (its characters), so it is only known once
    // SentencePiece has counted them: "... smaller than required_chars. 300 vs 310."
    static const std::regex kTooSmall(R"(required_chars\. (\d+) vs (\d+))");
    std::smatch m;
    std::string msg = r.status.ToString();
    if (std::regex_search(msg, m, kTooSmall)) {
      int needed = std::stoi(m[2].str());
      log->warn("tokenizer: vocab_size {} is below the {} this corpus needs (256 byte pieces, "
                "the special pieces and its characters); using {}",
                vocab_size, needed, needed);
      r = train_once(sources, needed, options);
    }
  }
  SOME_REQUIRE(r.status.ok(), DataError, "training the tokenizer for '{}' failed: {}",
               out_model_path, r.status.ToString());

  fs::path out(out_model_path);
  std::error_code ec;
  if (out.has_parent_path()) fs::create_directories(out.parent_path(), ec);
  std::string tmp = out_model_path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    SOME_REQUIRE(f.is_open(), DataError, "cannot write tokenizer model '{}'", tmp);
    f.write(r.model.data(), static_cast<std::streamsize>(r.model.size()));
    f.close();
    SOME_REQUIRE(f.good(), DataError, "cannot write tokenizer model '{}' (disk full?)", tmp);
  }
  fs::rename(tmp, out, ec);
  SOME_REQUIRE(!ec, DataError, "cannot rename '{}' to '{}': {}", tmp, out_model_path, ec.message());
  auto tok = Tokenizer::load(out_model_path);
  log->info("tokenizer: {} pieces -> {}", tok.vocab_size(), out_model_path);
}

}  // namespace some::data
