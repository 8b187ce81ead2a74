#include "launcher/model_init.h"

#include <algorithm>
#include <regex>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "checkpoints/checkpoint.h"
#include "common/choice.h"
#include "common/errors.h"
#include "common/logging.h"
#include "parallel/communicator.h"
#include "src/model/ffn_units.h"
#include "src/model/tensor_names.h"

namespace some::launcher {

namespace {

using Parts = model::InitParts;

// The FFN of block L: a dense FFN, a routed layer's experts or shared expert, its expert scale.
bool is_ffn(const std::string& name) {
  static const std::regex ffn(R"(^layers\.\d+\.(dense\.|[a-z]+\.(experts|shared)\.|[a-z]+\.expert_scale$))");
  return std::regex_search(name, ffn);
}

std::string shape_str(const std::vector<int64_t>& s) { return fmt::format("({})", fmt::join(s, ", ")); }
std::string shape_str(const torch::Tensor& t) { return shape_str(t.sizes().vec()); }

// `layers.L.<ffn>.experts.I.<matrix>` -> (L, I, matrix).
struct ExpertName {
  int64_t layer = 0, expert = 0;
  std::string matrix;
};
std::optional<ExpertName> parse_expert(const std::string& name) {
  static const std::regex re(R"(^layers\.(\d+)\.[a-z]+\.experts\.(\d+)\.(w_down|w_up)$)");
  std::smatch m;
  if (!std::regex_match(name, m, re)) return std::nullopt;
  return ExpertName{std::stoll(m[1]), std::stoll(m[2]), m[3]};
}

}  // namespace

std::string InitPlan::summary() const {
  int64_t whole = 0, cut = 0;
  for (const auto& [name, r] : recipes) (r.axis < 0 ? whole : cut)++;
  return fmt::format("model initialised from {} (step {}): {} tensors copied, {} cut from a wider FFN, {} kept fresh "
                     "(the source lacks them){}",
                     checkpoint, source_step, whole, cut, kept.size(),
                     optimizer ? ", with the source's AdamW state" : "");
}

InitPlan plan_init(model::Transformer& model, const Config& cfg, parallel::Communicator* comm) {
  const auto& m = cfg.model;
  InitPlan plan;
  const bool legacy = m.init_from.empty() && !m.experts_from.empty();
  const auto& path = legacy ? m.experts_from : m.init_from;
  if (path.empty()) return plan;
  const std::string key = legacy ? "model.experts_from" : "model.init_from";
  const auto parts = legacy ? Parts::kFfn : m.init_parts;
  const auto units = legacy ? model::UnitChoice::kFirst : m.init_units;
  plan.optimizer = !legacy && m.init_optimizer;

  std::string resolved;
  try {
    resolved = checkpoints::resolve_checkpoint_dir(path);
  } catch (const DataError& e) {
    throw ConfigError(fmt::format("{} = '{}': {}", key, path, e.what()));
  }
  checkpoints::CheckpointReader reader(resolved, /*verify=*/true, comm);
  plan.checkpoint = reader.dir();
  plan.source_step = reader.manifest().info.step;
  const auto& tensors = reader.manifest().tensors;
  const auto source = load_config_text(reader.manifest().info.config, reader.dir() + "/manifest.json", {});
  auto bad = [&](const std::string& what) { return ConfigError(fmt::format("{} = '{}': {}", key, path, what)); };

  const auto shape_of = [&](const std::string& name) -> const std::vector<int64_t>* {
    auto it = tensors.find(name);
    return it == tensors.end() ? nullptr : &it->second.shape;
  };
  // The unit groups of a source dense FFN, per layer and (groups, width): chosen once (rank 0's
  // for `cluster`, broadcast: the k-means must not differ by a rounding between ranks).
  std::map<std::tuple<int64_t, int64_t, int64_t>, torch::Tensor> groups_cache;
  auto groups_of = [&](int64_t layer, int64_t groups, int64_t width) {
    auto k = std::make_tuple(layer, groups, width);
    auto it = groups_cache.find(k);
    if (it != groups_cache.end()) return it->second;
    auto up = reader.read(fmt::format("layers.{}.dense.up.weight", layer));      // (F, d)
    auto down = reader.read(fmt::format("layers.{}.dense.down.weight", layer));  // (d, F)
    auto g = model::choose_units(up, down, groups, width, units, m.seed + static_cast<uint64_t>(layer));
    if (comm && comm->world_size() > 1 && units == model::UnitChoice::kCluster) comm->broadcast(g, 0);
    return groups_cache.emplace(k, g).first->second;
  };

  std::vector<std::string> misfits;
  bool ffn_library = false;  // units cut into an expert library
  auto state = model->state_tensors();
  for (const auto& [name, t] : state) {
    const bool ffn = is_ffn(name);
    if ((parts == Parts::kFfn && !ffn) || (parts == Parts::kBackbone && ffn)) continue;
    const auto* have = shape_of(name);
    if (have && *have == t.sizes().vec()) {  // same name, same shape: the whole tensor
      plan.recipes[name] = {name, -1, {}};
      continue;
    }
    // A routed layer's expert from the same layer's wider dense FFN: a group of its units.
    if (auto e = parse_expert(name)) {
      const auto up_name = fmt::format("layers.{}.dense.up.weight", e->layer);
      const auto* up = shape_of(up_name);
      const int64_t h = m.d_expert, E = m.num_experts;
      if (up && (*up)[1] == m.d_model && ((*up)[0] >= E * h || (*up)[0] == h)) {
        auto g = groups_of(e->layer, E, h);
        const bool down_matrix = e->matrix == "w_down";  // (h, d) <- rows of up; w_up (d, h) <- columns of down
        plan.recipes[name] = {down_matrix ? up_name : fmt::format("layers.{}.dense.down.weight", e->layer),
                              down_matrix ? 0 : 1, g[e->expert]};
        ffn_library = true;
        continue;
      }
      misfits.push_back(fmt::format("{} {} <- {}", name, shape_str(t),
                                    up ? fmt::format("{} {}: {} experts x {} units need {} units (or {} for copies)",
                                                     up_name, shape_str(*up), E, h, E * h, h)
                                       : have ? fmt::format("{}", shape_str(*have)) : std::string("no dense FFN there")));
      continue;
    }
    // A narrower dense FFN from a wider one: its chosen units.
    static const std::regex dense_re(R"(^layers\.(\d+)\.dense\.(up|down)\.weight$)");
    std::smatch dm;
    if (have && std::regex_match(name, dm, dense_re)) {
      const bool up = dm[2] == "up";
      const int64_t width = t.size(up ? 0 : 1), F = (*have)[up ? 0 : 1], d = (*have)[up ? 1 : 0];
      if (F > width && d == t.size(up ? 1 : 0)) {
        plan.recipes[name] = {name, up ? 0 : 1, groups_of(std::stoll(dm[1]), 1, width)[0]};
        continue;
      }
    }
    if (have) {
      misfits.push_back(fmt::format("{} {} <- {} {}", name, shape_str(t), name, shape_str(*have)));
    } else {
      plan.kept.push_back(name);
    }
  }
  if (!misfits.empty()) {
    throw bad(fmt::format("{} tensor(s) of this model do not fit the checkpoint's (this model's shape <- the "
                          "checkpoint's):\n  {}",
                          misfits.size(), fmt::join(misfits, "\n  ")));
  }
  if (plan.recipes.empty()) {
    throw bad(fmt::format("no tensor of model.init_parts = '{}' fits: the checkpoint {} shares no name and shape with "
                          "this model ({} tensors there, {} here)",
                          choice_name(parts), reader.dir(), tensors.size(), state.size()));
  }
  const bool ffn_taken = std::any_of(plan.recipes.begin(), plan.recipes.end(),
                                     [](const auto& r) { return is_ffn(r.first); });
  if (ffn_taken && source.model.expert.activation != m.expert.activation) {
    throw bad(fmt::format("its FFN activation is '{}', expert.activation is '{}': its units would compute another "
                          "function", choice_name(source.model.expert.activation), choice_name(m.expert.activation)));
  }
  if (ffn_library) {
    const int64_t F = source.model.d_ff, h = m.d_expert;
    const std::string how = F == h ? std::string("copies")
                            : units == model::UnitChoice::kFirst ? fmt::format("slices of {} units", h)
                            : fmt::format("groups of {} units by {}", h, choice_name(units));
    plan.library = fmt::format("{} of its {}-wide FFNs into {} routed layer(s) of {} experts", how, F,
                               model->routed_layer_indices().size(), m.num_experts);
  }
  plan.reader_ = std::make_shared<checkpoints::CheckpointReader>(std::move(reader));
  return plan;
}

namespace {
torch::Tensor cut(const torch::Tensor& source, const InitRecipe& r) {
  return r.axis < 0 ? source : source.index_select(r.axis, r.units);
}
}  // namespace

void apply_init(model::Transformer& model, const InitPlan& plan) {
  if (plan.recipes.empty()) return;
  torch::NoGradGuard no_grad;
  auto state = model->state_tensors();
  std::map<std::string, torch::Tensor> read;  // a source tensor read once for all its cuts
  for (const auto& [name, r] : plan.recipes) {
    auto it = read.find(r.source);
    if (it == read.end()) it = read.emplace(r.source, plan.reader_->read(r.source)).first;
    state.at(name).copy_(cut(it->second, r));
  }
  auto log = log::get("train");
  if (!plan.library.empty()) log->info("expert library from {}: {}", plan.checkpoint, plan.library);
  log->info("{}", plan.summary());
}

std::map<std::string, torch::Tensor> init_optimizer_state(model::Transformer& model, const InitPlan& plan) {
  std::map<std::string, torch::Tensor> out;
  if (!plan.optimizer || plan.recipes.empty()) return out;
  torch::NoGradGuard no_grad;
  const auto& reader = *plan.reader_;
  std::map<std::string, torch::Tensor> by_param;
  for (auto& p : model->named_parameters()) {
    if (p.value().requires_grad()) by_param.emplace(p.key(), p.value());
  }
  // Moments by the checkpoint's names (a stacked expert parameter's per expert).
  for (const auto& [name, t] : model->split_experts(by_param)) {
    auto r = plan.recipes.find(name);
    if (r == plan.recipes.end()) continue;
    for (const char* moment : {"exp_avg", "exp_avg_sq"}) {
      const auto source = model::names::optimizer_state(moment, r->second.source);
      out[model::names::optimizer_state(moment, name)] =
          reader.has(source) ? cut(reader.read(source), r->second) : torch::zeros_like(t);
    }
  }
  // The step count of each initialised parameter (a stacked one: of its first initialised
  // expert's source): the source parameter's, else the checkpoint's step.
  for (const auto& [name, t] : by_param) {
    const InitRecipe* from = nullptr;
    if (auto r = plan.recipes.find(name); r != plan.recipes.end()) {
      from = &r->second;
    } else if (auto stacked = model::names::parse_stacked_experts(name)) {
      for (const auto& [target, r] : plan.recipes) {
        if (target.rfind(stacked->prefix, 0) == 0 && target.size() > stacked->matrix.size() &&
            target.compare(target.size() - stacked->matrix.size(), std::string::npos, stacked->matrix) == 0) {
          from = &r;
          break;
        }
      }
    }
    if (!from) continue;
    const auto step = model::names::optimizer_state("step", from->source);
    out[model::names::optimizer_state("step", name)] =
        reader.has(step) ? reader.read(step) : torch::tensor({plan.source_step}, torch::kInt64);
  }
  return out;
}

}  // namespace some::launcher
