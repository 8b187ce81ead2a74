#include "src/model/some_layer.h"

namespace some::model {

SoMELayer::SoMELayer(const ModelOptions& opts, int64_t layer, const parallel::ParallelState* parallel)
    : RoutedFFN(opts, layer, parallel, ExpertShardImpl::Kind::kFrozen) {
  set_router(std::make_unique<KeyStoreRouter>(opts, layer, *this));
}

}  // namespace some::model
