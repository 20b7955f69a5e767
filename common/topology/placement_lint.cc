// Placement lint (see placement_lint.h).
#include "common/topology/placement_lint.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace meshd::topology {
namespace {

// Dims that by convention carry tensor or sequence parallelism: collectives on every layer, on the
// critical path. Compound names (a flattened "dp_tp" used for sharding) are meant to span hosts.
bool IsLatencyCritical(const std::string& label) {
  const std::string l = absl::AsciiStrToLower(label);
  return l == "tp" || l == "sp" || l == "tensor" || l == "tensor_parallel" ||
         l == "sequence_parallel";
}

}  // namespace

std::string PlacementName(Placement p) {
  switch (p) {
    case Placement::kIntraHost:
      return "intra-host";
    case Placement::kCrossHost:
      return "cross-host";
    case Placement::kMixed:
      return "mixed";
  }
  return "unknown";
}

absl::StatusOr<std::vector<DimPlacement>> LintPlacement(const layout::DeviceMesh& mesh,
                                                        int64_t gpus_per_node) {
  if (gpus_per_node < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("gpus per node must be at least 1, got ", gpus_per_node));
  }
  std::vector<DimPlacement> out;
  std::vector<int64_t> hosts;
  for (int d = 0; d < mesh.ndim(); ++d) {
    const layout::GroupTable groups = mesh.Groups(d);
    DimPlacement p;
    p.dim = d;
    p.label = mesh.DimLabel(d);
    p.group_size = groups.group_size;
    p.min_hosts = INT64_MAX;
    p.max_hosts = 0;
    for (int64_t g = 0; g < groups.num_groups(); ++g) {
      hosts.clear();
      for (int64_t r : groups.row(g)) hosts.push_back(r / gpus_per_node);
      std::sort(hosts.begin(), hosts.end());
      const int64_t distinct = std::unique(hosts.begin(), hosts.end()) - hosts.begin();
      p.min_hosts = std::min(p.min_hosts, distinct);
      p.max_hosts = std::max(p.max_hosts, distinct);
    }
    p.placement = p.max_hosts == 1  ? Placement::kIntraHost
                  : p.min_hosts > 1 ? Placement::kCrossHost
                                    : Placement::kMixed;
    if (p.placement != Placement::kIntraHost && IsLatencyCritical(p.label)) {
      p.warning = absl::StrCat(p.label, " groups span up to ", p.max_hosts,
                               " hosts: its collectives run every layer and "
                               "would leave NVLink for the network; make ",
                               p.label, " the innermost dim and at most ", gpus_per_node,
                               " (the GPUs of one host)");
    } else if (p.placement == Placement::kMixed) {
      p.warning =
          absl::StrCat("some ", p.label,
                       " groups straddle a host boundary while others do "
                       "not, so its collectives run at uneven speeds; align the inner dims' "
                       "product with ",
                       gpus_per_node, " GPUs per host");
    }
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace meshd::topology
