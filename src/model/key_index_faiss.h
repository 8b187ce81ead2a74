#pragma once
// What the FAISS-backed key indexes share (key_index_ivf.cpp, key_index_hnsw.cpp): host copies of
// keys and queries, the one result order, the fixed-order inner-product kernel (key_index_kernel.cpp)
// and the factories KeyIndex::make calls. Only in a build with FAISS; docs/design.md §3 "Key search".
#include <cstdint>
#include <memory>
#include <vector>

#include <omp.h>

#include <faiss/Index.h>
#include <torch/torch.h>

#include "src/model/key_index.h"

namespace some::model::key_index_detail {

using idx_t = faiss::Index::idx_t;

// Rows of x (n, d), any device / float dtype, as contiguous fp32 on the host; with `cosine` each
// row divided by max(|row|, 1e-12) — a sequential fp64 sum, so the bits do not depend on threads.
std::vector<float> prepare(const torch::Tensor& x, int64_t d, bool cosine, const char* what);
// Ids (M,) as sorted unique int64, each checked against [0, E).
std::vector<int64_t> unique_ids(const torch::Tensor& moved, int64_t E);
// Each row of `ids` (n, k) / `scores` (n, k) ordered best first by score, ties to the lower id,
// the missing (-1) last: the one order every search returns.
torch::Tensor ordered(int64_t n, int64_t k, const std::vector<float>& scores, std::vector<idx_t>& ids);
// out[j] = <x, y_j> for the rows of y (ny, d), in a fixed order of IEEE operations: the same bits on
// every x86-64 CPU and thread count (key_index_kernel.cpp).
void inner_products(float* out, const float* x, const float* y, size_t d, size_t ny);
// FAISS's int seed from ours.
inline int faiss_seed(uint64_t seed) { return static_cast<int>((seed ^ (seed >> 32)) & 0x7fffffff); }

// OpenMP regions started by this thread run on one thread while it lives (FAISS parallelises
// HNSW insertion with per-node locks taken in arrival order: not reproducible).
class SingleThreadRegion {
 public:
  SingleThreadRegion() : saved_(omp_get_max_threads()) { omp_set_num_threads(1); }
  ~SingleThreadRegion() { omp_set_num_threads(saved_); }
  SingleThreadRegion(const SingleThreadRegion&) = delete;
  SingleThreadRegion& operator=(const SingleThreadRegion&) = delete;

 private:
  int saved_;
};

std::unique_ptr<KeyIndex> make_ivf_index(const KeyIndexOptions& options, int64_t d);
std::unique_ptr<KeyIndex> make_hnsw_index(const KeyIndexOptions& options, int64_t d);

}  // namespace some::model::key_index_detail
