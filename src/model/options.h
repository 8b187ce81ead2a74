#pragma once
// Option structs of the model, filled by the launcher from TOML (docs/design.md §1–§4, §10). Library
// code never reads TOML; every field here is documented in README.md's config table.
#include <cstdint>
#include <string>

namespace some::model {

struct RouterOptions {
  std::string query = "linear";   // linear | mlp
  int64_t mlp_hidden = 0;         // d_q of the mlp query network; 0 = 2 * d_model
  std::string score = "cosine";   // cosine | dot
  double temperature = 1.0;       // tau: gate logits are scores / tau
  double logit_clamp = 10.0;      // c: gate logits clamped to [-c, c]
  bool freeze_keys = false;       // skip Knowledge Gravity entirely
  // Options from the literature (docs/design.md §1, "Router options"); all off by default.
  std::string gate_scale = "fixed";  // fixed: scores / tau; learnable: scores * exp(s), s trainable, init log(1/tau)
  double max_scale = 100.0;       // exp(s) <= max_scale (Tutel's cosine gate: 1 / 0.01)
  std::string balance = "none";   // none | bias: gradient-free selection bias (arXiv 2408.15664)
  double bias_rate = 0.001;       // b_i += rate * sign(mean load - load_i) after every step
  std::string key_init = "random";  // random | data: k-means++ on the first step's queries
  // Key search (docs/design.md §3 "Search"): exact scores against every key, or an approximate
  // nearest-neighbour index over the keys (FAISS), rebuilt / updated after every Knowledge Gravity step.
  std::string search = "exact";   // exact | hnsw | ivf
  int64_t ivf_lists = 0;          // ivf: inverted lists; 0 = about 4 sqrt(E)
  int64_t ivf_probe = 8;          // ivf: lists searched per query
  int64_t hnsw_m = 32;            // hnsw: links per node
  int64_t hnsw_ef_search = 64;    // hnsw: candidate list size at search
};

struct ExpertOptions {
  std::string init = "default";   // default | orthogonal | sparse
  double sparsity = 0.9;          // fraction of exact zeros per matrix when init = sparse
  std::string activation = "gelu";  // gelu | silu | relu
  std::string compute = "auto";     // auto | loop | grouped: how a shard's experts are computed
  std::string output_scale = "fixed";  // fixed | learnable: a trainable scale per expert (E,) on its output, init 1
};

struct GravityOptions {
  double alpha = 0.01;            // query pull
  double beta = 0.002;            // peer pull
  double delta = 0.001;           // decay of rarely used keys
  double repulsion = 0.0;         // gamma: push away from the mean of the other keys
  std::string usage = "ema";      // ema (V2) | cumulative (V1)
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
  std::string peer_stats = "auto";  // auto | coactivation | peer_sum
};

// The learned-gate MoE baseline (docs/design.md §10).
struct MoEOptions {
  std::string balance = "aux_loss";  // aux_loss | bias | none
  double aux_loss = 0.01;            // weight of the Switch load-balancing loss
  double bias_rate = 0.001;          // step of the auxiliary-loss-free selection bias
};

struct ModelOptions {
  int64_t vocab_size = 8192;      // taken from the dataset, not from the config
  int64_t d_model = 192;
  int64_t n_layers = 4;
  int64_t n_heads = 4;
  int64_t max_seq_len = 256;      // rotary table size (= train.seq_len)
  std::string ffn = "some";       // some | dense | moe | hash
  int64_t d_ff = 768;             // dense FFN hidden size
  int64_t num_experts = 64;       // E
  int64_t top_k = 2;              // k
  int64_t d_expert = 192;         // h, hidden size of one expert
  std::string routed_layers = "all";  // all | every_other: blocks with the routed FFN
  double capacity_factor = 0.0;   // > 0: each expert computes at most ceil(cf * slots / E) slots per forward
  int64_t shared_expert = 0;      // > 0: hidden width of a trainable expert every token uses (DeepSeekMoE)
  uint64_t seed = 1234;           // expert library and key initialisation
  // A checkpoint whose tensors initialise this model (docs/design.md §2); the launcher copies them
  // into the model after construction (launcher/model_init.h). Empty: none.
  std::string init_from;
  std::string init_parts = "all";   // all | backbone | ffn: which tensors are taken
  std::string init_units = "first";  // first | magnitude | cluster: how a wider dense FFN is cut
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
