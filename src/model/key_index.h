#pragma once
// Approximate nearest-neighbour search over one SoME layer's keys (router.search, issue 16): the
// k keys of highest score for each query without scoring all E of them. CPU, fp32, FAISS
// (libfaiss-dev); a build without FAISS has the interface, and make() says what is missing.
//
// Legend: N queries, d key width, E keys (experts), k = top_k, L = IVF lists (k-means centres).
//
// What is indexed. Cosine scores (router.score = cosine): the L2-normalised keys, searched with
// L2-normalised queries by inner product — the same ranking as normalize(q) . normalize(K)^T.
// Dot scores: the raw keys by inner product. Normalisation is a fixed sequential loop (fp64 sum of
// squares, x / max(|x|, 1e-12) as F::normalize), so every rank and thread count computes the
// same bits.
//
// The two index types, and how they follow Knowledge Gravity (keys move after every step):
//
// IVF (faiss::IndexIVFFlat, inner product). L ~ 4 sqrt(E) centres, trained once per build() by
// spherical k-means (faiss::Clustering, fixed seed, 10 iterations); a key lives in the list of its
// highest-scoring centre; a query scans the keys of its `ivf_probe` best centres exactly.
//   update(): the centres stay; each moved key is re-assigned, and every list that lost or gained a
//   key is rewritten as "its keys in ascending id order" — exactly what a fresh fill gives. So the
//   index content is a pure function of (centres, current keys): update() == restore(centres,
//   keys), bit for bit, and a resume that restores the centres (state()) routes exactly as the
//   run it continues. Cost: O(M L d) for the re-assignment plus a copy of the touched lists.
//   Centres do not follow the keys; as the keys drift the lists become uneven (slower, and recall
//   at a fixed probe can fall): call build() again to re-train them (a deterministic function
//   of the keys then).
//   Assignments (keys to centres at fill time, queries to centres at search time) are computed
//   here, one vector at a time with a fixed-order 16-lane kernel (the same bits on every x86-64
//   CPU and ~9x faster than the generic-build FAISS kernel), ties to the lower centre —
//   not with FAISS's own assign(), whose BLAS path is taken or not depending on the batch size
//   (and, inside IndexIVF::search, on the thread count), which can flip a near tie. The scan
//   itself is IndexIVF::search_preassigned: one query per thread, so the result does not depend
//   on the thread count.
//
// Speed. Debian's libfaiss is a generic x86-64 build: its inner-product kernel runs ~2.3 GMAC/s,
// MKL's (exact search) ~30. Every inner product here therefore goes through one kernel of ours
// (key_index.cpp inner_products: 16 fixed lanes, an AVX2 clone, ~20 GMAC/s, the same bits on every
// x86-64 CPU), plugged into FAISS's two extension points: an InvertedListScanner for the IVF scan
// and the flat storage's DistanceComputer for HNSW. Written against FAISS 1.7.3 (Debian 12).
//
// HNSW (faiss::IndexHNSWFlat, inner product, M links, efConstruction, efSearch). A graph cannot
// delete or move a node in FAISS, so update() does one of two things (hnsw_rebuild_every = R):
//   R = 1 (default): rebuild from scratch — a pure function of the current keys (levels drawn
//     from faiss::RandomGenerator(seed), insertion single-threaded in id order: FAISS's
//     parallel insertion takes locks in whatever order threads arrive and is not reproducible).
//     Nothing to checkpoint. Cost: a full single-threaded build per step (see
//     bench/bench_key_search.cpp) — expensive at large E.
//   R > 1: the moved keys' vectors are overwritten in place and the graph is kept (its links were
//     chosen for the old positions: a small Knowledge Gravity step leaves it a good graph), and
//     every R-th update that moves a key rebuilds it. Cost: O(M d) per step. The index depends on
//     the history since the last rebuild, so state() is the serialised FAISS index (about
//     E (4 d + 8 M) bytes) plus the update counter.
//
// Determinism: for the same sequence of build / update / restore calls with the same tensors the
// index and every search result are identical bit for bit, whatever the OpenMP thread count
// (search parallelises over queries only; insertion runs on one thread; k-means parallelises over
// centres, each summing its points in a fixed order, and draws with a fixed seed). k-means assigns
// points by one BLAS sgemm per iteration: Debian's reference BLAS gives the same bits on every
// CPU; with a BLAS that dispatches per CPU (OpenBLAS, MKL) ranks on different CPU types should
// take one rank's centres (state() / restore()) rather than train their own. Results are
// best first by the index's own inner product, ties to the lower id. A search that finds fewer
// than k keys (IVF lists holding fewer than k keys, E < k) fills the rest of the row with -1.
#include <cstdint>
#include <memory>
#include <string>

#include <torch/torch.h>

namespace some::model {

// router.search
enum class KeySearch { kExact, kHnsw, kIvf };
KeySearch parse_key_search(const std::string& name);  // ConfigError naming router.search otherwise
const char* key_search_name(KeySearch kind);
// Whether this build can make an index of `kind` (kExact: always; hnsw / ivf: built with FAISS).
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
