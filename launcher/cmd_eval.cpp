// `some eval --run DIR`: validation loss / PPL and routing analytics of a finished run; with
// --adapt, keys that adapt while reading (src/train/adapt.h; the checkpoint is never written).
#include <iostream>
#include <optional>

#include <fmt/format.h>

#include "launcher/commands.h"
#include "launcher/session.h"
#include "src/train/adapt.h"
#include "src/train/evaluator.h"

namespace some::launcher {

void add_eval_command(CLI::App& app) {
  struct Args {
    std::string run_dir, data_dir, keys_in, keys_out;
    std::vector<std::string> overrides;
    bool adapt = false;
    int64_t adapt_every = 1;
    int64_t ablate_ffn = -1;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("eval", "Evaluate a checkpoint on its validation split");
  cmd->add_option("--run", args->run_dir, "run directory (its latest checkpoint) or a checkpoint directory")->required();
  cmd->add_option("--data", args->data_dir, "dataset directory (default: the run's data.dir)");
  cmd->add_option("--set", args->overrides, "section.key=value override, e.g. train.eval_batches=0");
  auto* adapt = cmd->add_flag("--adapt", args->adapt,
                              "keys adapt while reading: each micro-batch is scored, then its routing feeds Knowledge "
                              "Gravity (gravity.* of the run, --set overrides them); the checkpoint is not modified");
  cmd->add_option("--adapt-every", args->adapt_every, "micro-batches per Knowledge Gravity update (--adapt)")
      ->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1} << 40))->needs(adapt);
  cmd->add_option("--keys", args->keys_in, "load SoME keys and usage from this file (written by --save-keys) first");
  cmd->add_option("--save-keys", args->keys_out, "write the SoME keys and usage after the eval to this new HDF5 file");
  cmd->add_option("--ablate-ffn", args->ablate_ffn,
                  "leave block L's FFN output out of the residual stream (what that FFN contributes: the val PPL rise)");
  cmd->callback([args] {
    auto run = load_run(args->run_dir, args->overrides, args->data_dir);
    if (!args->keys_out.empty()) train::check_keys_path(args->keys_out, run.checkpoint);
    if (!args->keys_in.empty()) train::load_keys(args->keys_in, run.model);
    std::optional<train::OnlineAdapter> adapter;
    if (args->adapt) adapter.emplace(run.model, train::AdaptOptions{args->adapt_every, run.config.train.seed});
    run.model->ablate_ffn(args->ablate_ffn);
    auto parallel = parallel::ParallelState::single_process();
    train::Evaluator evaluator(data::TokenSplit(run.meta, "val"), run.config.train.seq_len,
                               run.config.train.micro_batch, run.config.train.eval_batches, run.device, parallel);
    auto result = evaluator.run(run.model, adapter ? &*adapter : nullptr);
    std::cout << fmt::format("val loss {:.4f} | val PPL {:.2f} | unigram PPL {:.2f} | {} tokens{}\n", result.loss,
                             result.ppl, evaluator.unigram_ppl(), result.tokens,
                             args->ablate_ffn >= 0 ? fmt::format(" | FFN of block {} ablated", args->ablate_ffn) : "");
    if (adapter) {
      const auto& g = run.config.model.gravity;
      std::cout << fmt::format("adapted online: {} updates (every {} micro-batches, {} tokens read; gravity.alpha {}, "
                               "beta {}, delta {}, repulsion {})\n",
                               adapter->updates(), args->adapt_every, adapter->tokens_read(), g.alpha, g.beta, g.delta,
                               g.repulsion);
    }
    for (const auto& r : result.routing) std::cout << r.to_json().dump() << "\n";
    if (!args->keys_out.empty()) {
      train::save_keys(args->keys_out, run.model, run.checkpoint);
      std::cout << "keys saved to " << args->keys_out << "\n";
    }
  });
}

}  // namespace some::launcher
