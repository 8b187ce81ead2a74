#pragma once
// SoME layer (docs/design.md §1): the key-store router (query network -> cosine scores against
// the plastic keys -> top-k, gates) in front of a library of frozen experts. Knowledge Gravity
// statistics accumulate while `collect_stats` is on; the keys move in after_step().
//
// Legend: N tokens, d model width, E experts, k = top_k.
#include <cstdint>

#include <torch/torch.h>

#include "parallel/parallel_state.h"
#include "src/model/key_store_router.h"
#include "src/model/options.h"
#include "src/model/routed_ffn.h"

namespace some::model {

class SoMELayer final : public RoutedFFN {
 public:
  // `parallel` (may be null: one process) decides which experts this rank holds and how tokens
  // reach them; it must outlive the layer.
  SoMELayer(const ModelOptions& opts, int64_t layer, const parallel::ParallelState* parallel = nullptr);
  KeyStoreRouter& some_router() { return static_cast<KeyStoreRouter&>(router()); }
};

}  // namespace some::model
