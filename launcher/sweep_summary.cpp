// A sweep's results: each run's metrics.jsonl read back (last eval, done line) into
// summary.csv (every value at full precision) and summary.md (rounded, plus mean ± std over
// seeds for each setting of the swept keys).
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/errors.h"
#include "common/progress.h"
#include "launcher/sweep.h"

namespace fs = std::filesystem;

namespace some::launcher::sweep {
namespace {

std::optional<double> number(const nlohmann::json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number()) return std::nullopt;
  return j[key].get<double>();
}

// Mean of one field over the SoME layers of an eval line's "routing" list.
std::optional<double> layer_mean(const nlohmann::json& eval, const char* key) {
  if (!eval.is_object() || !eval.contains("routing") || !eval["routing"].is_array() || eval["routing"].empty()) {
    return std::nullopt;
  }
  double sum = 0;
  for (const auto& layer : eval["routing"]) {
    auto v = number(layer, key);
    if (!v) return std::nullopt;
    sum += *v;
  }
  return sum / static_cast<double>(eval["routing"].size());
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string full(const std::optional<double>& v) { return v ? fmt::format("{}", *v) : ""; }

std::string md_cell(std::string s) {
  for (size_t i = 0; (i = s.find('|', i)) != std::string::npos; i += 2) s.replace(i, 1, "\\|");
  return s;
}

std::string rounded(const std::optional<double>& v, int digits) {
  return v ? fmt::format("{:.{}f}", *v, digits) : "–";
}

// Writes through a temporary file and a rename: a reader never sees half a summary.
void write_file(const std::string& path, const std::string& text) {
  const auto tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    if (!out.flush()) throw DataError(fmt::format("cannot write '{}'", tmp));
  }
  fs::rename(tmp, path);
}

struct Stat {
  std::vector<double> xs;
  std::string show(int digits) const {
    if (xs.empty()) return "–";
    double mean = 0;
    for (double x : xs) mean += x;
    mean /= static_cast<double>(xs.size());
    if (xs.size() < 2) return fmt::format("{:.{}f}", mean, digits);
    double ss = 0;
    for (double x : xs) ss += (x - mean) * (x - mean);
    return fmt::format("{:.{}f} ± {:.{}f}", mean, digits, std::sqrt(ss / static_cast<double>(xs.size() - 1)), digits);
  }
};

std::string csv_text(const Sweep& sw, const std::vector<RunResult>& results) {
  std::ostringstream out;
  out << "run";
  for (const auto& k : sw.swept_keys) out << "," << csv_field(k);
  out << ",seed,status,steps,val_ppl,unigram_ppl,gini,entropy_norm,dead_experts,tokens_per_s,wall_s\n";
  for (size_t i = 0; i < sw.runs.size(); ++i) {
    const auto& run = sw.runs[i];
    const auto& r = results[i];
    out << csv_field(run.name);
    for (const auto& k : sw.swept_keys) out << "," << csv_field(config_value(run.config, k));
    out << "," << (run.seed ? std::to_string(*run.seed) : "") << "," << to_string(r.status) << "," << r.steps << ","
        << full(r.val_ppl) << "," << full(r.unigram_ppl) << "," << full(r.gini) << "," << full(r.entropy_norm) << ","
        << full(r.dead_experts) << "," << full(r.tokens_per_s) << "," << full(r.wall_s) << "\n";
  }
  return out.str();
}

std::string markdown_text(const Sweep& sw, const std::vector<RunResult>& results) {
  std::ostringstream out;
  std::map<Status, int> count;
  int best = -1;
  for (size_t i = 0; i < results.size(); ++i) {
    ++count[results[i].status];
    if (results[i].status == Status::Done && results[i].val_ppl &&
        (best < 0 || *results[i].val_ppl < *results[best].val_ppl)) {
      best = static_cast<int>(i);
    }
  }
  out << fmt::format("# Sweep `{}`\n\n", sw.name);
  if (!sw.description.empty()) out << sw.description << "\n\n";
  out << fmt::format("- sweep file `{}`, base config `{}`, {}\n", sw.file, sw.base,
                     sw.scale.empty() ? "full size" : fmt::format("scale `{}`", sw.scale));
  out << fmt::format("- {} runs: {} done, {} failed, {} missing{}; run directories in `{}`\n", results.size(),
                     count[Status::Done], count[Status::Failed], count[Status::Missing],
                     count[Status::Stale] ? fmt::format(", {} stale (a run of another config)", count[Status::Stale]) : "",
                     sw.dir);
  if (best >= 0) out << fmt::format("- lowest val PPL: `{}` ({:.3f})\n", sw.runs[best].name, *results[best].val_ppl);
  out << "\nval PPL, unigram PPL and routing from each run's last eval; Gini, normalised entropy and dead experts "
         "are means over the SoME layers; tokens/s and wall time from the run's done line.\n\n## Runs\n\n| run |";
  for (const auto& k : sw.swept_keys) out << " `" << k << "` |";
  out << " seed | status | steps | val PPL | unigram PPL | Gini | entropy | dead | tokens/s | wall |\n|---|";
  for (size_t k = 0; k < sw.swept_keys.size(); ++k) out << "---|";
  out << "---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (size_t i = 0; i < sw.runs.size(); ++i) {
    const auto& run = sw.runs[i];
    const auto& r = results[i];
    out << "| " << md_cell(run.name) << " |";
    for (const auto& k : sw.swept_keys) out << " " << md_cell(config_value(run.config, k)) << " |";
    out << fmt::format(" {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", run.seed ? std::to_string(*run.seed) : "",
                       to_string(r.status), r.steps, rounded(r.val_ppl, 3), rounded(r.unigram_ppl, 3),
                       rounded(r.gini, 3), rounded(r.entropy_norm, 3), rounded(r.dead_experts, 1),
                       rounded(r.tokens_per_s, 0), r.wall_s ? format_duration(*r.wall_s) : "–");
  }
  // Several seeds: one row per setting of the swept keys, over its finished runs.
  std::vector<std::string> groups;
  std::map<std::string, std::vector<size_t>> members;
  for (size_t i = 0; i < sw.runs.size(); ++i) {
    if (!members.count(sw.runs[i].group)) groups.push_back(sw.runs[i].group);
    members[sw.runs[i].group].push_back(i);
  }
  if (sw.seeded && groups.size() < sw.runs.size()) {
    out << "\n## Mean ± std over seeds\n\nFinished runs only; std is the sample standard deviation.\n\n| setting |";
    for (const auto& k : sw.swept_keys) out << " `" << k << "` |";
    out << " done | val PPL | Gini | entropy | dead | tokens/s |\n|---|";
    for (size_t k = 0; k < sw.swept_keys.size(); ++k) out << "---|";
    out << "---:|---:|---:|---:|---:|---:|\n";
    for (const auto& g : groups) {
      Stat ppl, gini, ent, dead, tps;
      int done = 0;
      for (size_t i : members[g]) {
        const auto& r = results[i];
        if (r.status != Status::Done) continue;
        ++done;
        for (auto [stat, v] : {std::pair{&ppl, r.val_ppl}, {&gini, r.gini}, {&ent, r.entropy_norm},
                               {&dead, r.dead_experts}, {&tps, r.tokens_per_s}}) {
          if (v) stat->xs.push_back(*v);
        }
      }
      out << "| " << md_cell(g) << " |";
      for (const auto& k : sw.swept_keys) out << " " << md_cell(config_value(sw.runs[members[g][0]].config, k)) << " |";
      out << fmt::format(" {}/{} | {} | {} | {} | {} | {} |\n", done, members[g].size(), ppl.show(3), gini.show(3),
                         ent.show(3), dead.show(1), tps.show(0));
    }
  }
  return out.str();
}

}  // namespace

std::string to_string(Status s) {
  switch (s) {
    case Status::Done: return "done";
    case Status::Failed: return "failed";
    case Status::Stale: return "stale";
    default: return "missing";
  }
}

RunResult read_run(const std::string& run_dir) {
  RunResult r;
  std::ifstream in(run_dir + "/metrics.jsonl");
  if (!in) return r;
  r.status = Status::Failed;
  nlohmann::json last, last_eval, last_timed;
  std::string line;
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) continue;  // a line cut short by a crash
    last = j;
    if (j.value("event", "") == "eval") last_eval = j;
    if (number(j, "tokens_per_s") && number(j, "elapsed_s")) last_timed = j;
    if (auto step = number(j, "step")) r.steps = std::max(r.steps, static_cast<int64_t>(*step));
  }
  if (last.is_object()) r.last_event = last.value("event", "");
  if (r.last_event == "done") r.status = Status::Done;
  r.val_ppl = number(last_eval, "val_ppl");
  r.unigram_ppl = number(last_eval, "unigram_ppl");
  r.gini = layer_mean(last_eval, "gini");
  r.entropy_norm = layer_mean(last_eval, "entropy_norm");
  r.dead_experts = layer_mean(last_eval, "dead_experts");
  r.tokens_per_s = number(last_timed, "tokens_per_s");
  r.wall_s = number(last_timed, "elapsed_s");
  return r;
}

bool run_done(const std::string& run_dir) { return read_run(run_dir).status == Status::Done; }

std::vector<std::string> changed_keys(const Run& run) {
  auto parse = [](std::istream& in) {
    std::map<std::string, std::string> kv;  // section.key -> value as written by to_toml
    std::string section;
    for (std::string l; std::getline(in, l);) {
      if (l.starts_with("[")) section = l.substr(1, l.find(']') - 1);
      else if (auto eq = l.find(" = "); eq != std::string::npos) kv[section + "." + l.substr(0, eq)] = l.substr(eq + 3);
    }
    return kv;
  };
  std::ifstream file(run.dir + "/config.toml");
  if (!file) return {};
  std::istringstream mine(to_toml(run.config));
  auto old = parse(file), now = parse(mine);
  std::vector<std::string> out;
  for (const auto& [k, v] : now) {
    if (k == "train.threads" || (old.count(k) && old[k] == v)) continue;
    out.push_back(fmt::format("{} ({} -> {})", k, old.count(k) ? old[k] : "absent", v));
  }
  return out;
}

std::vector<RunResult> write_summary(const Sweep& sw) {
  std::vector<RunResult> results;
  for (const auto& run : sw.runs) {
    results.push_back(read_run(run.dir));
    if (results.back().status != Status::Missing && !changed_keys(run).empty()) results.back().status = Status::Stale;
  }
  fs::create_directories(sw.dir);
  write_file(sw.dir + "/summary.csv", csv_text(sw, results));
  write_file(sw.dir + "/summary.md", markdown_text(sw, results));
  return results;
}

}  // namespace some::launcher::sweep
