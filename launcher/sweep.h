#pragma once
// `some sweep`: a sweep file (TOML, experiments/README.md) expanded into runs, each a config
// resolved and validated up front, and the summary of their metrics.jsonl files.
//
// A run's config: base file < [set] < [scale.S] < its [[runs]] entry < [scale.S.runs.NAME] <
// its [grid] point (values of [scale.S.grid] where given) < seed (model.seed = train.seed) <
// the command line's --set. Order of runs: seeds outermost, then [[runs]] in file order, then
// the grid's cartesian product (the first axis of the file slowest).
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "launcher/config.h"

namespace some::launcher::sweep {

using Scalar = std::variant<int64_t, double, bool, std::string>;

struct Override {
  std::string key;    // section.key
  Scalar value;
  std::string where;  // where it was set, for errors: "[grid]", "[scale.small]", "--set"
};

struct Run {
  int index = 0;
  std::string name;   // "alpha=0.01,beta=0.002,seed=1": readable, safe as a directory name
  std::string group;  // the name without its seed: runs that differ only in the seed
  std::optional<uint64_t> seed;
  std::vector<std::string> sets;  // what the child gets: --set key=value, one per key
  Config config;                  // resolved: base file + sets, validated
  std::string dir;                // SWEEP_DIR/name
};

struct Sweep {
  std::string file;         // the sweep file as given
  std::string name;
  std::string description;
  std::string base;         // the base config file, resolved to an existing path
  std::string scale;        // "" or the [scale.*] applied
  std::vector<std::string> scales;      // every [scale.*] of the file
  std::vector<std::string> swept_keys;  // grid axes, then keys that [[runs]] set: summary columns
  bool seeded = false;      // the file has `seeds`
  std::vector<std::string> common_sets;  // the sets every run has ([set], [scale.S], --set)
  std::vector<Run> runs;
  std::string dir;          // OUT/name, or OUT/name-scale with a scale
};

struct LoadOptions {
  std::string scale;                   // "" = full size
  std::vector<std::string> cli_sets;   // --set key=value for every run
  std::string data_dir;                // --data (empty: the config's data.dir)
  std::string out = "runs/sweeps";
};

// Reads, expands and validates a sweep file. Any problem is a ConfigError naming the file and
// the key (and the run, for cross-key checks).
Sweep load_sweep(const std::string& file, const LoadOptions& opts);

// "0.01", "1e-05", "true", "mlp": how a value appears in run names and --set.
std::string to_text(const Scalar& v);
// Any character outside [A-Za-z0-9._,=+-] becomes '_'.
std::string sanitize(const std::string& name);
// A key's value in a resolved config, as text ("0.01", "mlp"); "" when there is no such key.
std::string config_value(const Config& cfg, const std::string& key);

// ---- state of a run directory and the summary -------------------------------------------------
// stale: the directory holds a run of another config (RUN/config.toml differs).
enum class Status { Done, Failed, Missing, Stale };
std::string to_string(Status s);

struct RunResult {
  Status status = Status::Missing;
  std::string last_event;  // "event" of the last line ("done", "preempted", ...; "" for a step line)
  int64_t steps = 0;
  std::optional<double> val_ppl, unigram_ppl;  // the last eval line
  std::optional<double> gini, entropy_norm, dead_experts;  // means over SoME layers, last eval
  std::optional<double> tokens_per_s, wall_s;  // the done line (else the last line that has them)
};
// Reads RUN/metrics.jsonl (Missing when absent; Done when its last line is the "done" event).
RunResult read_run(const std::string& run_dir);
bool run_done(const std::string& run_dir);
// Keys whose value in RUN/config.toml differs from the run's resolved config, as
// "key (old -> new)" (train.threads aside: where a run trains does not change what it is).
// Empty: the same run, or none there yet.
std::vector<std::string> changed_keys(const Run& run);

// Writes SWEEP_DIR/summary.csv and summary.md (each through a temporary file and a rename).
// Returns the results in run order.
std::vector<RunResult> write_summary(const Sweep& sweep);

}  // namespace some::launcher::sweep
