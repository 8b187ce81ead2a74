#include "checkpoints/checkpoint.h"

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "common/check.h"
#include "common/errors.h"
#include "common/fault_injection.h"
#include "common/files.h"
#include "common/h5.h"
#include "common/logging.h"
#include "common/sha256.h"
#include "parallel/communicator.h"

namespace fs = std::filesystem;

namespace some::checkpoints {

namespace {

const std::regex kStepDir(R"(step_(\d{8,}))");

std::string rank_file_name(int rank) { return fmt::format("rank_{:05d}.h5", rank); }

// Test hook SOME_CHECKPOINT_FAULT (common/fault_injection.h): no kill at any point of a save may
// leave a damaged checkpoint that is taken for a complete one.
int g_saves = 0;
void fault_point(int rank, const char* phase) {
  static const auto want = fault::checkpoint_fault();
  if (!want || want->rank != rank || want->nth != g_saves || want->phase != phase) return;
  const int nth = want->nth;
  std::fprintf(stderr, "SOME_CHECKPOINT_FAULT: killing rank %d at '%s' of save %d\n", rank, phase, nth);
  std::fflush(stderr);
  std::raise(SIGKILL);
}

std::vector<std::pair<int64_t, std::string>> step_dirs_newest_first(const std::string& checkpoints_dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  if (!fs::is_directory(checkpoints_dir, ec)) return out;
  for (const auto& entry : fs::directory_iterator(checkpoints_dir)) {
    std::smatch m;
    const auto name = entry.path().filename().string();
    if (entry.is_directory() && std::regex_match(name, m, kStepDir)) {
      out.emplace_back(std::stoll(m[1].str()), entry.path().string());
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  return out;
}

// What one writing rank reports to rank 0 for the manifest.
nlohmann::json describe_file(const std::string& path, const TensorMap& tensors) {
  nlohmann::json j;
  j["file"] = fs::path(path).filename().string();
  j["sha256"] = sha256_file(path);
  j["bytes"] = static_cast<int64_t>(fs::file_size(path));
  auto& t = j["tensors"] = nlohmann::json::object();
  for (const auto& [name, tensor] : tensors) {
    t[name] = {{"shape", tensor.sizes().vec()}, {"dtype", dtype_name(tensor.scalar_type())}};
  }
  return j;
}

// Sizes on every rank (cheap), SHA-256 split over the ranks of `comm` (rank r hashes files r,
// r + W, ...): verifying costs one read of the checkpoint, not W. Every rank throws the same
// DataError, for the first damaged file in manifest order.
void verify_files(const Manifest& m, const std::string& dir, parallel::Communicator* comm) {
  const int W = comm ? comm->world_size() : 1, r = comm ? comm->rank() : 0;
  std::string first_error;  // "<index>\t<message>"
  int index = 0;
  for (const auto& [file, record] : m.files) {
    const auto path = dir + "/" + file;
    const int i = index++;
    std::string error;
    std::error_code ec;
    const auto bytes = fs::exists(path, ec) ? static_cast<int64_t>(fs::file_size(path, ec)) : -1;
    if (bytes < 0) {
      error = fmt::format("checkpoint file '{}' is missing", path);
    } else if (bytes != record.bytes) {
      error = fmt::format("checkpoint file '{}' has {} bytes, its manifest says {} (truncated or damaged)", path, bytes,
                          record.bytes);
    } else if (i % W == r) {
      const auto digest = sha256_file(path);
      if (digest != record.sha256) {
        error = fmt::format("checkpoint file '{}' is damaged: SHA-256 {} does not match the manifest's {}", path,
                            digest, record.sha256);
      }
    }
    if (!error.empty()) {
      first_error = fmt::format("{}\t{}", i, error);
      break;
    }
  }
  std::vector<std::string> errors{first_error};
  if (comm && W > 1) errors = parallel::allgather_strings(*comm, first_error);
  int best = -1;
  std::string message;
  for (const auto& e : errors) {
    if (e.empty()) continue;
    const auto tab = e.find('\t');
    const int i = std::stoi(e.substr(0, tab));
    if (best < 0 || i < best) best = i, message = e.substr(tab + 1);
  }
  SOME_REQUIRE(best < 0, DataError, "{}", message);
}

}  // namespace

std::string step_dir_name(int64_t step) { return fmt::format("step_{:08d}", step); }

namespace {

// Steps 1-3 of a save (see checkpoint.h): `name` in `checkpoints_dir` is assembled as
// `.tmp.<name>` and renamed into place; with `move_latest` the `latest` file then names it.
std::string commit_directory(const std::string& checkpoints_dir, const std::string& name, const CheckpointInfo& info,
                             const TensorMap& mine, parallel::Communicator& comm, const std::string& library,
                             bool move_latest) {
  const bool leader = comm.rank() == 0;
  ++g_saves;
  const auto final_dir = checkpoints_dir + "/" + name;
  const auto tmp_dir = checkpoints_dir + "/.tmp." + name;
  // 1. Rank 0 prepares an empty temporary directory.
  std::string error;
  if (leader) {
    try {
      fs::create_directories(checkpoints_dir);
      // Leftovers of saves that were killed (.tmp.*, .old.*) are never checkpoints.
      for (const auto& entry : fs::directory_iterator(checkpoints_dir)) {
        const auto n = entry.path().filename().string();
        if (n.rfind(".tmp.", 0) == 0 || n.rfind(".old.", 0) == 0) fs::remove_all(entry.path());
      }
      fs::create_directories(tmp_dir);
    } catch (const std::exception& e) {
      error = fmt::format("cannot create checkpoint directory '{}': {}", tmp_dir, e.what());
    }
  }
  error = parallel::broadcast_string(comm, error, 0);
  SOME_REQUIRE(error.empty(), DataError, "{}", error);

  // 2. Every writing rank writes and checksums its file; failures travel to every rank so that
  //    all of them stop at the same place with the same message.
  nlohmann::json report = nullptr;
  error.clear();
  if (!mine.empty()) {
    try {
      const auto path = tmp_dir + "/" + rank_file_name(comm.rank());
      write_tensors(path, mine);
      report = describe_file(path, mine);
      fault_point(comm.rank(), "file");
    } catch (const std::exception& e) {
      error = fmt::format("rank {}: {}", comm.rank(), e.what());
    }
  }
  auto reports = parallel::allgather_strings(comm, report.dump());
  auto errors = parallel::allgather_strings(comm, error);
  fault_point(comm.rank(), "gathered");
  std::vector<std::string> failed;
  for (auto& e : errors) {
    if (!e.empty()) failed.push_back(e);
  }

  // 3. Rank 0 writes the manifest, commits the directory and moves `latest`.
  if (leader && failed.empty()) {
    try {
      Manifest m;
      m.info = info;
      m.library = library.empty() ? "" : "../" + library;
      for (const auto& text : reports) {
        auto r = nlohmann::json::parse(text);
        if (r.is_null()) continue;
        const auto file = r["file"].get<std::string>();
        m.files[file] = {r["sha256"].get<std::string>(), r["bytes"].get<int64_t>()};
        for (const auto& [tname, t] : r["tensors"].items()) {
          SOME_REQUIRE(!m.tensors.count(tname), Error, "tensor '{}' was written by two ranks ({} and {})", tname,
                       m.tensors[tname].file, file);
          m.tensors[tname] = {file, t["shape"].get<std::vector<int64_t>>(), t["dtype"].get<std::string>()};
        }
      }
      write_file_atomic(tmp_dir + "/manifest.json", m.to_json().dump(1) + "\n");
      fsync_path(tmp_dir);
      fault_point(comm.rank(), "manifest");
      if (fs::exists(final_dir)) {  // a resumed run saving a step again replaces the old copy
        const auto old = checkpoints_dir + "/.old." + name;
        fs::remove_all(old);
        fs::rename(final_dir, old);
        fs::rename(tmp_dir, final_dir);
        fs::remove_all(old);
      } else {
        fs::rename(tmp_dir, final_dir);
      }
      fsync_path(checkpoints_dir);
      fault_point(comm.rank(), "renamed");
      if (move_latest) {
        write_file_atomic(checkpoints_dir + "/latest", name + "\n");
        fsync_path(checkpoints_dir);
        fault_point(comm.rank(), "latest");
      }
    } catch (const std::exception& e) {
      failed.push_back(fmt::format("rank 0: committing '{}': {}", final_dir, e.what()));
    }
  }
  if (leader && !failed.empty()) {
    std::error_code ignored;
    fs::remove_all(tmp_dir, ignored);
  }
  error = parallel::broadcast_string(comm, failed.empty() ? "" : failed.front(), 0);
  SOME_REQUIRE(error.empty(), DataError, "checkpoint '{}' of step {} failed, previous checkpoints are intact: {}", name,
               info.step, error);
  return final_dir;
}

// Removes all but the newest `keep_last` step directories, then every expert library no
// remaining checkpoint references (never `keep`, the one just written).
void prune(const std::string& checkpoints_dir, int keep_last, const std::string& keep) {
  auto dirs = step_dirs_newest_first(checkpoints_dir);
  auto log = log::get("checkpoint");
  std::vector<std::string> kept;
  for (size_t i = 0; i < dirs.size(); ++i) {
    if (keep_last > 0 && i >= static_cast<size_t>(keep_last) && dirs[i].second != keep) {
      std::error_code ec;
      fs::remove_all(dirs[i].second, ec);
      if (ec) log->warn("could not prune '{}': {}", dirs[i].second, ec.message());
    } else {
      kept.push_back(dirs[i].second);
    }
  }
  std::set<std::string> referenced;
  for (const auto& dir : kept) {
    try {
      auto m = Manifest::read(dir + "/manifest.json");
      if (!m.library.empty()) referenced.insert(fs::path(m.library).filename().string());
    } catch (const std::exception&) {  // a damaged checkpoint: keep what it might reference
      return;
    }
  }
  for (const auto& entry : fs::directory_iterator(checkpoints_dir)) {
    const auto n = entry.path().filename().string();
    if (n.rfind("experts_", 0) == 0 && !referenced.count(n)) {
      std::error_code ec;
      fs::remove_all(entry.path(), ec);
    }
  }
}

}  // namespace

std::string save_checkpoint(const std::string& checkpoints_dir, const CheckpointInfo& info, const TensorMap& mine,
                            parallel::Communicator& comm, int keep_last, const std::string& library) {
  auto dir = commit_directory(checkpoints_dir, step_dir_name(info.step), info, mine, comm, library, true);
  if (comm.rank() == 0) prune(checkpoints_dir, keep_last, dir);
  return dir;
}

std::string save_library(const std::string& checkpoints_dir, const std::string& name, const CheckpointInfo& info,
                         const TensorMap& mine, parallel::Communicator& comm) {
  return commit_directory(checkpoints_dir, name, info, mine, comm, "", false);
}

std::string resolve_checkpoint_dir(const std::string& path) {
  std::error_code ec;
  if (fs::exists(fs::path(path) / "manifest.json", ec)) return path;
  for (const auto& dir : {fs::path(path), fs::path(path) / "checkpoints"}) {
    if (fs::exists(dir / "latest", ec)) {
      std::ifstream in(dir / "latest");
      std::string name;
      in >> name;
      SOME_REQUIRE(!name.empty(), DataError, "'{}' is empty", (dir / "latest").string());
      return (dir / name).string();
    }
  }
  throw DataError(fmt::format("'{}' is not a checkpoint (no manifest.json), nor a run or checkpoints directory "
                              "with a 'latest' checkpoint",
                              path));
}

CheckpointReader::CheckpointReader(const std::string& path, bool verify, parallel::Communicator* comm)
    : dir_(resolve_checkpoint_dir(path)) {
  manifest_ = Manifest::read(dir_ + "/manifest.json");
  if (!manifest_.library.empty()) {
    // The expert library's files and tensors, by paths relative to this directory.
    const auto lib_dir = dir_ + "/" + manifest_.library;
    SOME_REQUIRE(fs::exists(lib_dir + "/manifest.json"), DataError,
                 "checkpoint '{}' references the expert library '{}', which is missing", dir_, lib_dir);
    auto lib = Manifest::read(lib_dir + "/manifest.json");
    for (auto& [file, record] : lib.files) manifest_.files[manifest_.library + "/" + file] = record;
    for (auto& [name, record] : lib.tensors) {
      record.file = manifest_.library + "/" + record.file;
      manifest_.tensors.emplace(name, record);
    }
  }
  if (verify) verify_files(manifest_, dir_, comm);
}

torch::Tensor CheckpointReader::read(const std::string& name) const {
  auto it = manifest_.tensors.find(name);
  SOME_REQUIRE(it != manifest_.tensors.end(), DataError, "checkpoint '{}' has no tensor '{}'", dir_, name);
  const auto path = dir_ + "/" + it->second.file;
  auto file = h5::open_file(path);
  return read_tensor(file, name, path);
}

void CheckpointReader::load_into(TensorMap& target) const {
  std::vector<std::string> problems;
  for (const auto& [name, t] : target) {
    auto it = manifest_.tensors.find(name);
    if (it == manifest_.tensors.end()) {
      problems.push_back("missing '" + name + "'");
    } else if (it->second.shape != t.sizes().vec()) {
      problems.push_back(fmt::format("'{}' has shape [{}] in the checkpoint, the model expects [{}]", name,
                                     fmt::join(it->second.shape, ", "), fmt::join(t.sizes(), ", ")));
    }
  }
  SOME_REQUIRE(problems.empty(), DataError, "checkpoint '{}' does not match the model ({} problem(s)): {}", dir_,
               problems.size(), fmt::join(problems, "; "));
  // One open handle per file, tensors read in file order.
  std::map<std::string, std::vector<std::string>> by_file;
  for (const auto& [name, t] : target) by_file[manifest_.tensors.at(name).file].push_back(name);
  torch::NoGradGuard no_grad;
  for (const auto& [file, names] : by_file) {
    const auto path = dir_ + "/" + file;
    auto h = h5::open_file(path);
    for (const auto& name : names) {
      // The manifest's shape was checked against the target above; the file's own dataset
      // must agree with both, or copy_ would broadcast it (or fail with a bare shape error).
      auto stored = read_tensor(h, name, path);
      SOME_REQUIRE(stored.sizes() == target.at(name).sizes(), DataError,
                   "checkpoint '{}': tensor '{}' in '{}' has shape [{}], its manifest says [{}]", dir_, name, file,
                   fmt::join(stored.sizes(), ", "), fmt::join(target.at(name).sizes(), ", "));
      target.at(name).copy_(stored);
    }
  }
}

std::optional<std::string> find_latest_intact(const std::string& checkpoints_dir, std::vector<std::string>* refused,
                                              parallel::Communicator* comm) {
  // Newest step first, `latest` or not: a save killed between committing its directory and
  // moving `latest` has still produced the newest complete checkpoint.
  for (const auto& [step, dir] : step_dirs_newest_first(checkpoints_dir)) {
    try {
      CheckpointReader reader(dir, /*verify=*/true, comm);
      return reader.dir();
    } catch (const std::exception& e) {
      if (refused) refused->push_back(e.what());
    }
  }
  return std::nullopt;
}

void consolidate(const CheckpointReader& reader, const std::string& out_path) {
  TensorMap all;
  for (const auto& [name, r] : reader.manifest().tensors) {
    all.emplace(name, torch::empty(r.shape, torch::dtype(dtype_from_name(r.dtype))));
  }
  reader.load_into(all);  // one open handle per file
  write_tensors(out_path, all, {{"manifest", reader.manifest().to_json().dump()}});
}

}  // namespace some::checkpoints
