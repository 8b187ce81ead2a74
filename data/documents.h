#pragma once
// Streaming reader of training documents. Inputs are files or folders of plain text
// (.txt/.text/.md: documents separated by blank lines) or JSON lines (.jsonl/.json: one
// object per line, its string field "text" is the document). Only the current line is ever in
// memory (plus the document being assembled), so corpora far larger than RAM can be read.
#include <cstdint>
#include <fstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace some::data {

enum class SourceFormat { Text, JsonLines };

struct SourceFile {
  std::string path;
  SourceFormat format = SourceFormat::Text;
  uint64_t bytes = 0;  // file size, for progress and ETA
};

// Expands `inputs` into the files to read: a file stands for itself, a folder for every
// supported file below it in sorted path order (so the document order, and hence the
// dataset, does not depend on the file system's directory order). Files with other
// extensions inside a folder are skipped with one warning; hidden entries are skipped
// silently. DataError for a path that does not exist, a named file with an unsupported
// extension, or inputs holding no file at all.
std::vector<SourceFile> list_sources(const std::vector<std::string>& inputs);

// Byte counts that tell a binary file with a text name from text: NUL bytes, and bytes that
// are not part of a well-formed UTF-8 sequence.
struct TextBytes {
  uint64_t bytes = 0, nul = 0, invalid_utf8 = 0;
  // Counts `s`, which must not cut a UTF-8 sequence (a line does not: '\n' is never inside one).
  void add(std::string_view s);
  double invalid_share() const { return bytes ? static_cast<double>(invalid_utf8) / bytes : 0.0; }
  // Any NUL byte, or more than 1% of the bytes not UTF-8: text in any encoding but UTF-8 (which
  // the tokenizer expects) or no text at all.
  bool looks_binary() const { return nul > 0 || invalid_share() > 0.01; }
};

class DocumentReader {
 public:
  // A plain-text "document" without blank lines can be a whole multi-GB file; beyond
  // `max_document_bytes` it is cut at a line boundary so memory stays bounded.
  explicit DocumentReader(std::vector<SourceFile> sources, size_t max_document_bytes = 8u << 20);

  // The next non-empty document, false at the end of the last file. DataError (naming file
  // and line) for a JSON line that does not parse or has no string "text".
  bool next(std::string& doc);

  uint64_t bytes_read() const { return bytes_done_ + bytes_in_file_; }
  uint64_t total_bytes() const { return total_bytes_; }
  int64_t documents_read() const { return documents_; }
  const std::vector<SourceFile>& sources() const { return sources_; }
  // Plain-text files read to the end so far whose bytes look binary (TextBytes::looks_binary):
  // they are read as text all the same, and the caller decides how to warn.
  const std::vector<std::pair<std::string, TextBytes>>& binary_like_files() const { return binary_like_; }

 private:
  bool open_next_file();
  bool read_line(std::string& line);
  bool next_text(std::string& doc);
  bool next_json(std::string& doc);

  std::vector<SourceFile> sources_;
  size_t max_document_bytes_;
  size_t next_file_ = 0;  // index of the next file to open
  const SourceFile* current_ = nullptr;
  std::ifstream in_;
  int64_t line_no_ = 0;
  bool warned_split_ = false;
  uint64_t total_bytes_ = 0;
  uint64_t bytes_done_ = 0;     // sizes of the files already finished
  uint64_t bytes_in_file_ = 0;  // consumed from the current file
  int64_t documents_ = 0;
  std::string line_;
  TextBytes text_bytes_;  // of the current file (plain text only)
  std::vector<std::pair<std::string, TextBytes>> binary_like_;
};

// Writes the default corpus, the King James Bible from Debian's bible-kjv, to
// `out_dir/source/kjv.txt`: one chapter per document (its verses joined by spaces, verse
// labels removed), documents separated by a blank line. Returns the path. DataError when the
// `bible` program is not installed.
std::string write_default_corpus(const std::string& out_dir);

}  // namespace some::data
