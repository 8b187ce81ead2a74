#pragma once
// Cutting a trained dense FFN into a narrower FFN or into an expert library (docs/design.md §2).
// The FFN computes down · act(up · x) with up (F, d) and down (d, F): its F hidden units are the
// pairs (row j of up, column j of down), and any subset of them is again an FFN. A narrower dense
// FFN takes one group of units; expert i of a library of E experts of width h takes group i.
//
//   first      units [i·h, (i+1)·h): the wide FFN's consecutive slices
//   magnitude  the E·h units of largest ‖up_j‖·‖down_:,j‖, in index order, then consecutive groups
//   cluster    MoEfication's split (Zhang et al. 2022, arXiv 2110.01786): balanced k-means of the
//              units by their normalised input weights up_j / ‖up_j‖ into E clusters of exactly h
//              units — units that fire on similar inputs share an expert. With F > E·h the E·h
//              units of largest magnitude are clustered; with one group it is `magnitude`.
#include <cstdint>
#include <string>

#include <torch/torch.h>

#include "src/model/options.h"

namespace some::model {

// model.init_units: UnitChoice (src/model/options.h).

// up (F, d), down (d, F) -> (groups, width) int64 unit indices, each row ascending. groups · width
// <= F, or width == F (every group is the whole FFN: copies). Deterministic: the same weights and
// seed give the same groups on every rank and thread count.
torch::Tensor choose_units(const torch::Tensor& up, const torch::Tensor& down, int64_t groups, int64_t width,
                           UnitChoice how, uint64_t seed);

// Balanced k-means of the rows of x (N, d), N = groups · width, by cosine: (groups, width) row
// indices, each row ascending, groups ordered by their first index. k-means++ seeding from
// `seed`, then rounds of a capacity-bounded assignment (every (row, centre) pair by decreasing
// similarity, a row to the first centre with room) and re-centring, until the assignment holds.
torch::Tensor balanced_kmeans(const torch::Tensor& x, int64_t groups, int64_t width, uint64_t seed, int rounds = 30);

}  // namespace some::model
