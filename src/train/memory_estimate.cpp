#include "src/train/memory_estimate.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "common/check.h"
#include "common/errors.h"
#include "src/model/key_store.h"
#include "src/train/device.h"

namespace some::train {

namespace {

constexpr double kFloat = 4;  // bytes of one fp32 value
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// Saved for backward per token and layer, in floats, counted from the forward code:
// attention keeps its input and normed input, q, k, v, the rotated q and k, the attention
// output, its (B, T, d) copy and the projection: 10 d, rounded up to 12 d for the residual
// adds and the softmax statistics.
constexpr double kAttentionFloatsPerWidth = 12;
// The blocked LM-head loss (src/model/linear_cross_entropy.h): up to four per-block buffers
// (logits, log-softmax, and in bf16 their copies) of about 8 MiB each on the CPU and 256 MiB
// on a GPU, the (V, d) gradient of the tied embedding, and d per token for the hidden state's
// gradient.
constexpr double kLossBlocks = 4, kLossBlockCpu = 8.0 * 1024 * 1024, kLossBlockGpu = 256.0 * 1024 * 1024;

std::string gib(double bytes) { return fmt::format("{:.1f} GiB", bytes / kGiB); }

}  // namespace

std::string MemoryEstimate::describe() const {
  return fmt::format("about {} (parameters {}, optimizer {}, experts {}, activations {})", gib(total()),
                     gib(parameters), gib(optimizer), gib(experts), gib(activations));
}

MemoryEstimate estimate_memory(const model::ModelOptions& m, const TrainOptions& t, int64_t expert_parallel) {
  const double d = m.d_model, V = m.vocab_size, E = m.num_experts, k = m.top_k, h = m.d_expert;
  const double E_local = E / static_cast<double>(std::max<int64_t>(expert_parallel, 1));
  const double tokens = static_cast<double>(t.micro_batch) * static_cast<double>(t.seq_len);  // B * T

  double trainable = V * d + d;      // tied embedding, final norm
  double buffers = 0;                // replicated, not trained
  double expert_values = 0;          // this rank's experts
  bool experts_train = m.ffn == model::FfnKind::kMoe || m.ffn == model::FfnKind::kHash;
  double act_per_token = 4 * d;      // the embedding, final norm and the hidden state's gradient
  for (int64_t l = 0; l < m.n_layers; ++l) {
    trainable += 4 * d * d + 2 * d;                                   // qkv, proj; two norms
    buffers += static_cast<double>(m.max_seq_len) * d / static_cast<double>(m.n_heads);  // rotary cos, sin
    act_per_token += kAttentionFloatsPerWidth * d;
    const bool routed = m.ffn != model::FfnKind::kDense && (m.routed_layers == model::RoutedLayers::kAll || l % 2 == 1);
    if (!routed) {
      const double ff = m.d_ff;
      trainable += 2 * d * ff;
      act_per_token += 2 * d + 3 * ff;  // normed input, up, activation (and its input), output
      continue;
    }
    expert_values += 2 * E_local * d * h;
    // Dispatched inputs and outputs (k d each), the expert hidden layer before and after the
    // activation (k h each), the routing scores over all experts and the combined output.
    act_per_token += 2 * k * d + 2 * k * h + E + 2 * d;
    if (m.ffn == model::FfnKind::kSome) {
      const double q = m.router.mlp_hidden > 0 ? m.router.mlp_hidden : 2 * d;
      trainable += m.router.query == model::QueryNet::kMlp ? 2 * d * q + q + d : d * d + d;
      act_per_token += m.router.query == model::QueryNet::kMlp ? 2 * q + 2 * d : 2 * d;  // query (and hidden), normalised
      buffers += E * d + E;               // keys, usage
      // Knowledge Gravity's statistics: n, S, and C (E x E) or the peer sums P (E x d).
      const bool peer_sum = model::resolve_peer_stats(m.gravity.peer_stats, m.num_experts, m.d_model) ==
                            model::PeerStats::kPeerSum;
      buffers += E + E * d + (peer_sum ? E * d : E * E);
      if (m.router.gate_scale == model::Scale::kLearnable) trainable += 1;          // the gate's log-scale
      if (m.router.balance == model::RouterBalance::kBias) buffers += E;     // the selection bias
    } else if (m.ffn == model::FfnKind::kMoe) {
      trainable += d * E;                 // gate
      buffers += E;                       // selection bias
    } else {
      buffers += 2 * V * k;               // hash table: (V, k) int64
    }
    if (m.expert.output_scale == model::Scale::kLearnable) trainable += E;       // one scale per expert
    if (m.shared_expert > 0) {                       // a dense FFN beside the routed experts
      trainable += 2 * d * static_cast<double>(m.shared_expert);
      act_per_token += 2 * d + 3 * static_cast<double>(m.shared_expert);
    }
  }

  MemoryEstimate out;
  out.parameters = kFloat * (trainable + buffers);
  out.experts = kFloat * expert_values;
  // A gradient and two AdamW moments for each trained value: the dense weights, and the
  // experts of the MoE / hash baselines (the SoME library is frozen).
  out.optimizer = kFloat * 3 * (trainable + (experts_train ? expert_values : 0));
  const double loss_blocks = kLossBlocks * (t.device == DeviceKind::kCuda ? kLossBlockGpu : kLossBlockCpu);
  out.activations = kFloat * tokens * static_cast<double>(act_per_token) + loss_blocks + kFloat * V * d;
  return out;
}

MemoryAvailable available_memory(const torch::Device& device, int local_ranks) {
  const int ranks = std::max(local_ranks, 1);
  MemoryAvailable out;
  if (device.is_cuda()) {
    const int devices = device_count(device);
    const int sharing = (ranks + devices - 1) / devices;  // ranks take GPUs round-robin
    const auto free = static_cast<double>(free_memory_bytes(device));
    out.bytes = free / sharing;
    out.what = fmt::format("{} free on {} / {} rank(s) sharing it", gib(free), device.str(), sharing);
    return out;
  }
  // MemAvailable: what can be allocated without swapping, page cache that can be dropped
  // included (the kernel's own estimate, unlike MemFree).
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  double kib = -1;
  while (std::getline(meminfo, line)) {
    if (line.rfind("MemAvailable:", 0) == 0) std::istringstream(line.substr(13)) >> kib;
  }
  if (kib < 0) return {};  // not Linux: nothing to compare against (check_memory lets it pass)
  out.bytes = kib * 1024.0 / ranks;
  out.what = fmt::format("MemAvailable {} / {} rank(s) on this node", gib(kib * 1024.0), ranks);
  return out;
}

void check_memory(const MemoryEstimate& need, const MemoryAvailable& have) {
  if (have.what.empty() || need.total() <= have.bytes) return;
  throw ConfigError(fmt::format(
      "model needs {} but this rank has {} available ({}); reduce model.d_model, model.n_layers, "
      "model.num_experts or model.d_expert, train.micro_batch or train.seq_len, or shard the experts "
      "over more ranks (parallel.expert_parallel)",
      need.describe(), gib(have.bytes), have.what));
}

}  // namespace some::train
