#pragma once
// The SentencePiece tokenizer of a dataset: load / encode / decode, and training a BPE model
// on the same document stream that `prepare` tokenizes.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace some::data {

class Tokenizer {
 public:
  // DataError naming the file when it is missing, not a SentencePiece model, or has no EOS
  // piece (documents are separated by EOS, so a model without one cannot describe a dataset).
  static Tokenizer load(const std::string& model_path);

  std::vector<int32_t> encode(std::string_view text) const;
  std::string decode(const std::vector<int32_t>& ids) const;
  int vocab_size() const;
  int eos_id() const;
  std::string piece(int id) const;  // the piece's text, for inspection
  const std::string& path() const { return path_; }

 private:
  Tokenizer(std::shared_ptr<const sentencepiece::SentencePieceProcessor> sp, std::string path)
      : sp_(std::move(sp)), path_(std::move(path)) {}
  // Shared so that copies are cheap; SentencePiece encoding is const and thread-safe.
  std::shared_ptr<const sentencepiece::SentencePieceProcessor> sp_;
  std::string path_;
};

struct TokenizerTrainOptions {
  // Sentences sampled (reservoir) from the whole stream: bounds the trainer's memory at about
  // input_sentence_size * max_sentence_bytes whatever the corpus size.
  int64_t input_sentence_size = 2'000'000;
  // Documents are cut into pieces of at most this many bytes at spaces/newlines
  // (SentencePiece skips sentences longer than its max_sentence_length).
  size_t max_sentence_bytes = 1024;
  int num_threads = 2;  // recorded in the model file: a different count gives other bytes
  uint32_t seed = 1234;  // the sampling/shuffle seed: same inputs + seed -> same model bytes
};

// Trains a byte-fallback BPE model on the documents of `input_files` (files or folders, as
// list_sources reads them) and writes it to `out_model_path` (via a temporary name and a
// rename, so a crash never leaves a half-written model). Ids: unk 0, eos 1, no bos / pad.
// The vocabulary may come out smaller than `vocab_size` on a small corpus; a `vocab_size`
// below what the corpus needs (256 byte pieces + specials + its characters) is raised to
// that minimum with a warning. DataError on failure.
void train_tokenizer(const std::vector<std::string>& input_files, const std::string& out_model_path,
                     int vocab_size, const TokenizerTrainOptions& options = {});

}  // namespace some::data
