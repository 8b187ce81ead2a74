// `some prepare`: text / JSONL -> SentencePiece tokenizer + HDF5 token shards (docs/design.md §6).
#include "data/prepare.h"
#include "launcher/commands.h"

namespace some::launcher {

void add_prepare_command(CLI::App& app) {
  auto opts = std::make_shared<data::PrepareOptions>();
  auto* cmd = app.add_subcommand("prepare", "Tokenize a corpus into HDF5 shards (default: the King James Bible)");
  cmd->add_option("--input", opts->inputs, "text / JSONL file or folder (repeatable); none = default corpus");
  cmd->add_option("--out", opts->out_dir, "output dataset directory")->capture_default_str();
  cmd->add_option("--vocab-size", opts->vocab_size, "BPE vocabulary size to train")->capture_default_str();
  cmd->add_option("--tokenizer", opts->tokenizer, "reuse this SentencePiece model instead of training one");
  cmd->add_option("--val-fraction", opts->val_fraction, "fraction of documents held out")->capture_default_str();
  cmd->add_option("--shard-tokens", opts->shard_tokens, "tokens per shard")->capture_default_str();
  cmd->add_option("--seed", opts->seed, "seed of the train/val split")->capture_default_str();
  cmd->callback([opts] { data::prepare_dataset(*opts); });
}

}  // namespace some::launcher
