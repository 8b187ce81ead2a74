// TensorBoard writer without TensorBoard: CRC-32C against RFC 3720, masked CRCs against the
// tensorboard package's own masked_crc32c, and the TFRecord framing of the files we write,
// parsed back byte by byte. read_events.py checks the same files with the tensorboard package.
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/crc32c.h"
#include "common/errors.h"
#include "common/tensorboard.h"

namespace fs = std::filesystem;
using namespace some;

namespace {

class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::path("/tmp") / ("some_test_tb_" + std::to_string(getpid()) + "_" + info->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

uint64_t read_le(const std::string& bytes, size_t at, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(bytes[at + i]);
  return v;
}

// The payloads of a TFRecord file; fails the test on a bad length, CRC or trailing bytes.
std::vector<std::string> read_records(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> records;
  size_t at = 0;
  while (at < bytes.size()) {
    if (at + 12 > bytes.size()) {
      ADD_FAILURE() << "truncated header at byte " << at;
      break;
    }
    const uint64_t len = read_le(bytes, at, 8);
    EXPECT_EQ(read_le(bytes, at + 8, 4), masked_crc32c(std::string_view(bytes).substr(at, 8))) << "byte " << at;
    if (at + 12 + len + 4 > bytes.size()) {
      ADD_FAILURE() << "truncated record at byte " << at;
      break;
    }
    const std::string data = bytes.substr(at + 12, len);
    EXPECT_EQ(read_le(bytes, at + 12 + len, 4), masked_crc32c(data)) << "byte " << at;
    records.push_back(data);
    at += 12 + len + 4;
  }
  return records;
}

std::vector<fs::path> event_files(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace

TEST(Crc32c, Rfc3720Vectors) {
  std::string ascending(32, '\0'), descending(32, '\0');
  for (int i = 0; i < 32; ++i) {
    ascending[i] = static_cast<char>(i);
    descending[i] = static_cast<char>(31 - i);
  }
  EXPECT_EQ(crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(crc32c(std::string(32, '\xFF')), 0x62A8AB43u);
  EXPECT_EQ(crc32c(ascending), 0x46DD794Eu);
  EXPECT_EQ(crc32c(descending), 0x113FDB5Cu);
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(crc32c(""), 0u);
}

TEST(Crc32c, MaskedMatchesTensorBoard) {
  // Values from tensorboard.compat.tensorflow_stub.pywrap_tensorflow.masked_crc32c.
  EXPECT_EQ(masked_crc32c("123456789"), 0xC78AB0E5u);
  EXPECT_EQ(masked_crc32c(""), 0xA282EAD8u);
  const char len42[8] = {42, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(masked_crc32c(std::string_view(len42, 8)), 0xF5918DAEu);
}

TEST(TensorBoardWriter, RecordsAreFramedAndNamed) {
  TempDir tmp;
  const auto dir = tmp.path() / "tb";  // created by the writer
  std::string path;
  {
    TensorBoardWriter tb(dir.string());
    path = tb.path();
    tb.scalar("train/loss", 1, 2.5);
    tb.scalar("train/loss", 2, 2.25);
    tb.text("eval/sample", 2, "once upon a time");
  }  // closed: everything on disk
  const auto files = event_files(dir);
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].string(), path);
  const auto name = files[0].filename().string();
  EXPECT_TRUE(name.starts_with("events.out.tfevents.")) << name;
  EXPECT_TRUE(name.ends_with("." + std::to_string(getpid()))) << name;

  const auto records = read_records(path);
  ASSERT_EQ(records.size(), 5u);  // file version, session start, 2 scalars, 1 text
  EXPECT_TRUE(contains(records[0], "brain.Event:2"));
  EXPECT_TRUE(contains(records[2], "train/loss"));
  EXPECT_TRUE(contains(records[4], "eval/sample"));
  EXPECT_TRUE(contains(records[4], "once upon a time"));
}

TEST(TensorBoardWriter, SecondWriterAddsAFileWithoutSessionStart) {
  TempDir tmp;
  { TensorBoardWriter first(tmp.path().string()); }
  std::string second_path;
  {
    TensorBoardWriter second(tmp.path().string());
    second_path = second.path();
    second.resumed_at(7);
  }
  const auto files = event_files(tmp.path());
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[1].string(), second_path);  // sorts after the first: TensorBoard reads it last
  EXPECT_EQ(read_records(files[0].string()).size(), 2u);  // version, start
  // Only the explicit restart: a second automatic START would purge the first file's events.
  EXPECT_EQ(read_records(second_path).size(), 2u);  // version, resumed_at
}

TEST(TensorBoardWriter, WriteMetricsMapsTrainEvalAndSkipsEnds) {
  TempDir tmp;
  std::string path;
  {
    TensorBoardWriter tb(tmp.path().string());
    path = tb.path();
    const auto routing = nlohmann::json::parse(R"([
      {"layer": 0, "gini": 0.1, "entropy": 2.0, "entropy_norm": 0.9, "dead_experts": 0,
       "top1_score": 0.5, "key_norm": 1.0, "key_cos": 0.01, "churn": null},
      {"layer": 2, "gini": 0.2, "entropy": 1.9, "entropy_norm": 0.8, "dead_experts": 1,
       "top1_score": 0.6, "key_norm": 1.1, "key_cos": 0.02, "churn": 0.3}])");
    write_metrics(tb, {{"step", 10}, {"tokens", 640}, {"loss", 3.0}, {"lr", 1e-3}, {"grad_norm", 0.7},
                       {"tokens_per_s", 1e5}, {"elapsed_s", 4.0}, {"routing", routing}});
    EXPECT_EQ(read_records(path).size(), 2u + 4 + 7 + 8);  // flushed: 4 train, 7 + 8 routing (one null churn)
    write_metrics(tb, {{"event", "done"}, {"step", 10}, {"loss", 3.0}, {"val_ppl", 20.0}});
    write_metrics(tb, {{"event", "preempted"}, {"step", 10}, {"signal", 10}});
    write_metrics(tb, {{"step", 11}, {"loss", nullptr}});  // a non-finite loss is JSON null
    EXPECT_EQ(read_records(path).size(), 2u + 19);
    write_metrics(tb, {{"event", "eval"}, {"step", 10}, {"loss", 3.0}, {"lr", 1e-3}, {"val_loss", 2.9},
                       {"val_ppl", 18.2}, {"unigram_ppl", 900.0}, {"routing", nlohmann::json::array()},
                       {"sample", "the cat"}});
    EXPECT_EQ(read_records(path).size(), 2u + 19 + 3 + 1);  // 3 eval scalars and the sample
  }
  const auto records = read_records(path);
  EXPECT_TRUE(contains(records[2], "train/loss"));
  EXPECT_TRUE(contains(records.back(), "eval/sample"));
}

TEST(TensorBoardWriter, InactiveWriterDoesNothing) {
  TensorBoardWriter tb;
  EXPECT_FALSE(tb.active());
  EXPECT_NO_THROW(tb.scalar("x", 1, 1.0));
  EXPECT_NO_THROW(write_metrics(tb, {{"step", 1}, {"loss", 1.0}}));
  EXPECT_NO_THROW(tb.flush());
}

TEST(TensorBoardWriter, UnwritableDirectoryIsNamed) {
  TempDir tmp;
  const auto file = tmp.path() / "not_a_dir";
  std::ofstream(file) << "x";
  const auto dir = (file / "tb").string();  // under a regular file: fails even for root
  try {
    TensorBoardWriter tb(dir);
    FAIL() << "expected DataError for " << dir;
  } catch (const DataError& e) {
    EXPECT_TRUE(contains(e.what(), dir)) << e.what();
  }
}
