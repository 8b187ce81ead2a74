#include "src/model/ffn_units.h"

#include <algorithm>
#include <numeric>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>

#include "common/check.h"
#include "common/choice.h"
#include "common/errors.h"

namespace some::model {

namespace {

// The `count` units of largest ‖up_j‖·‖down_:,j‖ (ties to the lower index), ascending.
torch::Tensor largest_units(const torch::Tensor& up, const torch::Tensor& down, int64_t count) {
  auto score = up.to(torch::kFloat64).norm(2, 1) * down.to(torch::kFloat64).norm(2, 0);  // (F,)
  std::vector<int64_t> order(score.size(0));
  std::iota(order.begin(), order.end(), 0);
  auto s = score.contiguous();
  const double* v = s.data_ptr<double>();
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return v[a] > v[b]; });
  order.resize(count);
  std::sort(order.begin(), order.end());
  return torch::tensor(order, torch::kInt64);
}

}  // namespace

torch::Tensor balanced_kmeans(const torch::Tensor& x_in, int64_t groups, int64_t width, uint64_t seed, int rounds) {
  const int64_t n = x_in.size(0);
  SOME_REQUIRE(n == groups * width, Error, "balanced_kmeans: {} rows for {} groups of {}", n, groups, width);
  torch::NoGradGuard no_grad;
  auto x = x_in.to(torch::kFloat64);
  x = x / x.norm(2, 1, true).clamp_min(1e-30);                                   // (N, d) unit rows
  // k-means++ seeding: the first centre uniformly, each next one with probability ∝ its
  // squared distance to the nearest centre so far.
  auto gen = at::detail::createCPUGenerator(seed);
  std::vector<int64_t> seeds = {torch::randint(n, {1}, gen, torch::kLong).item<int64_t>()};
  auto nearest = (2 - 2 * x.matmul(x[seeds[0]])).clamp_min(0);                    // (N,) squared distance
  while (static_cast<int64_t>(seeds.size()) < groups) {
    auto total = nearest.sum().item<double>();
    int64_t next = 0;
    if (total <= 0) {  // every row is already a centre's: the lowest row not yet chosen
      while (std::find(seeds.begin(), seeds.end(), next) != seeds.end()) ++next;
    } else {
      next = torch::multinomial(nearest, 1, false, gen).item<int64_t>();
    }
    seeds.push_back(next);
    nearest = torch::minimum(nearest, (2 - 2 * x.matmul(x[next])).clamp_min(0));
  }
  auto centres = x.index_select(0, torch::tensor(seeds, torch::kInt64));          // (G, d)
  std::vector<int64_t> assign(n, -1), previous;
  for (int round = 0; round < rounds; ++round) {
    // Capacity-bounded assignment: all (row, centre) pairs by decreasing similarity (ties: lower
    // row, then lower centre), each row to the first centre that still has room.
    auto sim = x.matmul(centres.t()).contiguous();                                // (N, G)
    const double* s = sim.data_ptr<double>();
    std::vector<int64_t> pairs(n * groups);
    std::iota(pairs.begin(), pairs.end(), 0);
    std::stable_sort(pairs.begin(), pairs.end(), [&](int64_t a, int64_t b) { return s[a] > s[b]; });
    std::vector<int64_t> room(groups, width);
    std::fill(assign.begin(), assign.end(), -1);
    int64_t placed = 0;
    for (auto p : pairs) {
      const int64_t row = p / groups, g = p % groups;
      if (assign[row] >= 0 || room[g] == 0) continue;
      assign[row] = g;
      --room[g];
      if (++placed == n) break;
    }
    if (assign == previous) break;
    previous = assign;
    auto a = torch::tensor(assign, torch::kInt64);
    centres = torch::zeros({groups, x.size(1)}, x.options()).index_add_(0, a, x);
    centres = centres / centres.norm(2, 1, true).clamp_min(1e-30);
  }
  // Groups as ascending unit lists, ordered by their first unit (independent of seeding order).
  std::vector<std::vector<int64_t>> members(groups);
  for (int64_t row = 0; row < n; ++row) members[assign[row]].push_back(row);
  std::sort(members.begin(), members.end());
  auto out = torch::empty({groups, width}, torch::kInt64);
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t j = 0; j < width; ++j) out[g][j] = members[g][j];
  }
  return out;
}

torch::Tensor choose_units(const torch::Tensor& up, const torch::Tensor& down, int64_t groups, int64_t width,
                           UnitChoice how, uint64_t seed) {
  const int64_t F = up.size(0);
  SOME_REQUIRE(down.size(1) == F, Error, "an FFN's up has {} units, its down {}", F, down.size(1));
  if (width == F) return torch::arange(F, torch::kInt64).repeat({groups, 1});  // copies
  SOME_REQUIRE(groups * width <= F, ConfigError, "{} groups of {} units need {} units, the FFN has {}", groups, width,
               groups * width, F);
  torch::NoGradGuard no_grad;
  const int64_t count = groups * width;
  if (how == UnitChoice::kFirst) return torch::arange(count, torch::kInt64).view({groups, width});
  auto chosen = count == F ? torch::arange(F, torch::kInt64) : largest_units(up, down, count);  // (count,)
  if (how == UnitChoice::kMagnitude || groups == 1) return chosen.view({groups, width});
  auto local = balanced_kmeans(up.to(torch::kCPU).index_select(0, chosen), groups, width, seed);  // (G, h) of chosen
  return chosen.index_select(0, local.flatten()).view({groups, width});
}

}  // namespace some::model
