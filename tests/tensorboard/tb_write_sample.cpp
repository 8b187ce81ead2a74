// Writes RUN/tb as the trainer would over a run that is restarted: direct API points, then every
// line of STREAM (the metrics lines in the order a trainer wrote them) through write_metrics; a
// "resume" line starts a new writer, as a restarted process would. read_events.py then checks
// RUN/tb against the metrics.jsonl that run would have kept.
// (The real trainer's events, written beside libtorch and libsentencepiece, are checked by
// cli.end_to_end.)
//
// usage: tb_write_sample RUN_DIR STREAM_JSONL
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "common/tensorboard.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s RUN_DIR STREAM_JSONL\n", argv[0]);
    return 2;
  }
  try {
    const std::string run = argv[1], tb_dir = run + "/tb";
    std::filesystem::remove_all(run);
    some::TensorBoardWriter tb(tb_dir);
    // The same values are listed for read_events.py in CMakeLists.txt.
    tb.scalar("api/scalar", 1, 0.1);
    tb.scalar("api/scalar", 2, -2.5);
    tb.scalar("api/scalar", 3, 123456.789);
    tb.text("api/text", 3, "hello\nwörld");
    std::ifstream in(argv[2]);
    if (!in) throw std::runtime_error(std::string("cannot read ") + argv[2]);
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      const auto j = nlohmann::json::parse(line);
      if (j.value("event", "") == "resume") tb = some::TensorBoardWriter(tb_dir);
      some::write_metrics(tb, j);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tb_write_sample: %s\n", e.what());
    return 1;
  }
}
