// MeshRelay: the node's side of the group-id exchange. Local workers' asks for one view of a mesh
// (RankGroupsRequest.mesh_key) in a generation are collected until every worker that asks for it
// did (RankGroupsRequest.local_asks: those in the mesh), or kBatchWindow after the first ask, then
// sent as ONE ResolveGroups for the node (mesh_request.h merges them); each worker gets its own
// groups' ids from the answer. The request allows a partial answer after kPartialAfter: then the
// workers whose groups all came are answered, and the node asks again for the groups still
// missing — so a late rank delays only the workers that share a group with it, not the whole
// node. An ask that comes after its batch was sent starts the next one.
// What the node reported of a view once its workers were answered — its ranks' specs and the ids
// it minted — is kept while the generation runs and reported again after each registration
// (Rereport): a coordinator that restarted has lost them, and the other nodes' ranks still asking
// for those groups, or waiting for every rank's spec, would otherwise wait until their deadline.
// Asks still collecting expire at their deadline (once sent, the coordinator enforces it); a
// generation's end answers its asks ABORTED — those already sent when the coordinator answers
// them (it fails them all at a generation's end), so that a refusal it gave with the end (a
// mesh mismatch: FAILED_PRECONDITION) reaches its workers as itself, or kEndGrace after the end.
//
// Thread-safety: thread-safe; answers run outside the lock.
#ifndef MESHD_DAEMON_AGENT_CORE_MESH_RELAY_H_
#define MESHD_DAEMON_AGENT_CORE_MESH_RELAY_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/time/clock.h"
#include "daemon/agent/core/coordinator_client.h"
#include "absl/random/random.h"
#include "daemon/agent/core/resender.h"
#include "daemon/agent/core/timers.h"
#include "meshd/v1/agent.pb.h"

namespace meshd::agent {

class MeshRelay {
 public:
  MeshRelay(std::string node, const Clock* clock, Timers* timers, CoordinatorClient* client,
            Resender* resender)
      : node_(std::move(node)),
        clock_(clock),
        timers_(timers),
        client_(client),
        resender_(resender) {}

  // How long a batch waits for the rest of its workers after the first ask, when not all of those
  // expected ask (a worker that has every group of the view already does not).
  static constexpr absl::Duration kBatchWindow = absl::Milliseconds(20);
  // How long a sent batch whose generation ended waits for the coordinator's answer.
  static constexpr absl::Duration kEndGrace = absl::Seconds(1);
  // How long the coordinator holds a batch before answering the groups that have their ids
  // (ResolveGroupsRequest.partial_after_ms): one more call per node at most this often. A late
  // rank delays the workers sharing no group with it by at most this much; at 16,384 nodes the
  // exchange rarely holds a request this long when no rank is late (250 ms: ~6,000 partial
  // answers there, 1 s: 1-300; docs/performance.md).
  static constexpr absl::Duration kPartialAfter = absl::Seconds(1);
  // How long a report made again is sent for (while the coordinator recovers the generation it
  // answers UNAVAILABLE, and the report is sent again).
  static constexpr absl::Duration kRereportFor = absl::Minutes(2);
  // Reports made again wait 1-2 times this after the registration: a restarted coordinator
  // recovers a generation once all its nodes registered again, and answers UNAVAILABLE before;
  // spread out, the nodes' reports mostly arrive after, and not all at once.
  static constexpr absl::Duration kRereportDelay = absl::Milliseconds(500);

  // The ask of a worker attached to `request.generation()`, one of `local_world` on this node
  // whose first global rank is `first_rank`, at `now`. Errors: ALREADY_EXISTS the local rank
  // already asked for this view in the batch collecting; ABORTED the generation ended meanwhile;
  // INVALID_ARGUMENT local_asks above local_world.
  void Ask(v1::RankGroupsRequest request, uint32_t local_world, uint32_t first_rank,
           absl::Time now, absl::Time deadline, Answer<v1::ResolveGroupsResponse> done)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Every ask of `job` up to `generation` is answered with `why` (ABORTED, or CANCELLED at Stop).
  void End(const std::string& job, uint64_t generation, const absl::Status& why)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Sends the batches whose window passed; answers DEADLINE_EXCEEDED the asks still collecting
  // whose deadline passed.
  void Expire(absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);
  // Reports again, after kRereportDelay (1-2x) and until one arrives or kRereportFor passed, what
  // the node reported of every view answered in a generation still running (after a
  // registration: the coordinator may have restarted; while it recovers the generation it answers
  // UNAVAILABLE). A later Rereport supersedes the reports of an earlier one still being sent. The
  // answers go to nobody. Returns how many reports it will send.
  size_t Rereport() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Pending {
    v1::RankGroupsRequest request;
    Answer<v1::ResolveGroupsResponse> done;
    absl::Time deadline;
  };
  struct Batch {
    uint32_t local_world = 0;
    uint32_t expected = 0;  // asks that complete it
    uint32_t first_rank = 0;
    absl::Time send_at;     // the first ask + kBatchWindow
    std::map<uint32_t, Pending> asks;  // local rank -> ask
  };
  // (job, generation, "<root key length>:<root key><view key>")
  using MeshId = std::tuple<std::string, uint64_t, std::string>;
  struct Sent {
    MeshId id;
    std::map<uint32_t, Pending> asks;  // those not answered yet
    std::optional<absl::Status> ended;  // its generation ended: why
    absl::Time answer_by = absl::InfiniteFuture();  // then: answered `ended` by this time
    v1::ResolveGroupsRequest request;  // as sent last: asked again for what a partial answer lacked
    absl::flat_hash_map<std::string, v1::GroupIds> got;  // groups answered with their ids
  };
  struct Outgoing {
    uint64_t batch;
    absl::Time deadline;
    v1::ResolveGroupsRequest request;
  };

  // One report of Rereport `round`, sent again while the coordinator answers UNAVAILABLE, until
  // `until`, its generation's end or a later round.
  void RereportOne(v1::ResolveGroupsRequest request, absl::Time until, uint64_t round)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Keeps, for Rereport, the ranks' specs and minted ids of `request` (a view's batch answered in
  // full), with those of the view's earlier batches.
  void Remember(const MeshId& id, const v1::ResolveGroupsRequest& request)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The latest deadline of `asks`: a node's request waits for its last worker.
  static absl::Time LastDeadline(const std::map<uint32_t, Pending>& asks);
  // Moves a collecting batch to the sent ones, returning what to send.
  Outgoing Close(std::map<MeshId, Batch>::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Send(Outgoing out) ABSL_LOCKS_EXCLUDED(mu_);
  void Answered(uint64_t batch, absl::StatusOr<v1::ResolveGroupsResponse> answer)
      ABSL_LOCKS_EXCLUDED(mu_);

  const std::string node_;
  const Clock* const clock_;
  Timers* const timers_;
  CoordinatorClient* const client_;
  Resender* const resender_;

  absl::Mutex mu_;
  std::map<MeshId, Batch> collecting_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, Sent> sent_ ABSL_GUARDED_BY(mu_);  // by batch number
  uint64_t next_batch_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, uint64_t> ended_ ABSL_GUARDED_BY(mu_);  // job -> last ended generation
  // By view: what the node reported of it (ranks, minted ids only), for Rereport.
  std::map<MeshId, v1::ResolveGroupsRequest> reported_ ABSL_GUARDED_BY(mu_);
  uint64_t rereport_round_ ABSL_GUARDED_BY(mu_) = 0;
  absl::BitGen gen_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshd::agent

#endif  // MESHD_DAEMON_AGENT_CORE_MESH_RELAY_H_
