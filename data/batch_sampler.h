#pragma once
// Which token windows a step trains or evaluates on (docs/design.md §5, §6). The global batch of a step
// is a pure function of (seed, step): every rank computes the same offsets and takes its own
// slice, so the data a run sees does not depend on the number of ranks, and a resumed run
// continues with exactly the batches it would have seen.
#include <cstdint>
#include <vector>

#include "data/dataset.h"

namespace some::data {

class BatchSampler {
 public:
  // A window is seq_len + 1 tokens (inputs and the shifted targets). DataError naming the
  // split and the sizes if it cannot hold one window. `split` must outlive the sampler.
  BatchSampler(const TokenSplit& split, int64_t seq_len, uint64_t seed);

  // Start offsets of the global_batch windows of `step`, each uniform over
  // [0, num_tokens - seq_len - 1].
  std::vector<int64_t> offsets(int64_t step, int64_t global_batch) const;
  // Windows first .. first + count - 1 of that global batch, row-major (count, seq_len + 1).
  void fill(int64_t step, int64_t global_batch, int64_t first, int64_t count, int32_t* out) const;

  int64_t seq_len() const { return seq_len_; }

 private:
  int64_t offset(int64_t step, int64_t j) const;
  const TokenSplit* split_;
  int64_t seq_len_;
  uint64_t seed_;
};

// Evaluation windows: sequential and non-overlapping in their predictions, window i starting
// at i * seq_len with seq_len + 1 tokens (consecutive windows share one boundary token), so
// every token of the split after the first is predicted exactly once over all windows.
class EvalWindows {
 public:
  EvalWindows(const TokenSplit& split, int64_t seq_len);  // DataError if no window fits
  int64_t num_windows() const { return num_windows_; }
  int64_t seq_len() const { return seq_len_; }
  // Windows first .. first + count - 1, row-major (count, seq_len + 1).
  void fill(int64_t first, int64_t count, int32_t* out) const;

 private:
  const TokenSplit* split_;
  int64_t seq_len_;
  int64_t num_windows_;
};

}  // namespace some::data
