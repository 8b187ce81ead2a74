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
#include "tensorboard_event.pb.h"  // generated, private to this file (see tensorboard.h)

namespace some {
namespace {

namespace fs = std::filesystem;
namespace pb = some::tbproto;

constexpr int kDtString = 7;         // tensorflow.DataType DT_STRING
constexpr int kDataClassTensor = 2;  // tensorboard.DataClass DATA_CLASS_TENSOR

double now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

pb::Event event_at(int64_t step) {
  pb::Event e;
  e.set_wall_time(now_s());
  e.set_step(step);
  return e;
}

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

void append_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
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

  auto version = event_at(0);
  version.set_file_version("brain.Event:2");
  write_record(version.SerializeAsString());
  // TensorBoard's server ignores a run's first SessionLog.START and treats every later one as a
  // restart (resumed_at); so the first writer of a directory opens the session.
  if (first_in_dir) {
    auto start = event_at(0);
    start.mutable_session_log()->set_status(pb::SessionLog::START);
    write_record(start.SerializeAsString());
  }
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
  auto e = event_at(step);
  auto* v = e.mutable_summary()->add_value();
  v->set_tag(tag);
  v->set_simple_value(static_cast<float>(value));
  write_record(e.SerializeAsString());
}

void TensorBoardWriter::text(const std::string& tag, int64_t step, const std::string& text) {
  if (!active()) return;
  auto e = event_at(step);
  auto* v = e.mutable_summary()->add_value();
  v->set_tag(tag);
  // What tf.summary.text writes: a scalar string tensor tagged for the text plugin (its empty
  // content is TextPluginData{version: 0}).
  v->mutable_metadata()->mutable_plugin_data()->set_plugin_name("text");
  v->mutable_metadata()->set_data_class(kDataClassTensor);
  auto* t = v->mutable_tensor();
  t->set_dtype(kDtString);
  t->mutable_tensor_shape();  // present and without dims: a scalar
  t->add_string_val(text);
  write_record(e.SerializeAsString());
}

void TensorBoardWriter::resumed_at(int64_t step) {
  if (!active()) return;
  // A START at step s drops every earlier event with step >= s.
  auto e = event_at(step + 1);
  e.mutable_session_log()->set_status(pb::SessionLog::START);
  write_record(e.SerializeAsString());
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
