// Names of the coordinator's events (see types.h).
#include "daemon/coordinator/types.h"

namespace meshd::coordinator {

const char* EventKindName(EventKind kind) {
  switch (kind) {
    case EventKind::kNodeRegistered:
      return "node_registered";
    case EventKind::kNodeRestarted:
      return "node_restarted";
    case EventKind::kNodeBack:
      return "node_back";
    case EventKind::kNodeLost:
      return "node_lost";
    case EventKind::kJobCreated:
      return "job_created";
    case EventKind::kNodeJoined:
      return "node_joined";
    case EventKind::kNodeStandby:
      return "node_standby";
    case EventKind::kGenerationStarted:
      return "generation_started";
    case EventKind::kGenerationEnded:
      return "generation_ended";
    case EventKind::kJobRecovering:
      return "job_recovering";
    case EventKind::kGenerationRecovered:
      return "generation_recovered";
    case EventKind::kRecoveryRefused:
      return "recovery_refused";
    case EventKind::kNodeLeft:
      return "node_left";
    case EventKind::kNodeExpired:
      return "node_expired";
    case EventKind::kJobExpired:
      return "job_expired";
    case EventKind::kRoundTimedOut:
      return "round_timed_out";
    case EventKind::kNodeCordoned:
      return "node_cordoned";
    case EventKind::kNodeUncordoned:
      return "node_uncordoned";
    case EventKind::kNodeDrained:
      return "node_drained";
    case EventKind::kNodeForgotten:
      return "node_forgotten";
    case EventKind::kJobEnded:
      return "job_ended";
  }
  return "unknown";
}

}  // namespace meshd::coordinator
