#include "checkpoints/manifest.h"

#include <fstream>

#include <fmt/format.h>

#include "checkpoints/tensor_file.h"
#include "common/check.h"
#include "common/errors.h"

namespace some::checkpoints {

nlohmann::json Manifest::to_json() const {
  nlohmann::json j;
  j["format"] = "some-checkpoint";
  j["version"] = kFormatVersion;
  j["step"] = info.step;
  j["tokens"] = info.tokens;
  j["world_size"] = info.world_size;
  j["expert_parallel"] = info.expert_parallel;
  j["trainer"] = info.trainer;
  j["config"] = info.config;
  if (!library.empty()) j["library"] = library;
  auto& f = j["files"] = nlohmann::json::object();
  for (const auto& [name, r] : files) f[name] = {{"sha256", r.sha256}, {"bytes", r.bytes}};
  auto& t = j["tensors"] = nlohmann::json::object();
  for (const auto& [name, r] : tensors) t[name] = {{"file", r.file}, {"shape", r.shape}, {"dtype", r.dtype}};
  return j;
}

Manifest Manifest::from_json(const nlohmann::json& j, const std::string& path) {
  auto get = [&](const nlohmann::json& obj, const char* key) -> const nlohmann::json& {
    SOME_REQUIRE(obj.is_object() && obj.contains(key), DataError, "checkpoint manifest '{}' has no '{}'", path, key);
    return obj.at(key);
  };
  try {
    SOME_REQUIRE(get(j, "format") == "some-checkpoint", DataError,
                 "'{}' is not a SoME checkpoint manifest (format = {})", path, get(j, "format").dump());
    const int version = get(j, "version").get<int>();
    SOME_REQUIRE(version == kFormatVersion, DataError,
                 "checkpoint manifest '{}' has format version {}; this build reads version {}", path, version,
                 kFormatVersion);
    Manifest m;
    m.info.step = get(j, "step").get<int64_t>();
    m.info.tokens = get(j, "tokens").get<int64_t>();
    m.info.world_size = get(j, "world_size").get<int>();
    m.info.expert_parallel = get(j, "expert_parallel").get<int>();
    m.info.config = get(j, "config").get<std::string>();
    m.info.trainer = get(j, "trainer");
    m.library = j.value("library", std::string());
    for (const auto& [name, r] : get(j, "files").items()) {
      m.files[name] = {get(r, "sha256").get<std::string>(), get(r, "bytes").get<int64_t>()};
    }
    for (const auto& [name, r] : get(j, "tensors").items()) {
      TensorRecord rec{get(r, "file").get<std::string>(), get(r, "shape").get<std::vector<int64_t>>(),
                       get(r, "dtype").get<std::string>()};
      SOME_REQUIRE(m.files.count(rec.file), DataError,
                   "checkpoint manifest '{}': tensor '{}' is in file '{}', which the manifest does not list", path,
                   name, rec.file);
      m.tensors.emplace(name, std::move(rec));
    }
    // A shape is believed only if its bytes fit in its file (uncompressed datasets): nothing is
    // allocated for a manifest that claims an absurd tensor (a damaged or hand-edited one).
    std::map<std::string, double> claimed;  // file -> bytes its tensors need
    for (const auto& [name, rec] : m.tensors) {
      double bytes = static_cast<double>(c10::elementSize(dtype_from_name(rec.dtype)));
      for (auto d : rec.shape) {
        SOME_REQUIRE(d >= 0, DataError, "checkpoint manifest '{}': tensor '{}' has a negative dimension {}", path,
                     name, d);
        bytes *= static_cast<double>(d);
      }
      claimed[rec.file] += bytes;
      SOME_REQUIRE(claimed[rec.file] <= static_cast<double>(m.files.at(rec.file).bytes), DataError,
                   "checkpoint manifest '{}': tensor '{}' of shape [{}] ({:.4g} bytes, with the file's other tensors "
                   "{:.4g}) cannot be in file '{}' of {} bytes",
                   path, name, fmt::join(rec.shape, ", "), bytes, claimed[rec.file], rec.file,
                   m.files.at(rec.file).bytes);
    }
    return m;
  } catch (const nlohmann::json::exception& e) {
    throw DataError(fmt::format("checkpoint manifest '{}' is malformed: {}", path, e.what()));
  }
}

Manifest Manifest::read(const std::string& path) {
  std::ifstream in(path);
  SOME_REQUIRE(in.good(), DataError, "checkpoint manifest '{}' cannot be read", path);
  nlohmann::json j;
  try {
    in >> j;
  } catch (const nlohmann::json::exception& e) {
    throw DataError(fmt::format("checkpoint manifest '{}' is not valid JSON (truncated?): {}", path, e.what()));
  }
  return from_json(j, path);
}

}  // namespace some::checkpoints
