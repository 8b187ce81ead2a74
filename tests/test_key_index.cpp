// The ANN key index (src/model/key_index.h, router.search = hnsw | ivf) against exact search:
// IVF scanning every list is exact search, HNSW recall on random unit keys is high; the index is
// deterministic (same calls -> same bits, any thread count); IVF update() is a fresh fill with the
// same centres; state() / restore() resumes exactly. The FAISS cases skip, visibly, in a build
// without FAISS; the error such a build gives is checked instead.
//
// Legend: N queries, d key width, E keys, k top-k, L IVF lists.
#include <dlfcn.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/errors.h"
#include "src/model/key_index.h"
#include "src/model/key_store.h"
#include "src/model/router.h"

using some::ConfigError;
using some::DataError;
using some::model::KeyIndex;
using some::model::KeyIndexOptions;
using some::model::KeySearch;

namespace {

#ifdef SOME_HAVE_FAISS
#define SKIP_WITHOUT_FAISS() (void)0
#else
#define SKIP_WITHOUT_FAISS() GTEST_SKIP() << "built without FAISS (SOME_WITH_FAISS / libfaiss-dev)"
#endif

torch::Tensor randn(int64_t n, int64_t d, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return torch::randn({n, d}, gen, torch::kFloat32);
}

// Exact search as routing does it (key_store.cpp route()): scores against every key, stable top-k.
torch::Tensor exact_top_k(const torch::Tensor& q, const torch::Tensor& keys, int64_t k, bool cosine) {
  auto score = cosine ? some::model::ScoreFunction::kCosine : some::model::ScoreFunction::kDot;
  return some::model::stable_top_k(some::model::routing_scores(q, keys, score), k);
}

// Fraction of the exact top-k (as sets, per row) that `found` holds.
double recall(const torch::Tensor& found, const torch::Tensor& exact) {
  auto hits = (found.unsqueeze(2) == exact.unsqueeze(1)).any(1).sum().item<double>();
  return hits / static_cast<double>(exact.numel());
}

KeyIndexOptions options(KeySearch kind) {
  KeyIndexOptions o;
  o.kind = kind;
  o.seed = 11;
  return o;
}

// Runs f with the intra-op (OpenMP) thread count set to n, restoring it after.
template <typename F>
auto with_threads(int n, F f) {
  const int saved = at::get_num_threads();
  at::set_num_threads(n);
  auto out = f();
  at::set_num_threads(saved);
  return out;
}

}  // namespace

TEST(KeyIndex, ParsesKindsAndNamesTheKeyOfAnUnknownOne) {
  EXPECT_EQ(some::parse_choice<KeySearch>("router.search", "exact"), KeySearch::kExact);
  EXPECT_EQ(some::parse_choice<KeySearch>("router.search", "hnsw"), KeySearch::kHnsw);
  EXPECT_EQ(some::parse_choice<KeySearch>("router.search", "ivf"), KeySearch::kIvf);
  try {
    some::parse_choice<KeySearch>("router.search", "annoy");
    FAIL() << "an unknown kind was accepted";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("router.search"), std::string::npos) << what;
    EXPECT_NE(what.find("annoy"), std::string::npos) << what;
    EXPECT_NE(what.find("hnsw"), std::string::npos) << what;
  }
  EXPECT_EQ(KeyIndex::make(options(KeySearch::kExact), 16), nullptr);  // exact search has no index
}

TEST(KeyIndex, WithoutFaissTheKindsAreAConfigErrorSayingWhy) {
#ifdef SOME_HAVE_FAISS
  GTEST_SKIP() << "built with FAISS";
#else
  EXPECT_FALSE(some::model::key_search_available(KeySearch::kIvf));
  for (auto kind : {KeySearch::kHnsw, KeySearch::kIvf}) {
    try {
      KeyIndex::make(options(kind), 16);
      FAIL() << "made an index without FAISS";
    } catch (const ConfigError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("FAISS"), std::string::npos) << what;
      EXPECT_NE(what.find(some::choice_name(kind)), std::string::npos) << what;
    }
  }
#endif
}

TEST(KeyIndex, OptionsOutOfRangeNameTheirKey) {
  SKIP_WITHOUT_FAISS();
  auto o = options(KeySearch::kIvf);
  o.ivf_probe = 0;
  EXPECT_THROW(KeyIndex::make(o, 16), ConfigError);
  o = options(KeySearch::kIvf);
  o.ivf_lists = 100;  // more lists than keys
  auto index = KeyIndex::make(o, 16);
  try {
    index->build(randn(50, 16, 1));
    FAIL() << "100 lists over 50 keys were accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("router.ivf_lists"), std::string::npos) << e.what();
  }
}

// Scanning every list is exact search: the same ids in the same order, cosine and dot.
TEST(KeyIndexIvf, ProbingEveryListEqualsExactSearch) {
  SKIP_WITHOUT_FAISS();
  const int64_t E = 512, d = 64, N = 256, k = 4;
  for (bool cosine : {true, false}) {
    auto keys = randn(E, d, 1) * (cosine ? 3.0 : 1.0);
    auto q = randn(N, d, 2);
    auto o = options(KeySearch::kIvf);
    o.cosine = cosine;
    o.ivf_lists = 16;
    o.ivf_probe = 16;
    auto index = KeyIndex::make(o, d);
    index->build(keys);
    EXPECT_EQ(index->size(), E);
    EXPECT_EQ(index->state().sizes(), (std::vector<int64_t>{16, d}));
    auto found = index->search(q, k);
    EXPECT_EQ(found.scalar_type(), torch::kLong);
    EXPECT_TRUE(torch::equal(found, exact_top_k(q, keys, k, cosine))) << (cosine ? "cosine" : "dot");
  }
}

// A partial probe on keys with structure (queries near keys) keeps most of the exact top-k.
TEST(KeyIndexIvf, PartialProbeRecallOnQueriesNearKeys) {
  SKIP_WITHOUT_FAISS();
  const int64_t E = 2048, d = 64, N = 512, k = 2;
  auto keys = torch::nn::functional::normalize(randn(E, d, 3), torch::nn::functional::NormalizeFuncOptions().dim(1));
  auto pick = torch::arange(0, N) * 3 % E;
  auto q = keys.index_select(0, pick) + (0.4 / 8) * randn(N, d, 4);  // noise of norm ~0.4: cos(q, key) ~ 0.93
  auto o = options(KeySearch::kIvf);  // L = 4 sqrt(2048) = 181, probe 8
  auto index = KeyIndex::make(o, d);
  index->build(keys);
  EXPECT_EQ(index->state().size(0), 181);
  auto found = index->search(q, k);
  auto exact = exact_top_k(q, keys, k, true);
  const double top1 = (found.select(1, 0) == exact.select(1, 0)).to(torch::kDouble).mean().item<double>();
  const double r = recall(found, exact);
  RecordProperty("top1", std::to_string(top1));
  RecordProperty("recall_at_2", std::to_string(r));
  EXPECT_GT(top1, 0.97);  // the key a query is near
  EXPECT_GT(r, 0.6);      // the second is any of the random others: harder
}

TEST(KeyIndexHnsw, RecallOnRandomUnitKeys) {
  SKIP_WITHOUT_FAISS();
  const int64_t E = 4096, d = 64, N = 512, k = 2;
  auto keys = randn(E, d, 5);
  auto q = randn(N, d, 6);
  auto index = KeyIndex::make(options(KeySearch::kHnsw), d);  // M 32, efConstruction 40, efSearch 64
  index->build(keys);
  EXPECT_EQ(index->size(), E);
  const double r = recall(index->search(q, k), exact_top_k(q, keys, k, true));
  RecordProperty("recall_at_2", std::to_string(r));
  EXPECT_GT(r, 0.95);  // 0.996 here
}

// Same calls, same bits: two indexes, and one search under 1 and 2 threads (and the IVF
// k-means and HNSW insertion under 1 and 2 threads).
TEST(KeyIndex, DeterministicAcrossInstancesAndThreadCounts) {
  SKIP_WITHOUT_FAISS();
  const int64_t E = 3000, d = 32, N = 700, k = 3;
  auto keys = randn(E, d, 7);
  auto q = randn(N, d, 8);
  auto moved = torch::arange(0, E, 7);
  auto keys2 = keys.clone();
  keys2.index_add_(0, moved, 0.3 * randn(moved.size(0), d, 9));
  for (auto kind : {KeySearch::kIvf, KeySearch::kHnsw}) {
    auto o = options(kind);
    o.ivf_probe = 4;
    o.hnsw_ef_search = 16;  // a small beam: more room for any order effect to show
    auto run = [&](int threads) {
      return with_threads(threads, [&] {
        auto index = KeyIndex::make(o, d);
        index->build(keys);
        auto before = index->search(q, k);
        index->update(keys2, moved);
        return std::make_tuple(before, index->search(q, k), index->state());
      });
    };
    auto [a0, a1, as] = run(1);
    auto [b0, b1, bs] = run(2);
    auto [c0, c1, cs] = run(1);
    const auto name = some::choice_name(kind);
    EXPECT_TRUE(torch::equal(a0, c0) && torch::equal(a1, c1)) << name << ": two indexes, same calls";
    EXPECT_TRUE(torch::equal(a0, b0) && torch::equal(a1, b1)) << name << ": 1 vs 2 threads";
    EXPECT_TRUE(torch::equal(as, bs)) << name << ": state under 1 vs 2 threads";
    // One index, searched under 1 and 2 threads.
    auto index = KeyIndex::make(o, d);
    index->build(keys);
    auto s1 = with_threads(1, [&] { return index->search(q, k); });
    auto s2 = with_threads(2, [&] { return index->search(q, k); });
    EXPECT_TRUE(torch::equal(s1, s2)) << name;
  }
}

// update() is a pure function of (centres, keys): equal to restoring the centres over the new keys.
TEST(KeyIndexIvf, UpdateEqualsAFreshFillWithTheSameCentres) {
  SKIP_WITHOUT_FAISS();
  const int64_t E = 1500, d = 32, N = 600, k = 2;
  auto keys = randn(E, d, 10);
  auto q = randn(N, d, 11);
  auto o = options(KeySearch::kIvf);
  o.ivf_probe = 6;
  auto index = KeyIndex::make(o, d);
  index->build(keys);
  const auto centres = index->state();
  for (int step = 0; step < 3; ++step) {
    // Some keys move a little, some far (into other lists); a few listed twice.
    auto moved = torch::cat({torch::arange(step, E, 5), torch::arange(step, 40, 10)});
    auto delta = randn(moved.size(0), d, 20 + step) * (step == 1 ? 2.0 : 0.2);
    keys = keys.clone().index_add_(0, moved, delta);
    index->update(keys, moved);
    auto fresh = KeyIndex::make(o, d);
    fresh->restore(centres, keys);
    EXPECT_TRUE(torch::equal(index->state(), centres));
    EXPECT_TRUE(torch::equal(index->search(q, k), fresh->search(q, k))) << "step " << step;
    EXPECT_TRUE(torch::equal(index->search(keys, 1).view({-1}), torch::arange(E)))  // a key finds itself
        << "step " << step;
  }
  // An update that names no key changes nothing.
  auto before = index->search(q, k);
  index->update(keys, torch::empty({0}, torch::kLong));
  EXPECT_TRUE(torch::equal(before, index->search(q, k)));
}

TEST(KeyIndexIvf, RestoreChecksTheState) {
  SKIP_WITHOUT_FAISS();
  auto index = KeyIndex::make(options(KeySearch::kIvf), 8);
  auto keys = randn(100, 8, 12);
  EXPECT_THROW(index->restore(torch::zeros({4, 9}), keys), DataError);
  EXPECT_THROW(index->restore(torch::zeros({101, 8}), keys), DataError);
  index->restore(torch::Tensor(), keys);  // no state: a build
  EXPECT_EQ(index->size(), 100);
}

// hnsw_rebuild_every = 1: update() is a rebuild, i.e. the same as building on the new keys.
// R > 1: moved vectors in place, the graph kept; state() / restore() continues exactly.
TEST(KeyIndexHnsw, UpdateRebuildsOrMovesInPlaceAndResumesExactly) {
  SKIP_WITHOUT_FAISS();
  const int64_t E = 2000, d = 32, N = 400, k = 2;
  auto keys = randn(E, d, 13);
  auto q = randn(N, d, 14);
  auto moved = torch::arange(0, E, 3);
  auto step = [&](const torch::Tensor& K, int s) {
    return K.clone().index_add_(0, moved, 0.1 * randn(moved.size(0), d, 30 + s));
  };
  auto keys1 = step(keys, 1);

  auto rebuild = KeyIndex::make(options(KeySearch::kHnsw), d);
  rebuild->build(keys);
  rebuild->update(keys1, moved);
  EXPECT_EQ(rebuild->state().numel(), 0);  // nothing to checkpoint: a function of the keys
  auto built = KeyIndex::make(options(KeySearch::kHnsw), d);
  built->build(keys1);
  EXPECT_TRUE(torch::equal(rebuild->search(q, k), built->search(q, k)));

  auto o = options(KeySearch::kHnsw);
  o.hnsw_rebuild_every = 3;
  auto inplace = KeyIndex::make(o, d);
  inplace->build(keys);
  inplace->update(keys1, moved);
  EXPECT_GT(recall(inplace->search(q, k), exact_top_k(q, keys1, k, true)), 0.9);
  // Resume from the state after one update: the next two updates (the second rebuilds) agree.
  auto resumed = KeyIndex::make(o, d);
  resumed->restore(inplace->state(), keys1);
  EXPECT_TRUE(torch::equal(inplace->search(q, k), resumed->search(q, k)));
  auto K = keys1;
  for (int s = 2; s <= 3; ++s) {
    K = step(K, s);
    inplace->update(K, moved);
    resumed->update(K, moved);
    EXPECT_TRUE(torch::equal(inplace->search(q, k), resumed->search(q, k))) << "update " << s;
    EXPECT_TRUE(torch::equal(inplace->state(), resumed->state())) << "update " << s;
  }
  // The third update (R = 3) rebuilt: the same as a build on those keys.
  auto fresh = KeyIndex::make(o, d);
  fresh->build(K);
  EXPECT_TRUE(torch::equal(inplace->search(q, k), fresh->search(q, k)));
  // A state over other keys is refused.
  EXPECT_THROW(resumed->restore(inplace->state(), keys), DataError);
}

TEST(KeyIndex, TorchKeepsItsOwnBlasNextToFaiss) {
  // FAISS links Debian's reference BLAS; the process's sgemm_ must still be the one bundled in
  // libtorch_cpu.so (CMakeLists.txt, some_faiss), or every Torch GEMM runs ~10x slower.
#ifndef SOME_HAVE_FAISS
  GTEST_SKIP() << "built without FAISS";
#else
  void* sgemm = dlsym(RTLD_DEFAULT, "sgemm_");
  ASSERT_NE(sgemm, nullptr);
  Dl_info info{};
  ASSERT_NE(dladdr(sgemm, &info), 0);
  EXPECT_NE(std::string(info.dli_fname).find("libtorch_cpu"), std::string::npos)
      << "sgemm_ resolves to " << info.dli_fname;
#endif
}
