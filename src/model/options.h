#pragma once
// Option structs of the model, filled by the launcher from TOML (docs/design.md §1–§4, §10). Library
// code never reads TOML; every field here is documented in docs/config.md (generated from the schema).
#include <cstdint>
#include <string>

#include "common/choice.h"

namespace some::model {

// Every choice-valued option: its enum and, in the Choices table beside it, the names the config
// accepts (common/choice.h). Adding a value: the enum, its table row, the code that uses it.
enum class FfnKind { kSome, kDense, kMoe, kHash };          // model.ffn
enum class RoutedLayers { kAll, kEveryOther };              // model.routed_layers
enum class InitParts { kAll, kBackbone, kFfn };             // model.init_parts
enum class UnitChoice { kFirst, kMagnitude, kCluster };     // model.init_units
enum class QueryNet { kLinear, kMlp };                      // router.query
enum class ScoreFunction { kCosine, kDot };                 // router.score
enum class Scale { kFixed, kLearnable };                    // router.gate_scale, expert.output_scale
enum class RouterBalance { kNone, kBias };                  // router.balance
enum class KeyInit { kRandom, kData };                      // router.key_init
enum class KeySearch { kExact, kHnsw, kIvf };               // router.search
enum class ExpertInit { kDefault, kOrthogonal, kSparse };   // expert.init
enum class Activation { kGelu, kSilu, kRelu };              // expert.activation
enum class ExpertCompute { kAuto, kLoop, kGrouped };        // expert.compute
enum class UsageTracking { kEma, kCumulative };             // gravity.usage
enum class PeerStats { kAuto, kCoactivation, kPeerSum };    // gravity.peer_stats
enum class MoEBalance { kAuxLoss, kBias, kNone };           // moe.balance

}  // namespace some::model

namespace some {
template <> struct Choices<model::FfnKind> {
  static constexpr Choice<model::FfnKind> values[] = {
      {"some", model::FfnKind::kSome}, {"dense", model::FfnKind::kDense},
      {"moe", model::FfnKind::kMoe}, {"hash", model::FfnKind::kHash}};
};
template <> struct Choices<model::RoutedLayers> {
  static constexpr Choice<model::RoutedLayers> values[] = {
      {"all", model::RoutedLayers::kAll}, {"every_other", model::RoutedLayers::kEveryOther}};
};
template <> struct Choices<model::InitParts> {
  static constexpr Choice<model::InitParts> values[] = {
      {"all", model::InitParts::kAll}, {"backbone", model::InitParts::kBackbone}, {"ffn", model::InitParts::kFfn}};
};
template <> struct Choices<model::UnitChoice> {
  static constexpr Choice<model::UnitChoice> values[] = {{"first", model::UnitChoice::kFirst},
                                                         {"magnitude", model::UnitChoice::kMagnitude},
                                                         {"cluster", model::UnitChoice::kCluster}};
};
template <> struct Choices<model::QueryNet> {
  static constexpr Choice<model::QueryNet> values[] = {{"linear", model::QueryNet::kLinear},
                                                       {"mlp", model::QueryNet::kMlp}};
};
template <> struct Choices<model::ScoreFunction> {
  static constexpr Choice<model::ScoreFunction> values[] = {{"cosine", model::ScoreFunction::kCosine},
                                                            {"dot", model::ScoreFunction::kDot}};
};
template <> struct Choices<model::Scale> {
  static constexpr Choice<model::Scale> values[] = {{"fixed", model::Scale::kFixed},
                                                    {"learnable", model::Scale::kLearnable}};
};
template <> struct Choices<model::RouterBalance> {
  static constexpr Choice<model::RouterBalance> values[] = {{"none", model::RouterBalance::kNone},
                                                            {"bias", model::RouterBalance::kBias}};
};
template <> struct Choices<model::KeyInit> {
  static constexpr Choice<model::KeyInit> values[] = {{"random", model::KeyInit::kRandom},
                                                      {"data", model::KeyInit::kData}};
};
template <> struct Choices<model::KeySearch> {
  static constexpr Choice<model::KeySearch> values[] = {
      {"exact", model::KeySearch::kExact}, {"hnsw", model::KeySearch::kHnsw}, {"ivf", model::KeySearch::kIvf}};
};
template <> struct Choices<model::ExpertInit> {
  static constexpr Choice<model::ExpertInit> values[] = {{"default", model::ExpertInit::kDefault},
                                                         {"orthogonal", model::ExpertInit::kOrthogonal},
                                                         {"sparse", model::ExpertInit::kSparse}};
};
template <> struct Choices<model::Activation> {
  static constexpr Choice<model::Activation> values[] = {
      {"gelu", model::Activation::kGelu}, {"silu", model::Activation::kSilu}, {"relu", model::Activation::kRelu}};
};
template <> struct Choices<model::ExpertCompute> {
  static constexpr Choice<model::ExpertCompute> values[] = {{"auto", model::ExpertCompute::kAuto},
                                                            {"loop", model::ExpertCompute::kLoop},
                                                            {"grouped", model::ExpertCompute::kGrouped}};
};
template <> struct Choices<model::UsageTracking> {
  static constexpr Choice<model::UsageTracking> values[] = {{"ema", model::UsageTracking::kEma},
                                                            {"cumulative", model::UsageTracking::kCumulative}};
};
template <> struct Choices<model::PeerStats> {
  static constexpr Choice<model::PeerStats> values[] = {{"auto", model::PeerStats::kAuto},
                                                        {"coactivation", model::PeerStats::kCoactivation},
                                                        {"peer_sum", model::PeerStats::kPeerSum}};
};
template <> struct Choices<model::MoEBalance> {
  static constexpr Choice<model::MoEBalance> values[] = {
      {"aux_loss", model::MoEBalance::kAuxLoss}, {"bias", model::MoEBalance::kBias}, {"none", model::MoEBalance::kNone}};
};
}  // namespace some

namespace some::model {

struct RouterOptions {
  QueryNet query = QueryNet::kLinear;
  int64_t mlp_hidden = 0;         // d_q of the mlp query network; 0 = 2 * d_model
  ScoreFunction score = ScoreFunction::kCosine;
  double temperature = 1.0;       // tau: gate logits are scores / tau
  double logit_clamp = 10.0;      // c: gate logits clamped to [-c, c]
  bool freeze_keys = false;       // skip Knowledge Gravity entirely
  // Options from the literature (docs/design.md §1, "Router options"); all off by default.
  Scale gate_scale = Scale::kFixed;  // fixed: scores / tau; learnable: scores * exp(s), s trainable, init log(1/tau)
  double max_scale = 100.0;       // exp(s) <= max_scale (Tutel's cosine gate: 1 / 0.01)
  RouterBalance balance = RouterBalance::kNone;  // bias: gradient-free selection bias (arXiv 2408.15664)
  double bias_rate = 0.001;       // b_i += rate * sign(mean load - load_i) after every step
  KeyInit key_init = KeyInit::kRandom;  // data: k-means++ on the first step's queries
  // Key search (docs/design.md §3 "Search"): exact scores against every key, or an approximate
  // nearest-neighbour index over the keys (FAISS), rebuilt / updated after every Knowledge Gravity step.
  KeySearch search = KeySearch::kExact;
  int64_t ivf_lists = 0;          // ivf: inverted lists; 0 = about 4 sqrt(E)
  int64_t ivf_probe = 8;          // ivf: lists searched per query
  int64_t hnsw_m = 32;            // hnsw: links per node
  int64_t hnsw_ef_search = 64;    // hnsw: candidate list size at search
};

struct ExpertOptions {
  ExpertInit init = ExpertInit::kDefault;
  double sparsity = 0.9;          // fraction of exact zeros per matrix when init = sparse
  Activation activation = Activation::kGelu;
  ExpertCompute compute = ExpertCompute::kAuto;  // how a shard's experts are computed
  Scale output_scale = Scale::kFixed;  // learnable: a trainable scale per expert (E,) on its output, init 1
};

struct GravityOptions {
  double alpha = 0.01;            // query pull
  double beta = 0.002;            // peer pull
  double delta = 0.001;           // decay of rarely used keys
  double repulsion = 0.0;         // gamma: push away from the mean of the other keys
  UsageTracking usage = UsageTracking::kEma;  // ema (V2) | cumulative (V1)
  double ema_decay = 0.99;        // rho
  bool inertia = true;            // alpha_i = alpha / (1 + u_i)
  double decay_percentile = 10.0; // decay keys whose usage is below this percentile ...
  double decay_threshold = -1.0;  // ... or below this usage value when >= 0
  bool use_alpha = true;
  bool use_beta = true;
  bool use_delta = true;
  bool use_repulsion = true;
  double max_key_norm = 0.0;      // 0 = no clamp
  double restart_below = 0.0;     // 0 = off: re-seed keys whose usage falls below this
  // What the allreduce carries for the peer pull: the co-activation counts C (E x E) or the peer
  // sums P = C K (E x d); auto: P when E > d (docs/design.md §3).
  PeerStats peer_stats = PeerStats::kAuto;
};

// The learned-gate MoE baseline (docs/design.md §10).
struct MoEOptions {
  MoEBalance balance = MoEBalance::kAuxLoss;
  double aux_loss = 0.01;            // weight of the Switch load-balancing loss
  double bias_rate = 0.001;          // step of the auxiliary-loss-free selection bias
};

struct ModelOptions {
  int64_t vocab_size = 8192;      // taken from the dataset, not from the config
  int64_t d_model = 192;
  int64_t n_layers = 4;
  int64_t n_heads = 4;
  int64_t max_seq_len = 256;      // rotary table size (= train.seq_len)
  FfnKind ffn = FfnKind::kSome;
  int64_t d_ff = 768;             // dense FFN hidden size
  int64_t num_experts = 64;       // E
  int64_t top_k = 2;              // k
  int64_t d_expert = 192;         // h, hidden size of one expert
  RoutedLayers routed_layers = RoutedLayers::kAll;  // blocks with the routed FFN
  double capacity_factor = 0.0;   // > 0: each expert computes at most ceil(cf * slots / E) slots per forward
  int64_t shared_expert = 0;      // > 0: hidden width of a trainable expert every token uses (DeepSeekMoE)
  uint64_t seed = 1234;           // expert library and key initialisation
  // A checkpoint whose tensors initialise this model (docs/design.md §2); the launcher copies them
  // into the model after construction (launcher/model_init.h). Empty: none.
  std::string init_from;
  InitParts init_parts = InitParts::kAll;  // which tensors are taken
  UnitChoice init_units = UnitChoice::kFirst;  // how a wider dense FFN is cut
  bool init_optimizer = false;      // also the AdamW moments and step of what is taken
  // The special case init_from = a dense model, init_parts = ffn, init_units = first: its FFNs
  // become the expert library. Empty: experts from expert.init.
  std::string experts_from;
  RouterOptions router;
  ExpertOptions expert;
  GravityOptions gravity;
  MoEOptions moe;
};

}  // namespace some::model
