// `some eval --run DIR`: validation loss / PPL and routing analytics of a finished run.
#include <iostream>

#include <fmt/format.h>

#include "launcher/commands.h"
#include "launcher/session.h"
#include "src/train/evaluator.h"

namespace some::launcher {

void add_eval_command(CLI::App& app) {
  struct Args {
    std::string run_dir, data_dir;
    std::vector<std::string> overrides;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("eval", "Evaluate a checkpoint on its validation split");
  cmd->add_option("--run", args->run_dir, "run directory (its latest checkpoint) or a checkpoint directory")->required();
  cmd->add_option("--data", args->data_dir, "dataset directory (default: the run's data.dir)");
  cmd->add_option("--set", args->overrides, "section.key=value override, e.g. train.eval_batches=0");
  cmd->callback([args] {
    auto run = load_run(args->run_dir, args->overrides, args->data_dir);
    auto parallel = parallel::ParallelState::single_process();
    train::Evaluator evaluator(data::TokenSplit(run.meta, "val"), run.config.train.seq_len,
                               run.config.train.micro_batch, run.config.train.eval_batches, run.device, parallel);
    auto result = evaluator.run(run.model);
    std::cout << fmt::format("val loss {:.4f} | val PPL {:.2f} | unigram PPL {:.2f} | {} tokens\n", result.loss,
                             result.ppl, evaluator.unigram_ppl(), result.tokens);
    for (const auto& r : result.routing) std::cout << r.to_json().dump() << "\n";
  });
}

}  // namespace some::launcher
