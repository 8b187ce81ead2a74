#pragma once
// Global tensor names (docs/design.md §7): the one place that builds, parses and classifies them.
// Checkpoints, the trainer, the expert library and `some checkpoint` all go through here, so a
// name's meaning is decided once.
//
//   layers.L.<ffn>.<module path>              block L's feed-forward; <ffn> = some | moe | hash | dense
//   layers.L.<ffn>.experts.w_down | .w_up     a routed layer's stacked experts (this rank's share)
//   layers.L.<ffn>.experts.I.w_down | .w_up   expert I alone: (h, d) | (d, h), whichever rank holds it
//   layers.L.some.query.*                     the SoME query network
//   layers.L.some.keys | .usage               the key store
//   optim.exp_avg.<name> | optim.exp_avg_sq.<name> | optim.step.<name>   AdamW state of <name>
//   rng.cpu                                   the CPU generator
// Inside the HDF5 analytics files (RUN/analytics/step_*.h5) and keys files (--save-keys), per
// routed layer L (docs/design.md §9):
//   layers/L/keys | usage | counts | coactivation | coactivation_pairs
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace some::model::names {

// What a tensor is, by its name (the summary of `some checkpoint info`).
enum class Kind {
  kTrainableWeight,   // dense weights, query networks, gates, norms
  kKeyStore,          // keys and usage
  kFrozenExpert,      // the SoME expert library
  kTrainableExpert,   // the baselines' experts
  kOptimizerState,
  kRngState,
};
Kind kind(const std::string& name);
std::string_view describe(Kind kind);  // "trainable weights", "frozen experts", ...

// `layers.L.<ffn>.experts.I.<matrix>`.
std::string expert(int64_t layer, std::string_view ffn, int64_t expert, std::string_view matrix);
// `optim.<state>.<name>`; state: exp_avg | exp_avg_sq | step.
std::string optimizer_state(std::string_view state, const std::string& name);
inline constexpr std::string_view kRngCpu = "rng.cpu";
// `layers/L/<what>` of an analytics or keys file; what: keys | usage | counts | coactivation |
// coactivation_pairs. analytics_layers = "layers": the group that holds them.
std::string analytics(int64_t layer, std::string_view what);
inline constexpr std::string_view kAnalyticsLayers = "layers";

// A stacked expert tensor `layers.L.<ffn>.experts.<matrix>` split into its parts.
struct StackedExperts {
  std::string prefix;  // "layers.L.<ffn>.experts."
  int64_t layer = 0;
  std::string matrix;  // w_down | w_up
};
std::optional<StackedExperts> parse_stacked_experts(const std::string& name);

// A tensor of a routed layer's experts, stacked or one expert's (`layers.L.<ffn>.experts.*`).
bool is_expert(const std::string& name);
// One expert's weights or the optimizer state that follows them (`...experts.I.*`): sharded over
// the expert-parallel group, written once per expert. Everything else is replicated (the step
// counter of a stacked expert parameter too).
bool is_sharded(const std::string& name);
// A frozen SoME library expert: never changes, so it may live in a shared library file.
bool is_frozen_expert(const std::string& name);
bool is_optimizer_state(const std::string& name);
// A tensor of a SoME query network (initialised like nn.Linear, not like the dense weights).
bool is_query_network(const std::string& name);
// Buffers recomputed from the config (the rotary tables) are not state: never saved.
bool is_recomputed(const std::string& name);

}  // namespace some::model::names
