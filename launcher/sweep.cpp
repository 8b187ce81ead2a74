// Sweep files: parsed, checked key by key against the config schema, expanded into runs whose
// configs are resolved and validated before anything starts (format: experiments/README.md).
#include "launcher/sweep.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "common/errors.h"
#include "launcher/session.h"

namespace fs = std::filesystem;

namespace some::launcher::sweep {
namespace {

const std::set<std::string> kTopLevel = {"name", "description", "base", "seeds", "set", "grid", "runs", "scale"};
const std::set<std::string> kSeedKeys = {"model.seed", "train.seed"};

struct Axis {
  std::string key;
  std::vector<Scalar> values;
};
struct RunSpec {
  std::string name;
  std::vector<Override> sets;
};
struct ScaleSpec {
  std::vector<Override> sets;                             // [scale.S] key = value
  std::map<std::string, std::vector<Scalar>> grid;        // [scale.S.grid] axis = [values]
  std::map<std::string, std::vector<Override>> runs;      // [scale.S.runs.NAME] key = value
  std::optional<std::vector<uint64_t>> seeds;             // seeds = [...]
};
struct Spec {
  std::string name, description, base;
  std::optional<std::vector<uint64_t>> seeds;
  std::vector<Override> set;
  std::vector<Axis> grid;
  std::vector<RunSpec> runs;
  std::map<std::string, ScaleSpec> scales;
};

// Every error of a sweep file names the file first.
class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}
  [[noreturn]] void fail(const std::string& msg) const { throw ConfigError(fmt::format("{}: {}", file_, msg)); }
  const std::string& file() const { return file_; }

  // (key, node) of a table in file order; tables nested by dotted keys ([set] gravity.alpha = 1
  // as well as "gravity.alpha" = 1) are flattened to section.key.
  using Leaf = std::pair<std::string, const toml::node*>;
  // `skip`: top-level names that are not config keys (a run's name, a scale's grid).
  std::vector<Leaf> leaves(const toml::table& t, const std::string& where, const std::set<std::string>& skip = {}) const {
    std::vector<Leaf> out;
    for (auto&& [k, node] : t) {
      if (skip.count(std::string(k.str()))) continue;
      if (const auto* sub = node.as_table()) flatten(*sub, std::string(k.str()), out);
      else out.emplace_back(std::string(k.str()), &node);
    }
    std::stable_sort(out.begin(), out.end(), [](const Leaf& a, const Leaf& b) {
      const auto &pa = a.second->source().begin, &pb = b.second->source().begin;
      return pa.line != pb.line ? pa.line < pb.line : pa.column < pb.column;
    });
    std::set<std::string> seen;
    for (const auto& [key, node] : out) {
      if (!seen.insert(key).second) fail(fmt::format("{} sets '{}' twice", where, key));
    }
    return out;
  }

  Scalar scalar(const toml::node& n, const std::string& where, const std::string& key) const {
    if (n.is_integer()) return *n.value<int64_t>();
    if (n.is_floating_point()) return *n.value<double>();
    if (n.is_boolean()) return *n.value<bool>();
    if (n.is_string()) return *n.value<std::string>();
    fail(fmt::format("{} {}: expected a number, boolean or string, not {}", where, key, kind(n)));
  }

  std::vector<Override> overrides(const toml::table& t, const std::string& where,
                                  const std::set<std::string>& skip = {}) const {
    std::vector<Override> out;
    for (const auto& [key, node] : leaves(t, where, skip)) out.push_back({key, scalar(*node, where, key), where});
    return out;
  }

  std::vector<Scalar> values(const toml::node& n, const std::string& where, const std::string& key) const {
    const auto* arr = n.as_array();
    if (!arr) fail(fmt::format("{} {}: expected an array of values, e.g. [0.01, 0.1], not {}", where, key, kind(n)));
    if (arr->empty()) fail(fmt::format("{} {}: the array is empty", where, key));
    std::vector<Scalar> out;
    std::set<std::string> seen;
    for (const auto& v : *arr) {
      out.push_back(scalar(v, where, key));
      if (!seen.insert(to_text(out.back())).second) {
        fail(fmt::format("{} {}: the value {} is listed twice", where, key, to_text(out.back())));
      }
    }
    return out;
  }

  std::vector<uint64_t> seeds(const toml::node& n, const std::string& where) const {
    const auto* arr = n.as_array();
    if (!arr || arr->empty()) fail(fmt::format("{}: expected a non-empty array of integers, e.g. [1, 2, 3]", where));
    std::vector<uint64_t> out;
    for (const auto& v : *arr) {
      if (!v.is_integer() || *v.value<int64_t>() < 0) {
        fail(fmt::format("{}: every seed must be an integer >= 0", where));
      }
      const auto s = static_cast<uint64_t>(*v.value<int64_t>());
      if (std::find(out.begin(), out.end(), s) != out.end()) fail(fmt::format("{}: seed {} is listed twice", where, s));
      out.push_back(s);
    }
    return out;
  }

  std::string string(const toml::node& n, const std::string& key) const {
    if (!n.is_string()) fail(fmt::format("'{}' must be a string, not {}", key, kind(n)));
    return *n.value<std::string>();
  }

  const toml::table& table(const toml::node& n, const std::string& where) const {
    if (!n.is_table()) fail(fmt::format("{} must be a table, not {}", where, kind(n)));
    return *n.as_table();
  }

 private:
  static void flatten(const toml::table& t, const std::string& prefix, std::vector<Leaf>& out) {
    for (auto&& [k, node] : t) {
      auto key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
      if (const auto* sub = node.as_table()) flatten(*sub, key, out);
      else out.emplace_back(key, &node);
    }
  }
  static std::string kind(const toml::node& n) {
    if (n.is_array()) return "an array";
    if (n.is_table()) return "a table";
    if (n.is_string()) return "a string";
    if (n.is_number()) return "a number";
    if (n.is_boolean()) return "a boolean";
    return "a date/time";
  }
  std::string file_;
};

ScaleSpec parse_scale(const Reader& rd, const toml::table& t, const std::string& scale, const Spec& spec) {
  ScaleSpec out;
  const auto where = fmt::format("[scale.{}]", scale);
  for (auto&& [k, node] : t) {
    const std::string key(k.str());
    if (key == "seeds") {
      out.seeds = rd.seeds(node, where + " seeds");
    } else if (key == "grid") {
      const auto w = fmt::format("[scale.{}.grid]", scale);
      for (const auto& [axis, n] : rd.leaves(rd.table(node, w), w)) {
        auto it = std::find_if(spec.grid.begin(), spec.grid.end(), [&](const Axis& a) { return a.key == axis; });
        if (it == spec.grid.end()) rd.fail(fmt::format("{} {}: not an axis of [grid]", w, axis));
        out.grid[axis] = rd.values(*n, w, axis);
      }
    } else if (key == "runs") {
      const auto w = fmt::format("[scale.{}.runs]", scale);
      for (auto&& [rn, n] : rd.table(node, w)) {
        const std::string run(rn.str());
        if (std::none_of(spec.runs.begin(), spec.runs.end(), [&](const RunSpec& r) { return r.name == run; })) {
          rd.fail(fmt::format("{}: '{}' is not the name of a [[runs]] entry (quote a name with a dot: "
                              "[scale.{}.runs.\"a.b\"])", w, run, scale));
        }
        const auto rw = fmt::format("[scale.{}.runs.{}]", scale, run);
        out.runs[run] = rd.overrides(rd.table(n, rw), rw);
      }
    }
  }
  out.sets = rd.overrides(t, where, {"seeds", "grid", "runs"});
  return out;
}

Spec parse(const Reader& rd, const toml::table& root) {
  Spec spec;
  for (auto&& [k, node] : root) {
    const std::string key(k.str());
    if (!kTopLevel.count(key)) {
      rd.fail(fmt::format("unknown key '{}'; a sweep file has {} (config keys go in [set], [grid] or [[runs]])",
                          key, fmt::join(kTopLevel, ", ")));
    }
  }
  if (!root.contains("name")) rd.fail("'name' is missing (the sweep's name: its directory under --out)");
  spec.name = rd.string(*root.get("name"), "name");
  if (spec.name.empty() || sanitize(spec.name) != spec.name || spec.name.front() == '.') {
    rd.fail(fmt::format("name = \"{}\": use letters, digits and . _ , = + - only (it names a directory)", spec.name));
  }
  if (const auto* n = root.get("description")) spec.description = rd.string(*n, "description");
  if (const auto* n = root.get("base")) spec.base = rd.string(*n, "base");
  if (const auto* n = root.get("seeds")) spec.seeds = rd.seeds(*n, "seeds");
  if (const auto* n = root.get("set")) spec.set = rd.overrides(rd.table(*n, "[set]"), "[set]");
  if (const auto* n = root.get("grid")) {
    for (const auto& [key, v] : rd.leaves(rd.table(*n, "[grid]"), "[grid]")) {
      spec.grid.push_back({key, rd.values(*v, "[grid]", key)});
    }
  }
  if (const auto* n = root.get("runs")) {
    const auto* arr = n->as_array();
    if (!arr || arr->empty()) rd.fail("runs must be a non-empty array of tables: [[runs]] with name = \"...\"");
    for (size_t i = 0; i < arr->size(); ++i) {
      const auto where = fmt::format("[[runs]] #{}", i + 1);
      const toml::table& t = rd.table((*arr)[i], where);
      if (!t.contains("name")) rd.fail(fmt::format("{} has no name", where));
      RunSpec run;
      run.name = rd.string(*t.get("name"), where + " name");
      if (run.name.empty()) rd.fail(fmt::format("{} has an empty name", where));
      for (const auto& r : spec.runs) {
        if (r.name == run.name) rd.fail(fmt::format("two [[runs]] are named '{}'", run.name));
      }
      run.sets = rd.overrides(t, fmt::format("[[runs]] '{}'", run.name), {"name"});
      spec.runs.push_back(std::move(run));
    }
  }
  if (const auto* n = root.get("scale")) {
    for (auto&& [s, t] : rd.table(*n, "[scale]")) {
      const std::string scale(s.str());
      spec.scales[scale] = parse_scale(rd, rd.table(t, fmt::format("[scale.{}]", scale)), scale, spec);
    }
  }
  return spec;
}

bool is_axis(const Spec& spec, const std::string& key) {
  return std::any_of(spec.grid.begin(), spec.grid.end(), [&](const Axis& a) { return a.key == key; });
}

// Keys set in two places whose order would be a guess are refused.
void check_conflicts(const Reader& rd, const Spec& spec) {
  auto check_seed = [&](const Override& o) {
    if (spec.seeds && kSeedKeys.count(o.key)) {
      rd.fail(fmt::format("{} sets {}, but `seeds` sets model.seed and train.seed of every run", o.where, o.key));
    }
  };
  for (const auto& o : spec.set) {
    check_seed(o);
    if (is_axis(spec, o.key)) rd.fail(fmt::format("[set] and [grid] both set {}", o.key));
  }
  for (const auto& a : spec.grid) {
    check_seed({a.key, int64_t{0}, "[grid]"});
  }
  for (const auto& r : spec.runs) {
    for (const auto& o : r.sets) {
      check_seed(o);
      if (is_axis(spec, o.key)) rd.fail(fmt::format("{} and [grid] both set {}", o.where, o.key));
    }
  }
  for (const auto& [name, sc] : spec.scales) {
    for (const auto& o : sc.sets) {
      check_seed(o);
      if (is_axis(spec, o.key)) {
        rd.fail(fmt::format("{} sets {}, an axis of [grid]: give its values in [scale.{}.grid]", o.where, o.key, name));
      }
      for (const auto& r : spec.runs) {
        for (const auto& ro : r.sets) {
          if (ro.key == o.key) {
            rd.fail(fmt::format("{} sets {}, which [[runs]] '{}' sets too: give its value in [scale.{}.runs.{}]",
                                o.where, o.key, r.name, name, r.name));
          }
        }
      }
    }
    for (const auto& [run, sets] : sc.runs) {
      for (const auto& o : sets) {
        check_seed(o);
        if (is_axis(spec, o.key)) rd.fail(fmt::format("{} and [grid] both set {}", o.where, o.key));
      }
    }
  }
}

std::string resolve_base(const Reader& rd, const std::string& base) {
  if (base.empty()) return fs::absolute(default_config_path()).lexically_normal().string();
  std::vector<fs::path> tried;
  if (fs::path(base).is_absolute()) tried = {base};
  else tried = {fs::path(rd.file()).parent_path() / base, fs::current_path() / base, fs::path(SOME_SOURCE_DIR) / base};
  for (const auto& p : tried) {
    if (fs::is_regular_file(p)) return fs::absolute(p).lexically_normal().string();
  }
  std::vector<std::string> shown;
  for (const auto& p : tried) {
    auto s = fs::absolute(p).lexically_normal().string();
    if (std::find(shown.begin(), shown.end(), s) == shown.end()) shown.push_back(s);
  }
  rd.fail(fmt::format("base = \"{}\" not found (looked at {})", base, fmt::join(shown, ", ")));
}

// Applies one override the way a config file would (same type and range checks); errors name
// the sweep file and the table it came from.
void apply(Config& cfg, const Override& o, const std::string& file) {
  const auto dot = o.key.find('.');
  if (dot == std::string::npos) {
    throw ConfigError(fmt::format("{}: {}: '{}' is not a config key (section.key, e.g. gravity.alpha)", file, o.where, o.key));
  }
  toml::table section;
  std::visit([&](const auto& v) { section.insert(o.key.substr(dot + 1), v); }, o.value);
  toml::table root;
  root.insert(o.key.substr(0, dot), std::move(section));
  std::ostringstream text;
  text << root;
  apply_text(cfg, text.str(), fmt::format("{}: {}", file, o.where));
}

std::string short_key(const std::string& key, const std::vector<Axis>& axes) {
  auto last = key.substr(key.rfind('.') + 1);
  int same = 0;
  for (const auto& a : axes) same += a.key.substr(a.key.rfind('.') + 1) == last;
  return same > 1 || last == "seed" ? key : last;
}

// The grid's points: the first axis slowest. (P, A) value indices.
std::vector<std::vector<size_t>> grid_points(const std::vector<std::vector<Scalar>>& axes) {
  std::vector<std::vector<size_t>> out{{}};
  for (const auto& values : axes) {
    std::vector<std::vector<size_t>> next;
    for (const auto& p : out) {
      for (size_t i = 0; i < values.size(); ++i) {
        next.push_back(p);
        next.back().push_back(i);
      }
    }
    out = std::move(next);
  }
  return out;
}

// The child's --set list: one entry per key, the last value given, in first-given order.
std::vector<std::string> dedupe(const std::vector<std::pair<std::string, std::string>>& kv) {
  std::vector<std::string> keys;
  std::map<std::string, std::string> last;
  for (const auto& [k, v] : kv) {
    if (!last.count(k)) keys.push_back(k);
    last[k] = v;
  }
  std::vector<std::string> out;
  for (const auto& k : keys) out.push_back(k + "=" + last[k]);
  return out;
}

}  // namespace

std::string to_text(const Scalar& v) {
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, bool>) return x ? "true" : "false";
        else if constexpr (std::is_same_v<T, std::string>) return x;
        else return fmt::format("{}", x);
      },
      v);
}

std::string sanitize(const std::string& name) {
  std::string out = name;
  for (auto& c : out) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) || std::string_view("._,=+-").find(c) != std::string_view::npos;
    if (!ok) c = '_';
  }
  return out;
}

std::string config_value(const Config& cfg, const std::string& key) {
  const auto root = toml::parse(to_toml(cfg));
  const auto node = root.at_path(key);
  if (!node) return "";
  if (node.is_integer()) return std::to_string(*node.value<int64_t>());
  if (node.is_floating_point()) return fmt::format("{}", *node.value<double>());
  if (node.is_boolean()) return *node.value<bool>() ? "true" : "false";
  return node.value_or(std::string());
}

namespace {

// Every value of the file (every scale's too) and of --set, each on its own over the base
// config, so that an error names the table it came from.
void check_each_value(const Reader& rd, const Spec& spec, Config scratch, const std::vector<std::string>& cli_sets) {
  for (const auto& o : spec.set) apply(scratch, o, rd.file());
  for (const auto& r : spec.runs) {
    for (const auto& o : r.sets) apply(scratch, o, rd.file());
  }
  for (const auto& a : spec.grid) {
    for (const auto& v : a.values) apply(scratch, {a.key, v, "[grid]"}, rd.file());
  }
  for (const auto& [name, sc] : spec.scales) {
    for (const auto& o : sc.sets) apply(scratch, o, rd.file());
    for (const auto& [_, sets] : sc.runs) {
      for (const auto& o : sets) apply(scratch, o, rd.file());
    }
    for (const auto& [key, values] : sc.grid) {
      for (const auto& v : values) apply(scratch, {key, v, fmt::format("[scale.{}.grid]", name)}, rd.file());
    }
  }
  for (const auto& s : cli_sets) {
    try {
      apply_override(scratch, s);
    } catch (const ConfigError& e) {
      rd.fail(e.what());
    }
  }
}

// Columns of the summary: the grid's axes, then the keys that [[runs]] entries set.
std::vector<std::string> swept_keys(const Spec& spec, const ScaleSpec& scale) {
  std::vector<std::string> out;
  auto add = [&](const std::string& key) {
    if (std::find(out.begin(), out.end(), key) == out.end()) out.push_back(key);
  };
  for (const auto& a : spec.grid) add(a.key);
  for (const auto& r : spec.runs) {
    for (const auto& o : r.sets) add(o.key);
  }
  for (const auto& [_, sets] : scale.runs) {
    for (const auto& o : sets) add(o.key);
  }
  return out;
}

// A run's config: the base config, its overrides in order, --set; validated (errors name the
// run), and the --set list its child process gets, checked to give the same config.
void resolve(const Reader& rd, const Config& base, const std::string& base_path, const std::vector<Override>& ovs,
             const LoadOptions& opts, Run& run) {
  Config cfg = base;
  for (const auto& o : ovs) apply(cfg, o, rd.file());
  for (const auto& s : opts.cli_sets) apply_override(cfg, s);
  try {
    validate(cfg);
  } catch (const ConfigError& e) {
    rd.fail(fmt::format("run {} '{}': {}", run.index, run.name, e.what()));
  }
  std::vector<std::pair<std::string, std::string>> kv;
  for (const auto& o : ovs) kv.emplace_back(o.key, to_text(o.value));
  for (const auto& s : opts.cli_sets) {
    const auto eq = s.find('=');
    kv.emplace_back(s.substr(0, eq), eq == std::string::npos ? "" : s.substr(eq + 1));
  }
  run.sets = dedupe(kv);
  if (to_toml(load_config(base_path, run.sets)) != to_toml(cfg)) {
    throw Error(fmt::format("{}: run '{}': its --set list does not reproduce the checked config", rd.file(), run.name));
  }
  if (!opts.data_dir.empty()) cfg.data_dir = opts.data_dir;  // as `some train --data`
  run.config = std::move(cfg);
}

}  // namespace

Sweep load_sweep(const std::string& file, const LoadOptions& opts) {
  Reader rd(file);
  if (!fs::is_regular_file(file)) throw ConfigError(fmt::format("sweep file '{}' does not exist", file));
  toml::table root;
  try {
    root = toml::parse_file(file);
  } catch (const toml::parse_error& err) {
    rd.fail(fmt::format("{}:{}: TOML syntax error: {}", err.source().begin.line, err.source().begin.column,
                        err.description()));
  }
  const Spec spec = parse(rd, root);
  check_conflicts(rd, spec);

  Sweep sw;
  sw.file = file;
  sw.name = spec.name;
  sw.description = spec.description;
  sw.base = resolve_base(rd, spec.base);
  sw.scale = opts.scale;
  for (const auto& [s, _] : spec.scales) sw.scales.push_back(s);
  const ScaleSpec none;
  const ScaleSpec* scale = &none;
  if (!opts.scale.empty()) {
    auto it = spec.scales.find(opts.scale);
    if (it == spec.scales.end()) {
      const auto has = sw.scales.empty() ? std::string("none") : fmt::format("{}", fmt::join(sw.scales, ", "));
      rd.fail(fmt::format("--scale {}: the file has no [scale.{}] (it has: {})", opts.scale, opts.scale, has));
    }
    scale = &it->second;
  }
  sw.dir = (fs::path(opts.out) / (opts.scale.empty() ? sw.name : sw.name + "-" + opts.scale)).string();
  Config base;
  apply_file(base, sw.base);
  check_each_value(rd, spec, base, opts.cli_sets);
  sw.swept_keys = swept_keys(spec, *scale);

  // Seeds outermost, then [[runs]], then the grid (first axis slowest).
  const auto seeds = scale->seeds ? scale->seeds : spec.seeds;
  sw.seeded = seeds.has_value();
  std::vector<std::optional<uint64_t>> seed_list;
  if (seeds) seed_list.assign(seeds->begin(), seeds->end());
  else seed_list.push_back(std::nullopt);
  const auto run_list = spec.runs.empty() ? std::vector<RunSpec>{RunSpec{}} : spec.runs;
  std::vector<std::vector<Scalar>> axis_values;
  for (const auto& a : spec.grid) axis_values.push_back(scale->grid.count(a.key) ? scale->grid.at(a.key) : a.values);
  const auto points = grid_points(axis_values);
  std::map<std::string, int> names;
  for (const auto& seed : seed_list) {
    for (const auto& spec_run : run_list) {
      for (const auto& point : points) {
        Run run;
        run.index = static_cast<int>(sw.runs.size());
        run.seed = seed;
        // Overrides in the order they apply: [set] < [scale.S] < [[runs]] < [scale.S.runs.NAME] < grid < seed.
        std::vector<Override> ovs = spec.set;
        ovs.insert(ovs.end(), scale->sets.begin(), scale->sets.end());
        ovs.insert(ovs.end(), spec_run.sets.begin(), spec_run.sets.end());
        if (auto it = scale->runs.find(spec_run.name); it != scale->runs.end()) {
          ovs.insert(ovs.end(), it->second.begin(), it->second.end());
        }
        std::vector<std::string> parts;  // of the run's name
        if (!spec_run.name.empty()) parts.push_back(spec_run.name);
        for (size_t a = 0; a < point.size(); ++a) {
          const auto& v = axis_values[a][point[a]];
          ovs.push_back({spec.grid[a].key, v, "[grid]"});
          parts.push_back(short_key(spec.grid[a].key, spec.grid) + "=" + to_text(v));
        }
        run.group = parts.empty() ? "base" : fmt::format("{}", fmt::join(parts, ","));
        if (seed) {
          for (const auto& k : kSeedKeys) ovs.push_back({k, static_cast<int64_t>(*seed), "seeds"});
          parts.push_back(fmt::format("seed={}", *seed));
        }
        run.name = sanitize(parts.empty() ? "base" : fmt::format("{}", fmt::join(parts, ",")));
        if (run.name.front() == '.') run.name.front() = '_';
        if (run.name.size() > 200) rd.fail(fmt::format("run name '{}' is longer than 200 characters", run.name));
        if (auto [it, fresh] = names.emplace(run.name, run.index); !fresh) {
          rd.fail(fmt::format("runs {} and {} get the same directory name '{}'", it->second, run.index, run.name));
        }
        run.dir = (fs::path(sw.dir) / run.name).string();
        resolve(rd, base, sw.base, ovs, opts, run);
        sw.runs.push_back(std::move(run));
      }
    }
  }
  // The sets that every run has, in the first run's order.
  for (const auto& s : sw.runs.front().sets) {
    if (std::all_of(sw.runs.begin(), sw.runs.end(), [&](const Run& r) {
          return std::find(r.sets.begin(), r.sets.end(), s) != r.sets.end();
        })) {
      sw.common_sets.push_back(s);
    }
  }
  return sw;
}

}  // namespace some::launcher::sweep
