// The memory estimate of a training run against the model it describes, and the refusal of a
// model too large for the machine: one line with the numbers, from the library and the CLI.
#include <sys/wait.h>

#include <chrono>
#include <cstdio>

#include "data_test_util.h"
#include "launcher/config.h"
#include "launcher/session.h"
#include "src/model/transformer.h"
#include "src/train/memory_estimate.h"

namespace {

const std::string kDefaultConfig = std::string(SOME_SOURCE_DIR) + "/configs/default.toml";

launcher::Config default_config(const std::vector<std::string>& overrides) {
  return launcher::load_config(kDefaultConfig, overrides);
}

model::ModelOptions options_of(const launcher::Config& cfg, int vocab_size = 8192) {
  DatasetMeta meta;
  meta.vocab_size = vocab_size;
  return launcher::model_options(cfg, meta);
}

// The estimate of parameters, buffers and experts against the bytes the built model holds,
// and of the optimizer state against its trainable values, for each kind of FFN.
struct Variant {
  std::string name;
  std::vector<std::string> overrides;  // over configs/default.toml
};
// Printed by name (ctest's test list would otherwise show the object's bytes, addresses included).
void PrintTo(const Variant& v, std::ostream* os) { *os << v.name; }
class MemoryEstimateOf : public ::testing::TestWithParam<Variant> {};

TEST_P(MemoryEstimateOf, MatchesTheBuiltModel) {
  auto cfg = default_config(GetParam().overrides);
  auto opts = options_of(cfg);
  auto need = train::estimate_memory(opts, cfg.train, 1);
  model::Transformer model(opts);
  const double held = static_cast<double>(model->bytes_held());
  const double trainable = static_cast<double>(model->num_parameters(true));
  // Knowledge Gravity's statistics are counted but are no module buffer: a little over.
  EXPECT_GE(need.parameters + need.experts, held);
  EXPECT_LE(need.parameters + need.experts, 1.02 * held);
  EXPECT_NEAR(need.optimizer, 3 * 4 * trainable, 1e-6 * need.optimizer);
  // Activations of one micro-batch (16 x 128 tokens) hold at least the loss's blocks (on the
  // CPU) and the embedding's gradient.
  EXPECT_GE(need.activations, 4 * 8.0 * 1024 * 1024 + 4.0 * 8192 * opts.d_model);
  EXPECT_LT(need.total(), 2.0 * 1024 * 1024 * 1024) << need.describe();
}

INSTANTIATE_TEST_SUITE_P(Ffn, MemoryEstimateOf,
                         ::testing::Values(Variant{"some", {}}, Variant{"some_mlp_query", {"router.query=mlp"}},
                                           Variant{"dense", {"model.ffn=dense"}}, Variant{"moe", {"model.ffn=moe"}},
                                           Variant{"hash_every_other", {"model.ffn=hash", "model.routed_layers=every_other"}},
                                           Variant{"some_all_options", {"router.gate_scale=learnable", "router.balance=bias",
                                                                        "expert.output_scale=learnable", "model.shared_expert=96"}}),
                         [](const ::testing::TestParamInfo<Variant>& info) { return info.param.name; });

TEST(MemoryEstimate, ExpertsAreShardedOverTheEpGroup) {
  auto cfg = default_config({});
  auto opts = options_of(cfg);
  auto one = train::estimate_memory(opts, cfg.train, 1), four = train::estimate_memory(opts, cfg.train, 4);
  EXPECT_DOUBLE_EQ(four.experts, one.experts / 4);
  EXPECT_DOUBLE_EQ(four.parameters, one.parameters);  // keys and dense weights are replicated
}

TEST(MemoryEstimate, TooLargeAModelIsRefusedWithTheNumbers) {
  auto cfg = default_config({"model.d_model=65536"});
  auto need = train::estimate_memory(options_of(cfg), cfg.train, 1);
  EXPECT_GT(need.parameters, 4.0 * 4 * 4 * 65536.0 * 65536);  // 4 layers of 4 d^2 attention weights
  try {
    train::check_memory(need, {64.0 * 1024 * 1024 * 1024, "64 GiB in the test"});
    ADD_FAILURE() << "no ConfigError for " << need.describe();
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    for (const char* part : {"model needs about", "GiB (parameters", "optimizer", "experts", "activations",
                             "this rank has 64.0 GiB available (64 GiB in the test)", "model.d_model"}) {
      EXPECT_TRUE(contains(msg, part)) << "'" << part << "' not in: " << msg;
    }
    EXPECT_FALSE(contains(msg, "\n")) << msg;
  }
  // The default model fits this machine as it is.
  auto fits = default_config({});
  EXPECT_NO_THROW(train::check_memory(train::estimate_memory(options_of(fits), fits.train, 1),
                                      train::available_memory(torch::kCPU, 1)));
}

// Through the CLI, as a new user meets it: `some train --set model.d_model=65536` ends at once
// with exit code 2 and the one line, and no run directory.
TEST(MemoryEstimate, CliRefusesATooLargeModelInOneLine) {
  const fs::path some = fs::read_symlink("/proc/self/exe").parent_path() / "some";
  if (!fs::exists(some)) GTEST_SKIP() << some << " is not built";
  TempDir tmp;
  PrepareOptions o;
  o.inputs = {write_corpus(tmp, 60)};
  o.out_dir = tmp / "ds";
  o.vocab_size = 320;
  prepare_dataset(o);
  const std::string out = tmp / "out.txt";
  const std::string cmd = fmt::format("{} train --config {} --set model.d_model=65536 --data {} --run-dir {} >{} 2>&1",
                                      some.string(), kDefaultConfig, tmp / "ds", tmp / "run", out);
  const auto start = std::chrono::steady_clock::now();
  const int status = std::system(cmd.c_str());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::string text = read_file(out);
  ASSERT_TRUE(WIFEXITED(status)) << text;
  EXPECT_EQ(WEXITSTATUS(status), 2) << text;  // a ConfigError
  EXPECT_LT(seconds, 30) << text;
  EXPECT_TRUE(contains(text, "config error: model needs about")) << text;
  int error_lines = 0;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) error_lines += contains(line, "error");
  EXPECT_EQ(error_lines, 1) << text;
  for (const char* crash : {"terminate", "Aborted", "Exception raised from", "frame #"}) {
    EXPECT_FALSE(contains(text, crash)) << text;
  }
  EXPECT_FALSE(fs::exists(tmp / "run")) << "the refused run left a run directory";
}

}  // namespace
