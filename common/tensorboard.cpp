#include "common/tensorboard.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <string_view>
#include <system_error>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/crc32c.h"
#include "common/errors.h"

namespace some {
namespace {

namespace fs = std::filesystem;

constexpr int kDtString = 7;         // tensorflow.DataType DT_STRING
constexpr int kDataClassTensor = 2;  // tensorboard.DataClass DATA_CLASS_TENSOR
constexpr int kSessionStart = 1;     // tensorflow.SessionLog.START

void append_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

// The protocol-buffer wire format of the few fields written here; tensorboard_event.proto is
// their schema, with TensorFlow's field numbers. Encoded by hand on purpose: Debian's
// libsentencepiece exports the symbols of its own bundled protobuf-lite, and a second protobuf
// runtime in the process got its calls bound to those (a crash in SerializeAsString).
class Proto {
 public:
  Proto& varint(int field, uint64_t v) { return key(field, 0).put_varint(v); }
  Proto& float64(int field, double v) {
    uint64_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    key(field, 1);
    append_le(buf_, bits, 8);
    return *this;
  }
  Proto& float32(int field, float v) {
    uint32_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    key(field, 5);
    append_le(buf_, bits, 4);
    return *this;
  }
  Proto& bytes(int field, std::string_view s) {
    key(field, 2).put_varint(s.size());
    buf_.append(s);
    return *this;
  }
  Proto& message(int field, const Proto& m) { return bytes(field, m.buf_); }
  const std::string& str() const { return buf_; }

 private:
  Proto& key(int field, int wire_type) { return put_varint((static_cast<uint64_t>(field) << 3) | wire_type); }
  Proto& put_varint(uint64_t v) {
    for (; v >= 0x80; v >>= 7) buf_.push_back(static_cast<char>((v & 0x7F) | 0x80));
    buf_.push_back(static_cast<char>(v));
    return *this;
  }
  std::string buf_;
};

double now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

Proto event_at(int64_t step) {  // Event{wall_time = 1, step = 2}
  return std::move(Proto().float64(1, now_s()).varint(2, static_cast<uint64_t>(step)));
}

Proto session_start() { return std::move(Proto().varint(1, kSessionStart)); }  // SessionLog{status = 1}

std::string hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "unknown-host";
  return buf;
}

bool has_events_file(const fs::path& dir) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().filename().string().find("tfevents") != std::string::npos) return true;
  }
  return false;
}

}  // namespace

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw DataError(fmt::format("cannot create TensorBoard directory '{}': {}", dir, ec.message()));
  const bool first_in_dir = !has_events_file(dir);
  // A second writer of this process within the same second gets a suffix (.1, .2, ...), which
  // sorts after the first: TensorBoard reads a directory's files in name order.
  const auto name = fmt::format("events.out.tfevents.{}.{}.{}", std::time(nullptr), hostname(), getpid());
  path_ = (fs::path(dir) / name).string();
  for (int n = 1; fs::exists(path_); ++n) path_ = (fs::path(dir) / fmt::format("{}.{}", name, n)).string();
  file_.reset(std::fopen(path_.c_str(), "wbx"));  // x: never truncate another writer's file
  if (!file_) throw DataError(fmt::format("cannot open '{}' for writing: {}", path_, std::strerror(errno)));

  write_record(event_at(0).bytes(3, "brain.Event:2").str());  // Event.file_version
  // TensorBoard's server ignores a run's first SessionLog.START and treats every later one as a
  // restart (resumed_at); so the first writer of a directory opens the session.
  if (first_in_dir) write_record(event_at(0).message(7, session_start()).str());  // Event.session_log
  flush();
}

void TensorBoardWriter::write_record(std::string_view data) {
  // TFRecord: uint64 length, uint32 masked CRC of the length bytes, data, uint32 masked CRC of
  // the data; all little endian.
  std::string header;
  append_le(header, data.size(), 8);
  std::string record = header;
  append_le(record, masked_crc32c(header), 4);
  record.append(data);
  append_le(record, masked_crc32c(data), 4);
  if (std::fwrite(record.data(), 1, record.size(), file_.get()) != record.size()) {
    throw DataError(fmt::format("cannot write to '{}': {}", path_, std::strerror(errno)));
  }
}

void TensorBoardWriter::scalar(const std::string& tag, int64_t step, double value) {
  if (!active()) return;
  // Event.summary{value: [Value{tag = 1, simple_value = 2}]}
  auto value_msg = Proto().bytes(1, tag).float32(2, static_cast<float>(value));
  write_record(event_at(step).message(5, Proto().message(1, value_msg)).str());
}

void TensorBoardWriter::text(const std::string& tag, int64_t step, const std::string& text) {
  if (!active()) return;
  // What tf.summary.text writes: a scalar string tensor tagged for the text plugin (its empty
  // content is TextPluginData{version: 0}). SummaryMetadata{plugin_data = 1{plugin_name = 1},
  // data_class = 4}; TensorProto{dtype = 1, tensor_shape = 2 (present, no dims: a scalar),
  // string_val = 8}; Value{tag = 1, tensor = 8, metadata = 9}.
  auto metadata = Proto().message(1, Proto().bytes(1, "text")).varint(4, kDataClassTensor);
  auto tensor = Proto().varint(1, kDtString).message(2, Proto()).bytes(8, text);
  auto value_msg = Proto().bytes(1, tag).message(8, tensor).message(9, metadata);
  write_record(event_at(step).message(5, Proto().message(1, value_msg)).str());
}

void TensorBoardWriter::resumed_at(int64_t step) {
  if (!active()) return;
  // A START at step s drops every earlier event with step >= s.
  write_record(event_at(step + 1).message(7, session_start()).str());
}

void TensorBoardWriter::flush() {
  if (!active()) return;
  if (std::fflush(file_.get()) != 0) {
    throw DataError(fmt::format("cannot write to '{}': {}", path_, std::strerror(errno)));
  }
}

namespace {

void scalars(TensorBoardWriter& tb, const nlohmann::json& line, int64_t step, const std::string& prefix,
             std::initializer_list<const char*> keys) {
  for (const char* key : keys) {
    auto it = line.find(key);
    if (it != line.end() && it->is_number()) tb.scalar(prefix + key, step, it->get<double>());
  }
}

// Every numeric key of each layer's routing object (gini, entropy, dead_experts, churn, ...);
// a null (churn before the second eval, a non-finite value) is no point.
void routing(TensorBoardWriter& tb, const nlohmann::json& line, int64_t step, const std::string& prefix) {
  auto it = line.find("routing");
  if (it == line.end() || !it->is_array()) return;
  for (const auto& layer : *it) {
    const auto base = fmt::format("{}/layer_{}/", prefix, layer.value("layer", int64_t{-1}));
    for (const auto& [key, value] : layer.items()) {
      if (key != "layer" && value.is_number()) tb.scalar(base + key, step, value.get<double>());
    }
  }
}

}  // namespace

void write_metrics(TensorBoardWriter& tb, const nlohmann::json& line) {
  if (!tb.active() || !line.is_object() || !line.contains("step")) return;
  const auto step = line["step"].get<int64_t>();
  const std::string event = line.value("event", "");
  if (event.empty()) {
    scalars(tb, line, step, "train/", {"loss", "lr", "grad_norm", "tokens_per_s", "dropped_slots"});
    routing(tb, line, step, "routing_train");
  } else if (event == "eval") {
    // Its loss / lr / tokens_per_s repeat the latest train line's: not logged twice.
    scalars(tb, line, step, "eval/", {"val_loss", "val_ppl", "unigram_ppl"});
    routing(tb, line, step, "routing");
    if (line.contains("sample") && line["sample"].is_string()) tb.text("eval/sample", step, line["sample"]);
  } else if (event == "resume") {
    tb.resumed_at(step);
  } else {
    return;
  }
  tb.flush();
}

}  // namespace some
