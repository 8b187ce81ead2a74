// `some checkpoint info PATH`: a checkpoint's manifest, readably, after verifying it.
// `some checkpoint convert PATH --out FILE.h5`: every tensor into one HDF5 file (for sharing,
// or h5py), whatever W and P wrote it.
#include <filesystem>
#include <iostream>
#include <map>

#include <fmt/format.h>

#include "checkpoints/checkpoint.h"
#include "common/progress.h"
#include "src/model/tensor_names.h"
#include "launcher/commands.h"

namespace some::launcher {

namespace {

void print_info(const std::string& path, bool list_tensors) {
  checkpoints::CheckpointReader reader(path, /*verify=*/true);
  const auto& m = reader.manifest();
  std::cout << fmt::format("checkpoint {}\n", reader.dir())
            << fmt::format("  step {} | tokens {} | written by W={} P={} | reason {}\n", m.info.step, m.info.tokens,
                           m.info.world_size, m.info.expert_parallel, m.info.trainer.value("reason", "?"))
            << "  integrity: every file's size and SHA-256 match the manifest\n";
  int64_t file_bytes = 0;
  std::cout << fmt::format("  files ({}):\n", m.files.size());
  for (const auto& [file, r] : m.files) {
    std::cout << fmt::format("    {:<16} {:>12} bytes  sha256 {}\n", file, r.bytes, r.sha256);
    file_bytes += r.bytes;
  }
  std::map<std::string, std::pair<int64_t, int64_t>> kinds;  // kind -> (tensors, bytes)
  int64_t tensor_bytes = 0;
  for (const auto& [name, r] : m.tensors) {
    int64_t n = 1;
    for (auto s : r.shape) n *= s;
    auto& k = kinds[std::string(model::names::describe(model::names::kind(name)))];
    k.first += 1;
    const auto bytes = n * static_cast<int64_t>(c10::elementSize(checkpoints::dtype_from_name(r.dtype)));
    k.second += bytes;
    tensor_bytes += bytes;
  }
  std::cout << fmt::format("  tensors ({}, {} of data in {} of files):\n", m.tensors.size(),
                           format_bytes(tensor_bytes), format_bytes(file_bytes));
  for (const auto& [kind, k] : kinds) {
    std::cout << fmt::format("    {:<22} {:>6} tensors  {:>10}\n", kind, k.first, format_bytes(k.second));
  }
  if (list_tensors) {
    for (const auto& [name, r] : m.tensors) {
      std::cout << fmt::format("    {:<48} {:<8} [{}]  {}\n", name, r.dtype, fmt::join(r.shape, ", "), r.file);
    }
  }
  std::cout << "  trainer: " << m.info.trainer.dump() << "\n";
}

}  // namespace

void add_checkpoint_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("checkpoint", "Inspect or consolidate checkpoints");
  cmd->require_subcommand(1);
  struct Args {
    std::string path, out;
    bool tensors = false;
  };
  auto args = std::make_shared<Args>();
  auto* info = cmd->add_subcommand("info", "Verify a checkpoint and print its manifest");
  info->add_option("path", args->path, "checkpoint directory, or a run directory (its latest)")->required();
  info->add_flag("--tensors", args->tensors, "list every tensor with dtype, shape and file");
  info->callback([args] { print_info(args->path, args->tensors); });
  auto* convert = cmd->add_subcommand("convert", "Write every tensor of a checkpoint into one HDF5 file");
  convert->add_option("path", args->path, "checkpoint directory, or a run directory (its latest)")->required();
  convert->add_option("--out", args->out, "the consolidated .h5 file")->required();
  convert->callback([args] {
    checkpoints::CheckpointReader reader(args->path, /*verify=*/true);
    checkpoints::consolidate(reader, args->out);
    std::cout << fmt::format("{} -> {} ({} tensors, {} bytes)\n", reader.dir(), args->out,
                             reader.manifest().tensors.size(), std::filesystem::file_size(args->out));
  });
}

}  // namespace some::launcher
