#pragma once
// A small prepared dataset shared by the training tests: a generated corpus with real
// structure (a tiny grammar), tokenized by `some prepare`'s own code path.
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "data/dataset.h"
#include "data/prepare.h"

namespace some::test {

inline std::string tiny_dataset_dir() {
  static const std::string dir = [] {
    namespace fs = std::filesystem;
    auto root = fs::temp_directory_path() / ("some-tiny-dataset-" + std::to_string(::getpid()));
    fs::create_directories(root / "corpus");
    std::ofstream out(root / "corpus" / "text.txt");
    const char* who[] = {"the king", "a shepherd", "the prophet", "his servant", "the people", "a woman"};
    const char* did[] = {"went up to", "spoke unto", "came down from", "looked upon", "gave bread to"};
    const char* what[] = {"the city", "the mountain", "the temple", "the river", "the field", "the house"};
    std::mt19937 rng(7);
    for (int doc = 0; doc < 400; ++doc) {
      for (int s = 0; s < 6; ++s) {
        out << who[rng() % 6] << " " << did[rng() % 5] << " " << what[rng() % 6] << ". ";
      }
      out << "\n\n";
    }
    out.close();
    data::PrepareOptions opts;
    opts.inputs = {(root / "corpus").string()};
    opts.out_dir = (root / "data").string();
    opts.vocab_size = 320;
    opts.val_fraction = 0.05;
    data::prepare_dataset(opts);
    return opts.out_dir;
  }();
  return dir;
}

}  // namespace some::test
