#pragma once
// What several sub-commands share: the dataset (prepared on demand for the default corpus),
// the run directory, the device and threads, and a finished run loaded back for eval/generate.
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "data/dataset.h"
#include "data/tokenizer.h"
#include "launcher/config.h"
#include "parallel/parallel_state.h"
#include "src/model/transformer.h"

namespace some::launcher {

// The rank grid: MPI (NCCL for CUDA) when launched by mpirun / srun, else one process (then P
// must be 1). `device` is this rank's device (see select_device).
parallel::ParallelState make_parallel_state(const Config& cfg, const torch::Device& device);
// Ranks of this job on this node (for threads per rank).
int local_ranks();
// Reads DIR/meta.json; the default dataset is built first (by rank 0) if it is absent.
data::DatasetMeta ensure_dataset(const std::string& dir, parallel::Communicator* comm = nullptr);
// Creates `requested` or runs/<timestamp> (named by rank 0), and returns its path. A directory
// that already holds a run is refused unless `allow_existing` (a resumed run).
std::string make_run_dir(const std::string& requested, parallel::Communicator* comm = nullptr,
                         bool allow_existing = false);
// configs/default.toml of the working directory, else of the repository holding the binary.
std::string default_config_path();
// ConfigError when cuda is asked and absent; under an MPI launcher each rank takes the GPU of
// its local rank (rank_cuda_device) and makes it current before any other CUDA call.
torch::Device select_device(const Config& cfg);
// This process's rank on its node (OMPI_COMM_WORLD_LOCAL_RANK, MPI_LOCALRANKID, SLURM_LOCALID; 0).
int local_rank();
// cuda:<local_rank mod device_count>, passed to `make_current` (the process's current CUDA
// device) before it is returned: CUDA calls made without naming a device — pinned host memory,
// NCCL's setup, cudaMemGetInfo, libraries — then land on the rank's own GPU, not all on GPU 0.
torch::Device rank_cuda_device(int local_rank, int device_count,
                               const std::function<void(const torch::Device&)>& make_current);
void set_threads(const Config& cfg, int local_ranks = 1);
model::ModelOptions model_options(const Config& cfg, const data::DatasetMeta& meta);

struct LoadedRun {
  Config config;
  data::DatasetMeta meta;
  model::Transformer model{nullptr};
  std::optional<data::Tokenizer> tokenizer;
  torch::Device device{torch::kCPU};
  std::string checkpoint;  // the step_* directory it was loaded from
};
// Loads a checkpoint (`path`: a run directory = its latest, a checkpoints directory or a step_*
// directory), verified, into one process: its config (+ overrides), the dataset it names (or
// `data_dir` when non-empty), the run's tokenizer and every tensor.
LoadedRun load_run(const std::string& path, const std::vector<std::string>& overrides,
                   const std::string& data_dir);

}  // namespace some::launcher
