#include "launcher/session.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <thread>

#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <fmt/chrono.h>

#include "checkpoints/checkpoint.h"
#include "common/check.h"
#include "common/errors.h"
#include "common/logging.h"
#include "data/prepare.h"
#include "parallel/mpi_communicator.h"
#include "src/model/tensor_names.h"

namespace fs = std::filesystem;

namespace some::launcher {

parallel::ParallelState make_parallel_state(const Config& cfg, const torch::Device& device) {
  if (parallel::MpiRuntime::launched_by_mpi()) {
    return parallel::ParallelState::from_mpi(static_cast<int>(cfg.parallel.expert_parallel),
                                             device.is_cuda() ? device.index() : -1);
  }
  if (cfg.parallel.expert_parallel != 1) {
    throw ConfigError(fmt::format("parallel.expert_parallel = {} needs several ranks: run under mpirun -np W (P divides W)",
                                  cfg.parallel.expert_parallel));
  }
  return parallel::ParallelState::single_process();
}

int local_ranks() {
  for (const char* var : {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"}) {
    if (const char* v = std::getenv(var)) return std::max(1, std::atoi(v));
  }
  return 1;
}

data::DatasetMeta ensure_dataset(const std::string& dir, parallel::Communicator* comm) {
  const bool leader = !comm || comm->rank() == 0;
  if (leader && !fs::exists(fs::path(dir) / "meta.json")) {
    if (fs::weakly_canonical(dir) != fs::weakly_canonical("data/default")) {
      throw DataError(fmt::format("dataset '{}' has no meta.json: run `some prepare --out {}` first", dir, dir));
    }
    log::get("data")->info("no dataset at {}: building the default corpus (King James Bible)", dir);
    data::PrepareOptions opts;
    opts.out_dir = dir;
    data::prepare_dataset(opts);
  }
  if (comm) comm->barrier();
  return data::read_meta(dir);
}

std::string make_run_dir(const std::string& requested, parallel::Communicator* comm, bool allow_existing) {
  if (comm && comm->world_size() > 1) {
    std::string dir = comm->rank() == 0 ? make_run_dir(requested, nullptr, allow_existing) : "";
    return parallel::broadcast_string(*comm, dir, 0);
  }
  std::string dir = requested;
  if (dir.empty()) {
    auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    auto base = fmt::format("runs/{:%Y%m%d-%H%M%S}", fmt::localtime(now));
    dir = base;
    for (int i = 1; fs::exists(dir); ++i) dir = fmt::format("{}-{}", base, i);
  }
  // One run per directory: metrics.jsonl and the analytics would otherwise mix two runs.
  if (!allow_existing && fs::exists(fs::path(dir) / "metrics.jsonl")) {
    throw ConfigError(fmt::format("run directory '{}' already holds a run (metrics.jsonl); choose another --run-dir, or continue it with --resume auto", dir));
  }
  fs::create_directories(dir);
  return dir;
}

std::string default_config_path() {
  const std::string relative = "configs/default.toml";
  if (fs::exists(relative)) return relative;
  // Run from elsewhere: the repository the binary was built in (build/bin/some).
  std::error_code ec;
  auto exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    auto beside = exe.parent_path().parent_path().parent_path() / relative;
    if (fs::exists(beside)) return beside.string();
  }
  throw DataError("configs/default.toml not found (run from the repository root, or pass --config FILE)");
}

int local_rank() {
  for (const char* var : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"}) {
    if (const char* v = std::getenv(var)) return std::max(0, std::atoi(v));
  }
  return 0;
}

torch::Device rank_cuda_device(int local_rank, int device_count,
                               const std::function<void(const torch::Device&)>& make_current) {
  SOME_REQUIRE(device_count > 0, ConfigError, "train.device = \"cuda\" but no CUDA device is visible");
  const torch::Device device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank % device_count));
  make_current(device);
  log::get("train")->info("local rank {}: {} of {} visible GPU(s) is this process's current device", local_rank,
                          device.str(), device_count);
  return device;
}

torch::Device select_device(const Config& cfg) {
  if (cfg.train.device == train::DeviceKind::kCuda && !torch::cuda::is_available()) {
    throw ConfigError("train.device = \"cuda\" but no CUDA device is available to this LibTorch build");
  }
  if (cfg.train.device != train::DeviceKind::kCuda) return torch::Device(torch::kCPU);
  return rank_cuda_device(local_rank(), static_cast<int>(torch::cuda::device_count()), [](const torch::Device& d) {
    // Through Torch's device-guard registry: the same call as c10::cuda::set_device, and it
    // compiles against a CPU-only LibTorch too.
    c10::impl::getDeviceGuardImpl(d.type())->setDevice(d);
  });
}

void set_threads(const Config& cfg, int local_ranks) {
  int threads = static_cast<int>(cfg.train.threads);
  if (threads <= 0) {
    threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / std::max(local_ranks, 1));
  }
  torch::set_num_threads(threads);
  torch::set_num_interop_threads(1);
}

model::ModelOptions model_options(const Config& cfg, const data::DatasetMeta& meta) {
  auto opts = cfg.model;
  opts.vocab_size = meta.vocab_size;
  opts.max_seq_len = cfg.train.seq_len;
  return opts;
}

LoadedRun load_run(const std::string& path, const std::vector<std::string>& overrides, const std::string& data_dir) {
  checkpoints::CheckpointReader reader(path, /*verify=*/true);  // a run directory means its latest
  LoadedRun run;
  run.checkpoint = reader.dir();
  run.config = load_config_text(reader.manifest().info.config, reader.dir() + "/manifest.json", overrides);
  run.config.parallel.expert_parallel = 1;  // one process holds every expert, whatever P saved them
  if (!data_dir.empty()) run.config.data_dir = data_dir;
  run.meta = data::read_meta(run.config.data_dir);
  // The run's own copy of its tokenizer (RUN/checkpoints/step_X/../../), else the dataset's.
  const auto run_tokenizer = fs::path(reader.dir()).parent_path().parent_path() / "tokenizer.model";
  run.tokenizer.emplace(data::Tokenizer::load(fs::exists(run_tokenizer) ? run_tokenizer.string()
                                                                          : run.meta.tokenizer_path()));
  run.device = select_device(run.config);
  set_threads(run.config);
  run.model = model::Transformer(model_options(run.config, run.meta));
  auto state = run.model->state_tensors();
  reader.load_into(state);
  run.model->to(run.device);
  return run;
}

}  // namespace some::launcher
