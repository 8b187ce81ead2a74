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
#include "src/model/key_index_faiss.h"
#endif

namespace some::model {

using torch::Tensor;

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
                                choice_name(options.kind)));
}
#else  // SOME_HAVE_FAISS

std::unique_ptr<KeyIndex> KeyIndex::make(const KeyIndexOptions& options, int64_t d) {
  if (options.kind == KeySearch::kExact) return nullptr;
  check_options(options, d);
  if (options.kind == KeySearch::kIvf) return key_index_detail::make_ivf_index(options, d);
  return key_index_detail::make_hnsw_index(options, d);
}

#endif  // SOME_HAVE_FAISS

}  // namespace some::model
