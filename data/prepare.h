#pragma once
// `some prepare` (docs/design.md §6, §8): text/JSONL inputs -> tokenizer.model, meta.json and HDF5
// token shards per split.
#include <cstdint>
#include <string>
#include <vector>

namespace some::data {

struct PrepareOptions {
  std::vector<std::string> inputs;  // files or folders; empty -> the default corpus (KJV)
  std::string out_dir = "data/default";
  int vocab_size = 8192;            // for a trained tokenizer; ignored when reusing one
  std::string tokenizer;            // reuse this SentencePiece model if non-empty
  double val_fraction = 0.01;       // share of documents sent to the val split
  int64_t shard_tokens = int64_t{1} << 26;
  uint64_t seed = 1234;             // document -> split assignment and tokenizer sampling
  // Threads encoding documents; the output does not depend on it. (Tokenizer training keeps
  // its own fixed count: SentencePiece records it in the model file, whose SHA-256 the dataset
  // is keyed by.)
  int num_threads = 2;
};

// Writes the dataset into opts.out_dir (created if needed). Stale shards and meta.json of an
// earlier run there are removed first; meta.json is written last, so a directory with a
// meta.json holds a complete dataset. Every document is assigned to val with probability
// val_fraction by a hash of (seed, document index) -- reproducible and independent of
// batching -- with at least one document in each split when there are two or more
// documents and val_fraction > 0. ConfigError for invalid options, DataError for bad inputs.
void prepare_dataset(const PrepareOptions& opts);

}  // namespace some::data
