#pragma once
// Approximate nearest-neighbour search over one SoME layer's keys (router.search): the k keys of
// highest score for each query without scoring all E of them. CPU, fp32, FAISS (libfaiss-dev); a
// build without FAISS has the interface, and make() says what is missing. How the indexes follow
// Knowledge Gravity, why every result is the same bits at any thread count, and the kernel:
// docs/design.md §3 "Key search". The factory is key_index.cpp; IVF and HNSW are
// key_index_ivf.cpp and key_index_hnsw.cpp over key_index_kernel.cpp.
//
// Legend: N queries, d key width, E keys (experts), k = top_k, L = IVF lists (k-means centres).
#include <cstdint>
#include <memory>
#include <string>

#include <torch/torch.h>

#include "src/model/options.h"

namespace some::model {

// router.search (KeySearch: src/model/options.h). Whether this build can make an index of `kind` (kExact: always; hnsw / ivf: built with FAISS).
bool key_search_available(KeySearch kind);

// L, the IVF lists for E keys: `ivf_lists`, or round(4 sqrt(E)) (at least 1) when it is 0;
// ConfigError naming router.ivf_lists when it exceeds E.
int64_t ivf_list_count(int64_t ivf_lists, int64_t E);

struct KeyIndexOptions {
  KeySearch kind = KeySearch::kExact;
  bool cosine = true;                 // router.score = cosine: index normalised keys
  int64_t ivf_lists = 0;              // L; 0: round(4 sqrt(E)), at most E
  int64_t ivf_probe = 8;              // lists scanned per query (at most L)
  int64_t ivf_iterations = 10;        // k-means iterations per build()
  int64_t hnsw_m = 32;                // links per node
  int64_t hnsw_ef_search = 64;        // candidate list at search (at least k)
  int64_t hnsw_ef_construction = 40;  // candidate list at insertion
  int64_t hnsw_rebuild_every = 1;     // 1: rebuild at every update; R > 1: in place, rebuild every R-th
  uint64_t seed = 0;                  // k-means sampling and splits, HNSW levels
};

// One layer's index over its keys. Not thread-safe for concurrent build/update; search is const.
class KeyIndex {
 public:
  virtual ~KeyIndex() = default;
  // An index of options.kind for keys of width d. kExact: nullptr (exact search is the caller's
  // scores-against-every-key path, route() in key_store.h; there is nothing to index). hnsw / ivf
  // in a build without FAISS: ConfigError "router.search = <kind> needs a build with FAISS".
  // Options out of range: ConfigError naming the router.* key.
  static std::unique_ptr<KeyIndex> make(const KeyIndexOptions& options, int64_t d);

  // keys (E, d), any device / float dtype: a new index from scratch (IVF: new centres).
  virtual void build(const torch::Tensor& keys) = 0;
  // keys (E, d) after a step, moved (M,) int64 ids whose key changed (any order, duplicates
  // allowed); E must not change. Keys not in `moved` must be unchanged since the last call.
  virtual void update(const torch::Tensor& keys, const torch::Tensor& moved) = 0;
  // q (N, d) -> (N, k) int64 CPU ids, best first; -1 where fewer than k keys were found.
  virtual torch::Tensor search(const torch::Tensor& q, int64_t k) const = 0;
  virtual int64_t size() const = 0;  // E indexed (0 before build)

  // What a checkpoint must hold to resume exactly: IVF the centres (L, d) fp32; HNSW with
  // hnsw_rebuild_every = 1 an empty tensor (the index is a function of the keys), else the
  // serialised index (bytes,) uint8. restore(state(), keys) with the keys of that moment gives
  // the same index (and the same later behaviour) as the one state() was taken from; an
  // undefined or empty state is build(keys). A state that does not fit: DataError.
  virtual torch::Tensor state() const = 0;
  virtual void restore(const torch::Tensor& state, const torch::Tensor& keys) = 0;
};

}  // namespace some::model
