// The LM head and its loss in one op: mean cross-entropy of softmax(hidden @ weight^T) against
// the targets, computed a block of rows at a time so the (N, V) logits never exist at once
// (docs/design.md §2, "The loss").
//
// Why: at the default config the (N, V) logits are the largest tensor of the step (2048 x 8192
// fp32 = 64 MiB per micro-batch) and the unfused loss walks them six times (the GEMM's write,
// log-softmax, NLL, NLL's zero-filled gradient, log-softmax's backward, the two GEMMs' reads).
// Here each block of logits is produced, turned into its gradient in place while it is still
// in cache, and consumed by the two gradient GEMMs; the gradients of `hidden` and `weight` are
// computed in the forward and only scaled by the incoming gradient in the backward (the loss is
// a scalar). The same idea as Liger-Kernel's fused linear cross-entropy.
#pragma once

#include <torch/torch.h>

namespace some::model {

// hidden (N, d), weight (V, d) (the tied embedding), targets (N,) int64 in [0, V) -> scalar mean
// loss, fp32. Under bf16 autocast the GEMMs run in bf16 and the softmax in fp32, as autocast would
// do to the unfused ops. `block_rows` <= 0 picks a block of about 8 MiB of fp32 logits on the CPU
// (cache-sized) and 256 MiB on a GPU. Differentiable once, in hidden and weight.
torch::Tensor linear_cross_entropy(const torch::Tensor& hidden, const torch::Tensor& weight,
                                   const torch::Tensor& targets, int64_t block_rows = 0);

}  // namespace some::model
