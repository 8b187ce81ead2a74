#pragma once
// Keys that adapt while reading (docs/design.md §3, "Keys that adapt while reading"): Knowledge
// Gravity applied at inference time to the routing statistics of the text being read. No
// gradient, no optimizer: only the keys and usage of the SoME layers move; the experts, query
// networks and every other weight stay bit-identical, and nothing is written unless asked
// (save_keys to a new file).
//
// Prequential protocol: a caller runs a forward, then read() feeds that forward's routing to the
// key stores; every `every` reads the statistics read since the last update make ONE update
// (KeyStore::apply_gravity). A token's own routing therefore never moves the keys it was scored
// with. One process only (the statistics are not reduced over ranks).
//
// Legend: N tokens of the latest forward, d model width, E experts, k = top_k.
#include <cstdint>
#include <string>
#include <vector>

#include "src/model/transformer.h"

namespace some::model {
class RoutedFFN;
}

namespace some::train {

struct AdaptOptions {
  int64_t every = 1;  // reads (eval micro-batches, generated tokens) per Knowledge Gravity update
  uint64_t seed = 0;  // train.seed: with (update, layer) seeds the dead-key restart, as in training
};

class OnlineAdapter {
 public:
  // ConfigError naming model.ffn when the model has no SoME layer (nothing has keys), or naming
  // router.freeze_keys when it is on (no key would move), or when every < 1.
  OnlineAdapter(model::Transformer& model, AdaptOptions opts);

  // The routing of the latest forward's last `rows` tokens (all of them: -1) of every SoME layer
  // feeds the statistics; counts one read, and after `every` reads applies one update.
  void read(int64_t rows = -1);
  // One update from whatever was read since the last update (nothing read: no update).
  void flush();

  int64_t updates() const { return updates_; }
  int64_t tokens_read() const { return tokens_read_; }

 private:
  void update();

  AdaptOptions opts_;
  std::vector<model::RoutedFFN*> layers_;  // the SoME layers
  std::vector<int64_t> layer_index_;       // their block indices (seed the restart)
  int64_t pending_ = 0;                    // reads since the last update
  int64_t updates_ = 0, tokens_read_ = 0;
};

// Every SoME layer's keys (E, d) and usage (E,) -> a new HDF5 file, as `layers/L/keys` and
// `layers/L/usage` (the names of the analytics files, docs/design.md §9). Refuses a path inside
// `protected_dir` (the checkpoint a run was loaded from, and when that is a RUN/checkpoints/step_*
// directory the whole RUN/checkpoints: they are never written).
void save_keys(const std::string& path, model::Transformer& model, const std::string& protected_dir = "");
// The check save_keys makes first, for commands to fail before any work: ConfigError when
// `path` lies inside `protected_dir`.
void check_keys_path(const std::string& path, const std::string& protected_dir);
// The reverse: such a file (or an analytics file) into the model's key stores, in place. A
// DataError names the file and the missing or mis-shaped tensor, or a layer the model has no
// key store for.
void load_keys(const std::string& path, model::Transformer& model);

}  // namespace some::train
