#pragma once
// Test hooks, in one place. Each is read from the environment and does nothing unless a test
// sets it; none changes a computed number when unset.
//   SOME_INJECT_FAULT=RANK:STEP        that rank throws before that step (one failing rank must
//                                      end the whole job)                      src/train/trainer.cpp
//   SOME_INJECT_TORCH_ERROR=RANK:STEP  a TORCH_CHECK fails there instead (how an error from inside
//                                      LibTorch reaches the user)              src/train/trainer.cpp
//   SOME_INJECT_SIGNAL=RANK:STEP       a stop signal reaches that rank during that step (a
//                                      preemption at an exact step)            src/train/trainer.cpp
//   SOME_CHECKPOINT_FAULT=RANK:PHASE:N SIGKILL of that rank at that point of its N-th save (1-based;
//                                      phases: file, gathered, manifest, renamed, latest)
//                                                                              checkpoints/checkpoint.cpp
//   SOME_FAULT_ZERO_GROUPED_OUTPUT     the grouped expert kernel's output zeroed, to show that the
//                                      grouped-vs-loop check fails             tests/grouped_parity.h
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>

namespace some::fault {

// RANK:STEP of a SOME_INJECT_* variable; nullopt when unset or malformed.
inline std::optional<std::pair<int, int64_t>> rank_and_step(const char* variable) {
  const char* spec = std::getenv(variable);
  int rank = 0;
  long long step = 0;
  if (!spec || std::sscanf(spec, "%d:%lld", &rank, &step) != 2) return std::nullopt;
  return std::make_pair(rank, static_cast<int64_t>(step));
}

// SOME_CHECKPOINT_FAULT, parsed.
struct CheckpointFault {
  int rank = -1;
  std::string phase;
  int nth = 0;
};
inline std::optional<CheckpointFault> checkpoint_fault() {
  const char* spec = std::getenv("SOME_CHECKPOINT_FAULT");
  if (!spec) return std::nullopt;
  CheckpointFault f;
  char phase[32] = {0};
  if (std::sscanf(spec, "%d:%31[a-z]:%d", &f.rank, phase, &f.nth) != 3) return std::nullopt;
  f.phase = phase;
  return f;
}

inline bool zero_grouped_output() { return std::getenv("SOME_FAULT_ZERO_GROUPED_OUTPUT") != nullptr; }

}  // namespace some::fault
