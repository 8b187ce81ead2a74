// `some generate --run DIR --prompt "..."`: sample text from a finished run.
#include <cmath>
#include <iostream>

#include "launcher/commands.h"
#include "launcher/session.h"
#include "src/train/generate.h"

namespace some::launcher {

namespace {
// CLI::Range lets NaN through (every comparison with it is false): refuse it, and infinities,
// before they reach the sampler.
const CLI::Validator kFinite(
    [](std::string& text) {
      try {
        return std::isfinite(std::stod(text)) ? std::string() : "must be a finite number, not " + text;
      } catch (const std::exception&) {
        return "must be a number, not " + text;
      }
    },
    "FINITE");
}  // namespace

void add_generate_command(CLI::App& app) {
  struct Args {
    std::string run_dir, data_dir, prompt = "And God said";
    train::SampleOptions sample;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("generate", "Sample text from a checkpoint");
  cmd->add_option("--run", args->run_dir, "run directory (its latest checkpoint) or a checkpoint directory")->required();
  cmd->add_option("--prompt", args->prompt, "text to continue")->capture_default_str();
  cmd->add_option("--max-tokens", args->sample.max_new_tokens, "tokens to sample")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--temperature", args->sample.temperature, "sampling temperature; 0 = greedy")->capture_default_str()->check(kFinite & CLI::Range(0.0, 100.0));
  cmd->add_option("--top-k", args->sample.top_k, "sample from the k most likely tokens; 0 = all")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--seed", args->sample.seed, "sampling seed")->capture_default_str();
  cmd->add_option("--data", args->data_dir, "dataset directory (default: the run's data.dir)");
  cmd->callback([args] {
    auto run = load_run(args->run_dir, {}, args->data_dir);
    auto prompt = run.tokenizer->encode(args->prompt);
    if (prompt.empty()) prompt.push_back(run.tokenizer->eos_id());  // an empty prompt starts a document
    auto out = train::sample(run.model, prompt, args->sample, run.device);
    std::cout << args->prompt << " " << run.tokenizer->decode(out) << "\n";
  });
}

}  // namespace some::launcher
