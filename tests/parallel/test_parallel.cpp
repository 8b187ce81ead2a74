// Communicators and the all-to-all token dispatcher under real MPI ranks (2 and 4): uneven and
// empty splits, and the expert-parallel SoME layer against the single-process layer, forward
// and gradients.
#include <numeric>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include "common/errors.h"
#include "parallel/gpu_assignment.h"
#include "parallel/gradient_allreduce.h"
#include "parallel/instrumented_communicator.h"
#include "parallel/mpi_communicator.h"
#include "parallel/parallel_state.h"
#include "src/model/some_layer.h"

using namespace some;

namespace {

parallel::MpiCommunicator& world() {
  static parallel::MpiCommunicator comm(MPI_COMM_WORLD);
  return comm;
}

// Rows rank `from` sends rank `to`: uneven, and zero for some pairs.
int64_t rows(int from, int to) { return (from * 3 + to * 2) % 4; }

model::ModelOptions layer_options(int64_t E) {
  model::ModelOptions o;
  o.d_model = 12;
  o.num_experts = E;
  o.top_k = 2;
  o.d_expert = 6;
  o.router.temperature = 0.3;
  return o;
}

}  // namespace

TEST(MpiCommunicator, AllToAllWithUnevenAndEmptySplits) {
  auto& comm = world();
  const int W = comm.world_size(), r = comm.rank();
  std::vector<int64_t> send(W), recv(W);
  std::vector<torch::Tensor> parts;
  for (int p = 0; p < W; ++p) {
    send[p] = rows(r, p);
    recv[p] = rows(p, r);
    // Row value encodes (from, to, index) so the receiver can check every row.
    parts.push_back(torch::arange(send[p], torch::kFloat32).unsqueeze(1).repeat({1, 3}) + 100 * r + 10 * p);
  }
  auto out = comm.all_to_all(torch::cat(parts), send, recv);
  EXPECT_EQ(out.size(0), std::accumulate(recv.begin(), recv.end(), int64_t{0}));
  int64_t row = 0;
  for (int p = 0; p < W; ++p) {
    for (int64_t i = 0; i < recv[p]; ++i, ++row) {
      EXPECT_EQ(out[row][2].item<float>(), 100 * p + 10 * r + i) << "row " << row << " from " << p;
    }
  }
}

TEST(MpiCommunicator, AllreduceAllgatherBroadcast) {
  auto& comm = world();
  const int W = comm.world_size(), r = comm.rank();
  auto t = torch::full({5}, static_cast<double>(r + 1), torch::kFloat64);
  comm.allreduce_sum(t);
  EXPECT_TRUE(torch::equal(t, torch::full({5}, W * (W + 1) / 2.0, torch::kFloat64)));
  auto g = comm.allgather(torch::tensor({r, 2 * r}, torch::kInt64));
  for (int p = 0; p < W; ++p) EXPECT_EQ(g[p][1].item<int64_t>(), 2 * p);
  auto b = torch::full({3}, static_cast<float>(r));
  comm.broadcast(b, W - 1);
  EXPECT_TRUE(torch::equal(b, torch::full({3}, static_cast<float>(W - 1))));
  EXPECT_EQ(parallel::broadcast_string(comm, r == 0 ? "runs/x" : "", 0), "runs/x");
  // Strings of different lengths, one empty (rank 1), in rank order.
  auto all = parallel::allgather_strings(comm, r == 1 ? "" : std::string(static_cast<size_t>(r + 1), 'a' + r));
  ASSERT_EQ(static_cast<int>(all.size()), W);
  for (int p = 0; p < W; ++p) EXPECT_EQ(all[p], p == 1 ? "" : std::string(static_cast<size_t>(p + 1), 'a' + p));
}

// The expert-parallel SoME layer on W ranks (P = W) against the whole layer in one process:
// every rank routes its own tokens (rank 1 none at all), outputs and gradients must match.
TEST(ExpertParallelLayer, MatchesSingleProcessForwardAndBackward) {
  auto& comm = world();
  const int W = comm.world_size(), r = comm.rank();
  auto state = parallel::ParallelState(std::make_shared<parallel::MpiCommunicator>(MPI_COMM_WORLD),
                                       std::make_shared<parallel::MpiCommunicator>(MPI_COMM_WORLD));
  const int64_t E = 2 * W;
  auto opts = layer_options(E);
  model::SoMELayer sharded(opts, 0, &state);
  model::SoMELayer whole(opts, 0);  // same seeds: same keys, query net init below, all experts
  {
    torch::NoGradGuard no_grad;
    torch::manual_seed(5);
    for (auto& p : whole.parameters()) p.uniform_(-0.5, 0.5);
    auto sp = sharded.parameters(), wp = whole.parameters();
    for (size_t i = 0; i < sp.size(); ++i) sp[i].copy_(wp[i]);
  }
  EXPECT_TRUE(torch::equal(sharded.experts()->w_down, whole.experts()->w_down.narrow(0, 2 * r, 2)));

  // Tokens of every rank, generated identically everywhere; rank 1 has none.
  std::vector<int64_t> counts;
  for (int p = 0; p < W; ++p) counts.push_back(p == 1 ? 0 : 5 + 3 * p);
  torch::manual_seed(17);
  auto all_x = torch::randn({std::accumulate(counts.begin(), counts.end(), int64_t{0}), opts.d_model});
  auto all_w = torch::randn_like(all_x);
  const int64_t first = std::accumulate(counts.begin(), counts.begin() + r, int64_t{0});
  auto x = all_x.narrow(0, first, counts[r]).clone().requires_grad_(true);
  auto y = sharded.forward(x);
  (y * all_w.narrow(0, first, counts[r])).sum().backward();
  // Query-net gradients are per-rank partial sums: sum them as the trainer's allreduce does.
  std::vector<torch::Tensor> grads;
  for (auto& p : sharded.parameters()) {
    auto g = p.grad().clone();
    comm.allreduce_sum(g);
    grads.push_back(g);
  }

  auto ref_x = all_x.clone().requires_grad_(true);
  auto ref_y = whole.forward(ref_x);
  (ref_y * all_w).sum().backward();
  EXPECT_TRUE(torch::allclose(y, ref_y.narrow(0, first, counts[r]), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(x.grad(), ref_x.grad().narrow(0, first, counts[r]), 1e-5, 1e-6));
  auto wp = whole.parameters();
  for (size_t i = 0; i < grads.size(); ++i) EXPECT_TRUE(torch::allclose(grads[i], wp[i].grad(), 1e-4, 1e-6)) << i;
}

// Under bf16 autocast the rows travel in bf16: the all-to-all carries half the bytes of the fp32
// run for the same routing, and the layer's output (combined in fp32) stays close to it.
TEST(ExpertParallelLayer, RowsTravelInBf16UnderAutocast) {
  auto& comm = world();
  auto ep = std::make_shared<parallel::InstrumentedCommunicator>(std::make_shared<parallel::MpiCommunicator>(MPI_COMM_WORLD));
  auto state = parallel::ParallelState(std::make_shared<parallel::MpiCommunicator>(MPI_COMM_WORLD), ep);
  auto opts = layer_options(2 * comm.world_size());
  model::SoMELayer layer(opts, 0, &state);
  torch::manual_seed(23 + comm.rank());
  auto x = torch::randn({16, opts.d_model});
  auto run = [&](bool bf16) {
    ep->reset();
    at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCPU, bf16);
    auto y = layer.forward(x);
    at::autocast::set_autocast_enabled(at::kCPU, false);
    return std::make_pair(y.detach(), ep->stats(parallel::CommOp::all_to_all));
  };
  auto [y32, fp32] = run(false);
  auto [y16, bf16] = run(true);
  EXPECT_EQ(y16.scalar_type(), torch::kFloat32);  // the combine sums in the gates' fp32
  EXPECT_LE((y16 - y32).abs().max().item<double>(), 5e-2);
  EXPECT_EQ(bf16.calls, fp32.calls);
  EXPECT_EQ(2 * (bf16.bytes + bf16.self_bytes), fp32.bytes + fp32.self_bytes);
  EXPECT_GT(fp32.bytes + fp32.self_bytes, 0);
}

TEST(ExpertParallelLayer, ExpertsThatReceiveNoTokens) {
  // Every token routes to experts 0 and 1 (rank 0's): all other ranks' experts get nothing.
  auto& comm = world();
  const int W = comm.world_size();
  auto state = parallel::ParallelState(std::make_shared<parallel::MpiCommunicator>(MPI_COMM_WORLD),
                                       std::make_shared<parallel::MpiCommunicator>(MPI_COMM_WORLD));
  auto opts = layer_options(2 * W);
  model::SoMELayer sharded(opts, 0, &state);
  model::SoMELayer whole(opts, 0);
  {
    torch::NoGradGuard no_grad;
    // Keys 0 and 1 along +x, the rest along -x; queries = identity of x's sign: all +x.
    auto k = torch::zeros({2 * W, opts.d_model});
    k.select(1, 0).fill_(-1);
    k[0][0] = 1;
    k[1][0] = 1;
    k[1][1] = 0.1;
    for (auto* m : {&sharded, &whole}) m->named_buffers()["keys"].copy_(k);
    for (auto* m : {&sharded, &whole}) {
      auto params = m->parameters();
      params[0].copy_(torch::eye(opts.d_model));
      params[1].zero_();
    }
  }
  auto x = torch::randn({6, opts.d_model}).abs();  // positive first coordinate
  auto y = sharded.forward(x);
  EXPECT_TRUE(torch::allclose(y, whole.forward(x), 1e-5, 1e-6));
  EXPECT_EQ(sharded.last_routing().indices.max().item<int64_t>(), 1);
}

TEST(GradientAllreduce, OverlappedBucketsStartDuringBackwardAndMatch) {
  auto& comm = world();
  const int W = comm.world_size(), r = comm.rank();
  auto make = [] {
    torch::manual_seed(3);
    return std::vector<torch::Tensor>{torch::randn({40, 30}).requires_grad_(), torch::randn({30}).requires_grad_(),
                                      torch::randn({1000}).requires_grad_()};
  };
  auto a = make(), b = make();
  parallel::GradientAllreduce overlapped(a, comm, /*overlap=*/true, /*bucket_bytes=*/4100);
  parallel::GradientAllreduce after(b, comm, /*overlap=*/false, /*bucket_bytes=*/4100);
  std::vector<torch::Tensor> local(3);
  for (int micro = 0; micro < 2; ++micro) {
    // Rank- and micro-batch-dependent gradients: d/dp sum(p * c) = c.
    std::vector<torch::Tensor> coef;
    for (auto& p : a) coef.push_back(torch::full_like(p, 1.0 + r + 10 * micro) * torch::arange(p.numel()).view_as(p));
    if (micro == 1) overlapped.expect_final_backward();
    torch::Tensor la = torch::zeros({}), lb = torch::zeros({});
    for (size_t i = 0; i < a.size(); ++i) {
      la = la + (a[i] * coef[i]).sum();
      lb = lb + (b[i] * coef[i]).sum();
      local[i] = micro == 0 ? coef[i].clone() : local[i] + coef[i];
    }
    la.backward();
    lb.backward();
  }
  overlapped.finish();
  after.finish();
  EXPECT_GT(overlapped.num_buckets(), 1);
  EXPECT_EQ(overlapped.buckets_started_in_backward(), overlapped.num_buckets());
  for (size_t i = 0; i < a.size(); ++i) {
    auto expected = local[i].clone();
    comm.allreduce_sum(expected);
    expected.div_(W);
    EXPECT_TRUE(torch::allclose(a[i].grad(), expected)) << i;
    EXPECT_TRUE(torch::allclose(b[i].grad(), expected)) << i;
  }
}

// One rank per GPU, checked before NCCL exists (so it runs on CPU ranks with made-up GPUs):
// every rank must throw the same error naming the sharing ranks, never only some of them.
TEST(GpuAssignment, RanksSharingAGpuAreRefusedOnEveryRank) {
  auto& comm = world();
  const int W = comm.world_size(), r = comm.rank();
  // Distinct GPUs: rank r has bus r on one host; nothing is thrown.
  EXPECT_NO_THROW(parallel::require_one_rank_per_gpu(comm, {"node-a", fmt::format("0000:{:02d}:00.0", r), r}));
  // Same index on different hosts is fine too (one GPU per node).
  EXPECT_NO_THROW(parallel::require_one_rank_per_gpu(comm, {fmt::format("node-{}", r), "0000:18:00.0", 0}));
  // Ranks 0 and W-1 on one GPU (as local_rank % devices would map 2 ranks onto 1 GPU).
  const int bus = r == W - 1 ? 0 : r;
  std::string message;
  try {
    parallel::require_one_rank_per_gpu(comm, {"node-a", fmt::format("0000:{:02d}:00.0", bus), bus});
  } catch (const ConfigError& e) {
    message = e.what();
  }
  EXPECT_NE(message.find(fmt::format("ranks 0, {} share cuda:0 (PCI 0000:00:00.0) on host node-a", W - 1)),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("one GPU per rank"), std::string::npos) << message;
}

// A failed MPI call names MPI's own reason, not only its number.
TEST(MpiCheck, ErrorsCarryMpisText) {
  const auto text = parallel::mpi_error_string(MPI_ERR_TRUNCATE);
  EXPECT_NE(text.find("truncat"), std::string::npos) << text;
  EXPECT_NE(text.find(fmt::format("error code {}", MPI_ERR_TRUNCATE)), std::string::npos) << text;
  std::string message;
  try {
    SOME_CHECK_MPI(MPI_ERR_TRUNCATE);
  } catch (const CallError& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("MPI call 'MPI_ERR_TRUNCATE' failed at"), std::string::npos) << message;
  EXPECT_NE(message.find("truncat"), std::string::npos) << message;
}
