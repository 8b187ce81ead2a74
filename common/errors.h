#pragma once
// Typed errors. Library code throws; only the launcher decides how a process ends
// (exit code, or MPI_Abort on a multi-rank run), so every error path is testable.
#include <stdexcept>
#include <string>

namespace some {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// A config key, type or value that is not allowed (names key, value, what is allowed).
struct ConfigError : Error {
  using Error::Error;
};
// A missing, corrupt or inconsistent data / tokenizer / checkpoint file (names the file).
struct DataError : Error {
  using Error::Error;
};
// A failed call into MPI / NCCL / CUDA / HDF5 (names the call, file and line).
struct CallError : Error {
  using Error::Error;
};
// NaN / Inf in the loss or gradients (names the step).
struct NumericError : Error {
  using Error::Error;
};

}  // namespace some
