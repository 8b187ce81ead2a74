#pragma once
// The on-disk dataset format (docs/design.md §6), shared by the writer (prepare) and the readers so
// that the two cannot drift apart. Bump kFormatVersion on any incompatible change (adding
// checksums was not one: the Fletcher-32 filter is recorded in each shard and applied by any
// reader, and shards without it still read; docs/design.md §6).
#include <cstdint>
#include <string>

#include <fmt/format.h>

namespace some::data {

inline constexpr int kFormatVersion = 1;
inline constexpr const char* kMetaFile = "meta.json";
inline constexpr const char* kTokenizerFile = "tokenizer.model";
// Each shard: dataset /tokens (1-D, chunked, extendible) and, on the file's root group, the
// attributes below.
inline constexpr const char* kTokensDataset = "tokens";
inline constexpr const char* kAttrVocabSize = "vocab_size";
inline constexpr const char* kAttrTokenizerSha = "tokenizer_sha256";
inline constexpr const char* kAttrNumTokens = "num_tokens";
inline constexpr const char* kAttrFormatVersion = "format_version";

// Halves the disk and page-cache footprint for every vocabulary that fits.
inline constexpr int kMaxUint16Vocab = 65535;
inline std::string dtype_for_vocab(int vocab_size) {
  return vocab_size <= kMaxUint16Vocab ? "uint16" : "uint32";
}

// "train-00003.h5"
inline std::string shard_name(const std::string& split, int index) {
  return fmt::format("{}-{:05d}.h5", split, index);
}

}  // namespace some::data
