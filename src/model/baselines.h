#pragma once
// The routed baselines SoME is measured against (docs/design.md §10), in the same trainer and
// sharded the same way: a learned-gate MoE and hash routing. Both train their experts; only the
// router differs from SoME's.
#include <cstdint>

#include <torch/torch.h>

#include "parallel/parallel_state.h"
#include "src/model/hash_router.h"
#include "src/model/learned_gate_router.h"
#include "src/model/options.h"
#include "src/model/routed_ffn.h"

namespace some::model {

// Learned gate (learned_gate_router.h) in front of trainable experts.
class MoELayer final : public RoutedFFN {
 public:
  MoELayer(const ModelOptions& opts, int64_t layer, const parallel::ParallelState* parallel = nullptr);
  LearnedGateRouter& gate_router() { return static_cast<LearnedGateRouter&>(router()); }
};

// The fixed hash table (hash_router.h) in front of trainable experts.
class HashLayer final : public RoutedFFN {
 public:
  HashLayer(const ModelOptions& opts, int64_t layer, const parallel::ParallelState* parallel = nullptr);
};

}  // namespace some::model
