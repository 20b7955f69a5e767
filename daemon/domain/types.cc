// Names of the domain types' values (see types.h).
#include "daemon/domain/types.h"

namespace meshd::domain {

std::string EndReasonName(EndReason r) {
  switch (r) {
    case EndReason::kNodeLost:
      return "node lost";
    case EndReason::kNodeRestarted:
      return "node restarted";
    case EndReason::kNodeJoining:
      return "node joining";
    case EndReason::kNodeLeft:
      return "node left";
    case EndReason::kShutdown:
      return "coordinator shutting down";
    case EndReason::kNodeDrained:
      return "node drained";
    case EndReason::kJobEnded:
      return "job ended";
    case EndReason::kJobFinished:
      return "job finished";
    case EndReason::kMeshMismatch:
      return "mesh mismatch";
  }
  return "unknown";
}

}  // namespace meshd::domain
