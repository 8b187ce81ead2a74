// Writes RUN/tb as the trainer would over a run that is restarted: direct API points, then every
// line of STREAM (the metrics lines in the order a trainer wrote them) through write_metrics; a
// "resume" line starts a new writer, as a restarted process would. read_events.py then checks
// RUN/tb against the metrics.jsonl that run would have kept.
//
// Built twice: plain (some_common only) and with SOME_TB_WITH_TORCH, linking libtorch and
// including Torch's headers (with their own google/protobuf) before ours, to show the two
// protobuf runtimes coexist in one process: Torch's ONNX export serialises and re-parses a
// ModelProto with Torch's copy while ours writes events with the system one.
//
// usage: tb_write_sample RUN_DIR STREAM_JSONL
#ifdef SOME_TB_WITH_TORCH
#include <torch/csrc/jit/ir/irparser.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/torch.h>
#endif

#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "common/tensorboard.h"

namespace {

#ifdef SOME_TB_WITH_TORCH
// Size of an ONNX model Torch serialises and checks with its own protobuf.
double torch_onnx_roundtrip_bytes() {
  auto graph = std::make_shared<torch::jit::Graph>();
  torch::jit::parseIR(R"IR(
    graph(%x : Float(4, strides=[1], requires_grad=0, device=cpu)):
      %y : Float(4, strides=[1], requires_grad=0, device=cpu) = onnx::Relu(%x)
      return (%y))IR",
                      graph.get());
  auto model = std::get<0>(torch::jit::export_onnx(graph, {}, 17, {}));
  const auto bytes = torch::jit::serialize_model_proto_to_string(model);
  torch::jit::check_onnx_proto(bytes);  // parses it back
  return static_cast<double>(bytes.size());
}
#endif

}  // namespace

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
#ifdef SOME_TB_WITH_TORCH
    tb.scalar("torch/sum", 1, torch::arange(10, torch::kFloat32).sum().item<double>());
    tb.scalar("torch/onnx_bytes_positive", 1, torch_onnx_roundtrip_bytes() > 0 ? 1.0 : 0.0);
#endif
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
