#pragma once
// The experts one rank holds for one routed layer, computed grouped: tokens arrive sorted by
// expert, and either each expert with tokens runs one GEMM pair on its contiguous slice (the
// loop), or the whole shard runs as two grouped GEMMs (at::_grouped_mm with int32 cumulative
// row offsets: one kernel each on CUDA instead of one per expert, as torchtitan's grouped
// experts). The SoME library's experts are frozen buffers; the MoE / hash baselines' experts
// are parameters.
//
// Legend: E_local experts here, h = d_expert, d model width, M routed slots.
#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "parallel/token_dispatcher.h"
#include "src/model/feed_forward.h"
#include "src/model/options.h"

namespace some::model {

// The dtype expert GEMMs — and the rows that travel to them — run in: autocast's when it is on
// for x's device, else x's own.
torch::ScalarType compute_dtype(const torch::Tensor& x);

class ExpertShardImpl : public torch::nn::Module {
 public:
  enum class Kind {
    kFrozen,     // buffers initialised by expert.init (the library)
    kTrainable,  // parameters initialised like the dense FFN: N(0, 0.02) in, depth-scaled out
  };
  // Experts [first, first + count) of layer `layer`, each initialised from its own seed (never
  // from how the experts are sharded). `n_layers` scales the trainable output projection.
  ExpertShardImpl(int64_t layer, int64_t first, int64_t count, int64_t d_model, int64_t d_expert,
                  const ExpertOptions& opts, uint64_t seed, Kind kind = Kind::kFrozen, int64_t n_layers = 1);

  // x (M, d) sorted by expert, counts (E_local,) -> (M, d). Gradients flow to x (and to the
  // weights of trainable experts).
  // The grouped kernel reads the counts on the device only, so a dispatch that never needed
  // them on the host (one process) computes without a host synchronisation.
  torch::Tensor forward(const torch::Tensor& x, parallel::RowCounts& counts);
  torch::Tensor forward(const torch::Tensor& x, const std::vector<int64_t>& counts);
  // The two ways forward() computes, by expert.compute (auto: grouped_pays_off()).
  torch::Tensor forward_loop(const torch::Tensor& x, const std::vector<int64_t>& counts);
  // The grouped kernel, at most max_groups_per_call experts per at::_grouped_mm call (CUDA's
  // kernel takes fewer than 1024 groups); counts.device is read, counts.host only for more experts.
  torch::Tensor forward_grouped(const torch::Tensor& x, parallel::RowCounts& counts);
  // expert.compute = auto: the grouped kernel where its rows fit (16-byte multiples) — on the
  // CPU in any dtype, on CUDA in bf16 (its fast path); the loop elsewhere.
  bool grouped_pays_off(const torch::Tensor& x) const;
  bool grouped_fits(torch::ScalarType dtype) const;  // rows of 16-byte multiples in `dtype`
  // The yardstick: every slot computed on its own, one small GEMM pair per slot.
  torch::Tensor forward_naive(const torch::Tensor& x, const torch::Tensor& expert_of);

  bool trainable() const { return kind_ == Kind::kTrainable; }

  // Experts per at::_grouped_mm call: its CUDA kernel sets up one thread per group in one block
  // and refuses 1024 or more. The same chunking runs on every device (tests lower it).
  int64_t max_groups_per_call = 1023;
  int64_t last_grouped_calls = 0;  // kernel pairs the last forward_grouped ran (what the tests count)
  // Fault injection for tests only: the grouped kernel's output (and so its gradients) become
  // zeros, to show that the grouped-vs-loop checks fail on a kernel that writes nothing.
  static bool fault_zero_grouped_output;

  torch::Tensor w_down;  // (E_local, h, d)
  torch::Tensor w_up;    // (E_local, d, h)
  int64_t first_expert;

 private:
  // The weights (E_local, h, d), (E_local, d, h) in `dtype` on `device`. Trainable experts: a
  // differentiable cast (weight gradients flow back in fp32). Frozen experts: a device-resident
  // copy made once — not state, never checkpointed — and again only when the weights were
  // loaded anew (their version counter moved).
  std::pair<torch::Tensor, torch::Tensor> weights_as(torch::ScalarType dtype, const torch::Device& device);
  // x (M, d), down (G, h, d), up (G, d, h), counts (G,) on x's device -> (M, d): two grouped GEMMs.
  torch::Tensor grouped_pair(const torch::Tensor& x, const torch::Tensor& down, const torch::Tensor& up,
                             const torch::Tensor& counts);
  // The output of a shard given no rows: (0, d) in `dtype`, tied to x (and trainable weights).
  torch::Tensor no_rows(const torch::Tensor& x, torch::ScalarType dtype) const;

  Activation activation_;
  Kind kind_;
  ExpertCompute compute_;
  torch::Tensor cast_down_, cast_up_;  // the frozen copy of weights_as()
  int64_t cast_version_ = -1;
};
TORCH_MODULE(ExpertShard);

}  // namespace some::model
