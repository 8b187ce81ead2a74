#include "src/train/adapt.h"

#include <algorithm>
#include <filesystem>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "checkpoints/tensor_file.h"
#include "common/check.h"
#include "common/errors.h"
#include "common/h5.h"
#include "src/model/key_store.h"
#include "src/model/routed_ffn.h"
#include "src/model/tensor_names.h"

namespace some::train {

namespace fs = std::filesystem;

namespace {

// The SoME layers (those with a key store) and their block indices; ConfigError naming
// model.ffn when there is none (`what` says which option asked).
std::vector<std::pair<int64_t, model::RoutedFFN*>> some_layers(model::Transformer& model, const std::string& what) {
  std::vector<std::pair<int64_t, model::RoutedFFN*>> out;
  auto layers = model->routed_layers();
  auto indices = model->routed_layer_indices();
  for (size_t l = 0; l < layers.size(); ++l) {
    if (layers[l]->key_store()) out.emplace_back(indices[l], layers[l]);
  }
  SOME_REQUIRE(!out.empty(), ConfigError,
               "{} needs SoME layers (keys to adapt), but model.ffn = '{}' has no key store", what,
               choice_name(model->options().ffn));
  return out;
}

std::string keys_name(int64_t layer) { return model::names::analytics(layer, "keys"); }
std::string usage_name(int64_t layer) { return model::names::analytics(layer, "usage"); }

// Rows [N - rows, N) of a routing (N, ...); rows < 0: all of it.
model::Routing last_rows(const model::Routing& r, int64_t rows) {
  const auto n = r.indices.size(0);
  if (rows < 0 || rows >= n) return r;
  auto tail = [&](const torch::Tensor& t) { return t.defined() ? t.narrow(0, n - rows, rows) : t; };
  model::Routing out = r;
  out.indices = tail(r.indices);   // (rows, k)
  out.gates = tail(r.gates);       // (rows, k)
  out.scores = tail(r.scores);     // (rows, k)
  out.queries = tail(r.queries);   // (rows, d)
  return out;
}

}  // namespace

OnlineAdapter::OnlineAdapter(model::Transformer& model, AdaptOptions opts) : opts_(opts) {
  SOME_REQUIRE(opts_.every >= 1, ConfigError, "--adapt-every {} is not allowed: expected an integer >= 1", opts_.every);
  SOME_REQUIRE(!model->options().router.freeze_keys, ConfigError,
               "--adapt moves keys by Knowledge Gravity, but router.freeze_keys = true skips it; "
               "--set router.freeze_keys=false to adapt");
  for (auto [index, layer] : some_layers(model, "--adapt")) {
    layer_index_.push_back(index);
    layers_.push_back(layer);
  }
}

void OnlineAdapter::read(int64_t rows) {
  torch::NoGradGuard no_grad;
  for (auto* layer : layers_) {
    // The routing the forward just used, with the keys it was scored with: the same statistics a
    // training forward accumulates (KeyStore::accumulate), for the chosen tokens only.
    auto r = last_rows(layer->last_routing(), rows);
    layer->router().observe(r);
    if (layer == layers_.front()) tokens_read_ += r.indices.size(0);
  }
  if (++pending_ >= opts_.every) update();
}

void OnlineAdapter::flush() {
  if (pending_ > 0) update();
}

void OnlineAdapter::update() {
  ++updates_;
  for (size_t l = 0; l < layers_.size(); ++l) {
    // Seeded like the trainer's after-step update, with the update index as the step.
    model::AfterStep context;
    context.layer = layer_index_[l];
    context.step = updates_;
    context.seed = opts_.seed;
    layers_[l]->router().adapt(context);
  }
  pending_ = 0;
}

void check_keys_path(const std::string& path, const std::string& protected_dir) {
  if (protected_dir.empty()) return;
  auto dir = fs::weakly_canonical(protected_dir);
  // A step_* directory of a run: the whole RUN/checkpoints folder (latest, the other steps).
  if (dir.parent_path().filename() == "checkpoints") dir = dir.parent_path();
  const auto file = fs::weakly_canonical(path);
  const auto inside = std::mismatch(dir.begin(), dir.end(), file.begin(), file.end()).first == dir.end();
  SOME_REQUIRE(!inside, ConfigError,
               "--save-keys {}: inside the checkpoint '{}', which is never written; choose a path outside it", path,
               dir.string());
}

void save_keys(const std::string& path, model::Transformer& model, const std::string& protected_dir) {
  check_keys_path(path, protected_dir);
  checkpoints::TensorMap tensors;
  for (auto [index, layer] : some_layers(model, "--save-keys")) {
    tensors[keys_name(index)] = layer->key_store()->keys();
    tensors[usage_name(index)] = layer->key_store()->usage();
  }
  checkpoints::write_tensors(path, tensors, {{"content", "adapted SoME keys and usage (some eval --adapt)"}});
}

void load_keys(const std::string& path, model::Transformer& model) {
  auto layers = some_layers(model, "--keys");
  h5::quiet();
  auto file = h5::open_file(path);
  // Every layer in the file with keys must be a SoME layer of this model.
  const std::string group_name(model::names::kAnalyticsLayers);
  if (h5::has_link(file, group_name)) {
    std::vector<std::string> names;
    auto collect = [](hid_t, const char* name, const H5L_info_t*, void* data) -> herr_t {
      static_cast<std::vector<std::string>*>(data)->push_back(name);
      return 0;
    };
    h5::Id group(SOME_HDF5_ID(H5Gopen2(file, group_name.c_str(), H5P_DEFAULT)), H5Gclose);
    SOME_CHECK_HDF5(H5Literate(group, H5_INDEX_NAME, H5_ITER_INC, nullptr, collect, &names));
    for (const auto& name : names) {
      const bool known = std::any_of(layers.begin(), layers.end(),
                                     [&](const auto& l) { return std::to_string(l.first) == name; });
      const auto keys = group_name + "/" + name + "/keys";
      SOME_REQUIRE(known || !h5::has_link(file, keys), DataError,
                   "keys file '{}' has '{}', but layer {} of this model is not a SoME layer", path, keys, name);
    }
  }
  // Read and check everything before changing anything: a bad file leaves the model as it was.
  std::vector<std::pair<torch::Tensor, torch::Tensor>> read;  // (keys, usage) per SoME layer
  for (auto [index, layer] : layers) {
    auto* store = layer->key_store();
    auto keys = checkpoints::read_tensor(file, keys_name(index), path);
    auto usage = checkpoints::read_tensor(file, usage_name(index), path);
    SOME_REQUIRE(keys.sizes() == store->keys().sizes(), DataError,
                 "keys file '{}': tensor '{}' has shape [{}], the model expects [{}]", path, keys_name(index),
                 fmt::join(keys.sizes(), ", "), fmt::join(store->keys().sizes(), ", "));
    SOME_REQUIRE(usage.sizes() == store->usage().sizes(), DataError,
                 "keys file '{}': tensor '{}' has shape [{}], the model expects [{}]", path, usage_name(index),
                 fmt::join(usage.sizes(), ", "), fmt::join(store->usage().sizes(), ", "));
    read.emplace_back(keys, usage);
  }
  for (size_t l = 0; l < layers.size(); ++l) layers[l].second->router().load_keys(read[l].first, read[l].second);
}

}  // namespace some::train
