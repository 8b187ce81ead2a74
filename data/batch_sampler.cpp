#include "data/batch_sampler.h"

#include <algorithm>

#include "common/check.h"
#include "common/errors.h"
#include "common/random.h"

namespace some::data {

namespace {
void require_window(const TokenSplit& split, int64_t seq_len) {
  SOME_REQUIRE(seq_len >= 1, DataError, "seq_len must be positive, got {}", seq_len);
  SOME_REQUIRE(split.num_tokens() >= seq_len + 1, DataError,
               "split '{}' has {} tokens, too few for one window of seq_len + 1 = {} tokens",
               split.name(), split.num_tokens(), seq_len + 1);
}
}  // namespace

BatchSampler::BatchSampler(const TokenSplit& split, int64_t seq_len, uint64_t seed)
    : split_(&split), seq_len_(seq_len), seed_(seed) {
  require_window(split, seq_len);
}

int64_t BatchSampler::offset(int64_t step, int64_t j) const {
  const uint64_t starts = static_cast<uint64_t>(split_->num_tokens() - seq_len_);
  return static_cast<int64_t>(
      to_range(hash_u64(seed_, static_cast<uint64_t>(step), static_cast<uint64_t>(j)), starts));
}

std::vector<int64_t> BatchSampler::offsets(int64_t step, int64_t global_batch) const {
  SOME_REQUIRE(global_batch >= 0, DataError, "global_batch must not be negative, got {}",
               global_batch);
  std::vector<int64_t> out(static_cast<size_t>(global_batch));
  for (int64_t j = 0; j < global_batch; ++j) out[static_cast<size_t>(j)] = offset(step, j);
  return out;
}

void BatchSampler::fill(int64_t step, int64_t global_batch, int64_t first, int64_t count,
                        int32_t* out) const {
  SOME_REQUIRE(first >= 0 && count >= 0 && first + count <= global_batch, DataError,
               "split '{}': windows [{}, {}) are outside the global batch of {}", split_->name(),
               first, first + count, global_batch);
  const int64_t w = seq_len_ + 1;
  // Each window depends only on (seed, step, j): a rank computes just its own slice.
  for (int64_t i = 0; i < count; ++i) split_->read(offset(step, first + i), w, out + i * w);
}

EvalWindows::EvalWindows(const TokenSplit& split, int64_t seq_len)
    : split_(&split), seq_len_(seq_len) {
  require_window(split, seq_len);
  num_windows_ = (split.num_tokens() - 1) / seq_len;
}

void EvalWindows::fill(int64_t first, int64_t count, int32_t* out) const {
  SOME_REQUIRE(first >= 0 && count >= 0 && first + count <= num_windows_, DataError,
               "split '{}': eval windows [{}, {}) are outside the {} windows", split_->name(),
               first, first + count, num_windows_);
  if (count == 0) return;
  // The windows are consecutive: one read of the whole span, then spread into rows (each
  // row repeats the previous row's last token as its first).
  const int64_t w = seq_len_ + 1;
  std::vector<int32_t> span(static_cast<size_t>(count * seq_len_ + 1));
  split_->read(first * seq_len_, static_cast<int64_t>(span.size()), span.data());
  for (int64_t i = 0; i < count; ++i) {
    std::copy_n(span.begin() + i * seq_len_, w, out + i * w);
  }
}

}  // namespace some::data
