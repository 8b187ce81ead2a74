#pragma once
// Shared fixtures of the data-library tests: temp folders, a generated English-like corpus,
// the token stream prepare should write, and DataError expectations.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <hdf5.h>
#include <nlohmann/json.hpp>
#include <spdlog/sinks/ostream_sink.h>

#include "common/errors.h"
#include "common/h5.h"
#include "common/logging.h"
#include "common/sha256.h"
#include "data/batch_sampler.h"
#include "data/dataset.h"
#include "data/documents.h"
#include "data/prepare.h"
#include "data/tokenizer.h"

namespace fs = std::filesystem;
using namespace some;
using namespace some::data;

namespace some::test {


// A fresh folder per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = info ? std::string(info->test_suite_name()) + "_" + info->name() : "suite";
    path_ = fs::path("/tmp") / ("some_test_data_" + std::to_string(::getpid()) + "_" + name);
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

inline void write_file(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream f(path, std::ios::binary);
  f << text;
  ASSERT_TRUE(f.good()) << path;
}

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// A few hundred distinct English-like sentences, deterministic.
inline std::vector<std::string> sentences(int n) {
  static const std::vector<std::string> subj = {
      "The old miller", "A young shepherd", "My neighbour", "The quiet teacher", "Every sailor",
      "Her brother",    "The king",         "A tired farmer", "Our captain",     "The baker",
      "His daughter",   "The stranger",     "A clever fox"};
  static const std::vector<std::string> verb = {
      "carried", "painted", "watched", "found", "mended", "sold", "followed", "remembered",
      "praised", "burned",  "counted"};
  static const std::vector<std::string> obj = {
      "the broken wheel",   "seven golden apples", "a letter from the city", "the long river",
      "the northern hills", "an empty basket",     "the wooden bridge",      "three grey horses",
      "the morning bread",  "a silver coin",       "the lantern",            "the winter stars",
      "a small boat",       "the village well",    "forty sheep",            "the tall tower",
      "a song of the sea"};
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(subj[i % 13] + " " + verb[(i / 13) % 11] + " " + obj[(i / 143) % 17] +
                  (i % 3 == 0 ? " at dawn." : i % 3 == 1 ? ", and then rested." : " again!"));
  }
  return out;
}

// Writes the sentences as a plain-text corpus (one sentence per paragraph) and returns it.
inline std::string write_corpus(const TempDir& dir, int n) {
  std::string text;
  for (const auto& s : sentences(n)) text += s + "\n\n";
  std::string path = dir / "corpus.txt";
  write_file(path, text);
  return path;
}

inline std::string escape_json(const std::string& s) { return nlohmann::json(s).dump(); }

// Tokens of documents as prepare writes them: each document, then EOS.
inline std::vector<int32_t> token_stream(const Tokenizer& tok, const std::vector<std::string>& docs) {
  std::vector<int32_t> out;
  for (const auto& d : docs) {
    auto ids = tok.encode(d);
    out.insert(out.end(), ids.begin(), ids.end());
    out.push_back(tok.eos_id());
  }
  return out;
}

// The mixed input folder of several tests, with the documents it holds, in reading order.
struct MixedInputs {
  std::string folder;
  std::vector<std::string> docs;
};

inline MixedInputs write_mixed_inputs(const TempDir& dir) {
  MixedInputs m;
  m.folder = dir / "inputs";
  auto s = sentences(240);
  // a.txt: paragraphs of three lines each (lines joined by one space), odd blank lines and
  // surrounding whitespace on purpose.
  std::string txt = "\n\n";
  for (int p = 0; p < 60; ++p) {
    txt += "  " + s[3 * p] + "\r\n" + s[3 * p + 1] + "\t\n" + s[3 * p + 2] + "\n\n";
    if (p % 7 == 0) txt += "   \n\n";
    m.docs.push_back(s[3 * p] + " " + s[3 * p + 1] + " " + s[3 * p + 2]);
  }
  write_file(m.folder + "/a.txt", txt);
  // sub/b.jsonl: one document per line; a blank line is skipped, extra fields ignored.
  std::string jsonl;
  for (int i = 180; i < 240; ++i) {
    std::string doc = s[i] + "\n" + s[(i * 7) % 240];
    jsonl += "{\"id\": " + std::to_string(i) + ", \"text\": " + escape_json(doc) + "}\n";
    if (i == 200) jsonl += "\n";
    m.docs.push_back(doc);
  }
  write_file(m.folder + "/sub/b.jsonl", jsonl);
  write_file(m.folder + "/notes.csv", "ignored,1,2\n");
  return m;
}

inline bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// What one component's logger writes while this object lives (its console output continues).
class CapturedLog {
 public:
  explicit CapturedLog(const std::string& component)
      : logger_(some::log::get(component)), sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(out_)) {
    logger_->sinks().push_back(sink_);
  }
  ~CapturedLog() { std::erase(logger_->sinks(), sink_); }
  CapturedLog(const CapturedLog&) = delete;
  CapturedLog& operator=(const CapturedLog&) = delete;
  std::string text() const { return out_.str(); }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> logger_;
  spdlog::sink_ptr sink_;
};

// Runs f, expecting a DataError whose message contains every needle.
template <class F>
void expect_data_error(F&& f, const std::vector<std::string>& needles) {
  try {
    f();
    ADD_FAILURE() << "expected a DataError";
  } catch (const DataError& e) {
    if (std::getenv("SOME_TEST_SHOW_ERRORS")) std::fprintf(stderr, "DataError: %s\n", e.what());
    for (const auto& n : needles) {
      EXPECT_TRUE(contains(e.what(), n)) << "message '" << e.what() << "' lacks '" << n << "'";
    }
  }
}

}  // namespace some::test

using namespace some::test;
