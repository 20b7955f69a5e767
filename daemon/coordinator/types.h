// The coordinator core's events (state transitions, for logs and metrics). The domain types it
// speaks (inventories, assignments, generation ends, group requests, status views) are
// daemon/domain's, named here so that the core uses them unqualified.
#ifndef MESHD_DAEMON_COORDINATOR_TYPES_H_
#define MESHD_DAEMON_COORDINATOR_TYPES_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "daemon/domain/caller.h"
#include "daemon/domain/kv_ops.h"
#include "daemon/domain/types.h"
#include "daemon/domain/views.h"

namespace meshd::coordinator {

using domain::Gpu;
using domain::NodeInventory;
using domain::NodeCount;
using domain::RunningJob;
using domain::JoinRequest;
using domain::Member;
using domain::Assignment;
using domain::EndReason;
using domain::GenerationEnd;
using domain::RankSpec;
using domain::GroupRequest;
using domain::GroupIds;
using domain::SharedGroupIds;
using domain::JobPhase;
using domain::JobView;
using domain::NodeView;
using domain::WaiterCounts;
using domain::Counters;
using domain::StatusView;
using domain::JoinDone;
using domain::GroupsDone;
using domain::WatchDone;
using domain::StatusDone;
using domain::BytesDone;
using domain::EndReasonName;
using domain::Caller;
using domain::KvOp;
using domain::KvOpResult;
using domain::BatchDone;
using domain::kMaxBatchOps;
using domain::kMaxBatchAnswerBytes;

enum class EventKind {
  kNodeRegistered,
  kNodeRestarted,
  kNodeBack,  // re-registered after it was declared dead
  kNodeLost,  // heartbeat timeout
  kJobCreated,
  kNodeJoined,   // joined a job's open round
  kNodeStandby,  // waits for the next round of an elastic job at its max
  kGenerationStarted,
  kGenerationEnded,
  kJobRecovering,        // a node reported a generation this (restarted) coordinator did not know
  kGenerationRecovered,  // every node of it did: it runs again
  kRecoveryRefused,      // a report without the coordinator's membership token, ignored
  kNodeLeft,             // its agent stopped cleanly (LeaveNode)
  kNodeExpired,          // dead or departed for longer than the retention: removed
  kJobExpired,           // no node in its round for longer than the retention: removed
  kRoundTimedOut,        // a round open longer than the round timeout: its joiners refused
  // An operator's verbs (meshd.v1.Admin); Event::by names who.
  kNodeCordoned,
  kNodeUncordoned,
  kNodeDrained,
  kNodeForgotten,
  kJobEnded,
};
// "node_registered", ...: the name logs and metrics use.
const char* EventKindName(EventKind kind);

// A state transition, for logs and metrics (delivered outside the core's lock).
struct Event {
  EventKind kind = EventKind::kNodeRegistered;
  std::string what;  // a sentence
  std::string job;   // "" when not about a job
  std::string node;  // "" when not about a node
  uint64_t generation = 0;
  // kGenerationStarted: how long the job had no running generation (round open to close).
  absl::Duration rendezvous;
  // kGenerationEnded: why.
  EndReason reason = EndReason::kNodeLost;
  // An operator's verb: the caller's identity (Caller::identity).
  std::string by;
};

using EventSink = std::function<void(const Event&)>;

// Whether two secrets (a node's secret, a membership token) are equal and not empty, compared
// without stopping at the first difference, so that timing tells nothing of the expected one.
inline bool SameSecret(const std::string& a, const std::string& b) {
  if (a.size() != b.size() || a.empty()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace meshd::coordinator

#endif  // MESHD_DAEMON_COORDINATOR_TYPES_H_
