#pragma once
// Linear warmup to the peak, then cosine to min_lr_ratio * peak at max_steps.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>

namespace some::train {

inline double learning_rate(int64_t step, int64_t warmup, int64_t max_steps, double peak,
                            double min_ratio) {
  // step counts from 1.
  if (warmup > 0 && step <= warmup) return peak * static_cast<double>(step) / static_cast<double>(warmup);
  const double span = std::max<int64_t>(max_steps - warmup, 1);
  const double progress = std::clamp(static_cast<double>(step - warmup) / span, 0.0, 1.0);
  const double cosine = 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
  return peak * (min_ratio + (1.0 - min_ratio) * cosine);
}

}  // namespace some::train
