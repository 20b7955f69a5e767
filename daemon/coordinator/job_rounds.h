// JobRounds: the coordinator's jobs — each job's rounds (nodes join; the round closes into a
// generation with node ranks in topology order), the standby nodes of an elastic job at its max,
// the running generation's state (its KvStore and MeshExchanges), the end of a generation and the
// watches told of it, and the recovery of running generations after a coordinator restart
// (job_recovery.cc). Pure: time comes from the injected clock; node details (hostname, NVLink
// clique) from the NodeRegistry.
//
// A job (one record per name, never forgotten):
//
//      first Join             nnodes joined (fixed), max joined, or min + last call (elastic)
//   ------------> JOINING ---------------------------------------------------------> RUNNING
//                    ^                                                                  |
//                    |  member node lost / restarted / left; elastic job gains a node   |
//                    +------------------ generation ends, generation + 1 ---------------+
//
//      first report of an unknown job                 every node rank reported
//   -----------------------------------> RECOVERING ----------------------------> RUNNING
//                                             |  window passed, a report conflicts, or a
//                                             |  reporting node lost: ended as a lost node
//                                             +---------------------------------> JOINING
//
// A node that asks to join an elastic job running at its max stands by; the end of the generation
// makes the standby nodes the next round's first joiners.
//
// Every method that may answer a wait or emit an event appends the callbacks to `out`, which the
// caller runs after releasing its lock.
//
// Thread-safety: none; owned by the Coordinator and guarded by its lock.
#ifndef MESHD_DAEMON_COORDINATOR_JOB_ROUNDS_H_
#define MESHD_DAEMON_COORDINATOR_JOB_ROUNDS_H_

#include <algorithm>
#include <functional>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/time/clock.h"
#include "daemon/coordinator/completions.h"
#include "daemon/coordinator/kv_store.h"
#include "daemon/coordinator/group_exchange.h"
#include "daemon/coordinator/mesh_exchange.h"
#include "daemon/coordinator/node_registry.h"
#include "daemon/coordinator/types.h"

namespace meshd::coordinator {

struct JobRecord;

class JobRounds {
 public:
  struct Options {
    // After a coordinator restart: how long a job reported by some of its nodes waits for the
    // others (at least the nodes' heartbeat timeout).
    absl::Duration recovery_window;
    // Signs a node's place in a generation (the membership token, HMAC-SHA256 under the
    // coordinator's --membership-key). When set, every assignment carries its token, and after a
    // restart a report of a running generation counts only with the right one. nullptr: no
    // tokens, reports taken on the nodes' word.
    std::function<std::string(const std::string& message)> sign_membership;
    // A job whose round has had no node in it this long (its generation ended and nobody joined
    // again, or its joins expired) is removed.
    absl::Duration job_retention = absl::Minutes(10);
    // What each generation's key-value store may hold.
    KvStore::Limits kv_limits;
    // A round open this long without closing is abandoned (kRoundTimedOut).
    absl::Duration round_timeout = absl::Minutes(10);
  };

  // `nodes` and `events` are not owned and outlive this (the Coordinator's members).
  JobRounds(const Clock* clock, Options options, const NodeRegistry* nodes,
            const EventSink* events);
  ~JobRounds();
  JobRounds(const JobRounds&) = delete;
  JobRounds& operator=(const JobRounds&) = delete;

  // ---- Rounds

  // `req` is valid and its node admitted (alive, current incarnation). Creates the job at its
  // first join; then the job's phase decides: an open round takes the node (and closes when
  // full), a member of the running generation gets its assignment again, an elastic job below
  // its max ends its generation for a new round, one at its max keeps the node standing by.
  // Errors (through `done`): FAILED_PRECONDITION a spec that differs from the job's, or a running
  // fixed-size job the node is not a member of; UNAVAILABLE the job is being recovered.
  void Join(const JoinRequest& req, absl::Time deadline, JoinDone done, Completions& out);
  // A member node leaves the running generation, which ends (kNodeLeft).
  // Errors: as Running's; FAILED_PRECONDITION the node is not a member.
  absl::Status Leave(const std::string& job, uint64_t generation, const std::string& node,
                     const std::string& message, Completions& out);
  // A member node's workers all detached cleanly: once every member node has, the generation
  // ends (kJobFinished). Errors: as Running's; FAILED_PRECONDITION the node is not a member.
  absl::Status Finish(const std::string& job, uint64_t generation, const std::string& node,
                      Completions& out);
  // Removes a node from every job (it died, restarted, was replaced or drained): ends the
  // generations it is a member of (or recovers), fails its join and standby waits with ABORTED.
  // `ended`, when given, gets the (job, generation) of each generation it ended.
  void DropNode(const std::string& node, EndReason reason, const std::string& message,
                Completions& out,
                std::vector<std::pair<std::string, uint64_t>>* ended = nullptr);
  // An operator ends `job`: its running generation ends (kJobEnded, `message`) and every join
  // waiting for its next round (standby nodes included) is refused with ABORTED. Returns the
  // generation it ended, 0 when none ran (an open round was only cleared).
  // Errors: NOT_FOUND unknown job; UNAVAILABLE it is being recovered.
  absl::StatusOr<uint64_t> End(const std::string& job, const std::string& message,
                               Completions& out);
  // Ranks of `job`'s running generation built different meshes under one key after some had been
  // answered (see MeshExchange): the generation ends (kMeshMismatch, `message`), caused by `node`.
  void EndForMismatch(JobRecord& job, const std::string& node, const std::string& message,
                      Completions& out) {
    EndGeneration(job, EndReason::kMeshMismatch, node, message, out);
  }
  // A registered node's reports of the generations its workers run (job_recovery.cc): a job this
  // coordinator does not know is created RECOVERING; once every node rank of it has been
  // reported it runs again with the same generation and ranks. Reports of known jobs are ignored.
  void Recover(const std::string& node, const std::vector<RunningJob>& running, Completions& out);

  // ---- The running generation

  // The running generation's store.
  // Errors: NOT_FOUND unknown job; ABORTED `generation` has ended; FAILED_PRECONDITION it has not
  // started (round still open); UNAVAILABLE it is being recovered.
  absl::StatusOr<KvStore*> Store(const std::string& job, uint64_t generation);
  // The running generation's spec check of `mesh_key` and its group exchange, for a report of
  // `node` about `ranks`, created at their first report. Errors: Store's; PERMISSION_DENIED `node`
  // is not a member of the generation, or a rank is not one of the node's (a node reports only the
  // ranks it holds) — nothing is created or changed then, and the message names nothing of the
  // job's but the caller's own place; RESOURCE_EXHAUSTED a new mesh key past
  // kMaxMeshesPerGeneration.
  struct Exchanges {
    JobRecord* job;
    MeshExchange* mesh;
    GroupExchange* groups;
  };
  static constexpr size_t kMaxMeshesPerGeneration = 4096;
  absl::StatusOr<Exchanges> Exchange(const std::string& job, uint64_t generation,
                                     const std::string& mesh_key, const std::string& node,
                                     const std::vector<RankSpec>& ranks);
  // The member nodes (-> node rank) of `generation` of `job` while it runs; nullptr when that
  // generation does not run (the call it guards then answers its own NOT_FOUND, ABORTED, ...).
  const absl::flat_hash_map<std::string, uint32_t>* RunningMembers(const std::string& job,
                                                                   uint64_t generation) const;
  // A wait with this deadline was added to a store or an exchange: CheckDeadlines looks by then.
  void WaitAdded(absl::Time deadline) { waits_due_ = std::min(waits_due_, deadline); }

  // ---- Watches

  // Calls `done` once when `generation` of `job` ends: at once if it has (or, `shut_down`, with
  // kShutdown); returns the watch's id, 0 when answered at once.
  // Errors (returned): NOT_FOUND unknown job; FAILED_PRECONDITION a generation not started.
  absl::StatusOr<uint64_t> Watch(const std::string& job, uint64_t generation, bool shut_down,
                                 WatchDone done, Completions& out);
  // Forgets a watch. Unknown ids are ignored.
  void CancelWatch(uint64_t id) { watchers_.erase(id); }

  // ---- Time and shutdown

  // Closes elastic rounds whose last call has passed; abandons rounds open past the round timeout
  // (kRoundTimedOut); fails join, KV and mesh waits past `now` (DEADLINE_EXCEEDED); ends
  // recoveries whose window has passed; removes jobs idle for the retention (kJobExpired). Walks
  // the waits only when one may be due.
  void CheckDeadlines(absl::Time now, Completions& out);
  // Fails every wait with `cancelled` and tells every watch kShutdown.
  void Shutdown(const absl::Status& cancelled, Completions& out);

  // ---- Views (job_views.cc)

  std::vector<JobView> Views() const;
  // With its store when it runs (the keys most waited for too with `waited_keys`). Errors:
  // NOT_FOUND unknown job.
  absl::StatusOr<JobView> View(const std::string& job, bool waited_keys = false) const;
  // The jobs `node` is a member of, joins or stands by for, by name.
  std::vector<std::string> JobsOf(const std::string& node) const;
  // Fills the jobs' part of `s`: jobs by phase, held calls, counters.
  void Tally(StatusView& s) const;

 private:
  struct Watcher {
    std::string job;
    uint64_t generation;
    WatchDone done;
  };

  // Join's steps.
  // FAILED_PRECONDITION when the node is cordoned and the join is not a member's of the running
  // generation asking again.
  absl::Status CordonedJoin(const JoinRequest& req) const;
  JobRecord& FindOrCreate(const JoinRequest& req, Completions& out);
  // A join while the job runs. True when the node goes on to join a new round (the generation
  // ended for it); false when `done` was answered or kept standing by.
  bool JoinRunning(JobRecord& job, const JoinRequest& req, absl::Time deadline, JoinDone& done,
                   Completions& out);
  void JoinRound(JobRecord& job, const JoinRequest& req, absl::Time deadline, JoinDone done,
                 Completions& out);

  void CloseRound(JobRecord& job, Completions& out);
  void EndGeneration(JobRecord& job, EndReason reason, const std::string& node,
                     const std::string& message, Completions& out);
  // Fails the job's join waits past `now` (a node whose waits all ended leaves the round);
  // returns the earliest deadline of those left.
  absl::Time ExpireJoinWaits(JobRecord& job, absl::Time now, Completions& out);
  // Refuses every joiner of the job's open round (DEADLINE_EXCEEDED: it did not close within the
  // round timeout), leaving the round empty.
  void AbandonRound(JobRecord& job, absl::Time now, Completions& out);
  // The job if `generation` is its running generation, or the error for a request naming it.
  absl::StatusOr<JobRecord*> Running(const std::string& job, uint64_t generation);
  JobView ViewOf(const JobRecord& job) const;
  // `node`'s assignment in the running generation, with its membership token.
  Assignment AssignmentOf(const JobRecord& job, const std::string& node, uint32_t node_rank) const;
  // The token of `node` at `node_rank` of `job`'s `generation` of `num_nodes` ("" unsigned).
  std::string MembershipToken(const std::string& job, uint64_t generation, const std::string& node,
                              uint32_t node_rank, uint32_t num_nodes, uint32_t local_world) const;

  // Recovery (job_recovery.cc).
  // The nodes that reported a recovering generation, in rank order.
  std::vector<Member> ReportedMembers(const JobRecord& job) const;
  // They become the running generation's members (phase kRunning).
  void AdoptReportedGeneration(JobRecord& job);
  // Ends a recovery whose window has passed; returns its deadline while it is open (else
  // InfiniteFuture).
  absl::Time ExpireRecovery(JobRecord& job, absl::Time now, Completions& out);
  void FinishRecovery(JobRecord& job, Completions& out);
  void FailRecovery(JobRecord& job, const std::string& node, const std::string& message,
                    Completions& out);

  void Emit(EventKind kind, std::string what, const JobRecord& job, const std::string& node,
            Completions& out, absl::Duration rendezvous = absl::ZeroDuration(),
            EndReason reason = EndReason::kNodeLost);

  // Constant after construction.
  const Clock* const clock_;
  const Options options_;
  const NodeRegistry* const nodes_;
  const EventSink* const events_;

  std::map<std::string, std::unique_ptr<JobRecord>> jobs_;
  std::map<uint64_t, Watcher> watchers_;
  uint64_t next_watch_id_ = 1;
  Counters counters_;
  // No wait can expire before this: lowered whenever a wait may be added, recomputed by the walk
  // it gates, so a tick walks 16,384 nodes' waits only when one may be due.
  absl::Time waits_due_ = absl::InfinitePast();
};

}  // namespace meshd::coordinator

#endif  // MESHD_DAEMON_COORDINATOR_JOB_ROUNDS_H_
