// The fixed-order inner-product kernel every FAISS-backed key index computes with, and the host
// copies and result order they share (key_index_faiss.h).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "src/model/key_index_faiss.h"

namespace some::model::key_index_detail {

using torch::Tensor;

// Rows of x (n, d), any device / float dtype, as contiguous fp32 on the host; with `cosine` each
// row divided by max(|row|, 1e-12) — a sequential fp64 sum, so the bits do not depend on threads.
std::vector<float> prepare(const Tensor& x, int64_t d, bool cosine, const char* what) {
  TORCH_CHECK(x.dim() == 2 && x.size(1) == d, what, " must be (n, ", d, "), got ", x.sizes());
  auto h = x.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  const auto n = h.size(0);
  std::vector<float> out(static_cast<size_t>(n * d));
  std::memcpy(out.data(), h.data_ptr<float>(), out.size() * sizeof(float));
  if (cosine) {
    for (int64_t i = 0; i < n; ++i) {
      float* row = out.data() + i * d;
      double s = 0;
      for (int64_t j = 0; j < d; ++j) s += double(row[j]) * row[j];
      const float inv = static_cast<float>(1.0 / std::max(std::sqrt(s), 1e-12));
      for (int64_t j = 0; j < d; ++j) row[j] *= inv;
    }
  }
  return out;
}

// Ids (M,) as sorted unique int64, each checked against [0, E).
std::vector<int64_t> unique_ids(const Tensor& moved, int64_t E) {
  auto m = moved.detach().to(torch::kCPU, torch::kLong).contiguous().view({-1});
  std::vector<int64_t> ids(m.data_ptr<int64_t>(), m.data_ptr<int64_t>() + m.numel());
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  TORCH_CHECK(ids.empty() || (ids.front() >= 0 && ids.back() < E), "moved key ids must lie in [0, ", E, ")");
  return ids;
}

// Each row of `ids` (n, k) / `scores` (n, k) ordered best first by score, ties to the lower id,
// the missing (-1) last: the one order every search returns.
Tensor ordered(int64_t n, int64_t k, const std::vector<float>& scores, std::vector<idx_t>& ids) {
  std::vector<int64_t> perm(static_cast<size_t>(k));
  std::vector<idx_t> row(static_cast<size_t>(k));
  for (int64_t i = 0; i < n; ++i) {
    const float* s = scores.data() + i * k;
    idx_t* id = ids.data() + i * k;
    std::iota(perm.begin(), perm.end(), 0);
    std::sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) {
      if ((id[a] < 0) != (id[b] < 0)) return id[b] < 0;
      if (s[a] != s[b]) return s[a] > s[b];
      return id[a] < id[b];
    });
    for (int64_t j = 0; j < k; ++j) row[j] = id[perm[j]];
    std::copy(row.begin(), row.end(), id);
  }
  auto out = torch::empty({n, k}, torch::kLong);
  std::copy(ids.begin(), ids.end(), out.data_ptr<int64_t>());
  return out;
}

// out[j] = <x, y_j> for the rows of y (ny, d). 16 lanes, each a fixed sequence of IEEE multiplies
// and adds, then summed lane 0..15, then the tail: the same bits whatever vector width the compiler
// uses (no FMA: the avx2 clone has none and contraction is off), so on every x86-64 CPU. The
// AVX2 clone runs ~20 GMAC/s here, the generic-build FAISS kernel (fvec_inner_products_ny) ~2.3.
// fp-contract=off: a build with -march=native / -mfma must not fuse the multiply-adds either.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
__attribute__((target_clones("avx2", "default")))
#endif
void inner_products(float* out, const float* x, const float* y, size_t d, size_t ny) {
  constexpr size_t kLanes = 16;
  for (size_t j = 0; j < ny; ++j) {
    const float* yj = y + j * d;
    float acc[kLanes] = {};
    size_t i = 0;
    for (; i + kLanes <= d; i += kLanes) {
      for (size_t l = 0; l < kLanes; ++l) acc[l] += x[i + l] * yj[i + l];
    }
    float s = 0;
    for (size_t l = 0; l < kLanes; ++l) s += acc[l];
    for (; i < d; ++i) s += x[i] * yj[i];
    out[j] = s;
  }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

}  // namespace some::model::key_index_detail
