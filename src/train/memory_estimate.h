#pragma once
// Memory a training run needs on one rank, estimated from the options before the model is
// built, so that a model too large for the machine is refused with the numbers instead of
// dying in the allocator (or in the kernel's OOM killer) minutes into start-up.
//
// Legend: B micro_batch, T seq_len, d d_model, L n_layers, V vocabulary, E experts, k top_k,
// h d_expert, P expert_parallel. All counts are fp32 (4 bytes): parameters, buffers, gradients
// and AdamW moments are fp32 even under bfloat16 autocast.
#include <string>

#include <torch/torch.h>

#include "src/model/options.h"
#include "src/train/options.h"

namespace some::train {

// Bytes, as doubles: a config at the schema's limits overflows int64 (2 * E * d * h * L * 4).
struct MemoryEstimate {
  double parameters = 0;   // dense weights and the replicated buffers (keys, usage, rotary tables)
  double optimizer = 0;    // per trainable value: its gradient and two AdamW moments
  double experts = 0;      // this rank's experts (E / P per routed layer), frozen or trainable
  double activations = 0;  // what one micro-batch keeps for backward, logits included

  double total() const { return parameters + optimizer + experts + activations; }
  // "about 1.2 GiB (parameters A, optimizer B, experts C, activations D)"
  std::string describe() const;
};

// An upper-side estimate: exact for parameters and buffers (within the small bookkeeping
// tensors), activations from a per-layer count of saved tensors (memory_estimate.cpp). Not
// counted: the gradient-allreduce buckets and the allocator's slack.
MemoryEstimate estimate_memory(const model::ModelOptions& model, const TrainOptions& train,
                               int64_t expert_parallel);

struct MemoryAvailable {
  double bytes = 0;   // this rank's share
  std::string what;   // where it comes from: "MemAvailable 18.9 GiB / 2 ranks on this node"
};

// This rank's share of the memory it trains in: on the CPU MemAvailable (/proc/meminfo) over
// the ranks on this node; on CUDA the free memory of its GPU over the ranks sharing that GPU.
MemoryAvailable available_memory(const torch::Device& device, int local_ranks);

// ConfigError, one line with both sides and what to change, when the estimate exceeds what is
// available.
void check_memory(const MemoryEstimate& need, const MemoryAvailable& have);

}  // namespace some::train
