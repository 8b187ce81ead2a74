#include "launcher/session.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include <fmt/chrono.h>

#include "checkpoints/checkpoint.h"
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

torch::Device select_device(const Config& cfg) {
  if (cfg.train.device == "cuda" && !torch::cuda::is_available()) {
    throw ConfigError("train.device = \"cuda\" but no CUDA device is available to this LibTorch build");
  }
  if (cfg.train.device != "cuda") return torch::Device(cfg.train.device);
  int local_rank = 0;
  for (const char* var : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"}) {
    if (const char* v = std::getenv(var)) {
      local_rank = std::atoi(v);
      break;
    }
  }
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank % torch::cuda::device_count()));
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

void load_expert_library(model::Transformer& model, const Config& cfg, parallel::Communicator* comm) {
  const auto& path = cfg.model.experts_from;
  checkpoints::CheckpointReader reader(path, /*verify=*/true, comm);
  const auto source = load_config_text(reader.manifest().info.config, reader.dir() + "/manifest.json", {});
  const auto& m = cfg.model;
  auto bad = [&](const std::string& what) {
    return ConfigError(fmt::format("model.experts_from = '{}': {}", path, what));
  };
  if (source.model.ffn != "dense") throw bad(fmt::format("its model.ffn is '{}', not 'dense'", source.model.ffn));
  if (source.model.d_model != m.d_model) {
    throw bad(fmt::format("its model.d_model is {}, this model's is {}", source.model.d_model, m.d_model));
  }
  if (source.model.expert.activation != m.expert.activation) {
    throw bad(fmt::format("its FFN activation is '{}', expert.activation is '{}'", source.model.expert.activation,
                          m.expert.activation));
  }
  const int64_t d_ff = source.model.d_ff, h = m.d_expert, E = m.num_experts;
  const bool slices = E * h == d_ff, copies = h == d_ff;
  if (!slices && !copies) {
    throw bad(fmt::format("its FFN width d_ff = {} is neither num_experts x d_expert = {} x {} = {} (slices) nor "
                          "d_expert = {} (copies)",
                          d_ff, E, h, E * h, h));
  }
  // Expert i of layer l: rows [i*h, (i+1)*h) of up (d_ff, d) and the matching columns of down
  // (d, d_ff); with copies every expert is the whole FFN.
  torch::NoGradGuard no_grad;
  auto state = model->state_tensors();
  const auto indices = model->some_layer_indices();
  for (auto l : indices) {
    if (l >= source.model.n_layers) throw bad(fmt::format("it has {} layers, this model needs layer {}", source.model.n_layers, l));
    auto up = reader.read(fmt::format("layers.{}.dense.up.weight", l));      // (d_ff, d)
    auto down = reader.read(fmt::format("layers.{}.dense.down.weight", l));  // (d, d_ff)
    for (int64_t i = 0; i < E; ++i) {
      auto w_down = state.find(model::names::expert(l, "some", i, "w_down"));
      if (w_down == state.end()) continue;  // another rank's expert
      const int64_t first = slices ? i * h : 0;
      w_down->second.copy_(up.narrow(0, first, h));                                       // (h, d)
      state.at(model::names::expert(l, "some", i, "w_up")).copy_(down.narrow(1, first, h));  // (d, h)
    }
  }
  log::get("train")->info("expert library from {}: {} of its {}-wide FFNs into {} SoME layer(s) of {} experts", reader.dir(),
                          slices ? fmt::format("slices of {} units", h) : std::string("copies"), d_ff, indices.size(), E);
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
