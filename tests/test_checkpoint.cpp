// The checkpoint library on its own (one process): what a save writes, what a reader refuses,
// pruning, and the fallback to the newest intact checkpoint.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "checkpoints/checkpoint.h"
#include "common/errors.h"
#include "parallel/communicator.h"
#include "src/model/tensor_names.h"

using namespace some;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("some_ckpt_" + std::to_string(::getpid()) + "_" +
                                               ::testing::UnitTest::GetInstance()->current_test_info()->name());
  TempDir() { fs::remove_all(path); fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
  std::string str() const { return path.string(); }
};

checkpoints::TensorMap sample_tensors(float offset) {
  return {{"layers.0.some.keys", torch::arange(12, torch::kFloat32).reshape({3, 4}) + offset},
          {"layers.0.some.experts.2.w_down", torch::randn({2, 4})},
          {"optim.step.w", torch::tensor({int64_t{7}})},
          {"rng.cpu", torch::arange(5, torch::kUInt8)}};
}

checkpoints::CheckpointInfo info_at(int64_t step) {
  checkpoints::CheckpointInfo info;
  info.step = step;
  info.tokens = step * 100;
  info.config = "[train]\nmax_steps = 9\n";
  info.trainer = {{"reason", "test"}};
  return info;
}

void flip_byte(const std::string& path) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(fs::file_size(path) / 2));
  char c = 0;
  f.read(&c, 1);
  f.seekp(static_cast<std::streamoff>(fs::file_size(path) / 2));
  c = static_cast<char>(c ^ 0x10);
  f.write(&c, 1);
}

}  // namespace

TEST(Checkpoint, SaveWritesManifestFilesAndLatest) {
  TempDir tmp;
  parallel::LocalCommunicator comm;
  auto tensors = sample_tensors(0);
  auto dir = checkpoints::save_checkpoint(tmp.str(), info_at(3), tensors, comm, 0);
  EXPECT_EQ(dir, tmp.str() + "/step_00000003");
  EXPECT_TRUE(fs::exists(dir + "/manifest.json"));
  EXPECT_TRUE(fs::exists(dir + "/rank_00000.h5"));
  std::ifstream latest(tmp.str() + "/latest");
  std::string name;
  latest >> name;
  EXPECT_EQ(name, "step_00000003");
  for (const auto& e : fs::directory_iterator(tmp.path)) EXPECT_NE(e.path().filename().string().rfind(".tmp", 0), 0u);

  checkpoints::CheckpointReader reader(tmp.str());  // a checkpoints directory means its latest
  const auto& m = reader.manifest();
  EXPECT_EQ(m.info.step, 3);
  EXPECT_EQ(m.info.tokens, 300);
  EXPECT_EQ(m.info.config, info_at(3).config);
  EXPECT_EQ(m.info.trainer["reason"], "test");
  ASSERT_EQ(m.tensors.size(), tensors.size());
  EXPECT_EQ(m.tensors.at("layers.0.some.keys").shape, (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(m.tensors.at("optim.step.w").dtype, "int64");
  EXPECT_EQ(m.tensors.at("rng.cpu").dtype, "uint8");
  EXPECT_EQ(m.files.at("rank_00000.h5").sha256.size(), 64u);
  for (const auto& [name, t] : tensors) {
    auto back = reader.read(name);
    EXPECT_EQ(back.scalar_type(), t.scalar_type()) << name;
    EXPECT_TRUE(torch::equal(back, t)) << name;
  }
}

TEST(Checkpoint, LoadIntoFillsViewsAndNamesEveryMismatch) {
  TempDir tmp;
  parallel::LocalCommunicator comm;
  auto tensors = sample_tensors(1);
  checkpoints::save_checkpoint(tmp.str(), info_at(1), tensors, comm, 0);
  checkpoints::CheckpointReader reader(tmp.str() + "/step_00000001");
  auto stacked = torch::zeros({3, 2, 4});
  checkpoints::TensorMap target = {{"layers.0.some.experts.2.w_down", stacked[2]},
                                   {"layers.0.some.keys", torch::zeros({3, 4})}};
  reader.load_into(target);  // names the checkpoint has and target lacks are ignored
  EXPECT_TRUE(torch::equal(stacked[2], tensors.at("layers.0.some.experts.2.w_down")));
  EXPECT_TRUE(torch::equal(stacked[0], torch::zeros({2, 4})));

  checkpoints::TensorMap wrong = {{"layers.0.some.keys", torch::zeros({3, 5})}, {"layers.9.some.keys", torch::zeros({1})}};
  try {
    reader.load_into(wrong);
    FAIL() << "a mismatched model was accepted";
  } catch (const DataError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("2 problem(s)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'layers.0.some.keys' has shape [3, 4] in the checkpoint, the model expects [3, 5]"),
              std::string::npos) << msg;
    EXPECT_NE(msg.find("missing 'layers.9.some.keys'"), std::string::npos) << msg;
  }
}

TEST(Checkpoint, KeepLastPrunesTheOldest) {
  TempDir tmp;
  parallel::LocalCommunicator comm;
  for (int64_t step : {1, 2, 3, 4}) checkpoints::save_checkpoint(tmp.str(), info_at(step), sample_tensors(0), comm, 2);
  EXPECT_FALSE(fs::exists(tmp.path / "step_00000001"));
  EXPECT_FALSE(fs::exists(tmp.path / "step_00000002"));
  EXPECT_TRUE(fs::exists(tmp.path / "step_00000003"));
  EXPECT_TRUE(fs::exists(tmp.path / "step_00000004"));
}

TEST(Checkpoint, ExpertLibraryIsMergedVerifiedAndPrunedWhenUnreferenced) {
  TempDir tmp;
  parallel::LocalCommunicator comm;
  checkpoints::TensorMap experts = {{"layers.0.some.experts.0.w_down", torch::randn({2, 4})}};
  checkpoints::TensorMap dense = {{"tok_emb.weight", torch::randn({5, 4})}};
  checkpoints::save_library(tmp.str(), "experts_00000001", info_at(1), experts, comm);
  checkpoints::save_checkpoint(tmp.str(), info_at(1), dense, comm, 1, "experts_00000001");
  {
    checkpoints::CheckpointReader reader(tmp.str());
    EXPECT_TRUE(torch::equal(reader.read("layers.0.some.experts.0.w_down"), experts.begin()->second));
    EXPECT_TRUE(torch::equal(reader.read("tok_emb.weight"), dense.begin()->second));
    EXPECT_EQ(reader.manifest().tensors.at("layers.0.some.experts.0.w_down").file, "../experts_00000001/rank_00000.h5");
  }
  // A new library and checkpoint; keep_last = 1 prunes step 1 and then the library only it used.
  checkpoints::save_library(tmp.str(), "experts_00000002", info_at(2), experts, comm);
  checkpoints::save_checkpoint(tmp.str(), info_at(2), dense, comm, 1, "experts_00000002");
  EXPECT_FALSE(fs::exists(tmp.path / "step_00000001"));
  EXPECT_FALSE(fs::exists(tmp.path / "experts_00000001"));
  EXPECT_TRUE(fs::exists(tmp.path / "experts_00000002"));
  // A damaged library makes the checkpoint that references it damaged.
  flip_byte(tmp.str() + "/experts_00000002/rank_00000.h5");
  EXPECT_THROW(checkpoints::CheckpointReader reader(tmp.str()), DataError);
}

TEST(Checkpoint, DamagedCheckpointIsRefusedByNameAndSkippedByTheFallback) {
  TempDir tmp;
  parallel::LocalCommunicator comm;
  checkpoints::save_checkpoint(tmp.str(), info_at(1), sample_tensors(0), comm, 0);
  checkpoints::save_checkpoint(tmp.str(), info_at(2), sample_tensors(0), comm, 0);
  const auto damaged = tmp.str() + "/step_00000002/rank_00000.h5";
  flip_byte(damaged);
  try {
    checkpoints::CheckpointReader reader(tmp.str());
    FAIL() << "a damaged checkpoint was accepted";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("'" + damaged + "' is damaged: SHA-256"), std::string::npos) << e.what();
  }
  // A directory a killed save left behind (named like a newer step, no manifest) is no candidate.
  fs::create_directories(tmp.path / ".tmp.step_00000003");
  std::vector<std::string> refused;
  auto found = checkpoints::find_latest_intact(tmp.str(), &refused);
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(*found, tmp.str() + "/step_00000001");
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_NE(refused[0].find(damaged), std::string::npos);
  // Nothing intact at all.
  flip_byte(tmp.str() + "/step_00000001/rank_00000.h5");
  EXPECT_FALSE(checkpoints::find_latest_intact(tmp.str()).has_value());
}

TEST(Checkpoint, ManifestErrorsNameTheFileAndKey) {
  TempDir tmp;
  const auto path = tmp.str() + "/manifest.json";
  std::ofstream(path) << R"({"format": "some-checkpoint", "version": 1, "step": 3})";
  try {
    checkpoints::Manifest::read(path);
    FAIL();
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("'" + path + "' has no 'tokens'"), std::string::npos) << e.what();
  }
  // A tensor whose claimed shape cannot fit in its file is refused before anything is allocated.
  std::ofstream(path) << R"({"format": "some-checkpoint", "version": 1, "step": 3, "tokens": 9, "world_size": 1,
    "expert_parallel": 1, "config": "", "trainer": {}, "files": {"rank_00000.h5": {"sha256": "x", "bytes": 4096}},
    "tensors": {"layers.0.some.keys": {"file": "rank_00000.h5", "shape": [1099511627776, 4096], "dtype": "float32"}}})";
  try {
    checkpoints::Manifest::read(path);
    FAIL();
  } catch (const DataError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("'layers.0.some.keys' of shape [1099511627776, 4096]"), std::string::npos) << what;
    EXPECT_NE(what.find("file 'rank_00000.h5' of 4096 bytes"), std::string::npos) << what;
  }
  std::ofstream(path) << R"({"format": "some-checkpoint", "version": 99})";
  EXPECT_THROW(checkpoints::Manifest::read(path), DataError);
  std::ofstream(path) << R"({"format": "some-che)";
  try {
    checkpoints::Manifest::read(path);
    FAIL();
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("is not valid JSON"), std::string::npos) << e.what();
  }
}

// A manifest whose shape disagrees with the file's dataset (same bytes, other shape): `some
// checkpoint convert` and resume name the tensor instead of failing in a broadcast.
TEST(Checkpoint, ManifestShapeDisagreeingWithTheFileNamesTheTensor) {
  TempDir tmp;
  parallel::LocalCommunicator comm;
  const auto dir = checkpoints::save_checkpoint(tmp.str(), info_at(1), sample_tensors(0), comm, 0);
  const auto manifest_path = dir + "/manifest.json";
  auto manifest = nlohmann::json::parse(std::ifstream(manifest_path));
  manifest["tensors"]["layers.0.some.keys"]["shape"] = {4, 3};  // stored as (3, 4)
  std::ofstream(manifest_path) << manifest.dump();
  checkpoints::CheckpointReader reader(dir);
  try {
    checkpoints::consolidate(reader, tmp.str() + "/all.h5");
    FAIL() << "a shape the file does not hold was accepted";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'layers.0.some.keys' in 'rank_00000.h5' has shape [3, 4], its manifest says [4, 3]"),
              std::string::npos) << e.what();
  }
}

// The naming contract (src/model/tensor_names.h) every writer and reader of global names uses.
TEST(TensorNames, BuildParseAndClassify) {
  namespace names = some::model::names;
  EXPECT_EQ(names::expert(3, "some", 17, "w_down"), "layers.3.some.experts.17.w_down");
  EXPECT_EQ(names::optimizer_state("exp_avg_sq", "layers.0.attn.qkv.weight"), "optim.exp_avg_sq.layers.0.attn.qkv.weight");
  auto stacked = names::parse_stacked_experts("layers.12.moe.experts.w_up");
  ASSERT_TRUE(stacked);
  EXPECT_EQ(stacked->prefix, "layers.12.moe.experts.");
  EXPECT_EQ(stacked->layer, 12);
  EXPECT_EQ(stacked->matrix, "w_up");
  for (const char* not_stacked : {"layers.1.moe.experts.2.w_up", "layers.x.moe.experts.w_up", "layers.1.moe.experts.bias",
                                  "optim.exp_avg.layers.1.moe.experts.w_up"}) {
    EXPECT_FALSE(names::parse_stacked_experts(not_stacked)) << not_stacked;
  }
  using K = names::Kind;
  const std::pair<const char*, K> cases[] = {
      {"layers.3.some.experts.17.w_down", K::kFrozenExpert},   {"layers.3.moe.experts.1.w_up", K::kTrainableExpert},
      {"layers.3.some.keys", K::kKeyStore},                     {"layers.3.some.usage", K::kKeyStore},
      {"layers.3.some.query.0.weight", K::kTrainableWeight},    {"layers.3.moe.bias", K::kTrainableWeight},
      {"optim.exp_avg.layers.3.moe.experts.1.w_up", K::kOptimizerState}, {"rng.cpu", K::kRngState},
      {"tok_emb.weight", K::kTrainableWeight}};
  for (auto [name, kind] : cases) EXPECT_EQ(names::kind(name), kind) << name;
  // Sharded: one expert's tensors and their moments; not the stacked parameters' step counters.
  EXPECT_TRUE(names::is_sharded("layers.3.moe.experts.1.w_up"));
  EXPECT_TRUE(names::is_sharded("optim.exp_avg_sq.layers.3.moe.experts.1.w_up"));
  EXPECT_FALSE(names::is_sharded("optim.step.layers.3.moe.experts.w_up"));
  EXPECT_FALSE(names::is_sharded("layers.3.some.keys"));
  EXPECT_TRUE(names::is_expert("layers.3.moe.experts.w_up"));
  EXPECT_FALSE(names::is_expert("optim.exp_avg.layers.3.moe.experts.1.w_up"));  // state, not weights
  EXPECT_TRUE(names::is_query_network("layers.0.some.query.2.bias"));
  EXPECT_FALSE(names::is_query_network("layers.0.attn.query.weight"));
  EXPECT_TRUE(names::is_recomputed("layers.0.attn.rope_cos"));
  EXPECT_FALSE(names::is_recomputed("layers.0.attn.proj.weight"));
}
