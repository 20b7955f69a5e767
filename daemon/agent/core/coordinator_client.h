// CoordinatorClient: what the agent's core asks of the coordinator, behind an interface, so that the
// core holds no transport (daemon/agent/transport has the gRPC one; tests/unit/agent a fake).
//
// Each method sends ONE call and answers `done` exactly once, on any thread (possibly before the
// method returns, e.g. CANCELLED after Shutdown): callers must not hold a lock `done` takes. The
// client never sends a call again; what to resend, and when, is the core's decision
// (agent/core/resender.h). Requests the core forwards for its workers (ResolveGroups, the Key* calls)
// are the coordinator's own messages, passed through undecoded; the rest speak daemon/domain's types.
//
// Thread-safety: every method may be called from any thread.
#ifndef MESHD_DAEMON_AGENT_CORE_COORDINATOR_CLIENT_H_
#define MESHD_DAEMON_AGENT_CORE_COORDINATOR_CLIENT_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "daemon/domain/types.h"
#include "meshd/v1/coordinator.pb.h"

namespace meshd::agent {

struct CallOptions {
  // How long the call may take; InfiniteDuration(): no deadline (a watch).
  absl::Duration timeout = absl::Seconds(5);
  // Wait for the coordinator to be reachable instead of failing at once with UNAVAILABLE.
  bool wait_for_ready = false;
};

template <typename T>
using Answer = std::function<void(absl::StatusOr<T>)>;

class CoordinatorClient {
 public:
  virtual ~CoordinatorClient() = default;

  // Registers (or re-registers) the node with the generations its workers run. Answers the
  // heartbeat interval the coordinator asks for.
  virtual void RegisterNode(const domain::NodeInventory& inventory,
                            const std::vector<domain::RunningJob>& running, CallOptions options,
                            Answer<absl::Duration> done) = 0;
  // Answers the heartbeat interval the coordinator asks for now (ZeroDuration(): unchanged).
  // NOT_FOUND / FAILED_PRECONDITION: the coordinator does not know this node (incarnation).
  virtual void Heartbeat(const std::string& node, uint64_t incarnation, CallOptions options,
                         Answer<absl::Duration> done) = 0;
  virtual void JoinJob(const domain::JoinRequest& request, CallOptions options,
                       Answer<domain::Assignment> done) = 0;
  virtual void LeaveJob(const std::string& job, uint64_t generation, const std::string& node,
                        const std::string& message, CallOptions options,
                        std::function<void(absl::Status)> done) = 0;
  // The node's workers of `generation` of `job` all detached cleanly (see Coordinator::FinishJob).
  virtual void FinishJob(const std::string& job, uint64_t generation, const std::string& node,
                         CallOptions options, std::function<void(absl::Status)> done) = 0;
  // The node's agent stops cleanly: the coordinator ends the generations of the node's jobs now.
  virtual void LeaveNode(const std::string& node, uint64_t incarnation, const std::string& message,
                         CallOptions options, std::function<void(absl::Status)> done) = 0;
  // Held until `generation` of `job` ends (the end), or the watch breaks (the error: UNAVAILABLE
  // the transport, NOT_FOUND a coordinator without the job, CANCELLED at Shutdown, ...).
  virtual void WatchJob(const std::string& job, uint64_t generation, CallOptions options,
                        Answer<domain::GenerationEnd> done) = 0;
  virtual void ResolveGroups(v1::ResolveGroupsRequest request, CallOptions options,
                             Answer<v1::ResolveGroupsResponse> done) = 0;

  // The generation's key-value store, one overload per call.
  virtual void Key(v1::KeySetRequest r, CallOptions o, Answer<v1::KeySetResponse> done) = 0;
  virtual void Key(v1::KeyGetRequest r, CallOptions o, Answer<v1::KeyGetResponse> done) = 0;
  virtual void Key(v1::KeyAddRequest r, CallOptions o, Answer<v1::KeyAddResponse> done) = 0;
  virtual void Key(v1::KeyCompareSetRequest r, CallOptions o,
                   Answer<v1::KeyCompareSetResponse> done) = 0;
  virtual void Key(v1::KeyWaitRequest r, CallOptions o, Answer<v1::KeyWaitResponse> done) = 0;
  virtual void Key(v1::KeyCheckRequest r, CallOptions o, Answer<v1::KeyCheckResponse> done) = 0;
  virtual void Key(v1::KeyDeleteRequest r, CallOptions o, Answer<v1::KeyDeleteResponse> done) = 0;
  virtual void Key(v1::KeyCountRequest r, CallOptions o, Answer<v1::KeyCountResponse> done) = 0;
  virtual void Key(v1::KeyBatchRequest r, CallOptions o, Answer<v1::KeyBatchResponse> done) = 0;

  // Cancels every call in flight (each answers CANCELLED), answers every later call CANCELLED, and
  // returns once the calls in flight have answered (or after a few seconds). Idempotent.
  virtual void Shutdown() = 0;
};

}  // namespace meshd::agent

#endif  // MESHD_DAEMON_AGENT_CORE_COORDINATOR_CLIENT_H_
