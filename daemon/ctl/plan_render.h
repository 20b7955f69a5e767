// meshctl plan output: the JSON form scripts read, and a human form with tables and the placement
// lint.
//
// JSON: {"steps":[R,...]}, one R per step that ran. A success is
//   {"op","mesh","ndim","shape","names","groups","coordinate","local_rank","view"}
// where the last three hold one entry per rank of the world (or of `ranks`, when given). A failure
// is
//   {"op","error":{"code":"INVALID_ARGUMENT","message":"..."}}.
//
// Thread-safety: pure functions.
#ifndef MESHD_DAEMON_CTL_PLAN_RENDER_H_
#define MESHD_DAEMON_CTL_PLAN_RENDER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "daemon/ctl/plan_script.h"
#include "nlohmann/json.hpp"

namespace meshd::ctl {

struct RenderOptions {
  int64_t world_size = 1;
  // Ranks whose coordinate / local rank / view are reported; empty = every rank of the world.
  std::vector<int64_t> ranks;
  // Hosts of this many GPUs (rank = host * G + local): adds the placement lint to the human form.
  std::optional<int64_t> gpus_per_node;
};

// Errors: INVALID_ARGUMENT when the output would hold more than `max_values` numbers (every group
// of every step, and a view per reported rank of a large world); the message says to pass --ranks.
absl::StatusOr<nlohmann::ordered_json> PlanToJson(const std::vector<StepOutcome>& outcomes,
                                                  const RenderOptions& options,
                                                  int64_t max_values = 50'000'000);

// Tables, the first groups of each dim (computed alone, not the dim's whole table) and, with
// gpus_per_node, the placement lint (which walks every group: at most 2^27 members for the whole
// plan, and a line saying so past it).
std::string PlanToText(const std::vector<StepOutcome>& outcomes, const RenderOptions& options);

// "[0..7]", "[0,8,..,56]" or "[3,1,2,0]": a compact, exact rendering of a rank list.
std::string FormatRanks(const std::vector<int64_t>& ranks);

// The canonical status code name, e.g. "INVALID_ARGUMENT".
std::string CodeName(const absl::Status& status);

}  // namespace meshd::ctl

#endif  // MESHD_DAEMON_CTL_PLAN_RENDER_H_
