// `some train`: the main job. With no arguments: prepare the default corpus if absent, train
// configs/default.toml, evaluate, print val PPL beside the unigram PPL and a sample.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "checkpoints/checkpoint.h"
#include "common/check.h"
#include "common/cuda_info.h"
#include "common/errors.h"
#include "common/files.h"
#include "common/logging.h"
#include "common/stop_signal.h"
#include "launcher/commands.h"
#include "launcher/model_init.h"
#include "launcher/session.h"
#include "parallel/mpi_communicator.h"
#include "parallel/parallel_state.h"
#include "src/train/device.h"
#include "src/train/generate.h"
#include "src/train/memory_estimate.h"
#include "src/train/trainer.h"

namespace fs = std::filesystem;

namespace some::launcher {

namespace {
struct TrainArgs {
  std::string config;  // empty: configs/default.toml
  std::vector<std::string> overrides;
  std::string run_dir;
  std::string data_dir;
  std::string resume;  // "", "auto" or a checkpoint / run directory
};

// The checkpoint `--resume` names: for `auto` the newest intact one of the run directory (none:
// a fresh start), else the given path, which must be a checkpoint (verified when loaded).
std::optional<std::string> find_resume_checkpoint(const TrainArgs& args, parallel::Communicator& world) {
  if (args.resume.empty()) return std::nullopt;
  auto log = log::get("train");
  if (args.resume != "auto") return checkpoints::resolve_checkpoint_dir(args.resume);
  if (args.run_dir.empty()) throw ConfigError("--resume auto needs --run-dir: the run directory to continue");
  std::vector<std::string> refused;
  auto found = checkpoints::find_latest_intact(args.run_dir + "/checkpoints", &refused, &world);
  for (const auto& why : refused) log->warn("--resume auto passes over a checkpoint: {}", why);
  if (!found) log->info("--resume auto: no intact checkpoint in {}/checkpoints: starting from step 0", args.run_dir);
  return found;
}

void run_train(const TrainArgs& args) {
  install_stop_signals();  // before anything slow: a preemption during start-up is not lost
  // The checkpoint decides the config, which decides the rank grid: the choice is made over a
  // plain world communicator first (its ranks share verifying the candidates).
  std::optional<std::string> resume;
  if (parallel::MpiRuntime::launched_by_mpi()) {
    parallel::MpiCommunicator setup(MPI_COMM_WORLD);
    resume = find_resume_checkpoint(args, setup);
  } else {
    parallel::LocalCommunicator setup;
    resume = find_resume_checkpoint(args, setup);
  }
  // A resumed run keeps its checkpoint's config (plus --set) unless --config says otherwise.
  std::optional<checkpoints::Manifest> manifest;
  if (resume) manifest = checkpoints::Manifest::read(*resume + "/manifest.json");
  const auto config_path = !args.config.empty() ? args.config : manifest ? *resume + "/manifest.json" : default_config_path();
  Config cfg = !args.config.empty() || !manifest ? load_config(config_path, args.overrides)
                                                  : load_config_text(manifest->info.config, config_path, args.overrides);
  if (!args.data_dir.empty()) cfg.data_dir = args.data_dir;
  const auto device = select_device(cfg);  // fail before any work
  auto parallel = make_parallel_state(cfg, device);
  auto& world = parallel.world();
  const bool leader = parallel.rank() == 0;
  log::setup(parallel.rank(), parallel.world_size());
  set_threads(cfg, local_ranks());
  // The ranks chose their checkpoint together: make sure they agree.
  const auto chosen = parallel::broadcast_string(world, resume.value_or(""), 0);
  SOME_REQUIRE(chosen == resume.value_or(""), Error, "rank {} would resume from '{}' but rank 0 from '{}'",
               parallel.rank(), resume.value_or("(nothing)"), chosen);
  auto meta = ensure_dataset(cfg.data_dir, &world);
  // A model that cannot fit is refused here, with the numbers, not by the allocator later.
  train::check_memory(train::estimate_memory(model_options(cfg, meta), cfg.train, cfg.parallel.expert_parallel),
                      train::available_memory(device, local_ranks()));

  // The model, and what model.init_from / model.experts_from give it, before the run directory:
  // a checkpoint that does not fit is refused with nothing written.
  model::Transformer model(model_options(cfg, meta), &parallel);
  InitPlan init;
  if (!resume) init = plan_init(model, cfg, &world);

  // --resume auto continues in its own run directory; anything else starts a new one.
  const auto run_dir = make_run_dir(args.run_dir, &world, /*allow_existing=*/args.resume == "auto");
  if (args.resume == "auto" && !resume && leader) {
    std::error_code ignored;  // what a run that never reached a checkpoint logged is void
    fs::remove(run_dir + "/metrics.jsonl", ignored);
  }
  auto log = log::get("train");
  if (leader) {
    log::add_file_sink(run_dir + "/train.log");
    write_file_atomic(run_dir + "/config.toml", to_toml(cfg));
    fs::copy_file(meta.dir + "/tokenizer.model", run_dir + "/tokenizer.model", fs::copy_options::overwrite_existing);
  }
  log->info("config {} -> {}/config.toml", config_path, run_dir);
  log->info("run directory {} | device {} | {} threads per rank | {}", run_dir, device.str(),
            torch::get_num_threads(), parallel.describe());
  if (device.is_cuda()) log->info("{}", describe_cuda_devices());

  if (resume && (!cfg.model.init_from.empty() || !cfg.model.experts_from.empty())) {
    log->info("model.init_from / model.experts_from ignored: the weights come from the checkpoint resumed");
  }
  apply_init(model, init);
  log->info("model: {} parameters ({} trainable), {} layers, d_model {}, ffn {}{}", model->num_parameters(false),
            model->num_parameters(true), cfg.model.n_layers, cfg.model.d_model, choice_name(cfg.model.ffn),
            cfg.model.ffn != model::FfnKind::kDense ? fmt::format(" ({} experts of width {}, top-{})", cfg.model.num_experts,
                                                   cfg.model.d_expert, cfg.model.top_k)
                                     : "");
  {
    // What every rank holds: its share of the experts plus the replicated dense weights.
    auto held = world.allgather(torch::tensor({model->bytes_held()}, torch::kInt64));
    for (int r = 0; r < parallel.world_size(); ++r) {
      log->info("rank {} holds {} experts per routed layer, {:.1f} MiB of parameters and buffers", r,
                parallel.num_local_experts(cfg.model.num_experts), held[r][0].item<int64_t>() / 1048576.0);
    }
  }
  world.barrier();
  auto train_opts = cfg.train;
  if (device.is_cuda()) train_opts.cuda_index = device.index();  // this rank's GPU (config.toml keeps "cuda")
  train::Trainer trainer(model, cfg.optim, train_opts, meta, run_dir, parallel, cfg.parallel);
  trainer.set_config_text(to_toml(cfg));
  if (init.optimizer) trainer.init_optimizer_state(init_optimizer_state(model, init));
  if (resume) trainer.resume(*resume, /*verify=*/args.resume != "auto");  // auto verified it already
  auto summary = trainer.run();
  auto rss = world.allgather(torch::tensor({train::peak_rss_bytes()}, torch::kInt64));
  for (int r = 0; r < parallel.world_size(); ++r) {
    log->info("rank {} peak RSS {:.1f} MiB", r, rss[r][0].item<int64_t>() / 1048576.0);
  }

  std::ostringstream out;
  out << fmt::format("\n== SoME run {} ==\n", run_dir)
      << fmt::format("steps {} | tokens {} | {:.0f} tokens/s | {:.1f} s | {} rank(s){}\n", summary.steps, summary.tokens,
                     summary.tokens_per_s, summary.elapsed_s, parallel.world_size(),
                     summary.stopped_by_time ? " (stopped by train.max_minutes)" : "")
      << fmt::format("val loss {:.4f} | val PPL {:.2f} | unigram PPL of the same tokens {:.2f}\n", summary.val_loss,
                     summary.val_ppl, summary.unigram_ppl);
  if (summary.preempted) {
    out << fmt::format("preempted: stopped after step {} with checkpoint {}\ncontinue with: some train --run-dir {} "
                       "--resume auto\n",
                       summary.steps, summary.checkpoint, run_dir);
  } else if (cfg.train.sample_tokens > 0) {
    // Every rank samples (the expert exchange is collective) with the same seed: same text.
    auto tokenizer = data::Tokenizer::load(meta.tokenizer_path());
    train::SampleOptions sample;
    sample.max_new_tokens = cfg.train.sample_tokens;
    auto prompt = tokenizer.encode(cfg.train.sample_prompt);
    if (prompt.empty()) prompt.push_back(tokenizer.eos_id());  // an empty prompt starts a document
    auto ids = train::sample(trainer.model(), prompt, sample, device);
    out << fmt::format("sample ({} tokens, temperature {}, top-k {}):\n{} {}\n", ids.size(), sample.temperature,
                       sample.top_k, cfg.train.sample_prompt, tokenizer.decode(ids));
  }
  out << fmt::format("metrics: {}/metrics.jsonl | log: {}/train.log | checkpoint: {}\n", run_dir, run_dir,
                     summary.checkpoint);
  if (leader) std::cout << out.str() << std::flush;
}
}  // namespace

void add_train_command(CLI::App& app) {
  auto args = std::make_shared<TrainArgs>();
  auto* cmd = app.add_subcommand("train", "Train a model (no arguments: the default SoME model on the default corpus)");
  cmd->add_option("--config", args->config, "TOML config file (default: configs/default.toml)");
  cmd->add_option("--set", args->overrides, "section.key=value override (repeatable)");
  cmd->add_option("--run-dir", args->run_dir, "run directory (default runs/<timestamp>)");
  cmd->add_option("--data", args->data_dir, "dataset directory (overrides data.dir)");
  cmd->add_option("--resume", args->resume,
                  "continue a run: 'auto' = the newest intact checkpoint of --run-dir (none: start fresh), or a "
                  "checkpoint / run directory (then --run-dir is a new run); W and P may differ from the saved run");
  cmd->callback([args] { run_train(*args); });
}

}  // namespace some::launcher
