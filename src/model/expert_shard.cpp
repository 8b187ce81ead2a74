#include "src/model/expert_shard.h"

#include <cmath>
#include <numeric>

#include <ATen/autocast_mode.h>

#include "common/check.h"
#include "common/choice.h"
#include "common/errors.h"
#include "src/model/feed_forward.h"
#include "src/model/init.h"

namespace some::model {

bool ExpertShardImpl::fault_zero_grouped_output = false;

ExpertShardImpl::ExpertShardImpl(int64_t layer, int64_t first, int64_t count, int64_t d_model,
                                 int64_t d_expert, const ExpertOptions& opts, uint64_t seed, Kind kind,
                                 int64_t n_layers)
    : first_expert(first), activation_(opts.activation), kind_(kind), compute_(opts.compute) {
  torch::NoGradGuard no_grad;
  auto down = torch::empty({count, d_expert, d_model});
  auto up = torch::empty({count, d_model, d_expert});
  // The dense FFN's initialisation (see TransformerImpl), so that baselines differ from the
  // dense model in routing only.
  const double out_std = 0.02 / std::sqrt(2.0 * static_cast<double>(n_layers));
  for (int64_t i = 0; i < count; ++i) {
    auto g_down = seeded_generator(seed, layer, first + i, InitStream::kExpertDown);
    auto g_up = seeded_generator(seed, layer, first + i, InitStream::kExpertUp);
    if (kind == Kind::kTrainable) {
      down[i].copy_(torch::randn({d_expert, d_model}, g_down, torch::kFloat32) * 0.02);
      up[i].copy_(torch::randn({d_model, d_expert}, g_up, torch::kFloat32) * out_std);
    } else {
      down[i].copy_(init_expert_matrix(d_expert, d_model, opts.init, opts.sparsity, g_down));
      up[i].copy_(init_expert_matrix(d_model, d_expert, opts.init, opts.sparsity, g_up));
    }
  }
  if (kind == Kind::kTrainable) {
    w_down = register_parameter("w_down", down);
    w_up = register_parameter("w_up", up);
  } else {
    // Buffers, not parameters: never in an optimizer, never given a gradient.
    w_down = register_buffer("w_down", down);
    w_up = register_buffer("w_up", up);
  }
}

torch::Tensor ExpertShardImpl::forward(const torch::Tensor& x, const std::vector<int64_t>& counts) {
  auto row_counts = parallel::RowCounts::from_host(counts, x.device());
  return forward(x, row_counts);
}

torch::Tensor ExpertShardImpl::forward(const torch::Tensor& x, parallel::RowCounts& counts) {
  SOME_REQUIRE(counts.device.numel() == w_down.size(0), Error, "expert counts for {} experts, shard holds {}",
               counts.device.numel(), w_down.size(0));
  if (!counts.host.empty()) {  // checked where it costs nothing
    const int64_t rows = std::accumulate(counts.host.begin(), counts.host.end(), int64_t{0});
    SOME_REQUIRE(rows == x.size(0), Error, "expert counts sum to {}, got {} rows", rows, x.size(0));
  }
  const bool grouped =
      compute_ == ExpertCompute::kGrouped || (compute_ == ExpertCompute::kAuto && grouped_pays_off(x));
  SOME_REQUIRE(!grouped || grouped_fits(compute_dtype(x)), ConfigError,
               "expert.compute = \"grouped\" needs rows of 16-byte multiples: model.d_model = {} and model.d_expert = {} "
               "in {} are not; use \"auto\" or \"loop\"",
               w_down.size(2), w_down.size(1), c10::toString(compute_dtype(x)));
  return grouped ? forward_grouped(x, counts) : forward_loop(x, counts.on_host());
}

bool ExpertShardImpl::grouped_fits(torch::ScalarType dtype) const {
  // at::_grouped_mm takes rows of 16-byte multiples only (CPU and CUDA alike).
  const auto bytes = static_cast<int64_t>(c10::elementSize(dtype));
  return (w_down.size(1) * bytes) % 16 == 0 && (w_down.size(2) * bytes) % 16 == 0;
}

bool ExpertShardImpl::grouped_pays_off(const torch::Tensor& x) const {
  // CPU: whenever the rows fit (torch 2.13, 2 threads, forward + backward of frozen experts:
  // 6.6x the loop at E 256, d 512, h 72, 8192 rows; 1.6x at E 64, d 256, h 256, 4096 rows), and
  // its two shapes per step keep the heap from fragmenting as the loop's 2E changing shapes do.
  // CUDA: the fast kernel is bf16's.
  const auto dtype = compute_dtype(x);
  return grouped_fits(dtype) && (!x.is_cuda() || dtype == torch::kBFloat16);
}

torch::ScalarType compute_dtype(const torch::Tensor& x) {
  const auto type = x.device().type();
  return at::autocast::is_autocast_enabled(type) ? at::autocast::get_autocast_dtype(type) : x.scalar_type();
}

std::pair<torch::Tensor, torch::Tensor> ExpertShardImpl::weights_as(torch::ScalarType dtype, const torch::Device& device) {
  if (trainable() || (w_down.scalar_type() == dtype && w_down.device() == device)) {
    return {w_down.to(device, dtype), w_up.to(device, dtype)};
  }
  const int64_t version = static_cast<int64_t>(w_down._version() + w_up._version());
  if (!cast_down_.defined() || cast_down_.scalar_type() != dtype || cast_down_.device() != device ||
      cast_version_ != version) {
    torch::NoGradGuard no_grad;
    cast_down_ = w_down.to(device, dtype).contiguous();
    cast_up_ = w_up.to(device, dtype).contiguous();
    cast_version_ = version;
  }
  return {cast_down_, cast_up_};
}

torch::Tensor ExpertShardImpl::no_rows(const torch::Tensor& x, torch::ScalarType dtype) const {
  // (0, d), yet a function of x (and of trainable weights): under expert parallelism the
  // backward's all-to-all runs on every rank only if every rank's expert output is part of the
  // graph; and trainable experts get zero gradients like every other rank's, not none.
  auto out = x.to(dtype) * 0;                                                // (0, d)
  if (trainable()) out = out + (w_down.sum() + w_up.sum()).to(dtype) * 0;
  return out;
}

torch::Tensor ExpertShardImpl::forward_grouped(const torch::Tensor& x, parallel::RowCounts& counts) {
  const auto dtype = compute_dtype(x);
  last_grouped_calls = 0;
  if (x.size(0) == 0) return no_rows(x, dtype);  // a rank given no rows: M = 0 never reaches the kernel
  auto [down, up] = weights_as(dtype, x.device());                           // (E_local, h, d), (E_local, d, h)
  // The casts are explicit, so autocast stays out (it has no rule for _grouped_mm).
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  const auto xc = x.to(dtype);                                               // (M, d)
  const int64_t E_local = down.size(0);
  if (E_local <= max_groups_per_call) return grouped_pair(xc, down, up, counts.device);
  // More experts than one call takes: consecutive chunks of experts, each with its own rows and
  // offsets rebased to them. Where each chunk's rows begin is read on the host (one
  // synchronisation on CUDA; none where the all-to-all already brought the counts there).
  const auto& host = counts.on_host();
  std::vector<torch::Tensor> outs;
  int64_t row = 0;
  for (int64_t first = 0; first < E_local; first += max_groups_per_call) {
    const int64_t n = std::min(max_groups_per_call, E_local - first);
    const int64_t rows = std::accumulate(host.begin() + first, host.begin() + first + n, int64_t{0});
    if (rows == 0) continue;
    outs.push_back(grouped_pair(xc.narrow(0, row, rows), down.narrow(0, first, n), up.narrow(0, first, n),
                                counts.device.narrow(0, first, n)));             // (rows, d)
    row += rows;
  }
  return outs.size() == 1 ? outs.front() : torch::cat(outs);                 // (M, d)
}

torch::Tensor ExpertShardImpl::grouped_pair(const torch::Tensor& x, const torch::Tensor& down, const torch::Tensor& up,
                                            const torch::Tensor& counts) {
  // Row offsets, computed on the device: expert e owns rows [ends[e-1], ends[e]). The counts sum
  // to the rows, so every row is covered and none of the output is left uninitialised.
  auto offsets = counts.cumsum(0).to(torch::kInt32);                                         // (G,)
  ++last_grouped_calls;
  auto h = activate(at::_grouped_mm(x, down.transpose(1, 2), offsets), activation_);          // (M, h)
  auto y = at::_grouped_mm(h, up.transpose(1, 2), offsets);                                   // (M, d)
  return fault_zero_grouped_output ? y * 0 : y;
}

torch::Tensor ExpertShardImpl::forward_loop(const torch::Tensor& x, const std::vector<int64_t>& counts) {
  std::vector<torch::Tensor> outs;
  // unbind, not w_down[e]: for trainable experts its backward stacks the per-expert gradients
  // once instead of materialising a full-shard gradient per expert.
  auto downs = w_down.unbind(0), ups = w_up.unbind(0);
  int64_t offset = 0;
  for (size_t e = 0; e < counts.size(); ++e) {
    if (counts[e] == 0) continue;
    auto xe = x.narrow(0, offset, counts[e]);                                   // (M_e, d)
    auto h = activate(torch::matmul(xe, downs[e].t()), activation_);            // (M_e, h)
    outs.push_back(torch::matmul(h, ups[e].t()));                               // (M_e, d)
    offset += counts[e];
  }
  if (outs.empty()) return no_rows(x, x.scalar_type());
  return outs.size() == 1 ? outs.front() : torch::cat(outs);
}

torch::Tensor ExpertShardImpl::forward_naive(const torch::Tensor& x, const torch::Tensor& expert_of) {
  std::vector<torch::Tensor> rows;
  for (int64_t m = 0; m < x.size(0); ++m) {
    auto e = expert_of[m].item<int64_t>() - first_expert;
    auto h = activate(torch::mv(w_down[e], x[m]), activation_);
    rows.push_back(torch::mv(w_up[e], h));
  }
  return rows.empty() ? torch::zeros_like(x) : torch::stack(rows);
}

}  // namespace some::model
