#include "launcher/config.h"

#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <sstream>
#include <variant>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "common/errors.h"
#include "common/logging.h"

namespace some::launcher {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// A choice-valued option's enum, through its Choices table (common/choice.h): the schema's one
// place for what a value may be, its TOML name and docs/config.md's "allowed" column.
struct ChoiceTarget {
  std::function<bool(const std::string&)> set;  // false: not one of the names
  std::function<std::string()> get;
  std::vector<std::string> names;
};

template <typename Enum>
ChoiceTarget choice(Enum* p) {
  return {[p](const std::string& v) {
            const auto found = find_choice<Enum>(v);
            if (found) *p = *found;
            return found.has_value();
          },
          [p] { return choice_name(*p); }, choice_names<Enum>()};
}

struct Entry {
  std::string key;  // section.name
  std::variant<int64_t*, uint64_t*, double*, bool*, std::string*, ChoiceTarget> target;
  std::string doc;
  double min = -kInf, max = kInf;    // numbers: allowed closed range
};
constexpr size_t kStringTarget = 4;  // Entry::target: the std::string* alternative

std::vector<Entry> schema(Config& c) {
  auto& m = c.model;
  auto& r = c.model.router;
  auto& e = c.model.expert;
  auto& g = c.model.gravity;
  auto& b = c.model.moe;
  auto& o = c.optim;
  auto& t = c.train;
  return {
      {"model.d_model", &m.d_model, "model width d", 8, 65536},
      {"model.n_layers", &m.n_layers, "transformer blocks", 1, 1024},
      {"model.n_heads", &m.n_heads, "attention heads (d_model / n_heads must be even)", 1, 1024},
      {"model.ffn", choice(&m.ffn), "feed-forward block: SoME layer, or a baseline: dense FFN, learned-gate MoE, hash routing"},
      {"model.d_ff", &m.d_ff, "hidden size of the dense FFN (ffn = dense)", 1, 1 << 20},
      {"model.num_experts", &m.num_experts, "E, experts per routed layer (frozen for SoME, trainable for moe / hash)", 1, 1 << 20},
      {"model.top_k", &m.top_k, "k, experts per token", 1, 1024},
      {"model.d_expert", &m.d_expert, "h, hidden size of one expert", 1, 1 << 20},
      {"model.routed_layers", choice(&m.routed_layers), "which blocks get the routed FFN (SoME / moe / hash; the rest dense)"},
      {"model.capacity_factor", &m.capacity_factor, "0 = dropless; > 0: an expert computes at most ceil(cf * slots / E) of a forward's slots, the rest are dropped (zero output) and counted", 0, 1e6},
      {"model.shared_expert", &m.shared_expert, "hidden width of a trainable dense expert every token of a routed layer also uses, added to the routed output (DeepSeekMoE's shared expert); 0 = none", 0, 1 << 20},
      {"model.seed", &m.seed, "seed of the expert library and the keys", 0, 1.8e19},
      {"model.init_from", &m.init_from, "checkpoint (or run directory) whose tensors start this run: every tensor of model.init_parts whose global name and shape fit is copied, a wider dense FFN gives a narrower dense FFN or an expert library its units (model.init_units), the rest keeps its initialisation; any W and P on either side; ignored on --resume; empty = none"},
      {"model.init_parts", choice(&m.init_parts), "which tensors model.init_from gives: all; backbone (embeddings, attention, norms, LM head, routers: everything but the FFNs); ffn (the dense FFNs, experts and shared experts)"},
      {"model.init_units", choice(&m.init_units), "how a wider dense FFN of model.init_from is cut: first (consecutive slices of units), magnitude (the units of largest ‖up_j‖·‖down_j‖), cluster (balanced k-means of the units by normalised input weights, MoEfication)"},
      {"model.init_optimizer", &m.init_optimizer, "with model.init_from: also the AdamW moments (cut like the weights) and step of every trainable tensor taken"},
      {"model.experts_from", &m.experts_from, "checkpoint (or run directory) of a trained dense model: expert i of layer l = slice i of h hidden units of its layer-l FFN (E*h = d_ff), or a full copy (h = d_ff); the special case model.init_from with init_parts = ffn, init_units = first; empty = expert.init"},
      {"router.query", choice(&r.query), "query network Q: one Linear, or Linear-GELU-Linear"},
      {"router.mlp_hidden", &r.mlp_hidden, "hidden width of the mlp query network; 0 = 2 * d_model", 0, 1 << 20},
      {"router.score", choice(&r.score), "cosine similarity, or raw dot product (V1)"},
      {"router.temperature", &r.temperature, "tau: gate logits = scores / tau", 1e-6, 1e6},
      {"router.logit_clamp", &r.logit_clamp, "c: gate logits clamped to [-c, c]", 1e-6, 1e6},
      {"router.freeze_keys", &r.freeze_keys, "skip Knowledge Gravity (keys stay at init)"},
      {"router.gate_scale", choice(&r.gate_scale), "fixed: gate logits = scores / temperature; learnable: scores * exp(s) with s trainable, initial log(1 / temperature), exp(s) <= router.max_scale (Tutel's cosine gate)"},
      {"router.max_scale", &r.max_scale, "upper clamp of the learned gate scale exp(s) (gate_scale = learnable)", 1e-6, 1e6},
      {"router.balance", choice(&r.balance), "bias: a per-expert selection bias b, top-k of scores + b (gates from the scores alone), b_i += bias_rate * sign(mean load - load_i) after every step from the global batch's loads (loss-free balancing); none"},
      {"router.bias_rate", &r.bias_rate, "step of the selection bias (balance = bias)", 0, 10},
      {"router.key_init", choice(&r.key_init), "random; or data: after the first step the keys become k-means++ centres (then 5 Lloyd rounds) of that step's queries, gathered from every rank"},
      {"router.search", choice(&r.search), "how a token finds its top-k keys: exact (scores against every key), or an approximate nearest-neighbour index over the keys (FAISS HNSW or IVF), updated after every Knowledge Gravity step; the selected keys' scores and gates are exact either way"},
      {"router.ivf_lists", &r.ivf_lists, "search = ivf: inverted lists (k-means centres of the keys); 0 = about 4 sqrt(E)", 0, 1 << 24},
      {"router.ivf_probe", &r.ivf_probe, "search = ivf: lists scanned per query", 1, 1 << 24},
      {"router.hnsw_m", &r.hnsw_m, "search = hnsw: graph links per key", 2, 1024},
      {"router.hnsw_ef_search", &r.hnsw_ef_search, "search = hnsw: candidate list size per query", 1, 1 << 20},
      {"expert.init", choice(&e.init), "initialisation of the frozen expert library"},
      {"expert.sparsity", &e.sparsity, "fraction of exact zeros per matrix (init = sparse)", 0, 0.999},
      {"expert.activation", choice(&e.activation), "expert (and dense FFN) non-linearity"},
      {"expert.output_scale", choice(&e.output_scale), "learnable: a trainable scale per expert (E per layer, initial 1) multiplying its output, the expert weights still frozen; fixed: none"},
      {"expert.compute", choice(&e.compute), "loop: one GEMM pair per expert with rows; grouped: two grouped GEMMs (at::_grouped_mm) for the whole shard; auto: grouped where d_model and d_expert rows are 16-byte multiples (on the CPU in any dtype, on CUDA in bf16), else loop"},
      {"gravity.alpha", &g.alpha, "query pull rate", 0, 1},
      {"gravity.beta", &g.beta, "peer pull rate", 0, 1},
      {"gravity.delta", &g.delta, "decay rate of rarely used keys", 0, 1},
      {"gravity.repulsion", &g.repulsion, "gamma: push from the mean of the other keys", 0, 1},
      {"gravity.usage", choice(&g.usage), "usage tracking: EMA (V2) or cumulative (V1)"},
      {"gravity.ema_decay", &g.ema_decay, "rho of the usage EMA", 0, 1},
      {"gravity.inertia", &g.inertia, "scale alpha and beta by 1 / (1 + usage)"},
      {"gravity.decay_percentile", &g.decay_percentile, "decay keys with usage below this percentile", 0, 100},
      {"gravity.decay_threshold", &g.decay_threshold, "decay keys with usage below this value instead; -1 = use the percentile", -1, kInf},
      {"gravity.use_alpha", &g.use_alpha, "ablation switch: query pull"},
      {"gravity.use_beta", &g.use_beta, "ablation switch: peer pull"},
      {"gravity.use_delta", &g.use_delta, "ablation switch: decay"},
      {"gravity.use_repulsion", &g.use_repulsion, "ablation switch: repulsion"},
      {"gravity.max_key_norm", &g.max_key_norm, "clamp key norms to this; 0 = off", 0, kInf},
      {"gravity.restart_below", &g.restart_below, "re-seed keys whose usage falls below this; 0 = off", 0, kInf},
      {"gravity.peer_stats", choice(&g.peer_stats), "what the per-step allreduce carries for the peer pull: the co-activation counts C (E x E), or the peer sums P = C K (E x d, exact: the keys are identical on every rank); auto = peer_sum when E > d_model"},
      {"moe.balance", choice(&b.balance), "load balancing of the MoE baseline: Switch auxiliary loss, selection bias (aux-loss-free), none"},
      {"moe.aux_loss", &b.aux_loss, "weight of the auxiliary loss E * sum_i f_i P_i (balance = aux_loss)", 0, 100},
      {"moe.bias_rate", &b.bias_rate, "selection-bias step: b_i += rate * sign(mean load - load_i) (balance = bias)", 0, 10},
      {"optim.lr", &o.lr, "peak learning rate (AdamW)", 0, 10},
      {"optim.weight_decay", &o.weight_decay, "AdamW weight decay on matrices", 0, 10},
      {"optim.beta1", &o.beta1, "AdamW beta1", 0, 0.999999},
      {"optim.beta2", &o.beta2, "AdamW beta2", 0, 0.999999},
      {"optim.eps", &o.eps, "AdamW epsilon", 1e-30, 1},
      {"optim.warmup_steps", &o.warmup_steps, "linear warmup steps", 0, 1e12},
      {"optim.min_lr_ratio", &o.min_lr_ratio, "cosine floor as a fraction of lr", 0, 1},
      {"optim.clip", &o.clip, "gradient-norm clip; 0 = off", 0, kInf},
      {"train.micro_batch", &t.micro_batch, "sequences per forward/backward", 1, 1 << 20},
      {"train.global_batch", &t.global_batch, "sequences per optimizer step (multiple of micro_batch)", 1, 1 << 24},
      {"train.seq_len", &t.seq_len, "tokens per sequence", 2, 1 << 20},
      {"train.max_steps", &t.max_steps, "optimizer steps", 1, 1e12},
      {"train.max_minutes", &t.max_minutes, "stop cleanly after this wall-clock time; 0 = no limit", 0, kInf},
      {"train.log_every", &t.log_every, "steps between log lines / metrics", 1, 1e12},
      {"train.eval_every", &t.eval_every, "steps between evaluations; 0 = at the end only", 0, 1e12},
      {"train.eval_batches", &t.eval_batches, "validation micro-batches per eval; 0 = whole split", 0, 1e12},
      {"train.seed", &t.seed, "seed of the data order", 0, 1.8e19},
      {"train.device", choice(&t.device), "where to train"},
      {"train.dtype", choice(&t.dtype), "float32, or bfloat16 autocast (keys stay fp32)"},
      {"train.threads", &t.threads, "intra-op CPU threads; 0 = cores / local ranks", 0, 4096},
      {"train.sample_prompt", &t.sample_prompt, "prompt of the sample printed after training"},
      {"train.sample_tokens", &t.sample_tokens, "length of that sample; 0 = none", 0, 1 << 20},
      {"train.eval_sample_tokens", &t.eval_sample_tokens, "tokens sampled from sample_prompt at every eval, logged and in the eval's metrics line (\"sample\"), so low PPL with incoherent text shows; 0 = none", 0, 1 << 20},
      {"train.checkpoint_every", &t.checkpoint_every, "steps between checkpoints in RUN/checkpoints (one is always written at the end); 0 = none", 0, 1e12},
      {"train.checkpoint_minutes", &t.checkpoint_minutes, "wall-clock minutes between checkpoints; 0 = none", 0, kInf},
      {"train.keep_last", &t.keep_last, "checkpoints kept, the oldest pruned; 0 = all", 0, 1e9},
      {"train.checkpoint_experts", choice(&t.checkpoint_experts), "every: each checkpoint holds the frozen experts; once: written once to RUN/checkpoints/experts_<step> (again only by a run resumed elsewhere) and referenced (they never change)"},
      {"parallel.expert_parallel", &c.parallel.expert_parallel, "P: ranks each SoME layer's experts are sharded over (P divides the world size and model.num_experts)", 1, 1 << 20},
      {"parallel.overlap_grad_allreduce", &c.parallel.overlap_grad_allreduce, "start each gradient bucket's allreduce during the last backward of a step, as soon as its gradients are final"},
      {"parallel.key_check_every", &c.parallel.key_check_every, "steps between cross-rank key-store checksums; 0 = never", 0, 1e12},
      {"data.dir", &c.data_dir, "dataset directory written by `some prepare`"},
  };
}

std::string type_name(const Entry& e) {
  switch (e.target.index()) {
    case 0: case 1: return "integer";
    case 2: return "number";
    case 3: return "boolean";
    default: return "string";  // a string, or one of a choice's names
  }
}

std::string allowed(const Entry& e) {
  if (const auto* c = std::get_if<ChoiceTarget>(&e.target)) return fmt::format("one of {}", fmt::join(c->names, ", "));
  if (e.target.index() <= 2) {
    const char* article = e.target.index() <= 1 ? "an" : "a";
    if (e.max == kInf) return fmt::format("{} {} >= {}", article, type_name(e), e.min);
    return fmt::format("{} {} in [{}, {}]", article, type_name(e), e.min, e.max);
  }
  return "a " + type_name(e);
}

std::string current_value(const Entry& e) {
  return std::visit(
      [](const auto& target) -> std::string {
        using T = std::decay_t<decltype(target)>;
        if constexpr (std::is_same_v<T, ChoiceTarget>) {
          return "\"" + target.get() + "\"";
        } else {
          using V = std::remove_pointer_t<T>;
          if constexpr (std::is_same_v<V, bool>) return *target ? "true" : "false";
          else if constexpr (std::is_same_v<V, std::string>) return "\"" + *target + "\"";
          else return fmt::format("{}", *target);
        }
      },
      e.target);
}

[[noreturn]] void reject(const Entry& e, const std::string& value, const std::string& source) {
  throw ConfigError(fmt::format("{}: {} = {} is not allowed: expected {}", source, e.key, value, allowed(e)));
}

void check_range(const Entry& e, double v, const std::string& shown, const std::string& source) {
  if (!(v >= e.min && v <= e.max)) reject(e, shown, source);
}

// Sets an entry from a typed value (from TOML or a parsed override).
void set_int(const Entry& e, int64_t v, const std::string& source) {
  check_range(e, static_cast<double>(v), std::to_string(v), source);
  if (auto* p = std::get_if<int64_t*>(&e.target)) **p = v;
  else if (auto* u = std::get_if<uint64_t*>(&e.target)) **u = static_cast<uint64_t>(v);
  else if (auto* d = std::get_if<double*>(&e.target)) **d = static_cast<double>(v);
  else reject(e, std::to_string(v), source);
}

void set_double(const Entry& e, double v, const std::string& source) {
  auto* d = std::get_if<double*>(&e.target);
  if (!d || !std::isfinite(v)) reject(e, fmt::format("{}", v), source);
  check_range(e, v, fmt::format("{}", v), source);
  **d = v;
}

void set_string(const Entry& e, const std::string& v, const std::string& source) {
  // Quoted and escaped: a TOML string may hold line breaks, and an error stays one line.
  const std::string shown = fmt::format("{:?}", v);
  if (const auto* c = std::get_if<ChoiceTarget>(&e.target)) {
    if (!c->set(v)) reject(e, shown, source);
    return;
  }
  auto* s = std::get_if<std::string*>(&e.target);
  if (!s) reject(e, shown, source);
  **s = v;
}

void set_bool(const Entry& e, bool v, const std::string& source) {
  auto* b = std::get_if<bool*>(&e.target);
  if (!b) reject(e, v ? "true" : "false", source);
  **b = v;
}

// Keys that were renamed: still read (configs and checkpoints written before), with a warning.
const std::map<std::string, std::string> kRenamedKeys = {{"model.some_layers", "model.routed_layers"},
                                                         {"parallel.capacity_factor", "model.capacity_factor"}};

const Entry& find_entry(const std::vector<Entry>& entries, const std::string& key, const std::string& source) {
  for (const auto& e : entries) {
    if (e.key == key) return e;
  }
  if (auto renamed = kRenamedKeys.find(key); renamed != kRenamedKeys.end()) {
    log::get("config")->warn("{}: '{}' is now called '{}': read as that", source, key, renamed->second);
    return find_entry(entries, renamed->second, source);
  }
  std::string section = key.substr(0, key.find('.'));
  std::vector<std::string> known;
  for (const auto& e : entries) {
    if (e.key.starts_with(section + ".")) known.push_back(e.key);
  }
  if (known.empty()) {
    for (const auto& e : entries) {
      auto s = e.key.substr(0, e.key.find('.'));
      if (known.empty() || known.back() != s) known.push_back(s);
    }
    throw ConfigError(fmt::format("{}: unknown config section in '{}'; sections are {}", source, key,
                                  fmt::join(known, ", ")));
  }
  throw ConfigError(fmt::format("{}: unknown config key '{}'; keys of [{}] are {}", source, key, section,
                                fmt::join(known, ", ")));
}

}  // namespace

void apply_file(Config& cfg, const std::string& path) {
  if (!std::filesystem::exists(path)) throw DataError(fmt::format("config file '{}' does not exist", path));
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  apply_text(cfg, text.str(), path);
}

void apply_text(Config& cfg, const std::string& text, const std::string& path) {
  toml::table root;
  try {
    root = toml::parse(text, path);
  } catch (const toml::parse_error& err) {
    throw ConfigError(fmt::format("{}:{}:{}: TOML syntax error: {}", path, err.source().begin.line,
                                  err.source().begin.column, err.description()));
  }
  auto entries = schema(cfg);
  for (auto&& [section, node] : root) {
    const std::string sec(section.str());
    if (!node.is_table()) {
      throw ConfigError(fmt::format("{}: top-level key '{}' must be a [section] table", path, sec));
    }
    for (auto&& [name, value] : *node.as_table()) {
      const auto key = sec + "." + std::string(name.str());
      const auto& e = find_entry(entries, key, path);
      if (value.is_integer()) set_int(e, *value.value<int64_t>(), path);
      else if (value.is_floating_point()) set_double(e, *value.value<double>(), path);
      else if (value.is_boolean()) set_bool(e, *value.value<bool>(), path);
      else if (value.is_string()) set_string(e, *value.value<std::string>(), path);
      else reject(e, "(a TOML array or table)", path);
    }
  }
}

void apply_override(Config& cfg, const std::string& assignment) {
  const std::string source = "--set " + assignment;
  auto eq = assignment.find('=');
  if (eq == std::string::npos || assignment.find('.') > eq) {
    throw ConfigError(fmt::format("{}: expected section.key=value", source));
  }
  const auto key = assignment.substr(0, eq);
  auto value = assignment.substr(eq + 1);
  auto entries = schema(cfg);
  const auto& e = find_entry(entries, key, source);
  auto parse_number = [&](auto& out) {
    auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), out);
    return ec == std::errc() && ptr == value.data() + value.size();
  };
  switch (e.target.index()) {
    case 0: case 1: {
      int64_t v;
      if (!parse_number(v)) reject(e, value, source);
      set_int(e, v, source);
      break;
    }
    case 2: {
      double v;
      if (!parse_number(v)) reject(e, value, source);
      set_double(e, v, source);
      break;
    }
    case 3:
      if (value != "true" && value != "false") reject(e, value, source);
      set_bool(e, value == "true", source);
      break;
    default:
      if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
      set_string(e, value, source);
  }
}

void validate(const Config& c) {
  auto fail = [](const std::string& msg) { throw ConfigError(msg); };
  const auto& m = c.model;
  if (m.d_model % m.n_heads != 0 || (m.d_model / m.n_heads) % 2 != 0) {
    fail(fmt::format("model.d_model = {} must split into model.n_heads = {} heads of even width", m.d_model, m.n_heads));
  }
  if (!m.experts_from.empty() && m.ffn != model::FfnKind::kSome) {
    fail(fmt::format("model.experts_from = '{}' builds a SoME layer's experts, but model.ffn = '{}' (model.init_from "
                     "initialises any model)", m.experts_from, choice_name(m.ffn)));
  }
  if (!m.experts_from.empty() && !m.init_from.empty()) {
    fail(fmt::format("model.experts_from = '{}' and model.init_from = '{}': set one (experts_from is init_from with "
                     "init_parts = ffn, init_units = first)", m.experts_from, m.init_from));
  }
  if (m.init_from.empty() &&
      (m.init_parts != model::InitParts::kAll || m.init_units != model::UnitChoice::kFirst || m.init_optimizer)) {
    fail("model.init_parts, model.init_units and model.init_optimizer say how model.init_from initialises the model, "
         "but model.init_from is empty");
  }
  const bool routed = m.ffn != model::FfnKind::kDense;
  const bool some = m.ffn == model::FfnKind::kSome;
  const model::RouterOptions defaults;
  if (!some && (m.router.gate_scale != defaults.gate_scale || m.router.balance != defaults.balance ||
                m.router.key_init != defaults.key_init || m.router.search != defaults.search)) {
    fail(fmt::format("router.gate_scale, router.balance, router.key_init and router.search are options of the SoME "
                     "router, but model.ffn = '{}' (the MoE baseline balances with moe.balance)", choice_name(m.ffn)));
  }
  if (m.router.search != model::KeySearch::kExact && m.router.balance == model::RouterBalance::kBias) {
    // The index ranks keys by score alone; a per-expert bias would need every score again.
    fail(fmt::format("router.search = '{}' cannot be combined with router.balance = 'bias' (the index ranks keys by "
                     "score, not score + bias): use router.search = 'exact'", choice_name(m.router.search)));
  }
  if (!routed && (m.shared_expert > 0 || m.expert.output_scale != model::ExpertOptions().output_scale)) {
    fail("model.shared_expert and expert.output_scale belong to a routed layer, but model.ffn = 'dense'");
  }
  if (routed && m.top_k > m.num_experts) {
    fail(fmt::format("model.top_k = {} exceeds model.num_experts = {}", m.top_k, m.num_experts));
  }
  const auto& t = c.train;
  if (t.global_batch % t.micro_batch != 0) {
    fail(fmt::format("train.global_batch = {} must be a multiple of train.micro_batch = {}", t.global_batch, t.micro_batch));
  }
  if (m.gravity.decay_threshold < 0 && m.gravity.decay_threshold != -1) {
    fail(fmt::format("gravity.decay_threshold = {} is not allowed: expected -1 (use the percentile) or a "
                     "number >= 0", m.gravity.decay_threshold));
  }
  if (routed && m.num_experts % c.parallel.expert_parallel != 0) {
    fail(fmt::format("parallel.expert_parallel = {} must divide model.num_experts = {}", c.parallel.expert_parallel,
                     m.num_experts));
  }
  if (routed && m.n_layers < 2 && m.routed_layers == model::RoutedLayers::kEveryOther) {
    fail("model.routed_layers = \"every_other\" needs model.n_layers >= 2 (layer 1 gets the routed FFN)");
  }
}

std::string to_toml(const Config& cfg) {
  Config copy = cfg;
  std::map<std::string, std::vector<std::string>> sections;
  std::vector<std::string> order;
  for (const auto& e : schema(copy)) {
    auto sec = e.key.substr(0, e.key.find('.'));
    if (!sections.count(sec)) order.push_back(sec);
    auto value = current_value(e);
    if (e.target.index() == kStringTarget) {  // a TOML basic string, escaped
      std::ostringstream s;
      s << toml::value<std::string>(*std::get<std::string*>(e.target));
      value = s.str();
    }
    sections[sec].push_back(fmt::format("{} = {}", e.key.substr(sec.size() + 1), value));
  }
  std::ostringstream out;
  out << "# Resolved SoME config: defaults < --config file < --set overrides.\n";
  for (const auto& sec : order) {
    out << "\n[" << sec << "]\n";
    for (const auto& line : sections[sec]) out << line << "\n";
  }
  return out.str();
}

std::string markdown_reference() {
  Config defaults;
  std::ostringstream out;
  out << "# Configuration keys\n\n"
         "Every key of a config file (TOML) or of `--set section.key=value`: its type, its built-in default\n"
         "(docs/design.md's defaults; `configs/default.toml` overrides some of them), the values allowed and\n"
         "what it means. A config resolves as built-in defaults < the `--config` file < `--set` overrides; a\n"
         "resumed run keeps its checkpoint's config (plus `--set`) unless `--config` is given. An unknown key,\n"
         "a value of the wrong type or out of range, or inconsistent keys stop the program before any work.\n\n"
         "This page is generated from the config schema (`launcher/config.cpp`) by\n"
         "`build/bin/some config --markdown > docs/config.md`; the suite checks that it is current.\n";
  std::string section;
  for (const auto& e : schema(defaults)) {
    const std::string sec = e.key.substr(0, e.key.find('.'));
    if (sec != section) {
      section = sec;
      out << fmt::format("\n## `[{}]`\n\n| key | type | default | allowed | meaning |\n|---|---|---|---|---|\n", sec);
    }
    out << fmt::format("| `{}` | {} | `{}` | {} | {} |\n", e.key, type_name(e), current_value(e), allowed(e), e.doc);
  }
  return out.str();
}

Config load_config(const std::string& file, const std::vector<std::string>& overrides) {
  Config cfg;
  if (!file.empty()) apply_file(cfg, file);
  for (const auto& o : overrides) apply_override(cfg, o);
  validate(cfg);
  return cfg;
}

Config load_config_text(const std::string& text, const std::string& source, const std::vector<std::string>& overrides) {
  Config cfg;
  apply_text(cfg, text, source);
  for (const auto& o : overrides) apply_override(cfg, o);
  validate(cfg);
  return cfg;
}

}  // namespace some::launcher
