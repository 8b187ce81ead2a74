#pragma once
// TensorBoard event files written from C++ (no TensorFlow, no Torch): one events file per
// writer in a run's tb/ directory, readable by the `tensorboard` Python package. The event
// encoding (protobuf wire format, TFRecord framing) stays inside tensorboard.cpp.
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

namespace some {

// Not thread-safe: one thread (rank 0's trainer) writes. Errors: DataError naming the file.
class TensorBoardWriter {
 public:
  TensorBoardWriter() = default;  // inactive: every call does nothing (ranks other than 0)
  // Creates `dir` and a new file events.out.tfevents.<unix seconds>.<host>.<pid> in it; a
  // resumed run adds a file beside the earlier ones and TensorBoard reads them all in order.
  explicit TensorBoardWriter(const std::string& dir);

  bool active() const { return file_ != nullptr; }
  const std::string& path() const { return path_; }

  void scalar(const std::string& tag, int64_t step, double value);  // stored as float32
  void text(const std::string& tag, int64_t step, const std::string& text);  // the text plugin
  // Training restarted from a checkpoint at `step`: TensorBoard drops what earlier files of
  // this directory logged after `step` (those steps are trained again), as the trainer drops
  // those lines from metrics.jsonl.
  void resumed_at(int64_t step);
  void flush();

 private:
  void write_record(std::string_view data);

  struct Close {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  std::string path_;
  std::unique_ptr<std::FILE, Close> file_;
};

// One metrics.jsonl object (as the trainer writes it) as TensorBoard events, then a flush so a
// crashed run keeps them. Train lines -> train/<key> and routing_train/layer_<L>/<key>;
// "event":"eval" -> eval/<key>, routing/layer_<L>/<key> and the text eval/sample;
// "event":"resume" -> resumed_at(step); other events ("done", "preempted") are skipped.
void write_metrics(TensorBoardWriter& tb, const nlohmann::json& line);

}  // namespace some
