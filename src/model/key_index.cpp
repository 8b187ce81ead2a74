#include "src/model/key_index.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include <fmt/format.h>

#include "common/choice.h"
#include "common/errors.h"

#ifdef SOME_HAVE_FAISS
#include <omp.h>

#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>
#include <faiss/impl/DistanceComputer.h>
#include <faiss/invlists/InvertedLists.h>
#include <faiss/utils/Heap.h>
#endif

namespace some::model {

using torch::Tensor;

KeySearch parse_key_search(const std::string& name) {
  return parse_choice<KeySearch>("router.search", name,
                                 {{"exact", KeySearch::kExact}, {"hnsw", KeySearch::kHnsw}, {"ivf", KeySearch::kIvf}});
}

const char* key_search_name(KeySearch kind) {
  switch (kind) {
    case KeySearch::kHnsw: return "hnsw";
    case KeySearch::kIvf: return "ivf";
    default: return "exact";
  }
}

bool key_search_available(KeySearch kind) {
#ifdef SOME_HAVE_FAISS
  return true;
#else
  return kind == KeySearch::kExact;
#endif
}

int64_t ivf_list_count(int64_t ivf_lists, int64_t E) {
  if (ivf_lists > E) {
    throw ConfigError(fmt::format("router.ivf_lists = {} exceeds the {} experts of a layer", ivf_lists, E));
  }
  if (ivf_lists > 0) return ivf_lists;
  return std::clamp<int64_t>(std::llround(4.0 * std::sqrt(double(std::max<int64_t>(E, 1)))), 1, std::max<int64_t>(E, 1));
}

namespace {

void check_options(const KeyIndexOptions& o, int64_t d) {
  auto positive = [](const char* key, int64_t v, int64_t low) {
    if (v < low) throw ConfigError(fmt::format("router.{} = {} must be at least {}", key, v, low));
  };
  TORCH_CHECK(d >= 1, "key width must be positive, got ", d);
  positive("ivf_lists", o.ivf_lists, 0);
  positive("ivf_probe", o.ivf_probe, 1);
  positive("ivf_iterations", o.ivf_iterations, 1);
  positive("hnsw_m", o.hnsw_m, 2);
  positive("hnsw_ef_search", o.hnsw_ef_search, 1);
  positive("hnsw_ef_construction", o.hnsw_ef_construction, 1);
  positive("hnsw_rebuild_every", o.hnsw_rebuild_every, 1);
}

}  // namespace

#ifndef SOME_HAVE_FAISS

std::unique_ptr<KeyIndex> KeyIndex::make(const KeyIndexOptions& options, int64_t d) {
  if (options.kind == KeySearch::kExact) return nullptr;
  check_options(options, d);
  throw ConfigError(fmt::format("router.search = '{}' needs a build with FAISS (apt-get install libfaiss-dev, then "
                                "reconfigure; this build has SOME_WITH_FAISS off or did not find it): use "
                                "router.search = 'exact'",
                                key_search_name(options.kind)));
}

#else  // SOME_HAVE_FAISS

namespace {

using idx_t = faiss::Index::idx_t;

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

// The generic-build FAISS computes every inner product with its portable kernel (~2.3 GMAC/s);
// its two extension points for that take ours instead: an IVF list scanner and a flat storage's
// distance computer (for HNSW). Written against FAISS 1.7.3 (Debian 12).
class IpScanner final : public faiss::InvertedListScanner {
 public:
  explicit IpScanner(size_t d) : d_(d) {
    keep_max = true;  // inner product: larger is closer
    code_size = d * sizeof(float);
  }
  void set_query(const float* x) override { q_ = x; }
  void set_list(idx_t list, float) override { list_no = list; }
  float distance_to_code(const uint8_t* code) const override {
    float s;
    inner_products(&s, q_, reinterpret_cast<const float*>(code), d_, 1);
    return s;
  }
  // The k best of this list into the min-heap (distances, labels), as FAISS's default scan does.
  size_t scan_codes(size_t n, const uint8_t* codes, const idx_t* ids, float* distances, idx_t* labels,
                    size_t k) const override {
    scores_.resize(n);
    inner_products(scores_.data(), q_, reinterpret_cast<const float*>(codes), d_, n);
    size_t updates = 0;
    for (size_t j = 0; j < n; ++j) {
      if (scores_[j] > distances[0]) {
        faiss::minheap_replace_top(k, distances, labels, scores_[j], ids[j]);
        ++updates;
      }
    }
    return updates;
  }

 private:
  size_t d_;
  const float* q_ = nullptr;
  mutable std::vector<float> scores_;  // one scanner per searching thread
};

struct IvfFlatIP final : faiss::IndexIVFFlat {
  using faiss::IndexIVFFlat::IndexIVFFlat;
  faiss::InvertedListScanner* get_InvertedListScanner(bool store_pairs, const faiss::IDSelector* sel) const override {
    if (store_pairs || sel) return faiss::IndexIVFFlat::get_InvertedListScanner(store_pairs, sel);
    return new IpScanner(d);
  }
};

class IpDistance final : public faiss::FlatCodesDistanceComputer {
 public:
  IpDistance(const uint8_t* codes, size_t d) : FlatCodesDistanceComputer(codes, d * sizeof(float)), d_(d) {}
  void set_query(const float* x) override { q_ = x; }
  float distance_to_code(const uint8_t* code) override {
    float s;
    inner_products(&s, q_, reinterpret_cast<const float*>(code), d_, 1);
    return s;
  }
  float symmetric_dis(idx_t i, idx_t j) override {
    float s;
    inner_products(&s, row(i), row(j), d_, 1);
    return s;
  }

 private:
  size_t d_;
  const float* q_ = nullptr;
  const float* row(idx_t i) const { return reinterpret_cast<const float*>(codes + i * code_size); }
};

// HNSW's storage: an IndexFlatIP (so it serialises as one) whose distances are ours.
struct FlatIP final : faiss::IndexFlatIP {
  using faiss::IndexFlatIP::IndexFlatIP;
  faiss::FlatCodesDistanceComputer* get_FlatCodesDistanceComputer() const override {
    return new IpDistance(codes.data(), static_cast<size_t>(d));
  }
};

int faiss_seed(uint64_t seed) { return static_cast<int>((seed ^ (seed >> 32)) & 0x7fffffff); }

// ---- IVF --------------------------------------------------------------------------------------
class IvfIndex final : public KeyIndex {
 public:
  IvfIndex(const KeyIndexOptions& o, int64_t d) : o_(o), d_(d) {}

  void build(const Tensor& keys) override {
    auto x = prepare(keys, d_, o_.cosine, "keys");
    const auto E = keys.size(0);
    TORCH_CHECK(E > 0, "an IVF index needs at least one key");
    const auto L = ivf_list_count(o_.ivf_lists, E);
    // Spherical k-means over the (normalised) keys by inner product; FAISS draws its sample and
    // splits empty clusters from `seed`, assigns through IndexFlatIP (one BLAS product per
    // iteration, per-row heaps) and sums each centre's points in index order.
    faiss::ClusteringParameters cp;
    cp.niter = static_cast<int>(o_.ivf_iterations);
    cp.spherical = true;
    cp.seed = faiss_seed(o_.seed);
    cp.min_points_per_centroid = 1;  // no warning for few keys per list: L ~ 4 sqrt(E) is by design
    cp.verbose = false;
    faiss::Clustering clustering(static_cast<int>(d_), static_cast<int>(L), cp);
    faiss::IndexFlatIP assign_index(static_cast<idx_t>(d_));
    clustering.train(E, x.data(), assign_index);
    reset(std::move(clustering.centroids), L);
    fill(x, E);
  }

  void update(const Tensor& keys, const Tensor& moved) override {
    TORCH_CHECK(index_, "update() before build()");
    const auto E = static_cast<int64_t>(list_of_.size());
    TORCH_CHECK(keys.dim() == 2 && keys.size(0) == E, "update() keys must be (", E, ", ", d_, ")");
    const auto ids = unique_ids(moved, E);
    if (ids.empty()) return;
    const auto M = static_cast<int64_t>(ids.size());
    auto id_tensor = torch::from_blob(const_cast<int64_t*>(ids.data()), {M}, torch::kLong);
    auto x = prepare(keys.detach().to(torch::kCPU).index_select(0, id_tensor), d_, o_.cosine, "keys");  // (M, d)
    std::vector<idx_t> to(static_cast<size_t>(M));
    std::vector<float> unused(static_cast<size_t>(M));
    nearest_centres(x.data(), M, 1, to.data(), unused.data());

    // The touched lists: each moved key's old and new list. Each becomes "its keys, ascending id".
    std::vector<char> touched(static_cast<size_t>(L_), 0), is_moved(static_cast<size_t>(E), 0);
    for (int64_t m = 0; m < M; ++m) {
      touched[list_of_[ids[m]]] = touched[to[m]] = 1;
      is_moved[ids[m]] = 1;
    }
    const size_t code = static_cast<size_t>(d_) * sizeof(float);
    std::vector<std::vector<std::pair<idx_t, const uint8_t*>>> entries(static_cast<size_t>(L_));
    auto* lists = index_->invlists;
    for (int64_t l = 0; l < L_; ++l) {
      if (!touched[l]) continue;
      const auto n = lists->list_size(l);
      const idx_t* lid = lists->get_ids(l);
      const uint8_t* lcodes = lists->get_codes(l);
      for (size_t j = 0; j < n; ++j) {
        if (!is_moved[lid[j]]) entries[l].emplace_back(lid[j], lcodes + j * code);
      }
    }
    for (int64_t m = 0; m < M; ++m) {
      entries[to[m]].emplace_back(ids[m], reinterpret_cast<const uint8_t*>(x.data() + m * d_));
      list_of_[ids[m]] = to[m];
    }
    std::vector<idx_t> new_ids;
    std::vector<uint8_t> new_codes;
    for (int64_t l = 0; l < L_; ++l) {
      if (!touched[l]) continue;
      auto& e = entries[l];
      std::sort(e.begin(), e.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      new_ids.resize(e.size());
      new_codes.resize(e.size() * code);
      for (size_t j = 0; j < e.size(); ++j) {
        new_ids[j] = e[j].first;
        std::memcpy(new_codes.data() + j * code, e[j].second, code);
      }
      lists->resize(l, 0);
      if (!e.empty()) lists->add_entries(l, e.size(), new_ids.data(), new_codes.data());
    }
  }

  Tensor search(const Tensor& q, int64_t k) const override {
    TORCH_CHECK(index_, "search() before build()");
    TORCH_CHECK(k >= 1, "k must be positive");
    auto x = prepare(q, d_, o_.cosine, "queries");
    const auto n = q.size(0);
    const auto probe = std::min<int64_t>(o_.ivf_probe, L_);
    std::vector<idx_t> coarse(static_cast<size_t>(n * probe));
    std::vector<float> coarse_scores(static_cast<size_t>(n * probe));
    nearest_centres(x.data(), n, probe, coarse.data(), coarse_scores.data());
    std::vector<float> scores(static_cast<size_t>(n * k));
    std::vector<idx_t> ids(static_cast<size_t>(n * k));
    faiss::SearchParametersIVF params;
    params.nprobe = static_cast<size_t>(probe);
    params.max_codes = 0;
    if (n > 0) {
      index_->search_preassigned(n, x.data(), k, coarse.data(), coarse_scores.data(), scores.data(), ids.data(),
                                 /*store_pairs=*/false, &params);
    }
    return ordered(n, k, scores, ids);
  }

  int64_t size() const override { return static_cast<int64_t>(list_of_.size()); }

  Tensor state() const override {
    if (!index_) return {};
    return torch::from_blob(const_cast<float*>(centres_.data()), {L_, d_}, torch::kFloat32).clone();
  }

  void restore(const Tensor& state, const Tensor& keys) override {
    if (!state.defined() || state.numel() == 0) return build(keys);
    if (state.dim() != 2 || state.size(1) != d_ || state.scalar_type() != torch::kFloat32) {
      throw DataError(fmt::format("IVF key index state must be fp32 centres (L, {}), got a {}-d {} tensor", d_,
                                  state.dim(), c10::toString(state.scalar_type())));
    }
    const auto E = keys.size(0), L = state.size(0);
    if (L < 1 || L > E) throw DataError(fmt::format("IVF key index state has {} centres for {} keys", L, E));
    auto c = state.contiguous();
    reset(std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel()), L);
    fill(prepare(keys, d_, o_.cosine, "keys"), E);
  }

 private:
  KeyIndexOptions o_;
  int64_t d_, L_ = 0;
  std::vector<float> centres_;                     // (L, d)
  std::unique_ptr<faiss::IndexFlatIP> quantizer_;  // holds the centres (FAISS's IVF wants one)
  std::unique_ptr<IvfFlatIP> index_;
  std::vector<idx_t> list_of_;                     // (E,) the list of each key


  void reset(std::vector<float> centres, int64_t L) {
    centres_ = std::move(centres);
    L_ = L;
    quantizer_ = std::make_unique<faiss::IndexFlatIP>(static_cast<idx_t>(d_));
    quantizer_->add(L_, centres_.data());
    index_ = std::make_unique<IvfFlatIP>(quantizer_.get(), static_cast<size_t>(d_), static_cast<size_t>(L_),
                                         faiss::METRIC_INNER_PRODUCT);
    index_->is_trained = true;
    // 3: search_preassigned splits the queries over the threads, one query per thread at a time
    // (0, the default, leaves the splitting to IndexIVF::search, which we do not call).
    index_->parallel_mode = 3;
  }

  // x (n, d) -> for each row the `probe` centres of highest inner product, best first, ties to
  // the lower centre: idx (n, probe), score (n, probe). One row at a time, fixed arithmetic.
  void nearest_centres(const float* x, int64_t n, int64_t probe, idx_t* idx, float* score) const {
    at::parallel_for(0, n, 16, [&](int64_t begin, int64_t end) {
      std::vector<float> s(static_cast<size_t>(L_));
      std::vector<idx_t> order(static_cast<size_t>(L_));
      for (int64_t i = begin; i < end; ++i) {
        inner_products(s.data(), x + i * d_, centres_.data(), static_cast<size_t>(d_), static_cast<size_t>(L_));
        std::iota(order.begin(), order.end(), 0);
        std::partial_sort(order.begin(), order.begin() + probe, order.end(), [&](idx_t a, idx_t b) {
          return s[a] > s[b] || (s[a] == s[b] && a < b);
        });
        for (int64_t j = 0; j < probe; ++j) {
          idx[i * probe + j] = order[j];
          score[i * probe + j] = s[order[j]];
        }
      }
    });
  }

  // Every list from scratch: the keys x (E, d) of each centre in ascending id order.
  void fill(const std::vector<float>& x, int64_t E) {
    list_of_.assign(static_cast<size_t>(E), 0);
    std::vector<float> unused(static_cast<size_t>(E));
    nearest_centres(x.data(), E, 1, list_of_.data(), unused.data());
    std::vector<std::vector<idx_t>> members(static_cast<size_t>(L_));
    for (int64_t i = 0; i < E; ++i) members[list_of_[i]].push_back(i);
    const size_t code = static_cast<size_t>(d_) * sizeof(float);
    std::vector<uint8_t> codes;
    for (int64_t l = 0; l < L_; ++l) {
      const auto& m = members[l];
      if (m.empty()) continue;
      codes.resize(m.size() * code);
      for (size_t j = 0; j < m.size(); ++j) std::memcpy(codes.data() + j * code, x.data() + m[j] * d_, code);
      index_->invlists->add_entries(l, m.size(), m.data(), codes.data());
    }
    index_->ntotal = E;
  }
};

// ---- HNSW -------------------------------------------------------------------------------------
class HnswIndex final : public KeyIndex {
 public:
  HnswIndex(const KeyIndexOptions& o, int64_t d) : o_(o), d_(d) {}

  void build(const Tensor& keys) override {
    auto x = prepare(keys, d_, o_.cosine, "keys");
    TORCH_CHECK(keys.size(0) > 0, "an HNSW index needs at least one key");
    index_ = fresh();
    SingleThreadRegion one_thread;
    index_->add(keys.size(0), x.data());
    updates_since_build_ = 0;
  }

  void update(const Tensor& keys, const Tensor& moved) override {
    TORCH_CHECK(index_, "update() before build()");
    const auto E = index_->ntotal;
    TORCH_CHECK(keys.dim() == 2 && keys.size(0) == E, "update() keys must be (", E, ", ", d_, ")");
    const auto ids = unique_ids(moved, E);
    if (ids.empty()) return;
    if (o_.hnsw_rebuild_every <= 1 || ++updates_since_build_ >= o_.hnsw_rebuild_every) return build(keys);
    // In place: the moved keys' vectors change, the graph stays.
    const auto M = static_cast<int64_t>(ids.size());
    auto id_tensor = torch::from_blob(const_cast<int64_t*>(ids.data()), {M}, torch::kLong);
    auto x = prepare(keys.detach().to(torch::kCPU).index_select(0, id_tensor), d_, o_.cosine, "keys");
    auto& codes = storage_codes();
    const size_t code = static_cast<size_t>(d_) * sizeof(float);
    for (int64_t m = 0; m < M; ++m) std::memcpy(codes.data() + ids[m] * code, x.data() + m * d_, code);
  }

  Tensor search(const Tensor& q, int64_t k) const override {
    TORCH_CHECK(index_, "search() before build()");
    TORCH_CHECK(k >= 1, "k must be positive");
    auto x = prepare(q, d_, o_.cosine, "queries");
    const auto n = q.size(0);
    std::vector<float> scores(static_cast<size_t>(n * k));
    std::vector<idx_t> ids(static_cast<size_t>(n * k));
    if (n > 0) index_->search(n, x.data(), k, scores.data(), ids.data());
    return ordered(n, k, scores, ids);
  }

  int64_t size() const override { return index_ ? index_->ntotal : 0; }

  Tensor state() const override {
    if (!index_ || o_.hnsw_rebuild_every <= 1) return torch::empty({0}, torch::kUInt8);
    faiss::VectorIOWriter w;
    const int64_t counter = updates_since_build_;
    w(&counter, sizeof(counter), 1);
    faiss::write_index(index_.get(), &w);
    auto out = torch::empty({static_cast<int64_t>(w.data.size())}, torch::kUInt8);
    std::memcpy(out.data_ptr<uint8_t>(), w.data.data(), w.data.size());
    return out;
  }

  void restore(const Tensor& state, const Tensor& keys) override {
    if (!state.defined() || state.numel() == 0) return build(keys);
    if (o_.hnsw_rebuild_every <= 1) {
      throw DataError("an HNSW key index state was given, but hnsw_rebuild_every = 1 keeps none (the index is "
                      "rebuilt from the keys)");
    }
    if (state.dim() != 1 || state.scalar_type() != torch::kUInt8 || state.numel() < 8) {
      throw DataError("HNSW key index state must be the bytes (n,) uint8 that state() returned");
    }
    auto c = state.contiguous();
    faiss::VectorIOReader r;
    r.data.assign(c.data_ptr<uint8_t>(), c.data_ptr<uint8_t>() + c.numel());
    int64_t counter = 0;
    r(&counter, sizeof(counter), 1);
    std::unique_ptr<faiss::Index> loaded;
    try {
      loaded.reset(faiss::read_index(&r));
    } catch (const std::exception& e) {
      throw DataError(fmt::format("HNSW key index state does not parse: {}", e.what()));
    }
    auto* hnsw = dynamic_cast<faiss::IndexHNSWFlat*>(loaded.get());
    if (!hnsw || hnsw->d != d_ || hnsw->metric_type != faiss::METRIC_INNER_PRODUCT) {
      throw DataError(fmt::format("HNSW key index state is not an inner-product IndexHNSWFlat of width {}", d_));
    }
    loaded.release();
    index_.reset(hnsw);
    use_our_distances(*index_);
    // The stored vectors must be these keys: otherwise the graph belongs to other keys.
    auto x = prepare(keys, d_, o_.cosine, "keys");
    auto& codes = storage_codes();
    if (keys.size(0) != index_->ntotal || codes.size() != x.size() * sizeof(float) ||
        std::memcmp(codes.data(), x.data(), codes.size()) != 0) {
      throw DataError("HNSW key index state was taken over other keys than the ones given to restore()");
    }
    index_->hnsw.efConstruction = static_cast<int>(o_.hnsw_ef_construction);
    index_->hnsw.efSearch = static_cast<int>(o_.hnsw_ef_search);
    updates_since_build_ = counter;
  }

 private:
  KeyIndexOptions o_;
  int64_t d_;
  std::unique_ptr<faiss::IndexHNSWFlat> index_;
  int64_t updates_since_build_ = 0;

  std::unique_ptr<faiss::IndexHNSWFlat> fresh() const {
    auto index = std::make_unique<faiss::IndexHNSWFlat>(static_cast<int>(d_), static_cast<int>(o_.hnsw_m),
                                                        faiss::METRIC_INNER_PRODUCT);
    index->hnsw.efConstruction = static_cast<int>(o_.hnsw_ef_construction);
    index->hnsw.efSearch = static_cast<int>(o_.hnsw_ef_search);
    index->hnsw.rng = faiss::RandomGenerator(static_cast<int64_t>(o_.seed));  // node levels
    use_our_distances(*index);
    return index;
  }

  // Swaps the storage of `index` for a FlatIP holding the same vectors.
  static void use_our_distances(faiss::IndexHNSWFlat& index) {
    auto* old = dynamic_cast<faiss::IndexFlat*>(index.storage);
    TORCH_CHECK(old && index.own_fields, "IndexHNSWFlat without owned flat storage");
    auto storage = std::make_unique<FlatIP>(old->d);
    storage->codes = std::move(old->codes);
    storage->ntotal = old->ntotal;
    delete old;
    index.storage = storage.release();
  }

  std::vector<uint8_t>& storage_codes() {
    auto* flat = dynamic_cast<faiss::IndexFlatCodes*>(index_->storage);
    TORCH_CHECK(flat, "IndexHNSWFlat without flat storage");
    return flat->codes;
  }
};

}  // namespace

std::unique_ptr<KeyIndex> KeyIndex::make(const KeyIndexOptions& options, int64_t d) {
  if (options.kind == KeySearch::kExact) return nullptr;
  check_options(options, d);
  if (options.kind == KeySearch::kIvf) return std::make_unique<IvfIndex>(options, d);
  return std::make_unique<HnswIndex>(options, d);
}

#endif  // SOME_HAVE_FAISS

}  // namespace some::model
