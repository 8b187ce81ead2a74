#pragma once
// Seeded initialisation of the frozen expert library and the keys (docs/design.md §2). Each expert and
// key draws from its own generator seeded by (seed, layer, expert), so its weights never depend
// on how experts are sharded across ranks.
#include <cstdint>
#include <string>

#include <torch/torch.h>

#include "src/model/options.h"

namespace some::model {

enum class InitStream : uint64_t { kExpertDown = 1, kExpertUp = 2, kKey = 3, kDense = 4 };

// A generator seeded by hash_u64(seed, layer, expert, stream) (common/random.h).
at::Generator seeded_generator(uint64_t seed, int64_t layer, int64_t expert, InitStream stream);

// One weight matrix (rows, cols) = (fan_out, fan_in) by expert.init: default | orthogonal | sparse.
torch::Tensor init_expert_matrix(int64_t rows, int64_t cols, ExpertInit method, double sparsity,
                                 at::Generator& gen);

// E unit-length keys (E, d), key i from its own generator.
torch::Tensor init_keys(int64_t E, int64_t d, uint64_t seed, int64_t layer);

}  // namespace some::model
