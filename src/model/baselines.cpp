#include "src/model/baselines.h"

namespace some::model {

MoELayer::MoELayer(const ModelOptions& opts, int64_t layer, const parallel::ParallelState* parallel)
    : RoutedFFN(opts, layer, parallel, ExpertShardImpl::Kind::kTrainable) {
  set_router(std::make_unique<LearnedGateRouter>(opts, *this));
}

HashLayer::HashLayer(const ModelOptions& opts, int64_t layer, const parallel::ParallelState* parallel)
    : RoutedFFN(opts, layer, parallel, ExpertShardImpl::Kind::kTrainable) {
  set_router(std::make_unique<HashRouter>(opts, layer));
}

}  // namespace some::model
