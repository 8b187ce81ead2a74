#include "src/model/tensor_names.h"

#include <vector>

#include <fmt/format.h>

namespace some::model::names {

namespace {
constexpr std::string_view kOptim = "optim.", kRng = "rng.", kLayers = "layers.";

std::vector<std::string_view> components(std::string_view name) {
  std::vector<std::string_view> out;
  for (size_t start = 0;;) {
    const auto dot = name.find('.', start);
    out.push_back(name.substr(start, dot == std::string_view::npos ? dot : dot - start));
    if (dot == std::string_view::npos) return out;
    start = dot + 1;
  }
}

// The model tensor a name is about: the name itself, or what its optimizer state follows.
std::string_view subject(std::string_view name) {
  if (!name.starts_with(kOptim)) return name;
  const auto dot = name.find('.', kOptim.size());
  return dot == std::string_view::npos ? std::string_view() : name.substr(dot + 1);
}

bool all_digits(std::string_view s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string_view::npos;
}

// Component `index` of layers.L.<ffn>.<...>, or "" when the name is shorter or not a layer's.
std::string_view layer_component(std::string_view name, size_t index) {
  if (!name.starts_with(kLayers)) return {};
  auto parts = components(name);
  return index < parts.size() ? parts[index] : std::string_view();
}
}  // namespace

std::string expert(int64_t layer, std::string_view ffn, int64_t expert, std::string_view matrix) {
  return fmt::format("layers.{}.{}.experts.{}.{}", layer, ffn, expert, matrix);
}

std::string analytics(int64_t layer, std::string_view what) {
  return std::string(kAnalyticsLayers) + "/" + std::to_string(layer) + "/" + std::string(what);
}

std::string optimizer_state(std::string_view state, const std::string& name) {
  return fmt::format("{}{}.{}", kOptim, state, name);
}

std::optional<StackedExperts> parse_stacked_experts(const std::string& name) {
  auto parts = components(name);  // layers L <ffn> experts <matrix>
  if (parts.size() != 5 || parts[0] != "layers" || !all_digits(parts[1]) || parts[3] != "experts" ||
      (parts[4] != "w_down" && parts[4] != "w_up")) {
    return std::nullopt;
  }
  return StackedExperts{name.substr(0, name.size() - parts[4].size()), std::stoll(std::string(parts[1])),
                        std::string(parts[4])};
}

bool is_expert(const std::string& name) { return layer_component(name, 3) == "experts"; }

bool is_sharded(const std::string& name) {
  const auto model_tensor = subject(name);
  return layer_component(model_tensor, 3) == "experts" && all_digits(layer_component(model_tensor, 4));
}

bool is_frozen_expert(const std::string& name) {
  return !is_optimizer_state(name) && is_expert(name) && layer_component(name, 2) == "some";
}

bool is_optimizer_state(const std::string& name) { return name.starts_with(kOptim); }

bool is_query_network(const std::string& name) {
  return layer_component(name, 2) == "some" && layer_component(name, 3) == "query";
}

bool is_recomputed(const std::string& name) {
  const auto last = components(name).back();
  return last == "rope_cos" || last == "rope_sin";
}

Kind kind(const std::string& name) {
  if (is_optimizer_state(name)) return Kind::kOptimizerState;
  if (name.starts_with(kRng)) return Kind::kRngState;
  if (is_frozen_expert(name)) return Kind::kFrozenExpert;
  if (is_expert(name)) return Kind::kTrainableExpert;
  const auto last = components(name).back();
  if (layer_component(name, 2) == "some" && (last == "keys" || last == "usage")) return Kind::kKeyStore;
  return Kind::kTrainableWeight;
}

std::string_view describe(Kind kind) {
  switch (kind) {
    case Kind::kTrainableWeight: return "trainable weights";
    case Kind::kKeyStore: return "key stores and usage";
    case Kind::kFrozenExpert: return "frozen experts";
    case Kind::kTrainableExpert: return "trainable experts";
    case Kind::kOptimizerState: return "optimizer state";
    case Kind::kRngState: return "RNG state";
  }
  return "?";
}

}  // namespace some::model::names
