#pragma once
// Append-only JSON-lines sink (metrics.jsonl): one object per line, flushed per line so a
// crashed run keeps everything it logged.
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "common/errors.h"

namespace some {

class JsonLines {
 public:
  JsonLines() = default;
  explicit JsonLines(const std::string& path) : out_(path, std::ios::app), path_(path) {
    if (!out_) throw DataError("cannot open '" + path + "' for writing");
  }
  void write(const nlohmann::json& j) {
    if (!out_.is_open()) return;
    out_ << j.dump() << '\n';
    out_.flush();
  }
  const std::string& path() const { return path_; }

 private:
  std::ofstream out_;
  std::string path_;
};

}  // namespace some
