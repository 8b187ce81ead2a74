#include "parallel/token_dispatcher.h"

#include "common/check.h"
#include "common/errors.h"

namespace some::parallel {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

const std::vector<int64_t>& RowCounts::on_host() {
  if (host.empty() && device.numel() > 0) {
    auto cpu = device.to(torch::kCPU, torch::kInt64).contiguous();
    host.assign(cpu.data_ptr<int64_t>(), cpu.data_ptr<int64_t>() + cpu.numel());
  }
  return host;
}

RowCounts RowCounts::from_host(std::vector<int64_t> counts, const torch::Device& device) {
  RowCounts out;
  out.device = torch::tensor(counts, torch::kInt64).to(device);
  out.host = std::move(counts);
  return out;
}

namespace {

// Slots sorted by global expert, their source tokens, and slots per expert (on the device).
struct SortedSlots {
  Tensor order, token_of;
  Tensor counts;  // (E,) int64
};

SortedSlots sort_slots(const Tensor& indices, int64_t num_experts) {
  const auto k = indices.size(1);
  auto flat = indices.reshape({-1});                                                    // (M,)
  SortedSlots s;
  s.order = std::get<1>(flat.sort(/*stable=*/std::optional<bool>(true), 0, false));     // (M,)
  s.token_of = s.order.div(k, "floor");                                                 // (M,)
  // index_add_, not bincount: no host synchronisation.
  s.counts = torch::zeros({num_experts}, flat.options()).index_add_(0, flat, torch::ones_like(flat));
  return s;
}

// In the gates' dtype (fp32 under autocast too): expert outputs may arrive in bf16, the k-way
// sum of each token is not rounded to it.
Tensor weighted_sum(const Tensor& slot_out, const Tensor& gates, const DispatchPlan& plan) {
  auto g = gates.reshape({-1}).index_select(0, plan.order).unsqueeze(1);               // (M, 1)
  auto weighted = slot_out.to(g.scalar_type()) * g;                                    // (M, d)
  return torch::zeros({plan.num_tokens, slot_out.size(1)}, weighted.options())
      .index_add(0, plan.token_of, weighted);                                           // (N, d)
}

class AllToAllFunction : public torch::autograd::Function<AllToAllFunction> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& x, Communicator* comm,
                        const std::vector<int64_t>& send_rows, const std::vector<int64_t>& recv_rows) {
    ctx->saved_data["comm"] = reinterpret_cast<int64_t>(comm);
    ctx->saved_data["send"] = send_rows;
    ctx->saved_data["recv"] = recv_rows;
    return comm->all_to_all(x, send_rows, recv_rows);
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    auto* comm = reinterpret_cast<Communicator*>(ctx->saved_data["comm"].toInt());
    auto send = ctx->saved_data["send"].toIntVector(), recv = ctx->saved_data["recv"].toIntVector();
    return {comm->all_to_all(grads[0].contiguous(), recv, send), Tensor(), Tensor(), Tensor()};
  }
};

}  // namespace

Tensor differentiable_all_to_all(const Tensor& x, Communicator& comm, const std::vector<int64_t>& send_rows,
                                 const std::vector<int64_t>& recv_rows) {
  return AllToAllFunction::apply(x, &comm, send_rows, recv_rows);
}

std::pair<Tensor, DispatchPlan> LocalTokenDispatcher::dispatch(const Tensor& x, const Tensor& indices) {
  auto s = sort_slots(indices, num_experts_);
  DispatchPlan plan;
  plan.num_tokens = x.size(0);
  plan.order = s.order;
  plan.token_of = s.token_of;
  plan.expert_counts.device = s.counts;  // stays on the device: nothing here needs it on the host
  plan.group_slots = indices.numel();
  return {x.index_select(0, plan.token_of), std::move(plan)};                          // (M, d)
}

Tensor LocalTokenDispatcher::combine(const Tensor& expert_out, const Tensor& gates, const DispatchPlan& plan) {
  return weighted_sum(expert_out, gates, plan);
}

AllToAllTokenDispatcher::AllToAllTokenDispatcher(int64_t num_experts, Communicator& ep)
    : num_experts_(num_experts), ep_(ep) {
  SOME_REQUIRE(num_experts % ep.world_size() == 0, ConfigError,
               "model.num_experts = {} must be divisible by parallel.expert_parallel = {}", num_experts,
               ep.world_size());
}

std::pair<Tensor, DispatchPlan> AllToAllTokenDispatcher::dispatch(const Tensor& x, const Tensor& indices) {
  const int64_t P = ep_.world_size(), E_local = num_experts_ / P;
  auto s = sort_slots(indices, num_experts_);
  DispatchPlan plan;
  plan.num_tokens = x.size(0);
  plan.order = s.order;
  plan.token_of = s.token_of;

  // Every rank's per-expert slot counts: counts[p][q * E_local + e] = slots rank p sends to local
  // expert e of rank q. One small allgather gives both the exchange sizes and the group total.
  // The one host synchronisation of an expert-parallel dispatch: the split sizes drive the exchange.
  auto counts = ep_.allgather(s.counts).cpu();                                            // (P, E)
  auto* all = counts.data_ptr<int64_t>();
  const int64_t me = ep_.rank();
  plan.send_rows.assign(P, 0);
  plan.recv_rows.assign(P, 0);
  std::vector<int64_t> expert_counts(E_local, 0);
  for (int64_t p = 0; p < P; ++p) {
    for (int64_t e = 0; e < E_local; ++e) {
      plan.send_rows[p] += all[me * num_experts_ + p * E_local + e];
      plan.recv_rows[p] += all[p * num_experts_ + me * E_local + e];
      expert_counts[e] += all[p * num_experts_ + me * E_local + e];
    }
  }
  plan.expert_counts = RowCounts::from_host(std::move(expert_counts), x.device());
  plan.group_slots = counts.sum().item<int64_t>();
  auto in = [&](int64_t p, int64_t e) { return all[p * num_experts_ + me * E_local + e]; };
  // Received rows come grouped by source rank, each group sorted by local expert; regroup them
  // by local expert (sources in rank order) for the grouped GEMMs.
  std::vector<int64_t> local_order;
  std::vector<int64_t> source_start(P, 0);
  for (int64_t p = 1; p < P; ++p) source_start[p] = source_start[p - 1] + plan.recv_rows[p - 1];
  std::vector<int64_t> cursor = source_start;
  for (int64_t e = 0; e < E_local; ++e) {
    for (int64_t p = 0; p < P; ++p) {
      for (int64_t i = 0; i < in(p, e); ++i) local_order.push_back(cursor[p] + i);
      cursor[p] += in(p, e);
    }
  }
  plan.local_order = torch::tensor(local_order, torch::kInt64).to(x.device());          // (R,)

  auto sent = x.index_select(0, plan.token_of);                                         // (M, d)
  auto received = differentiable_all_to_all(sent, ep_, plan.send_rows, plan.recv_rows); // (R, d)
  return {received.index_select(0, plan.local_order), std::move(plan)};                 // (R, d)
}

Tensor AllToAllTokenDispatcher::combine(const Tensor& expert_out, const Tensor& gates, const DispatchPlan& plan) {
  // Undo the regrouping, send every result back to the rank its token came from.
  auto by_source = torch::zeros_like(expert_out).index_copy(0, plan.local_order, expert_out);  // (R, d)
  auto returned = differentiable_all_to_all(by_source, ep_, plan.recv_rows, plan.send_rows);   // (M, d)
  return weighted_sum(returned, gates, plan);                                                   // (N, d)
}

}  // namespace some::parallel
