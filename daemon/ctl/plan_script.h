// meshctl plan: runs a script of DeviceMesh steps (the mesh maths with no cluster).
//
// A script is a JSON array; each step builds or derives a mesh, and `on`/`of` refer to earlier
// steps:
//   {"op":"init_device_mesh","shape":[2,4],"names":["dp","tp"]}       names may be null or absent
//   {"op":"device_mesh","mesh":[[0,2],[1,3]],"names":["a","b"]}       an explicit rank table
//   {"op":"slice","on":0,"names":["tp"]}
//   {"op":"flatten","on":0,"name":"dp_tp"}                             name may be null or absent
//   {"op":"unflatten","on":0,"dim":1,"sizes":[2,2],"names":["x","y"]}  dim: index or name
//   {"op":"concatenate","of":[1,2]}
// Running stops after the first failing step (a malformed step fails like an invalid one).
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

struct StepOutcome {
  std::string op;  // as written in the script ("" when the step had none)
  absl::StatusOr<layout::DeviceMesh> mesh;
};

// Parses a script. Errors: INVALID_ARGUMENT when the text is not JSON or not an array of objects
// (the message quotes the parser's position).
absl::StatusOr<nlohmann::json> ParsePlanScript(absl::string_view text);

// Runs `steps` over a world of `world_size` ranks; one outcome per step up to and including the
// first failure.
std::vector<StepOutcome> RunPlan(const nlohmann::json& steps, int64_t world_size);

// One init_device_mesh step, for the --shape/--names shorthand. Names may be empty (unnamed dims).
nlohmann::json InitStep(const std::vector<int64_t>& shape, const std::vector<std::string>& names);

}  // namespace meshd::ctl

#endif  // MESHD_DAEMON_CTL_PLAN_SCRIPT_H_
