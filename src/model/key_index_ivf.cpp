// router.search = ivf: FAISS's IndexIVFFlat by inner product, lists rewritten in id order as the
// keys move, assignments by our fixed-order kernel (docs/design.md §3 "Key search").
#include <algorithm>
#include <cstring>
#include <vector>

#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/invlists/InvertedLists.h>
#include <faiss/utils/Heap.h>
#include <fmt/format.h>

#include "common/errors.h"
#include "src/model/key_index_faiss.h"

namespace some::model::key_index_detail {

using torch::Tensor;

namespace {

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

}  // namespace

std::unique_ptr<KeyIndex> make_ivf_index(const KeyIndexOptions& options, int64_t d) {
  return std::make_unique<IvfIndex>(options, d);
}

}  // namespace some::model::key_index_detail
