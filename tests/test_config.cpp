// Config errors name the key, the value and what is allowed; the resolved TOML reads back.
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>

#include <gtest/gtest.h>

#include "common/errors.h"
#include "launcher/config.h"
#include "launcher/session.h"

using namespace some;
using some::launcher::Config;

namespace {

std::string write_toml(const std::string& text) {
  static int n = 0;
  auto path = std::filesystem::temp_directory_path() /
              ("some-config-" + std::to_string(::getpid()) + "-" + std::to_string(n++) + ".toml");
  std::ofstream(path) << text;
  return path.string();
}

// The error message of loading `text` (with optional overrides), which must be a ConfigError.
std::string config_error(const std::string& text, std::vector<std::string> overrides = {}) {
  try {
    launcher::load_config(write_toml(text), overrides);
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no ConfigError for: " << text;
  return "";
}

void expect_mentions(const std::string& msg, std::initializer_list<std::string> parts) {
  for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
}

}  // namespace

TEST(Config, UnknownKeyNamesKeyAndAlternatives) {
  expect_mentions(config_error("[model]\nd_modle = 64\n"), {"model.d_modle", "model.d_model"});
}

TEST(Config, UnknownSection) { expect_mentions(config_error("[modle]\nd_model = 64\n"), {"modle", "sections"}); }

TEST(Config, WrongType) {
  expect_mentions(config_error("[model]\nd_model = \"wide\"\n"), {"model.d_model", "wide", "integer"});
  expect_mentions(config_error("[router]\nfreeze_keys = 1\n"), {"router.freeze_keys", "boolean"});
  expect_mentions(config_error("[optim]\nlr = true\n"), {"optim.lr", "number"});
}

TEST(Config, OutOfRange) {
  expect_mentions(config_error("[model]\ntop_k = 0\n"), {"model.top_k", "0", "[1,"});
  expect_mentions(config_error("[gravity]\nema_decay = 1.5\n"), {"gravity.ema_decay", "1.5"});
  expect_mentions(config_error("[expert]\nsparsity = -0.1\n"), {"expert.sparsity", "-0.1"});
}

TEST(Config, ValuesThatWouldOnlyFailDuringTraining) {
  expect_mentions(config_error("[optim]\neps = 0.0\n"), {"optim.eps", "0"});
  expect_mentions(config_error("[gravity]\ndecay_threshold = -0.5\n"), {"gravity.decay_threshold", "-0.5", "-1"});
}

TEST(Config, ChoiceNotAllowed) {
  expect_mentions(config_error("[router]\nscore = \"euclid\"\n"), {"router.score", "euclid", "cosine", "dot"});
  expect_mentions(config_error("[model]\nffn = \"moe2\"\n"), {"model.ffn", "moe2", "some", "dense"});
}

TEST(Config, CrossKeyChecks) {
  expect_mentions(config_error("[train]\nmicro_batch = 3\nglobal_batch = 8\n"), {"train.global_batch", "8", "3"});
  expect_mentions(config_error("[model]\nnum_experts = 2\ntop_k = 3\n"), {"model.top_k", "3", "2"});
  expect_mentions(config_error("[model]\nd_model = 30\nn_heads = 4\n"), {"model.d_model", "30", "4"});
  // SoME's router options on another FFN, routed-layer options on the dense model.
  expect_mentions(config_error("[model]\nffn = \"moe\"\n[router]\nbalance = \"bias\"\n"),
                  {"router.balance", "moe.balance", "'moe'"});
  expect_mentions(config_error("[model]\nffn = \"dense\"\nshared_expert = 64\n"), {"model.shared_expert", "'dense'"});
  expect_mentions(config_error("[router]\nkey_init = \"pca\"\n"), {"router.key_init", "pca", "random", "data"});
}

TEST(Config, OverridesAreTypedAndValidated) {
  expect_mentions(config_error("", {"model.top_k=two"}), {"model.top_k", "two"});
  expect_mentions(config_error("", {"train.device=tpu"}), {"train.device", "tpu", "cpu", "cuda"});
  expect_mentions(config_error("", {"gravity.use_beta=yes"}), {"gravity.use_beta", "yes", "boolean"});
  expect_mentions(config_error("", {"nonsense"}), {"section.key=value"});
  auto cfg = launcher::load_config("", {"model.top_k=3", "optim.lr=0.5", "router.query=mlp", "gravity.inertia=false"});
  EXPECT_EQ(cfg.model.top_k, 3);
  EXPECT_DOUBLE_EQ(cfg.optim.lr, 0.5);
  EXPECT_EQ(cfg.model.router.query, some::model::QueryNet::kMlp);
  EXPECT_FALSE(cfg.model.gravity.inertia);
}

TEST(Config, SyntaxErrorNamesFileAndLine) {
  expect_mentions(config_error("[model]\nd_model = = 3\n"), {".toml:2", "syntax"});
}

TEST(Config, MissingFileIsADataErrorNamingIt) {
  EXPECT_THROW(launcher::load_config("/nonexistent/some.toml", {}), DataError);
}

TEST(Config, ResolvedTomlRoundTrips) {
  auto cfg = launcher::load_config("", {"model.d_model=96", "router.score=dot", "gravity.alpha=0.125",
                                        "train.sample_prompt=He said \"hi\"\\n", "optim.clip=0"});
  auto text = launcher::to_toml(cfg);
  auto back = launcher::load_config(write_toml(text), {});
  EXPECT_EQ(launcher::to_toml(back), text);
  EXPECT_EQ(back.model.d_model, 96);
  EXPECT_EQ(back.model.router.score, some::model::ScoreFunction::kDot);
  EXPECT_DOUBLE_EQ(back.model.gravity.alpha, 0.125);
  EXPECT_EQ(back.train.sample_prompt, cfg.train.sample_prompt);
}

TEST(Config, ShippedConfigsLoad) {
  // Every configs/*.toml: the Slurm scripts, the benchmarks and the README name them all.
  int loaded = 0;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(SOME_SOURCE_DIR) + "/configs")) {
    if (entry.path().extension() != ".toml") continue;
    EXPECT_NO_THROW(launcher::load_config(entry.path().string(), {})) << entry.path();
    ++loaded;
  }
  EXPECT_GE(loaded, 7);  // default, tiny, dense, moe, hash, some-150m, some-1b
}

// model.some_layers was renamed model.routed_layers (it places MoE and hash layers too): configs
// and checkpoints written before still load, as the new key.
TEST(Config, RenamedKeyStillReads) {
  auto cfg = launcher::load_config_text("[model]\nn_layers = 2\nsome_layers = \"every_other\"\n", "old.toml", {});
  EXPECT_EQ(cfg.model.routed_layers, some::model::RoutedLayers::kEveryOther);
  auto set = launcher::load_config_text("", "new.toml", {"model.some_layers=every_other"});
  EXPECT_EQ(set.model.routed_layers, some::model::RoutedLayers::kEveryOther);
  const auto written = launcher::to_toml(cfg);  // a run's config.toml: the new name only
  EXPECT_EQ(written.find("some_layers"), std::string::npos);
  EXPECT_EQ(launcher::load_config_text(written, "config.toml", {}).model.routed_layers, some::model::RoutedLayers::kEveryOther);
  // parallel.capacity_factor was renamed model.capacity_factor (drops change what the model computes).
  EXPECT_EQ(launcher::load_config_text("[parallel]\ncapacity_factor = 1.5\n", "old.toml", {}).model.capacity_factor, 1.5);
  EXPECT_EQ(launcher::load_config_text("", "new.toml", {"parallel.capacity_factor=2"}).model.capacity_factor, 2.0);
}

// Mutated copies of configs/default.toml, as a user's slip or a damaged file makes them: each
// must load, or fail with a ConfigError of one line naming the file or a key; never another
// exception type, never a crash.
TEST(Config, FuzzedDefaultConfigIsLoadedOrNamed) {
  std::ifstream in(std::string(SOME_SOURCE_DIR) + "/configs/default.toml");
  const std::string original{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  std::vector<std::string> lines;
  std::istringstream split(original);
  for (std::string line; std::getline(split, line);) lines.push_back(line);
  std::vector<size_t> assignments;  // indices of the `key = value` lines
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].find(" = ") != std::string::npos && lines[i][0] != '#') assignments.push_back(i);
  }
  ASSERT_GE(assignments.size(), 20u);
  const std::vector<std::string> odd_values = {
      "\"text\"", "true", "1.5", "[1, 2]", "{ a = 1 }", "1979-05-27T07:32:00Z", "-3", "nan", "inf", "-inf",
      "9223372036854775807", "-9223372036854775808", "99999999999999999999", "1e308", "-1e308", "0", "0x10",
      "\"\"", "\"\xff\xfe\"", "'''multi\nline'''"};
  auto value_of = [](const std::string& line) { return line.substr(line.find(" = ") + 3); };
  auto key_of = [](const std::string& line) { return line.substr(0, line.find(" = ")); };
  auto join = [](const std::vector<std::string>& ls) {
    std::string out;
    for (const auto& l : ls) out += l + "\n";
    return out;
  };
  const std::regex kKey(R"((model|router|expert|gravity|moe|optim|train|parallel|data)\.[a-z_]+)");

  std::mt19937_64 rng(11);
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  int loaded = 0, named = 0;
  for (int i = 0; i < 200; ++i) {
    std::string text;
    auto ls = lines;
    switch (i % 8) {
      case 0:  // a flipped byte
        text = original;
        text[pick(text.size())] ^= static_cast<char>(1 + pick(255));
        break;
      case 1:  // a deleted line
        ls.erase(ls.begin() + static_cast<long>(pick(ls.size())));
        text = join(ls);
        break;
      case 2: {  // two values swapped
        size_t a = assignments[pick(assignments.size())], b = assignments[pick(assignments.size())];
        ls[a] = key_of(lines[a]) + " = " + value_of(lines[b]);
        ls[b] = key_of(lines[b]) + " = " + value_of(lines[a]);
        text = join(ls);
        break;
      }
      case 3:
      case 4: {  // a value of another type, or a huge or odd number
        size_t a = assignments[pick(assignments.size())];
        ls[a] = key_of(lines[a]) + " = " + odd_values[pick(odd_values.size())];
        text = join(ls);
        break;
      }
      case 5:  // a duplicated line
        ls.insert(ls.begin() + static_cast<long>(pick(ls.size())), ls[pick(ls.size())]);
        text = join(ls);
        break;
      case 6:  // cut short
        text = original.substr(0, pick(original.size()));
        break;
      default: {  // a few random bytes inserted
        text = original;
        std::string junk;
        for (size_t n = 1 + pick(6); n > 0; --n) junk += static_cast<char>(pick(256));
        text.insert(pick(text.size()), junk);
      }
    }
    const std::string path = write_toml(text);
    try {
      launcher::load_config(path, {});
      ++loaded;
    } catch (const ConfigError& e) {
      const std::string msg = e.what();
      EXPECT_TRUE(msg.find(path) != std::string::npos || std::regex_search(msg, kKey))
          << "case " << i << ": the error names neither the file nor a key: " << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << "case " << i << ": not one line: " << msg;
      ++named;
    }  // anything else (a toml:: or std:: exception) escapes and fails the test
    std::filesystem::remove(path);
  }
  std::printf("[ config fuzz ] 200 mutated configs/default.toml: %d loaded, %d named ConfigErrors\n", loaded, named);
  EXPECT_GT(named, 100);
}

// One GPU per rank, for real: the rank's device is made current before select_device returns it
// (else unguarded CUDA calls of every rank land on GPU 0), cuda:<local rank mod visible GPUs>.
TEST(Session, EachRankMakesItsGpuCurrentBeforeUsingIt) {
  std::vector<torch::Device> made_current;
  auto record = [&](const torch::Device& d) { made_current.push_back(d); };
  EXPECT_EQ(launcher::rank_cuda_device(0, 8, record), torch::Device(torch::kCUDA, 0));
  EXPECT_EQ(launcher::rank_cuda_device(5, 8, record), torch::Device(torch::kCUDA, 5));
  EXPECT_EQ(launcher::rank_cuda_device(5, 4, record), torch::Device(torch::kCUDA, 1));  // 8 ranks on a 4-GPU node
  EXPECT_EQ(launcher::rank_cuda_device(3, 1, record), torch::Device(torch::kCUDA, 0));  // CUDA_VISIBLE_DEVICES per rank
  ASSERT_EQ(made_current.size(), 4u);
  EXPECT_EQ(made_current[1], torch::Device(torch::kCUDA, 5));
  EXPECT_EQ(made_current[2], torch::Device(torch::kCUDA, 1));
  EXPECT_THROW(launcher::rank_cuda_device(0, 0, record), ConfigError);
  EXPECT_EQ(made_current.size(), 4u);
}

TEST(Session, LocalRankComesFromTheLauncher) {
  ::unsetenv("MPI_LOCALRANKID");
  ::unsetenv("SLURM_LOCALID");
  ::setenv("OMPI_COMM_WORLD_LOCAL_RANK", "3", 1);
  EXPECT_EQ(launcher::local_rank(), 3);
  ::unsetenv("OMPI_COMM_WORLD_LOCAL_RANK");
  ::setenv("SLURM_LOCALID", "2", 1);
  EXPECT_EQ(launcher::local_rank(), 2);
  ::unsetenv("SLURM_LOCALID");
  EXPECT_EQ(launcher::local_rank(), 0);
}

// model.init_from and its options: experts_from is its special case (one or the other), and the
// options without it say nothing.
TEST(Config, InitFromOptionsNeedInitFrom) {
  EXPECT_NE(config_error("", {"model.init_units=cluster"}).find("model.init_from is empty"), std::string::npos);
  EXPECT_NE(config_error("", {"model.init_optimizer=true"}).find("model.init_from is empty"), std::string::npos);
  EXPECT_NE(config_error("", {"model.init_from=a", "model.experts_from=b"}).find("set one"), std::string::npos);
  EXPECT_NE(config_error("", {"model.init_from=a", "model.init_parts=head"}).find("one of all, backbone, ffn"),
            std::string::npos);
  auto cfg = launcher::load_config_text("", "x.toml", {"model.init_from=runs/a", "model.init_parts=ffn",
                                                       "model.init_units=cluster", "model.ffn=dense"});
  EXPECT_EQ(cfg.model.init_units, some::model::UnitChoice::kCluster);
  EXPECT_EQ(launcher::load_config_text(launcher::to_toml(cfg), "config.toml", {}).model.init_from, "runs/a");
}
