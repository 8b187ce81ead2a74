#include "data/documents.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <sstream>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "common/check.h"
#include "common/errors.h"
#include "common/logging.h"

namespace some::data {
namespace fs = std::filesystem;

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// The format a file is read as, by extension; false for unsupported files.
bool format_of(const fs::path& p, SourceFormat& format) {
  std::string ext = lower(p.extension().string());
  if (ext == ".txt" || ext == ".text" || ext == ".md") {
    format = SourceFormat::Text;
    return true;
  }
  if (ext == ".jsonl" || ext == ".json") {
    format = SourceFormat::JsonLines;
    return true;
  }
  return false;
}

bool is_hidden(const fs::path& p) {
  std::string name = p.filename().string();
  return !name.empty() && name[0] == '.';
}

std::string_view trim(std::string_view s) {
  auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; };
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// Length of the well-formed UTF-8 sequence that starts `s` (Unicode Table 3-7: no overlong
// forms, no surrogates, nothing above U+10FFFF), or 0. Hand-written because nothing this build
// links offers a validator (SentencePiece keeps its own internal; std::codecvt is deprecated).
size_t utf8_sequence(std::string_view s) {
  auto at = [&](size_t i) -> unsigned { return i < s.size() ? static_cast<unsigned char>(s[i]) : 0; };
  auto in = [](unsigned x, unsigned lo, unsigned hi) { return x >= lo && x <= hi; };
  const unsigned c = at(0);
  if (c < 0x80) return 1;
  if (in(c, 0xC2, 0xDF)) return in(at(1), 0x80, 0xBF) ? 2 : 0;
  if (in(c, 0xE0, 0xEF)) {
    const unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    return in(at(1), lo, hi) && in(at(2), 0x80, 0xBF) ? 3 : 0;
  }
  if (in(c, 0xF0, 0xF4)) {
    const unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    return in(at(1), lo, hi) && in(at(2), 0x80, 0xBF) && in(at(3), 0x80, 0xBF) ? 4 : 0;
  }
  return 0;
}

SourceFile make_source(const fs::path& p, SourceFormat format) {
  std::error_code ec;
  auto size = fs::file_size(p, ec);
  SOME_REQUIRE(!ec, DataError, "cannot read the size of input file '{}': {}", p.string(), ec.message());
  return {p.string(), format, static_cast<uint64_t>(size)};
}

}  // namespace

void TextBytes::add(std::string_view s) {
  bytes += s.size();
  for (size_t i = 0; i < s.size();) {
    if (s[i] == '\0') ++nul;
    size_t len = utf8_sequence(s.substr(i));
    if (len == 0) {
      ++invalid_utf8;
      len = 1;
    }
    i += len;
  }
}

std::vector<SourceFile> list_sources(const std::vector<std::string>& inputs) {
  auto log = some::log::get("data");
  std::vector<SourceFile> out;
  for (const auto& input : inputs) {
    fs::path root(input);
    std::error_code ec;
    SOME_REQUIRE(fs::exists(root, ec), DataError, "input '{}' does not exist", input);
    if (!fs::is_directory(root, ec)) {
      SourceFormat format;
      SOME_REQUIRE(format_of(root, format), DataError,
                   "input file '{}' has an unsupported extension '{}' (expected .txt, .text, .md "
                   "for plain text or .jsonl, .json for JSON lines)",
                   input, root.extension().string());
      out.push_back(make_source(root, format));
      continue;
    }
    std::vector<fs::path> files;
    std::vector<std::string> skipped;
    for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::end(it);
         it.increment(ec)) {
      if (is_hidden(it->path())) {
        if (it->is_directory()) it.disable_recursion_pending();
        continue;
      }
      if (!it->is_regular_file()) continue;
      SourceFormat format;
      if (format_of(it->path(), format)) {
        files.push_back(it->path());
      } else {
        skipped.push_back(it->path().string());
      }
    }
    SOME_REQUIRE(!ec, DataError, "cannot list input folder '{}': {}", input, ec.message());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      SourceFormat format;
      format_of(f, format);
      out.push_back(make_source(f, format));
    }
    if (!skipped.empty()) {
      std::sort(skipped.begin(), skipped.end());
      log->warn("skipped {} file(s) in '{}' with unsupported extensions (e.g. '{}'); supported: "
                ".txt .text .md .jsonl .json",
                skipped.size(), input, skipped.front());
    }
  }
  SOME_REQUIRE(!out.empty(), DataError,
               "the inputs ({}) hold no .txt/.text/.md/.jsonl/.json file",
               fmt::format("{}", fmt::join(inputs, ", ")));
  return out;
}

DocumentReader::DocumentReader(std::vector<SourceFile> sources, size_t max_document_bytes)
    : sources_(std::move(sources)), max_document_bytes_(std::max<size_t>(max_document_bytes, 1)) {
  for (const auto& s : sources_) total_bytes_ += s.bytes;
}

bool DocumentReader::open_next_file() {
  if (current_) {
    if (text_bytes_.looks_binary()) binary_like_.emplace_back(current_->path, text_bytes_);
    bytes_done_ += current_->bytes;
    bytes_in_file_ = 0;
    in_.close();
    current_ = nullptr;
  }
  if (next_file_ >= sources_.size()) return false;
  current_ = &sources_[next_file_++];
  in_.clear();
  in_.open(current_->path, std::ios::binary);
  SOME_REQUIRE(in_.is_open(), DataError, "cannot open input file '{}'", current_->path);
  line_no_ = 0;
  warned_split_ = false;
  text_bytes_ = {};
  return true;
}

bool DocumentReader::read_line(std::string& line) {
  if (!std::getline(in_, line)) {
    SOME_REQUIRE(!in_.bad(), DataError, "read error in '{}' after line {}", current_->path, line_no_);
    return false;
  }
  ++line_no_;
  // +1 for the newline; capped because the last line may have none.
  bytes_in_file_ = std::min<uint64_t>(bytes_in_file_ + line.size() + 1, current_->bytes);
  if (current_->format == SourceFormat::Text) text_bytes_.add(line);  // JSON parsing checks its own
  if (line_no_ == 1 && line.starts_with("\xEF\xBB\xBF")) line.erase(0, 3);  // UTF-8 BOM
  return true;
}

bool DocumentReader::next_text(std::string& doc) {
  doc.clear();
  while (read_line(line_)) {
    std::string_view t = trim(line_);
    if (t.empty()) {
      if (!doc.empty()) return true;
      continue;
    }
    if (!doc.empty()) doc += ' ';
    doc.append(t);
    if (doc.size() >= max_document_bytes_) {
      if (!warned_split_) {
        some::log::get("data")->warn(
            "'{}': a document without blank lines exceeds {} bytes at line {}; cutting it "
            "into several documents at line boundaries",
            current_->path, max_document_bytes_, line_no_);
        warned_split_ = true;
      }
      return true;
    }
  }
  return !doc.empty();
}

bool DocumentReader::next_json(std::string& doc) {
  while (read_line(line_)) {
    if (trim(line_).empty()) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line_);
    } catch (const nlohmann::json::exception& e) {
      throw DataError(fmt::format("{}:{}: not a valid JSON line ({})", current_->path, line_no_,
                                  e.what()));
    }
    SOME_REQUIRE(j.is_object() && j.contains("text") && j["text"].is_string(), DataError,
                 "{}:{}: expected a JSON object with a string field \"text\"", current_->path,
                 line_no_);
    doc = std::move(j["text"].get_ref<std::string&>());
    if (!trim(doc).empty()) return true;
  }
  return false;
}

bool DocumentReader::next(std::string& doc) {
  while (true) {
    if (current_) {
      bool got = current_->format == SourceFormat::Text ? next_text(doc) : next_json(doc);
      if (got) {
        ++documents_;
        return true;
      }
    }
    if (!open_next_file()) return false;
  }
}

namespace {

bool on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) dir = ".";
    if (::access((fs::path(dir) / program).c_str(), X_OK) == 0) return true;
  }
  return false;
}

}  // namespace

std::string write_default_corpus(const std::string& out_dir) {
  SOME_REQUIRE(on_path("bible"), DataError,
               "the default corpus needs the 'bible' program (the King James Bible), which is not "
               "installed: run 'apt-get install bible-kjv' (Debian/Ubuntu), or pass --input");
  fs::path dir = fs::path(out_dir) / "source";
  std::error_code ec;
  fs::create_directories(dir, ec);
  SOME_REQUIRE(!ec, DataError, "cannot create folder '{}': {}", dir.string(), ec.message());
  fs::path path = dir / "kjv.txt";
  fs::path tmp = dir / "kjv.txt.tmp";

  const char* command = "bible -f 'Gen1:1-Rev22:21'";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(command, "r"), &::pclose);
  SOME_REQUIRE(pipe != nullptr, DataError, "cannot run '{}'", command);
  std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
  SOME_REQUIRE(out.is_open(), DataError, "cannot write '{}'", tmp.string());

  // Each line is "Ge1:1 In the beginning ...": the label before the first space names book,
  // chapter and verse; a chapter (the label before ':') becomes one document.
  char* buf = nullptr;
  size_t cap = 0;
  ssize_t n = 0;
  std::string chapter;
  int64_t verses = 0, chapters = 0;
  std::string bad_line;
  while ((n = ::getline(&buf, &cap, pipe.get())) > 0) {
    std::string_view line = trim(std::string_view(buf, static_cast<size_t>(n)));
    if (line.empty()) continue;
    size_t space = line.find(' ');
    size_t colon = line.substr(0, space).find(':');
    if (space == std::string_view::npos || colon == std::string_view::npos) {
      bad_line = std::string(line.substr(0, 80));
      break;
    }
    std::string_view label = line.substr(0, colon);
    std::string_view text = trim(line.substr(space + 1));
    if (label != chapter) {
      if (chapters > 0) out << "\n\n";
      chapter = label;
      ++chapters;
    } else {
      out << ' ';
    }
    out << text;
    ++verses;
  }
  std::free(buf);
  int status = ::pclose(pipe.release());
  out << '\n';
  out.close();
  if (!bad_line.empty() || status != 0 || verses == 0 || !out) {
    fs::remove(tmp, ec);
    SOME_REQUIRE(bad_line.empty(), DataError,
                 "unexpected output line from '{}': '{}' (expected 'Book1:1 text')", command,
                 bad_line);
    SOME_REQUIRE(status == 0 && verses > 0, DataError,
                 "'{}' failed (exit status {}, {} verses read); is bible-kjv installed?", command,
                 status, verses);
    throw DataError(fmt::format("cannot write '{}'", tmp.string()));
  }
  fs::rename(tmp, path, ec);
  SOME_REQUIRE(!ec, DataError, "cannot rename '{}' to '{}': {}", tmp.string(), path.string(),
               ec.message());
  some::log::get("data")->info("default corpus: {} verses in {} chapters -> {}", verses, chapters,
                               path.string());
  return path.string();
}

}  // namespace some::data
