// Agent: the node agent's core. It keeps the node registered with the coordinator (Session),
// aggregates the local workers of each job into one JoinJob per node and fans the answer out,
// merges their group-id requests into one ResolveGroups per mesh (MeshRelay), relays their
// key-value store calls (StoreRelay), and relays the end of a generation from one coordinator
// watch per job (GenerationWatch) to every local worker's watch. Pure: no transport (a CoordinatorClient), no thread (the daemon's
// ticker, or a test, calls Tick), time from the injected clock.
//
// Per job on this node:
//   COLLECTING --(all local_world workers attached)--> JOINING --(round closed)--> JOINED
//       ^                                                                             |
//       +------------------ generation ended (workers re-attach) ---------------------+
//
// Thread-safety: all public methods are thread-safe; callbacks run outside the agent's lock.
#ifndef MESHD_DAEMON_AGENT_CORE_AGENT_H_
#define MESHD_DAEMON_AGENT_CORE_AGENT_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/time/clock.h"
#include "daemon/agent/core/coordinator_client.h"
#include "daemon/agent/core/generation_watch.h"
#include "daemon/agent/core/mesh_relay.h"
#include "daemon/agent/core/resender.h"
#include "daemon/agent/core/session.h"
#include "daemon/agent/core/store_relay.h"
#include "daemon/agent/core/timers.h"
#include "daemon/domain/types.h"
#include "daemon/domain/views.h"
#include "meshd/v1/agent.pb.h"

namespace meshd::agent {

struct AgentOptions {
  std::string coordinator;  // "host:port" of the coordinator (for logs and status)
  std::string node_name;    // unique in the cluster
  std::string hostname;
  std::string agent_address;  // where workers reach this agent, e.g. "unix:/run/meshd/agent.sock"
  uint64_t incarnation = 0;   // 0: a random one is chosen
  absl::Duration rpc_timeout = absl::Seconds(5);
  absl::Duration max_backoff = absl::Seconds(5);
  // Uids that may also use a job bound to another uid (--allow-uids).
  std::vector<uint32_t> allow_uids;
};

// The local process behind a worker's call, as the kernel says (SO_PEERCRED on the agent's unix
// socket). Unknown (nullopt) for callers in the agent's own process (tests).
using WorkerUid = std::optional<uint32_t>;
// Which attach of which worker process a call is, as the worker's client library says
// (AttachRequest's client_instance and attach_sequence). Empty instance: not said.
struct AttachOrigin {
  std::string instance;
  uint64_t sequence = 0;
};

// A worker's placement once its job's round closed.
struct AttachResult {
  domain::Assignment assignment;
  uint32_t local_rank = 0;
  uint32_t rank = 0;
  domain::Gpu gpu;
};
using AttachDone = std::function<void(absl::StatusOr<AttachResult>)>;
using EndDone = std::function<void(const domain::GenerationEnd&)>;

class Agent {
 public:
  Agent(AgentOptions options, std::vector<domain::Gpu> gpus, const Clock* clock,
        CoordinatorClient* client);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Registers with the coordinator (heartbeats and re-registration follow from Tick).
  void Start();
  // The agent is about to stop cleanly (SIGTERM): tells the coordinator the node leaves, so the
  // jobs it is in end their generations now (their other nodes' workers are told) instead of after
  // the heartbeat timeout. `done` gets the coordinator's answer (FAILED_PRECONDITION at once when
  // the node is not registered). Call before Stop; the caller bounds how long it waits.
  void Depart(const std::string& message, absl::Duration timeout,
              std::function<void(absl::Status)> done);
  // Answers every waiting worker CANCELLED, shuts the client down (its calls in flight answer
  // CANCELLED) and sends nothing more. Idempotent.
  void Stop();
  // Drives time: registration and heartbeats when due, calls waiting to be sent again, and
  // workers' deadlines. The daemon's ticker calls it every few milliseconds.
  void Tick();

  // A worker attaches to `job` as local_rank of local_world. `done` gets the result when the job's
  // round closes. Errors: INVALID_ARGUMENT bad name/sizes or workers disagreeing on local_world or
  // nodes; FAILED_PRECONDITION more workers than GPUs; ALREADY_EXISTS the local rank is taken (a
  // worker waits with it, or runs with it and watches its generation: a second process cannot
  // take a running worker's place and GPU; one whose holder detached or never watched can);
  // DEADLINE_EXCEEDED; any error of the coordinator's JoinJob; CANCELLED on Stop.
  // An attach for a place another attach of the same process (`origin`'s instance) waits with:
  // the later one by sequence keeps the place, the earlier gets CANCELLED (a process attaching
  // again gave its earlier attach up: interrupted, its cancellation not yet seen here).
  // INVALID_ARGUMENT: an instance over 64 bytes.
  // Returns an id for WithdrawAttach while the worker waits for the round (0 when answered at
  // once).
  // A job is bound to the uid of its first admitted local worker until none of its workers waits
  // or runs on the node:
  // a worker of another uid (not in allow_uids) is refused PERMISSION_DENIED here and in every
  // call below, so that one user cannot attach to, watch, detach or read another's job.
  uint64_t Attach(const std::string& job, uint32_t local_rank, uint32_t local_world,
                  const domain::NodeCount& nodes, absl::Time deadline, AttachDone done,
                  WorkerUid uid = std::nullopt, AttachOrigin origin = {});
  // The worker of attach `id` went away (its call was cancelled: Ctrl-C, a crash) while its job's
  // local workers were still gathering: its place is freed (so that it may attach again at once)
  // and its `done` gets CANCELLED. Unknown or already answered ids are ignored.
  void WithdrawAttach(const std::string& job, uint32_t local_rank, uint64_t id);
  // Calls `done` once when `generation` of `job` ends. Returns how to cancel.
  // Errors: NOT_FOUND unknown job; FAILED_PRECONDITION a generation this node is not in.
  // If the watch is cancelled (the worker's stream broke) before the worker detached, the worker is
  // lost: the agent makes the node leave the generation so that every other worker is told.
  absl::StatusOr<std::function<void()>> Watch(const std::string& job, uint64_t generation,
                                              uint32_t local_rank, EndDone done,
                                              WorkerUid uid = std::nullopt);
  // A worker leaves cleanly. Errors: NOT_FOUND unknown job.
  absl::Status Detach(const std::string& job, uint64_t generation, uint32_t local_rank,
                      WorkerUid uid = std::nullopt);
  // One worker's groups of one mesh (its request as it came). Once every local worker of the job
  // asked for the mesh, the agent sends one ResolveGroups for the node and answers each worker
  // with its groups' ids. Errors: FAILED_PRECONDITION the worker is not attached to that
  // generation; ABORTED the generation ended; ALREADY_EXISTS the local rank already asked for this
  // mesh; DEADLINE_EXCEEDED; and the coordinator's errors (spec mismatch, ...).
  void ResolveGroups(v1::RankGroupsRequest request, absl::Time deadline,
                     Answer<v1::ResolveGroupsResponse> done, WorkerUid uid = std::nullopt);
  // The generation's key-value store for local workers (see StoreRelay). Errors:
  // FAILED_PRECONDITION no worker of this node is attached to that generation of the job; ABORTED
  // it ended; CANCELLED at Stop; the coordinator's.
  template <typename Req, typename Resp>
  void RelayKeyCall(Req req, absl::Time deadline, Answer<Resp> done, WorkerUid uid = std::nullopt) {
    store_.Relay<Req, Resp>(std::move(req), deadline, std::move(done), uid);
  }

  domain::AgentView Status() const;
  const domain::NodeInventory& inventory() const { return inventory_; }

 private:
  struct Pending {
    AttachDone done;
    absl::Time deadline;
    uint64_t id = 0;
    AttachOrigin origin;  // the waiting attach's process and place among its attaches
    // Its call went away while the node's join was in flight (answered CANCELLED then, `done`
    // empty): the place counts in that join, but is free for another worker, and nobody is
    // answered or joined again for it.
    bool withdrawn = false;
  };
  struct JobEntry {
    uint32_t local_world = 0;
    domain::NodeCount nodes;
    enum class Phase { kCollecting, kJoining, kJoined } phase = Phase::kCollecting;
    std::map<uint32_t, Pending> pending;  // local rank -> waiting worker
    std::optional<domain::Assignment> assignment;
    std::set<uint32_t> attached;  // local ranks answered in this generation
    std::set<uint32_t> detached;  // of those, the ones that left cleanly
    // The node told the coordinator it is done with the generation (every local worker detached:
    // FinishJob; one went away without detaching: LeaveJob): workers attaching now wait for the
    // next round, not this generation, which is ending.
    bool finishing = false;
    absl::Time join_deadline;  // of the JoinJob in flight (kJoining)
    std::map<uint32_t, int> watching;  // local rank -> its workers' live watches
    // The uid of its first admitted local worker; cleared when no worker of it waits or runs on
    // the node (all withdrew, or its generation ended after every worker detached cleanly).
    std::optional<uint32_t> owner_uid;
    std::optional<domain::GenerationEnd> last_end;
    std::map<uint64_t, std::pair<uint64_t, EndDone>> watchers;  // id -> (generation, done)
  };
  using Completions = std::vector<std::function<void()>>;

  // Whether the job's waiting workers (`pending`) wait for a round not yet joined.
  static bool Gathering(const JobEntry& e);
  // Sends JoinJob for every job whose local workers have all attached (when registered).
  void LaunchJoins(Completions& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A state change owed to the coordinator about `generation` of `job` (a lost worker's LeaveJob,
  // FinishJob): `send` is sent again until acknowledged — across a broken connection, and after a
  // coordinator restart once registered again (Resender) — for kOwedCallDeadline; `failure` is
  // logged if it never is (not for ABORTED, the generation over meanwhile, when `aborted_is_done`).
  void SendOwed(const char* what, const std::string& job, uint64_t generation,
                std::function<void(CallOptions, std::function<void(absl::Status)>)> send,
                const char* failure, bool aborted_is_done);
  // Stop's first half (also Depart's): every waiting worker CANCELLED, every watcher told kShutdown,
  // nothing new admitted. Idempotent.
  void EndWorkers() ABSL_LOCKS_EXCLUDED(mu_);
  void OnJoined(const std::string& job, absl::StatusOr<domain::Assignment> result)
      ABSL_LOCKS_EXCLUDED(mu_);
  void OnGenerationEnd(const std::string& job, const domain::GenerationEnd& end)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Whether `generation` of `job` is this node's running generation (and the agent not stopping).
  bool Runs(const std::string& job, uint64_t generation) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // OK when local workers run `generation` of `job` (the store's scope) and `uid` may use it;
  // else the error.
  absl::Status KeyScope(const std::string& job, uint64_t generation, WorkerUid uid) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // No worker of the job waits or runs on the node: it is no one's any more.
  void ReleaseIfIdle(JobEntry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // PERMISSION_DENIED when `job` is bound to another uid than `uid` (see Attach).
  absl::Status CheckUid(const std::string& job, const JobEntry& e, WorkerUid uid) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  AttachResult ResultFor(const domain::Assignment& a, uint32_t local_rank) const;
  // The worker's watch went away: if it had not detached, leave the generation.
  void WorkerGone(const std::string& job, uint64_t generation, uint32_t local_rank)
      ABSL_LOCKS_EXCLUDED(mu_);
  void ExpireWorkers(absl::Time now, Completions& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<domain::RunningJob> RunningJobs() const ABSL_LOCKS_EXCLUDED(mu_);

  // Constant after construction.
  const AgentOptions options_;
  const Clock* const clock_;
  CoordinatorClient* const client_;
  domain::NodeInventory inventory_;

  Timers timers_;
  Session session_;
  Resender resender_;
  StoreRelay store_;
  MeshRelay mesh_;
  GenerationWatch watch_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;  // workers told; nothing new admitted
  bool client_shut_down_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, JobEntry> jobs_ ABSL_GUARDED_BY(mu_);
  uint64_t next_watch_id_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t next_attach_id_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace meshd::agent

#endif  // MESHD_DAEMON_AGENT_CORE_AGENT_H_
