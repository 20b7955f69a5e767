// Fuzzer for meshctl plan's script path: ParsePlanScript, RunPlan and both renderings, as
// `meshctl plan --world W --script FILE [--json] [--gpus-per-node G]` runs them. The first two
// bytes choose the world (1-4096 ranks, so one input runs in milliseconds), the third the
// rendering options; the rest is the script. Any crash, sanitizer report or exception is a bug.
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "daemon/ctl/plan_render.h"
#include "daemon/ctl/plan_script.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const int64_t world = 1 + ((data[0] << 8 | data[1]) % 4096);
  const uint8_t flags = data[2];
  const absl::string_view text(reinterpret_cast<const char*>(data + 3), size - 3);

  absl::StatusOr<nlohmann::json> steps = meshd::ctl::ParsePlanScript(text);
  if (!steps.ok()) return 0;
  const std::vector<meshd::ctl::StepOutcome> outcomes = meshd::ctl::RunPlan(*steps, world);
  meshd::ctl::RenderOptions options;
  options.world_size = world;
  if (flags & 1) options.ranks = {0, world - 1};
  if (flags & 2) options.gpus_per_node = 1 + (flags >> 2) % 16;
  if (flags & 0x80) {
    (void)meshd::ctl::PlanToText(outcomes, options);
  } else {
    absl::StatusOr<nlohmann::ordered_json> json = meshd::ctl::PlanToJson(outcomes, options);
    if (json.ok()) (void)json->dump();
  }
  return 0;
}
