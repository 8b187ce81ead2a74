#pragma once
// A new run's weights from another run's checkpoint (docs/design.md §2): model.init_from,
// model.init_parts, model.init_units, model.init_optimizer — and model.experts_from, which is
// the special case init_parts = ffn, init_units = first.
//
// Every tensor of the chosen parts whose global name and shape fit is copied. A wider dense FFN
// gives a narrower dense FFN its chosen units, and a routed layer its expert library (expert i =
// unit group i; src/model/ffn_units.h). Tensors the source lacks keep their initialisation. A
// tensor the source has in another shape that no unit rule bridges is a ConfigError listing
// every such name with both shapes — raised by plan_init, before the run directory exists. The
// checkpoint may come from any W and P, the model may be sharded over any P: tensors are read by
// global name, and each rank fills only the experts it holds.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "launcher/config.h"
#include "src/model/transformer.h"

namespace some::parallel {
class Communicator;
}
namespace some::checkpoints {
class CheckpointReader;
}

namespace some::launcher {

// Where one tensor of the model comes from: `source` whole, or its entries `units` along `axis`.
struct InitRecipe {
  std::string source;
  int64_t axis = -1;     // -1: the whole tensor
  torch::Tensor units;   // int64 indices along `axis`
};

struct InitPlan {
  std::string checkpoint;                     // the resolved step_* directory
  std::map<std::string, InitRecipe> recipes;  // this rank's model tensor -> where it comes from
  std::vector<std::string> kept;              // tensors of the chosen parts the source lacks
  std::string library;                        // how an expert library was cut, for the log ("" = none)
  int64_t source_step = 0;
  bool optimizer = false;                     // model.init_optimizer
  std::string summary() const;                // one log line
  std::shared_ptr<checkpoints::CheckpointReader> reader_;  // opened (and verified) once
};

// The plan for `model` (this rank's tensors): what model.init_from (or model.experts_from) gives
// each of them. ConfigError naming the key, the checkpoint and every tensor that does not fit.
// Collective over `comm` when given (shared verification; the unit groups of `cluster` are
// rank 0's, broadcast). Returns nothing to do when neither option is set.
InitPlan plan_init(model::Transformer& model, const Config& cfg, parallel::Communicator* comm);
// Copies the planned tensors into the model, in place, and logs what was done.
void apply_init(model::Transformer& model, const InitPlan& plan);
// model.init_optimizer: the AdamW state the plan gives the model's trainable tensors, by the
// checkpoint's names (optim.exp_avg.<name>, optim.exp_avg_sq.<name>, optim.step.<name>): the
// source's moments cut like the weights (zeros where the source tensor had none), its step.
std::map<std::string, torch::Tensor> init_optimizer_state(model::Transformer& model, const InitPlan& plan);

}  // namespace some::launcher
