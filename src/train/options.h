#pragma once
// Option structs of the trainer (docs/design.md §4, §8), filled by the launcher from TOML.
#include <cstdint>
#include <string>

#include "common/choice.h"

namespace some::train {

enum class DeviceKind { kCpu, kCuda };        // train.device
enum class Dtype { kFloat32, kBfloat16 };     // train.dtype (bfloat16: autocast)
enum class ExpertsInCheckpoints { kEvery, kOnce };  // train.checkpoint_experts

}  // namespace some::train

namespace some {
template <> struct Choices<train::DeviceKind> {
  static constexpr Choice<train::DeviceKind> values[] = {{"cpu", train::DeviceKind::kCpu},
                                                         {"cuda", train::DeviceKind::kCuda}};
};
template <> struct Choices<train::Dtype> {
  static constexpr Choice<train::Dtype> values[] = {{"float32", train::Dtype::kFloat32},
                                                    {"bfloat16", train::Dtype::kBfloat16}};
};
template <> struct Choices<train::ExpertsInCheckpoints> {
  static constexpr Choice<train::ExpertsInCheckpoints> values[] = {{"every", train::ExpertsInCheckpoints::kEvery},
                                                                   {"once", train::ExpertsInCheckpoints::kOnce}};
};
}  // namespace some

namespace some::train {

struct OptimOptions {
  double lr = 3e-3;
  double weight_decay = 0.1;      // on matrices only
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  int64_t warmup_steps = 50;
  double min_lr_ratio = 0.1;      // cosine decays to lr * min_lr_ratio
  double clip = 1.0;              // grad-norm clip; 0 = off
};

struct TrainOptions {
  int64_t micro_batch = 16;       // sequences per forward/backward
  int64_t global_batch = 32;      // sequences per optimizer step (a multiple of micro_batch)
  int64_t seq_len = 128;
  int64_t max_steps = 1000;
  double max_minutes = 0.0;       // wall-clock budget; 0 = none
  int64_t log_every = 10;
  int64_t eval_every = 200;       // 0 = only at the end
  int64_t eval_batches = 20;      // micro-batches of validation windows; 0 = the whole split
  uint64_t seed = 1234;
  DeviceKind device = DeviceKind::kCpu;
  int64_t cuda_index = 0;         // device = cuda: this rank's GPU (set by the launcher, not a config key)
  Dtype dtype = Dtype::kFloat32;
  int64_t threads = 0;            // intra-op threads; 0 = all cores / local ranks
  std::string sample_prompt = "And God said";
  int64_t sample_tokens = 200;
  int64_t eval_sample_tokens = 32;  // a sample from sample_prompt at every eval (metrics "sample"); 0 = none
  // Checkpoints (docs/design.md §7) in RUN/checkpoints/; one is always written at the end of a run.
  int64_t checkpoint_every = 0;    // steps between checkpoints; 0 = none
  double checkpoint_minutes = 0;   // wall-clock minutes between checkpoints; 0 = none
  int64_t keep_last = 3;           // checkpoints kept (the oldest pruned); 0 = all
  // every: each checkpoint holds the frozen experts; once: they are written to an expert
  // library (RUN/checkpoints/experts_<step>) at the first save and referenced (a run resumed
  // in its own directory keeps using its library).
  ExpertsInCheckpoints checkpoint_experts = ExpertsInCheckpoints::kEvery;
  // Benchmarks: wait for the device at every phase boundary, so that StepTimes are the device's
  // times on CUDA (which queues work and returns at once) rather than the host's enqueue times.
  bool synchronize_phases = false;
};

struct ParallelOptions {
  int64_t expert_parallel = 1;    // P: ranks one SoME layer's experts are sharded over (P | W, P | E)
  int64_t key_check_every = 100;  // steps between cross-rank key-store checksums; 0 = never
  bool overlap_grad_allreduce = true;  // start gradient buckets during the last backward
};

}  // namespace some::train
