// Checkpoint save / load benchmark (docs/design.md §7): the model and Trainer of a config at the current
// world size W (`mpirun -np W`, or one plain process) and expert-parallel size P
// (parallel.expert_parallel), one training step so that AdamW state exists, a first save timed
// on its own (`first_save_s`: with train.checkpoint_experts = once it also writes the expert
// library of frozen experts that every later checkpoint references), then R repeats of
//
//   save         Trainer::save_checkpoint (collective: per-rank HDF5 + fsync + SHA-256, manifest,
//                directory rename, `latest`)
//   load+verify  Trainer::resume(dir, verify = true): every file's size and SHA-256 (the expert
//                library's too), then the load
//   load         Trainer::resume(dir, verify = false)
//   verify       CheckpointReader(dir, verify = true) alone (manifests + checksums, no tensors)
//
// each with a barrier before it, timed on every rank up to the end of its own call and reduced
// by max over ranks. Before every load / verify the checkpoints' pages are dropped from the page
// cache (posix_fadvise DONTNEED on every file, from every rank; --warm-cache keeps them), so a
// load reads the disk as a restarted job would. The loaded state is checked bit-exact against the
// state that was saved (the model's tensors are zeroed before the first load of each repeat).
// Each step directory is deleted after its repeat (not timed), the run directory (with the
// expert library) at the end. Rank 0 prints one JSON line.
//
//   build/bin/bench_checkpoint --config configs/default.toml --data data/default --dir /tmp/ckb
//   mpirun -np 4 build/bin/bench_checkpoint --config configs/some-150m.toml
//       --set parallel.expert_parallel=4 --set train.threads=1 --data data/default --dir /tmp/ckb
//
// Conventions: "parameter_bytes" = every tensor that defines the model, whole model (every
// expert of every layer, counted once however many EP groups hold it), parameters and buffers
// at their stored dtype (all fp32 here; the rotary tables, recomputed from the config, are not
// state). "optimizer_bytes" = AdamW exp_avg + exp_avg_sq + step of every trainable parameter.
// "step_dir_bytes" = the files of one step directory (rank files + manifest.json): what every
// save writes; "library_bytes" = the expert library's files (0 with checkpoint_experts = every);
// "checkpoint_bytes" = their sum: what a load reads and a verification hashes. MB = 1e6 bytes;
// save MB/s = step_dir_bytes / s, load and verify MB/s = checkpoint_bytes / s.
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/sinks/sink.h>
#include <torch/torch.h>

#include "checkpoints/checkpoint.h"
#include "common/check.h"
#include "common/errors.h"
#include "common/logging.h"
#include "common/sha256.h"
#include "launcher/config.h"
#include "launcher/session.h"
#include "parallel/mpi_communicator.h"
#include "parallel/parallel_state.h"
#include "src/model/tensor_names.h"
#include "src/model/transformer.h"
#include "src/train/device.h"
#include "src/train/trainer.h"

using namespace some;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// Drops the (clean, fsynced) pages of every file under `dir` from the page cache.
void drop_page_cache(const std::string& dir) {
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    int fd = ::open(entry.path().c_str(), O_RDONLY);
    if (fd < 0) continue;
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

// Exact per-tensor sums (float64) of what a load restores on this rank: the model's tensors and,
// where this rank writes them (rank 0), the optimizer moments and steps. Equal vectors before
// the save and after a load = the load restored every value (bit-exact for fp32 -> fp64 sums).
std::vector<double> fingerprint(train::Trainer& trainer) {
  torch::NoGradGuard no_grad;
  std::vector<double> out;
  auto add = [&](const torch::Tensor& t) {
    auto d = t.detach().to(torch::kCPU, torch::kFloat64);
    out.push_back(d.sum().item<double>());
    out.push_back(d.abs().sum().item<double>());
  };
  for (auto& [name, t] : trainer.model()->state_tensors()) add(t);
  for (auto& [name, t] : trainer.checkpoint_tensors()) {
    if (model::names::is_optimizer_state(name)) add(t);
  }
  return out;
}

void zero_state(train::Trainer& trainer) {
  torch::NoGradGuard no_grad;
  for (auto& [name, t] : trainer.model()->state_tensors()) t.zero_();
  for (auto& [name, t] : trainer.checkpoint_tensors()) {
    if (starts_with(name, "optim.exp_avg")) t.zero_();
  }
}

// Regular files under a directory: total bytes, count, and the sizes of manifest.json and
// rank_00000.h5 at its top.
struct DirBytes {
  int64_t bytes = 0, files = 0, manifest = 0, rank0 = 0;
};
DirBytes dir_bytes(const std::string& dir) {
  DirBytes d;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    const auto size = static_cast<int64_t>(entry.file_size());
    d.bytes += size;
    ++d.files;
    if (entry.path().parent_path() == fs::path(dir)) {
      if (entry.path().filename() == "manifest.json") d.manifest = size;
      if (entry.path().filename() == "rank_00000.h5") d.rank0 = size;
    }
  }
  return d;
}

// Max over ranks of one value per rank.
double max_over_ranks(parallel::Communicator& comm, double v) {
  auto all = comm.allgather(torch::tensor({v}, torch::kFloat64));
  return all.max().item<double>();
}

// The 1, 5 and 15 minute load averages of the host (other jobs on the machine skew timings).
std::vector<double> loadavg() {
  std::vector<double> v(3, -1.0);
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf %lf %lf", &v[0], &v[1], &v[2]) != 3) v.assign(3, -1.0);
    std::fclose(f);
  }
  return v;
}

nlohmann::json summarize(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  const double median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  return {{"median", median}, {"min", v.front()}, {"max", v.back()}, {"all", v}};
}

}  // namespace

int main(int argc, char** argv) {
  parallel::MpiRuntime mpi(&argc, &argv);
  CLI::App app{"SoME checkpoint save/load benchmark (one JSON line from rank 0)"};
  std::string config = "configs/default.toml", data_dir = "data/default", dir = "/tmp/some_bench_checkpoint";
  std::vector<std::string> overrides;
  int repeats = 3, steps = 1;
  bool warm_cache = false, keep = false;
  app.add_option("--config", config, "base config")->capture_default_str();
  app.add_option("--set", overrides, "section.key=value override (repeatable)");
  app.add_option("--data", data_dir, "prepared dataset (data/default is built if absent)")->capture_default_str();
  app.add_option("--dir", dir, "where to write (a fresh run directory is made inside and removed at the end)")
      ->capture_default_str();
  app.add_option("--repeats", repeats, "timed save/load repeats")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--steps", steps, "training steps before the first save (optimizer state)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_flag("--warm-cache", warm_cache, "do not drop the checkpoint from the page cache before loads");
  app.add_flag("--keep", keep, "keep the last checkpoint and the run directory");
  CLI11_PARSE(app, argc, argv);

  int rank = 0;
  try {
    auto cfg = launcher::load_config(config, overrides);
    cfg.train.max_steps = std::max<int64_t>(cfg.train.max_steps, steps);
    cfg.train.keep_last = 0;  // the benchmark deletes its checkpoints itself, outside the timing
    cfg.data_dir = data_dir;
    launcher::validate(cfg);
    const auto device = launcher::select_device(cfg);
    auto parallel = launcher::make_parallel_state(cfg, device);
    auto& world = parallel.world();
    rank = parallel.rank();
    const int W = parallel.world_size(), P = parallel.ep_size();
    const bool leader = rank == 0;
    log::setup(rank, W);
    log::get("bench")->sinks().front()->set_level(spdlog::level::warn);  // the console sink all loggers share
    const auto load_before = loadavg();
    launcher::set_threads(cfg, launcher::local_ranks());
    auto meta = launcher::ensure_dataset(data_dir, &world);

    // A fresh run directory inside --dir, named by rank 0.
    std::string run_dir;
    if (leader) {
      fs::create_directories(dir);
      std::string pattern = (fs::path(dir) / "bench_checkpoint.XXXXXX").string();
      SOME_REQUIRE(::mkdtemp(pattern.data()) != nullptr, Error, "cannot create a directory in '{}'", dir);
      run_dir = pattern;
    }
    run_dir = parallel::broadcast_string(world, run_dir, 0);

    model::Transformer model(launcher::model_options(cfg, meta), &parallel);
    const int64_t params_total = model->num_parameters(false), params_trainable = model->num_parameters(true);
    auto train_opts = cfg.train;
    if (device.is_cuda()) train_opts.cuda_index = device.index();
    train::Trainer trainer(model, cfg.optim, train_opts, meta, run_dir, parallel, cfg.parallel);
    trainer.set_config_text(launcher::to_toml(cfg));
    auto t_train = Clock::now();
    for (int s = 1; s <= steps; ++s) trainer.train_step(s);
    const double train_s = max_over_ranks(world, seconds_since(t_train));

    // What the checkpoint holds, summed over the ranks that write it (each tensor once).
    enum { kModelBytes, kModelNumel, kExpertBytes, kOptimBytes, kOtherBytes, kTensors, kWriters, kN };
    std::vector<int64_t> acc(kN, 0);
    {
      auto mine = trainer.checkpoint_tensors();
      acc[kWriters] = mine.empty() ? 0 : 1;
      for (auto& [name, t] : mine) {
        const int64_t bytes = t.numel() * static_cast<int64_t>(t.element_size());
        ++acc[kTensors];
        if (model::names::is_optimizer_state(name)) {
          acc[kOptimBytes] += bytes;
        } else if (starts_with(name, "rng.")) {
          acc[kOtherBytes] += bytes;
        } else {
          acc[kModelBytes] += bytes;
          acc[kModelNumel] += t.numel();
          if (model::names::is_sharded(name)) acc[kExpertBytes] += bytes;
        }
      }
    }
    auto acc_t = torch::tensor(acc, torch::kInt64);
    world.allreduce_sum(acc_t);
    for (int i = 0; i < kN; ++i) acc[i] = acc_t[i].item<int64_t>();

    const auto reference = fingerprint(trainer);
    const int64_t step = steps;
    const bool once = cfg.train.checkpoint_experts == train::ExpertsInCheckpoints::kOnce;
    const auto checkpoints_dir = run_dir + "/checkpoints";
    std::vector<double> save_s, load_verify_s, load_s, verify_s;
    DirBytes step_dir, library;
    double sha256_warm_mb_s = 0;
    nlohmann::json diag = nlohmann::json::object();
    bool exact = true;
    auto timed = [&](const std::function<void()>& op) {
      world.barrier();
      auto t0 = Clock::now();
      op();
      const double s = seconds_since(t0);
      world.barrier();
      return max_over_ranks(world, s);
    };
    auto cold = [&] {
      if (!warm_cache) drop_page_cache(checkpoints_dir);  // every rank: its node's cache (one node here)
    };
    auto check = [&] {
      const bool ok = fingerprint(trainer) == reference;
      auto all = world.allgather(torch::tensor({ok ? 1 : 0}, torch::kInt64));
      exact = exact && all.min().item<int64_t>() == 1;
    };
    auto remove_step_dir = [&](const std::string& ckpt) {  // the expert library stays: later saves reference it
      world.barrier();
      if (leader) {
        fs::remove_all(ckpt);
        fs::remove(fs::path(checkpoints_dir) / "latest");
      }
      world.barrier();
    };

    // The first save of a process: with train.checkpoint_experts = once it also writes the expert
    // library (the frozen experts), which every later checkpoint references. Timed on its own.
    std::string ckpt;
    const double first_save_s = timed([&] { ckpt = trainer.save_checkpoint(step, "bench"); });
    DirBytes first_step_dir;
    if (leader) {
      first_step_dir = dir_bytes(ckpt);
      const auto lib = checkpoints::Manifest::read(ckpt + "/manifest.json").library;
      if (!lib.empty()) library = dir_bytes(ckpt + "/" + lib);
    }
    remove_step_dir(ckpt);

    for (int r = 0; r < repeats; ++r) {
      save_s.push_back(timed([&] { ckpt = trainer.save_checkpoint(step, "bench"); }));
      if (leader) {
        step_dir = dir_bytes(ckpt);
        if (r == 0) {  // SHA-256 throughput of this CPU on a file in the page cache (rank 0's file)
          const auto path = ckpt + "/rank_00000.h5";
          sha256_file(path);
          auto t0 = Clock::now();
          sha256_file(path);
          sha256_warm_mb_s = step_dir.rank0 / 1e6 / seconds_since(t0);
        }
      }
      zero_state(trainer);
      cold();
      load_verify_s.push_back(timed([&] { trainer.resume(ckpt, /*verify=*/true); }));
      check();
      cold();
      load_s.push_back(timed([&] { trainer.resume(ckpt, /*verify=*/false); }));
      check();
      cold();
      // Collective, as resume(verify) does it: the ranks share the hashing.
      verify_s.push_back(timed([&] { checkpoints::CheckpointReader reader(ckpt, /*verify=*/true, &world); }));
      if (leader && r == repeats - 1) {
        // Where rank 0's save time goes (untimed above, rank 0 alone): what it writes per save
        // written again (HDF5 create + write + fsync + rename) and its SHA-256, warm, as
        // describe_file computes it after the write; and the one-tensor reads resume() does per
        // parameter (`optim.step.*`, each opening the file anew).
        auto mine = trainer.checkpoint_tensors();
        if (once) {
          for (auto it = mine.begin(); it != mine.end();) it = model::names::is_sharded(it->first) ? mine.erase(it) : std::next(it);
        }
        const auto scratch = run_dir + "/scratch_rank0.h5";
        auto t0 = Clock::now();
        checkpoints::write_tensors(scratch, mine);
        diag["rank0_write_tensors_s"] = seconds_since(t0);
        t0 = Clock::now();
        sha256_file(scratch);
        diag["rank0_sha256_after_write_s"] = seconds_since(t0);
        fs::remove(scratch);
        checkpoints::CheckpointReader reader(ckpt, /*verify=*/false);
        int64_t n = 0;
        t0 = Clock::now();
        for (const auto& [name, rec] : reader.manifest().tensors) {
          if (starts_with(name, "optim.step.")) {
            reader.read(name);
            ++n;
          }
        }
        diag["optim_step_reads"] = n;
        diag["optim_step_reads_s"] = seconds_since(t0);
      }
      if (!(keep && r == repeats - 1)) remove_step_dir(ckpt);
    }

    auto rss = world.allgather(torch::tensor({train::peak_rss_bytes()}, torch::kInt64));
    auto held = world.allgather(torch::tensor({model->bytes_held()}, torch::kInt64));
    world.barrier();
    if (leader && !keep) fs::remove_all(run_dir);
    if (!leader) return 0;

    auto median = [](const nlohmann::json& s) { return s["median"].get<double>(); };
    const auto save = summarize(save_s), load_verify = summarize(load_verify_s), load = summarize(load_s),
               verify = summarize(verify_s);
    const int64_t ckpt_bytes = step_dir.bytes + library.bytes;  // what a load reads and a verify hashes
    const int64_t tensor_bytes = acc[kModelBytes] + acc[kOptimBytes] + acc[kOtherBytes];
    const double mb = ckpt_bytes / 1e6;
    std::vector<int64_t> rss_v, held_v;
    for (int i = 0; i < W; ++i) {
      rss_v.push_back(rss[i][0].item<int64_t>());
      held_v.push_back(held[i][0].item<int64_t>());
    }
    const unsigned hw = std::thread::hardware_concurrency();
    nlohmann::json out = {
        {"benchmark", "checkpoint"},
        {"config", config},
        {"overrides", overrides},
        {"world_size", W},
        {"expert_parallel", P},
        {"ep_groups", W / P},
        {"transport", world.name()},
        {"device", device.str()},
        {"threads_per_rank", torch::get_num_threads()},
        {"nproc", hw},
        {"oversubscribed", W * torch::get_num_threads() > static_cast<int>(hw)},
        {"host_loadavg_start", load_before},
        {"host_loadavg_end", loadavg()},
        {"page_cache", warm_cache ? "warm (not dropped before loads)"
                                  : "cold: posix_fadvise(DONTNEED) on every checkpoint file before each load/verify"},
        {"model", {{"n_layers", cfg.model.n_layers}, {"d_model", cfg.model.d_model},
                   {"num_experts", cfg.model.num_experts}, {"d_expert", cfg.model.d_expert},
                   {"vocab_size", meta.vocab_size}, {"parameters_total", params_total},
                   {"parameters_trainable", params_trainable}}},
        {"train", {{"global_batch", cfg.train.global_batch}, {"micro_batch", cfg.train.micro_batch},
                   {"seq_len", cfg.train.seq_len}, {"steps_before_save", steps}, {"train_s", train_s}}},
        {"checkpoint_experts", choice_name(cfg.train.checkpoint_experts)},
        {"repeats", repeats},
        {"checkpoint_bytes", ckpt_bytes},
        {"checkpoint_GB", ckpt_bytes / 1e9},
        {"step_dir_bytes", step_dir.bytes},
        {"step_dir_files", step_dir.files},
        {"library_bytes", library.bytes},
        {"library_files", library.files},
        {"first_save_bytes", first_step_dir.bytes + library.bytes},
        {"writing_ranks", acc[kWriters]},
        {"tensors", acc[kTensors]},
        {"manifest_bytes", step_dir.manifest + library.manifest},
        {"rank0_file_bytes", step_dir.rank0},
        {"parameter_bytes", acc[kModelBytes]},
        {"parameter_numel", acc[kModelNumel]},
        {"expert_bytes", acc[kExpertBytes]},
        {"optimizer_bytes", acc[kOptimBytes]},
        {"other_bytes", acc[kOtherBytes]},
        {"tensor_bytes", tensor_bytes},
        {"format_overhead_bytes", ckpt_bytes - tensor_bytes - step_dir.manifest - library.manifest},
        {"checkpoint_to_parameter_bytes", static_cast<double>(ckpt_bytes) / acc[kModelBytes]},
        {"save_bytes_to_parameter_bytes", static_cast<double>(step_dir.bytes) / acc[kModelBytes]},
        {"first_save_s", first_save_s},
        {"first_save_MB_per_s", (first_step_dir.bytes + library.bytes) / 1e6 / first_save_s},
        {"save_s", save},
        {"load_verify_s", load_verify},
        {"load_s", load},
        {"verify_s", verify},
        {"save_MB_per_s", step_dir.bytes / 1e6 / median(save)},
        {"load_verify_MB_per_s", mb / median(load_verify)},
        {"load_MB_per_s", mb / median(load)},
        {"verify_MB_per_s", mb / median(verify)},
        {"verify_bytes_hashed_all_ranks", ckpt_bytes * static_cast<int64_t>(W)},
        {"sha256_warm_MB_per_s", sha256_warm_mb_s},
        {"diagnostics", diag},
        {"roundtrip_exact", exact},
        {"peak_rss_bytes", rss_v},
        {"peak_rss_max_bytes", *std::max_element(rss_v.begin(), rss_v.end())},
        {"bytes_held_per_rank", held_v},
    };
    std::cout << out.dump() << std::endl;
    return exact ? 0 : 2;
  } catch (const std::exception& e) {
    std::cerr << "[bench_checkpoint] rank " << rank << ": " << e.what() << std::endl;
    if (mpi.active()) parallel::MpiRuntime::abort(1);
    return 1;
  }
}
