// meshctl plan: runs a script of DeviceMesh steps (the mesh maths with no cluster).
//
// A script is a JSON array; each step builds or derives a mesh, and `on`/`of` refer to earlier
// steps:
//   {"op":"init_device_mesh","shape":[2,4],"names":["dp","tp"]}       names may be null or absent
//   {"op":"device_mesh","mesh":[[0,2],[1,3]],"names":["a","b"]}       an explicit rank table (any
//                                                                      order, any subset)
//   {"op":"from_group","groups":[[0,1],[0,2]],"mesh":[[0,2],[1,3]],"names":["a","b"],"rank":0}
//        DeviceMesh.from_group: one group alone makes the 1-D mesh over it; "mesh", "names" and
//        "rank" (whose groups these are: then they are checked) may be absent
//   {"op":"slice","on":0,"names":["tp"]}
//   {"op":"flatten","on":0,"name":"dp_tp"}                             name may be null or absent
//   {"op":"unflatten","on":0,"dim":1,"sizes":[2,2],"names":["x","y"]}  dim: index or name
//   {"op":"concatenate","of":[1,2]}
// Running stops after the first failing step (a malformed step fails like an invalid one).
//
// Limits, each checked before what it bounds is built (INVALID_ARGUMENT naming it): a script of at
// most kMaxScriptBytes, nested at most kMaxScriptDepth deep, of at most kMaxPlanSteps steps; at
// most kMaxMeshDims entries in a shape, sizes, names, groups or of list, and dims in a rank table;
// at most the world's ranks in a rank table or a group.
//
// Thread-safety: pure functions.
#ifndef MESHD_DAEMON_CTL_PLAN_SCRIPT_H_
#define MESHD_DAEMON_CTL_PLAN_SCRIPT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/layout/device_mesh.h"
#include "nlohmann/json.hpp"

namespace meshd::ctl {

inline constexpr size_t kMaxScriptBytes = size_t{16} << 20;
inline constexpr int kMaxScriptDepth = layout::kMaxMeshDims + 4;
inline constexpr size_t kMaxPlanSteps = 1024;

struct StepOutcome {
  std::string op;  // as written in the script ("" when the step had none)
  absl::StatusOr<layout::DeviceMesh> mesh;
};

// Parses a script. Errors: INVALID_ARGUMENT when the text is not JSON or not an array (the
// message quotes the parser's position), or is past a limit above (checked before parsing).
absl::StatusOr<nlohmann::json> ParsePlanScript(absl::string_view text);

// A nested JSON list of ranks ([[0,2],[1,3]]) as a row-major rank table. Errors (INVALID_ARGUMENT,
// naming the spot as mesh[1][0]): not a list, ragged, empty, a non-integer, more than
// kMaxMeshDims levels, or more than `max_ranks` ranks (checked while reading, before storing more).
absl::StatusOr<layout::RankTensor> ParseRankTable(const nlohmann::json& table, int64_t max_ranks);

// Runs `steps` over a world of `world_size` ranks; one outcome per step up to and including the
// first failure.
std::vector<StepOutcome> RunPlan(const nlohmann::json& steps, int64_t world_size);

// One init_device_mesh step, for the --shape/--names shorthand. Names may be empty (unnamed dims).
nlohmann::json InitStep(const std::vector<int64_t>& shape, const std::vector<std::string>& names);
// One device_mesh step, for the --mesh/--names shorthand.
nlohmann::json TableStep(const nlohmann::json& table, const std::vector<std::string>& names);

}  // namespace meshd::ctl

#endif  // MESHD_DAEMON_CTL_PLAN_SCRIPT_H_
