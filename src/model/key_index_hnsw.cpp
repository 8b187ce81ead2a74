// router.search = hnsw: FAISS's IndexHNSWFlat by inner product over a storage whose distances are
// our fixed-order kernel; rebuilt (or updated in place) as the keys move (docs/design.md §3
// "Key search").
#include <algorithm>
#include <cstring>
#include <vector>

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/impl/DistanceComputer.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>
#include <fmt/format.h>

#include "common/errors.h"
#include "src/model/key_index_faiss.h"

namespace some::model::key_index_detail {

using torch::Tensor;

namespace {

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

std::unique_ptr<KeyIndex> make_hnsw_index(const KeyIndexOptions& options, int64_t d) {
  return std::make_unique<HnswIndex>(options, d);
}

}  // namespace some::model::key_index_detail
