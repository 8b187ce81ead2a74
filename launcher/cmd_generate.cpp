// `some generate --run DIR --prompt "..."`: sample text from a finished run; with --adapt, keys
// that adapt while reading the prompt and the text generated (src/train/adapt.h).
#include <cmath>
#include <iostream>
#include <optional>

#include <fmt/format.h>

#include "launcher/commands.h"
#include "launcher/session.h"
#include "src/train/adapt.h"
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
    std::string run_dir, data_dir, prompt = "And God said", keys_in, keys_out;
    std::vector<std::string> overrides;
    train::SampleOptions sample;
    bool adapt = false;
    int64_t adapt_every = 32;
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
  cmd->add_option("--set", args->overrides, "section.key=value override, e.g. gravity.alpha=0.1");
  auto* adapt = cmd->add_flag("--adapt", args->adapt,
                              "keys adapt while reading: the prompt, then the generated text, feed Knowledge Gravity "
                              "(gravity.* of the run, --set overrides them); the checkpoint is not modified");
  cmd->add_option("--adapt-every", args->adapt_every, "generated tokens per Knowledge Gravity update (--adapt)")
      ->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1} << 40))->needs(adapt);
  cmd->add_option("--keys", args->keys_in, "load SoME keys and usage from this file (written by --save-keys) first");
  cmd->add_option("--save-keys", args->keys_out, "write the SoME keys and usage after sampling to this new HDF5 file");
  cmd->callback([args] {
    auto run = load_run(args->run_dir, args->overrides, args->data_dir);
    if (!args->keys_out.empty()) train::check_keys_path(args->keys_out, run.checkpoint);
    if (!args->keys_in.empty()) train::load_keys(args->keys_in, run.model);
    std::optional<train::OnlineAdapter> adapter;
    if (args->adapt) adapter.emplace(run.model, train::AdaptOptions{args->adapt_every, run.config.train.seed});
    auto prompt = run.tokenizer->encode(args->prompt);
    if (prompt.empty()) prompt.push_back(run.tokenizer->eos_id());  // an empty prompt starts a document
    auto out = train::sample(run.model, prompt, args->sample, run.device, adapter ? &*adapter : nullptr);
    std::cout << args->prompt << " " << run.tokenizer->decode(out) << std::endl;
    if (adapter) {  // on stderr: stdout stays the text alone
      std::cerr << fmt::format("adapted online: {} updates ({} tokens read)\n", adapter->updates(),
                               adapter->tokens_read());
    }
    if (!args->keys_out.empty()) train::save_keys(args->keys_out, run.model, run.checkpoint);
  });
}

}  // namespace some::launcher
