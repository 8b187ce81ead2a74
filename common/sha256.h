#pragma once
// SHA-256 digests as lowercase hex. A dataset records its tokenizer's digest so that a shard
// or a run can never be paired with a different tokenizer by accident (docs/design.md §6).
#include <string>
#include <string_view>

namespace some {

// Streams the file (constant memory); DataError naming the file if it cannot be read.
std::string sha256_file(const std::string& path);
std::string sha256_bytes(std::string_view bytes);

}  // namespace some
