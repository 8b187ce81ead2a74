#include "src/model/linear_cross_entropy.h"

#include <ATen/autocast_mode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>


namespace some::model {
namespace {

using torch::Tensor;

// The blocked pass. Sums of the per-row losses, and with `with_grad` the gradients of that sum:
// d/dhidden (N, d) in the compute dtype and d/dweight (V, d) in fp32.
struct Blocked {
  Tensor loss_sum;  // () fp32
  Tensor grad_hidden, grad_weight;
};

Blocked run_blocks(const Tensor& hidden, const Tensor& weight, const Tensor& targets, int64_t block_rows,
                   bool with_grad) {
  const auto device_type = hidden.device().type();
  const auto dtype = at::autocast::is_autocast_enabled(device_type) ? at::autocast::get_autocast_dtype(device_type)
                                                                     : hidden.scalar_type();
  // The casts below are autocast's, made once; the ops inside must not be re-cast.
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  const int64_t n = hidden.size(0), vocab = weight.size(0), d = hidden.size(1);
  const auto h = hidden.to(dtype).contiguous();   // (N, d)
  const auto w = weight.to(dtype).contiguous();   // (V, d)
  const auto wt = w.t();                          // (d, V)
  const auto t = targets.reshape({-1, 1});        // (N, 1)
  const bool low_precision = dtype != torch::kFloat32;
  const auto f32 = h.options().dtype(torch::kFloat32);

  // Per-block buffers, reused: z the logits in the compute dtype, p their log-softmax (then the
  // logits' gradient) in fp32; in bf16 also zf (z in fp32: the CPU log-softmax has no bf16 -> fp32
  // form), g (the gradient back in bf16 for the GEMMs) and gw_block (one block's d/dweight).
  const int64_t rows = std::min(block_rows, n);
  auto z = torch::empty({rows, vocab}, h.options());
  auto p = torch::empty({rows, vocab}, f32);
  Tensor zf, g, gw_block;
  if (low_precision) {
    zf = torch::empty({rows, vocab}, f32);
    if (with_grad) g = torch::empty({rows, vocab}, h.options()), gw_block = torch::empty({vocab, d}, h.options());
  }
  Blocked out{torch::zeros({}, f32), {}, {}};
  if (with_grad) out.grad_hidden = torch::empty({n, d}, h.options()), out.grad_weight = torch::zeros({vocab, d}, f32);
  const auto minus_one = torch::full({rows, 1}, -1.0, f32);

  for (int64_t s = 0; s < n; s += rows) {
    const int64_t c = std::min(rows, n - s);
    const auto hc = h.narrow(0, s, c), tc = t.narrow(0, s, c);            // (c, d), (c, 1)
    auto zc = z.narrow(0, 0, c), pc = p.narrow(0, 0, c);                   // (c, V)
    at::mm_out(zc, hc, wt);                                                // logits
    if (low_precision) zc = zf.narrow(0, 0, c).copy_(zc);
    at::_log_softmax_out(pc, zc, 1, false);                                // log p
    out.loss_sum -= pc.gather(1, tc).sum();                                // row loss: -log p[target]
    if (!with_grad) continue;
    pc.exp_().scatter_add_(1, tc, minus_one.narrow(0, 0, c));              // d(row loss)/dz = p - onehot
    const auto gc = low_precision ? g.narrow(0, 0, c).copy_(pc) : pc;
    auto ghc = out.grad_hidden.narrow(0, s, c);                            // (c, d)
    at::mm_out(ghc, gc, w);
    if (low_precision) {
      out.grad_weight.add_(at::mm_out(gw_block, gc.t(), hc));              // (V, d)
    } else {
      out.grad_weight.addmm_(gc.t(), hc);
    }
  }
  return out;
}

struct LinearCrossEntropyFunction : public torch::autograd::Function<LinearCrossEntropyFunction> {
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& hidden, const Tensor& weight,
                        const Tensor& targets, int64_t block_rows) {
    auto blocked = run_blocks(hidden, weight, targets, block_rows, true);
    ctx->saved_data["grad_hidden"] = blocked.grad_hidden.to(hidden.scalar_type());
    ctx->saved_data["grad_weight"] = blocked.grad_weight.to(weight.scalar_type());
    ctx->saved_data["n"] = hidden.size(0);
    return blocked.loss_sum / static_cast<double>(hidden.size(0));
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_loss) {
    const auto scale = grad_loss[0] / static_cast<double>(ctx->saved_data["n"].toInt());  // () fp32
    return {ctx->saved_data["grad_hidden"].toTensor() * scale, ctx->saved_data["grad_weight"].toTensor() * scale,
            Tensor(), Tensor()};
  }
};

}  // namespace

Tensor linear_cross_entropy(const Tensor& hidden, const Tensor& weight, const Tensor& targets, int64_t block_rows) {
  TORCH_CHECK(hidden.dim() == 2 && weight.dim() == 2 && hidden.size(1) == weight.size(1) && targets.dim() == 1 &&
                  targets.size(0) == hidden.size(0),
              "linear_cross_entropy: expected hidden (N, d), weight (V, d), targets (N,); got hidden ", hidden.sizes(),
              ", weight ", weight.sizes(), ", targets ", targets.sizes());
  if (block_rows <= 0) {
    const int64_t target_bytes = hidden.is_cuda() ? (int64_t{256} << 20) : (int64_t{8} << 20);
    block_rows = std::max<int64_t>(1, target_bytes / (weight.size(0) * 4));
  }
  const bool grad = torch::GradMode::is_enabled() && (hidden.requires_grad() || weight.requires_grad());
  if (!grad) return run_blocks(hidden, weight, targets, block_rows, false).loss_sum / static_cast<double>(hidden.size(0));
  return LinearCrossEntropyFunction::apply(hidden, weight, targets, block_rows);
}

}  // namespace some::model
