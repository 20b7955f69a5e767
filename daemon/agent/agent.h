// Agent: the node agent's logic. It registers the node's GPUs with the coordinator and heartbeats
// (reconnecting with jittered backoff), aggregates the local workers of each job into one JoinJob
// per node and fans the answer out, and relays the end of a generation from one coordinator watch
// per job to every local worker's watch.
//
// Per job on this node:
//   COLLECTING --(all local_world workers attached)--> JOINING --(round closed)--> JOINED
//       ^                                                                             |
//       +------------------ generation ended (workers re-attach) ---------------------+
//
// Thread-safety: all public methods are thread-safe; callbacks run outside the agent's lock.
#ifndef MESHD_DAEMON_AGENT_AGENT_H_
#define MESHD_DAEMON_AGENT_AGENT_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/time/clock.h"
#include "daemon/domain/types.h"
#include "grpcpp/channel.h"
#include "meshd/v1/coordinator.grpc.pb.h"

namespace meshd::agent {

struct AgentOptions {
  std::string coordinator;  // "host:port" of the coordinator
  std::string node_name;    // unique in the cluster
  std::string hostname;
  std::string agent_address;  // where workers reach this agent, e.g. "unix:/run/meshd/agent.sock"
  uint64_t incarnation = 0;   // 0: a random one is chosen
  absl::Duration rpc_timeout = absl::Seconds(5);
  absl::Duration max_backoff = absl::Seconds(5);
};

struct AttachResult {
  domain::Assignment assignment;
  uint32_t local_rank = 0;
  uint32_t rank = 0;
  domain::Gpu gpu;
};
using AttachDone = std::function<void(absl::StatusOr<AttachResult>)>;
using EndDone = std::function<void(const domain::GenerationEnd&)>;

// One local rank's part of a mesh's group-id exchange.
struct RankGroups {
  std::string job;
  uint64_t generation = 0;
  uint32_t local_rank = 0;
  std::string mesh_key;
  std::string fingerprint;
  std::string description;
  std::vector<domain::GroupRequest> groups;
};

struct AgentStatusView {
  domain::NodeInventory inventory;
  std::string coordinator;
  bool connected = false;
  struct Worker {
    std::string job;
    uint32_t local_rank = 0;
    uint64_t generation = 0;  // 0 while waiting
    uint32_t rank = 0;
  };
  std::vector<Worker> workers;
  // Totals since the agent started, for metrics.
  uint64_t registrations = 0;
  uint64_t heartbeats = 0;  // answered by the coordinator
  uint64_t heartbeat_failures = 0;
  uint64_t key_calls = 0;         // store calls from local workers
  uint64_t key_calls_shared = 0;  // of those, sent within another worker's coordinator call
};

class Agent {
 public:
  Agent(AgentOptions options, std::vector<domain::Gpu> gpus, const Clock* clock);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Starts registration and heartbeats in the background.
  void Start();
  // Cancels every call and wait (CANCELLED), waits for in-flight coordinator calls. Idempotent.
  void Stop();

  // A worker attaches to `job` as local_rank of local_world. `done` gets the result when the job's
  // round closes. Errors: INVALID_ARGUMENT bad name/sizes or workers disagreeing on local_world or
  // nodes; FAILED_PRECONDITION more workers than GPUs; ALREADY_EXISTS the local rank is taken;
  // DEADLINE_EXCEEDED; any error of the coordinator's JoinJob; CANCELLED on Stop.
  // Returns an id for WithdrawAttach while the worker waits for the round (0 when answered at
  // once).
  uint64_t Attach(const std::string& job, uint32_t local_rank, uint32_t local_world,
                  const domain::NodeCount& nodes, absl::Time deadline, AttachDone done);
  // The worker of attach `id` went away (its call was cancelled: Ctrl-C, a crash) while its job's
  // local workers were still gathering: its place is freed (so that it may attach again at once)
  // and its `done` gets CANCELLED. Unknown or already answered ids are ignored.
  void WithdrawAttach(const std::string& job, uint32_t local_rank, uint64_t id);
  // Calls `done` once when `generation` of `job` ends. Returns how to cancel.
  // Errors: NOT_FOUND unknown job; FAILED_PRECONDITION a generation this node is not in.
  // If the watch is cancelled (the worker's stream broke) before the worker detached, the worker is
  // lost: the agent makes the node leave the generation so that every other worker is told.
  absl::StatusOr<std::function<void()>> Watch(const std::string& job, uint64_t generation,
                                              uint32_t local_rank, EndDone done);
  // A worker leaves cleanly. Errors: NOT_FOUND unknown job.
  absl::Status Detach(const std::string& job, uint64_t generation, uint32_t local_rank);
  // One worker's groups of one mesh. Once every local worker of the job asked for `mesh_key`, the
  // agent sends one ResolveGroups for the node and answers each worker with its groups' ids.
  // Errors: FAILED_PRECONDITION the worker is not attached to that generation; ABORTED the
  // generation ended; ALREADY_EXISTS the local rank already asked for this mesh; DEADLINE_EXCEEDED;
  // and the coordinator's errors (spec mismatch, ...).
  void ResolveGroups(RankGroups request, absl::Time deadline, domain::GroupsDone done);

  // The generation's key-value store for local workers (agent.proto's Key* calls, one of
  // v1::KeySet/KeyGet/KeyAdd/KeyCompareSet/KeyWait/KeyCheck/KeyDelete/KeyCountRequest): relayed to
  // the coordinator as they are. Identical waits (KeyGet with wait, KeyWait) of local workers
  // travel as one coordinator call, and adds or sets of local workers on one key arriving while one
  // is in flight travel as one call when it returns. Errors: FAILED_PRECONDITION no worker of this
  // node is attached to that generation of the job; ABORTED it ended; CANCELLED at Stop; the
  // coordinator's.
  template <typename Req, typename Resp>
  void RelayKeyCall(Req req, absl::Time deadline,
                    std::function<void(const grpc::Status&, Resp&)> done) ABSL_LOCKS_EXCLUDED(mu_);

  // Expires worker waits; called by a ticker.
  void CheckDeadlines();

  AgentStatusView Status() const;
  const domain::NodeInventory& inventory() const { return inventory_; }

 private:
  struct Pending {
    AttachDone done;
    absl::Time deadline;
    uint64_t id = 0;
  };
  struct MeshAsk {
    RankGroups request;
    domain::GroupsDone done;
    absl::Time deadline;
  };
  struct JobEntry {
    uint32_t local_world = 0;
    domain::NodeCount nodes;
    enum class Phase { kCollecting, kJoining, kJoined } phase = Phase::kCollecting;
    std::map<uint32_t, Pending> pending;  // local rank -> waiting worker
    std::optional<domain::Assignment> assignment;
    std::set<uint32_t> attached;  // local ranks answered in this generation
    std::set<uint32_t> detached;  // of those, the ones that left cleanly
    std::optional<domain::GenerationEnd> last_end;
    std::map<uint64_t, std::pair<uint64_t, EndDone>> watchers;  // id -> (generation, done)
    // Group-id exchanges of the running generation: mesh key -> local rank -> ask.
    std::map<std::string, std::map<uint32_t, MeshAsk>> meshes;
    // Store writes of local workers answered so far: a get joins only a shared get sent since the
    // last one, so that a worker reads its own writes.
    uint64_t store_writes = 0;
  };
  using Completions = std::vector<std::function<void()>>;

  void Loop();
  bool RegisterOnce();
  // Sends JoinJob for every job whose local workers have all attached (when registered).
  void LaunchJoins(Completions& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnJoined(const std::string& job, absl::StatusOr<domain::Assignment> result);
  void OnGenerationEnd(const std::string& job, const domain::GenerationEnd& end);
  // Sends the node's ResolveGroups for a mesh whose local asks are complete (queued into `out`).
  void SendMesh(const std::string& job, const std::string& mesh_key, Completions& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues (into `out`, run after the lock) one coordinator watch for the job's generation;
  // `again`: after the previous one was lost to the transport (waits for the coordinator).
  // `after_register`: the agent registered again since the coordinator did not know the job (a
  // NOT_FOUND then ends the generation).
  void StartWatch(const std::string& job, uint64_t generation, Completions& out, bool again = false,
                  bool after_register = false) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The coordinator did not know a job this node runs: register again now (reporting it), then
  // watch it again.
  void WatchAfterRegistering(const std::string& job, uint64_t generation) ABSL_LOCKS_EXCLUDED(mu_);
  // Whether `generation` of `job` is this node's running generation (and the agent not stopping).
  bool Runs(const std::string& job, uint64_t generation) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A watch was lost to the transport: watch the generation again, unless it is over here or the
  // agent stops.
  void WatchAgain(const std::string& job, uint64_t generation, const std::string& error)
      ABSL_LOCKS_EXCLUDED(mu_);
  AttachResult ResultFor(const domain::Assignment& a, uint32_t local_rank) const;
  void CallDone(grpc::ClientContext* ctx) ABSL_LOCKS_EXCLUDED(mu_);
  // The worker's watch went away: if it had not detached, leave the generation (async).
  void WorkerGone(const std::string& job, uint64_t generation, uint32_t local_rank);

  class WatchCall;

  // Local workers waiting on one identical KeyGet/KeyWait, answered by one coordinator call.
  template <typename Resp>
  struct SharedWait {
    struct Waiter {
      std::function<void(const grpc::Status&, Resp&)> done;
      absl::Time deadline;
    };
    std::vector<Waiter> waiters;
    std::string what;  // "key 'k'" or "keys 'a', 'b'", for the message of an expired waiter
  };
  // Answers the shared waiters whose own deadline passed (a later joiner's may come before the
  // shared call's), so that they hear why and their entries go.
  template <typename Resp>
  void ExpireSharedWaiters(absl::Time now, Completions& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Local workers' adds (or sets) on one key that arrive while one is in flight, sent as one
  // coordinator call when it returns: adds as their sum, each answered with the value it would have
  // seen in turn; sets as the last value (the others taking effect just before it).
  template <typename Resp>
  struct MergedWrites {
    struct Writer {
      int64_t delta = 0;  // KeyAdd
      std::string value;  // KeySet
      std::function<void(const grpc::Status&, Resp&)> done;
      absl::Time deadline;
    };
    bool in_flight = false;
    size_t alone = 0;  // the first `alone` writers go one per call (a merged add overflowed)
    std::vector<Writer> queued;
  };
  template <typename Resp>
  std::map<std::string, MergedWrites<Resp>>& Merged() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A local worker's store write was answered: later gets do not join shared gets sent before.
  void StoreWriteAnswered(const std::string& job) ABSL_LOCKS_EXCLUDED(mu_);
  // Sends the queued writes of `signature` (job, generation, key) as one call; again on return
  // while more are queued.
  template <typename Req, typename Resp>
  void SendMergedWrites(const std::string& signature, Req request) ABSL_LOCKS_EXCLUDED(mu_);
  // OK when local workers run `generation` of `job`; else the error to answer with.
  absl::Status KeyScope(const std::string& job, uint64_t generation) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends one Key* call to the coordinator by `deadline` (on the injected clock); `attempt` as
  // CallCoordinator's (kSendOnce: never sent again).
  template <typename Req, typename Resp>
  void SendKeyCall(Req req, absl::Time deadline,
                   std::function<void(const grpc::Status&, Resp&)> done, int attempt = 0)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Sends the one coordinator call of the shared wait `signature` (deadline: its first waiter's).
  template <typename Req, typename Resp>
  void SendSharedWait(const std::string& signature, Req req, absl::Time deadline)
      ABSL_LOCKS_EXCLUDED(mu_);
  template <typename Resp>
  std::map<std::string, SharedWait<Resp>>& SharedWaits() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Sends one call to the coordinator and sends it again, while `deadline` allows (up to
  // kCoordinatorAttempts sends), when it failed with UNAVAILABLE — the transport (a connection
  // reset; the next send waits for the coordinator to be reachable) or a coordinator recovering
  // the job after a restart — after a backoff (50 ms doubling to 1 s), and, with
  // `resend_when_unregistered` (JoinJob, ResolveGroups), when the coordinator did not know the node
  // or job (NOT_FOUND: it restarted, or declared the node dead) once the agent has registered
  // again (which reports the node's running generations), once. The
  // coordinator's JoinJob and ResolveGroups are idempotent for a node, so a call that did arrive
  // before the connection broke is harmless to send again. `done` runs once (with CANCELLED when
  // the agent stops before a send).
  static constexpr int kCoordinatorAttempts = 16;
  // As `attempt`: one send that waits for the coordinator to be reachable, never sent again — for
  // calls that must not apply twice (KeyAdd, KeyCompareSet, KeyDelete: an UNAVAILABLE may come
  // after the coordinator applied them).
  static constexpr int kSendOnce = kCoordinatorAttempts - 1;
  template <typename Req, typename Resp>
  using CoordinatorMethod = std::function<void(grpc::ClientContext*, const Req*, Resp*,
                                               std::function<void(grpc::Status)>)>;
  template <typename Req, typename Resp>
  void CallCoordinator(const char* what, Req req, absl::Time deadline,
                       CoordinatorMethod<Req, Resp> send,
                       std::function<void(const grpc::Status&, Resp&)> done,
                       bool resend_when_unregistered = false, int attempt = 0)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Runs `f` (outside the lock) at the first tick at or after `at`, or at Stop.
  void RunLater(absl::Time at, std::function<void()> f) ABSL_LOCKS_EXCLUDED(mu_);
  // Runs `f` once the agent has registered again (it registers now), or at Stop.
  void RunAfterRegistering(std::function<void()> f) ABSL_LOCKS_EXCLUDED(mu_);

  // Constant after construction.
  const AgentOptions options_;
  const Clock* const clock_;
  domain::NodeInventory inventory_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool registered_ ABSL_GUARDED_BY(mu_) = false;
  bool register_now_ ABSL_GUARDED_BY(mu_) = false;  // wakes the loop to register again
  std::vector<std::function<void()>> after_register_ ABSL_GUARDED_BY(mu_);
  std::multimap<absl::Time, std::function<void()>> later_ ABSL_GUARDED_BY(mu_);
  absl::Duration heartbeat_interval_ ABSL_GUARDED_BY(mu_) = absl::Seconds(1);
  uint64_t registrations_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t heartbeats_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t heartbeat_failures_ ABSL_GUARDED_BY(mu_) = 0;
  bool heartbeat_failing_ ABSL_GUARDED_BY(mu_) = false;  // logs the first failure and the recovery
  std::map<std::string, JobEntry> jobs_ ABSL_GUARDED_BY(mu_);
  std::set<grpc::ClientContext*> calls_ ABSL_GUARDED_BY(mu_);  // in flight, cancelled on Stop
  uint64_t next_watch_id_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t next_attach_id_ ABSL_GUARDED_BY(mu_) = 1;
  // Shared waits by signature (kind, job, generation, keys).
  std::map<std::string, SharedWait<v1::KeyGetResponse>> shared_gets_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, SharedWait<v1::KeyWaitResponse>> shared_key_waits_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, MergedWrites<v1::KeyAddResponse>> merged_adds_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, MergedWrites<v1::KeySetResponse>> merged_sets_ ABSL_GUARDED_BY(mu_);
  uint64_t key_calls_ ABSL_GUARDED_BY(mu_) = 0;         // Key* calls from workers
  uint64_t key_calls_shared_ ABSL_GUARDED_BY(mu_) = 0;  // of those, answered by another's call
  std::thread loop_;
};

// The shared waits and merged writes of each store call type (defined in agent.cc).
template <>
std::map<std::string, Agent::SharedWait<v1::KeyGetResponse>>& Agent::SharedWaits();
template <>
std::map<std::string, Agent::SharedWait<v1::KeyWaitResponse>>& Agent::SharedWaits();
template <>
std::map<std::string, Agent::MergedWrites<v1::KeyAddResponse>>& Agent::Merged();
template <>
std::map<std::string, Agent::MergedWrites<v1::KeySetResponse>>& Agent::Merged();

}  // namespace meshd::agent

#endif  // MESHD_DAEMON_AGENT_AGENT_H_
