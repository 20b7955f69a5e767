// Coordinator: the cluster's state machine — node registry and liveness, job rounds and
// generations, per-generation key-value store and barriers, NCCL id exchange, watches. Pure: no
// gRPC, no I/O, an injected clock. daemon/service translates RPCs to these calls; a ticker calls
// CheckDeadlines() in production and tests call it directly after advancing a FakeClock.
//
// A thin façade over small registries that hold the state, each with its own header and tests:
//   NodeRegistry  nodes, GPUs, liveness, incarnations, the heartbeat-rate policy
//   JobRounds     jobs: rounds, generations, standby nodes, watches, recovery after a restart
//                 (its header draws a job's life), and per running generation:
//   KvStore       its key-value store and barriers
//   MeshExchange  one mesh's spec check across the ranks, and its groups' MintRules
//   GroupExchange one generation's NCCL id relay, group by group
// The façade validates requests, takes the one lock, asks the registries, and runs the callbacks
// they collected after releasing the lock.
//
// After a restart the coordinator knows no jobs. An agent that registers again reports the
// generations its workers run (RunningJob); the first report of a job it does not know creates it
// RECOVERING, and once every node rank of that generation has been reported it is RUNNING again
// with the same generation and ranks, so the workers carry on. A rank still missing when the
// recovery window closes (or a reported node lost meanwhile) ends the generation as a lost node
// would.
//
// Every method is non-blocking: long waits (JoinJob, KeyGet with wait, Barrier, WatchJob) keep the
// callback and complete it later. Callbacks always run on the caller's or the ticker's thread after
// the lock is released, never under it.
//
// Thread-safety: all methods are thread-safe (one mutex).
#ifndef MESHD_DAEMON_COORDINATOR_COORDINATOR_H_
#define MESHD_DAEMON_COORDINATOR_COORDINATOR_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/time/clock.h"
#include "daemon/coordinator/completions.h"
#include "daemon/coordinator/job_rounds.h"
#include "daemon/coordinator/kv_store.h"
#include "daemon/coordinator/mesh_exchange.h"
#include "daemon/coordinator/node_registry.h"
#include "daemon/coordinator/types.h"
#include "daemon/domain/limits.h"

namespace meshd::coordinator {

struct CoordinatorOptions {
  // How often agents should heartbeat (told to them at registration). Default 1 s.
  absl::Duration heartbeat_interval = absl::Seconds(1);
  // A node silent for longer is dead. Default 5 s.
  absl::Duration heartbeat_timeout = absl::Seconds(5);
  // Upper bounds on the size of the state one request can create.
  uint32_t max_gpus_per_node = 64;
  uint32_t max_nodes_per_job = 100000;
  // The heartbeat load the coordinator accepts. With more nodes than `heartbeat_interval` allows
  // at this rate, the interval (and the timeout with it) handed to agents grows to
  // nodes / rate, as Nomad's max_heartbeats_per_second does. 0: no cap.
  uint32_t max_heartbeats_per_second = 2000;
  // After a restart: how long a job reported by some of its nodes waits for the others (agents
  // register again within their retry backoff). At least the heartbeat timeout.
  absl::Duration recovery_window = absl::Seconds(10);
  // A node dead or departed this long is removed from the registry; a job nobody joined for this
  // long (its generation ended, or its round's joins expired) is removed. Default 10 min each.
  absl::Duration node_retention = absl::Minutes(10);
  absl::Duration job_retention = absl::Minutes(10);
  // What each job generation's key-value store may hold (KvStore::Limits).
  KvStore::Limits kv_limits;
  // A round open this long without closing is abandoned: its joiners are told DEADLINE_EXCEEDED
  // and the job's name holds no size until its next joiner, so nobody can squat a name.
  absl::Duration round_timeout = absl::Minutes(10);
  // Makes the secret a registration returns (unguessable: the daemon passes one drawn from the
  // kernel's random source). nullptr: 128 bits from absl::BitGen.
  std::function<std::string()> new_secret;
  // Signs membership tokens (see JobRounds::Options::sign_membership): the daemon passes an
  // HMAC-SHA256 under its --membership-key. nullptr: none; reports after a restart on trust.
  std::function<std::string(const std::string& message)> sign_membership;
};

// What an operator's verb changed (meshd.v1.AdminResponse).
struct AdminResult {
  bool changed = false;  // false: it already held
  std::string summary;   // a sentence
  std::vector<std::pair<std::string, uint64_t>> ended;  // (job, generation) it ended
};

// What an authenticated registration returns.
struct NodeRegistered {
  bool restarted = false;  // it replaced an earlier incarnation (its jobs' generations ended)
  std::string secret;      // to present on every later call of this node (see Caller)
  HeartbeatTiming timing;
};

class Coordinator {
 public:
  Coordinator(const Clock* clock, CoordinatorOptions options, EventSink events = nullptr);
  ~Coordinator();
  Coordinator(const Coordinator&) = delete;
  Coordinator& operator=(const Coordinator&) = delete;

  // Registers (or re-registers) a node. Returns true when it replaced an earlier incarnation
  // (a restart: its jobs' generations end). `running`: the generations its workers run, which
  // rebuild jobs this coordinator does not know (after its restart; see above); reports of known
  // jobs are ignored.
  // Errors: INVALID_ARGUMENT bad inventory (names, GPU list) or running job; ALREADY_EXISTS a GPU
  // UUID that another node registered; CANCELLED after Shutdown.
  absl::StatusOr<bool> RegisterNode(const NodeInventory& inventory,
                                    const std::vector<RunningJob>& running = {});
  // RegisterNode for `caller`, as the service calls it: a live node registers only for a caller
  // authenticated as it (NodeRegistry::MayRegister: PERMISSION_DENIED otherwise, and nothing
  // changes); the answer carries the node's new secret and timing.
  absl::StatusOr<NodeRegistered> RegisterNodeAs(const Caller& caller,
                                                const NodeInventory& inventory,
                                                const std::vector<RunningJob>& running = {});

  // ---- Authorization (the service asks before a call that acts for a node or a job) ----
  // OK when `caller` may act as `node` (NodeRegistry::Authenticate). Errors: NOT_FOUND unknown
  // node; PERMISSION_DENIED.
  absl::Status AuthorizeNode(const Caller& caller, const std::string& node) const;
  // OK when `caller` is authenticated as a member node of `generation` of `job`, or when that
  // generation does not run (the call then answers its own error). A job's key-value store,
  // barriers and watch serve only its members. Errors: PERMISSION_DENIED, naming nothing of the
  // job's members.
  absl::Status AuthorizeMember(const Caller& caller, const std::string& job,
                               uint64_t generation) const;

  // Errors: NOT_FOUND unknown or dead node (register again); FAILED_PRECONDITION an older
  // incarnation (a newer agent replaced it). Answers the timing the node must keep from now on.
  absl::StatusOr<HeartbeatTiming> Heartbeat(const std::string& node, uint64_t incarnation);

  // Joins `req.job` for all local workers of `req.node`; `done` gets the assignment when the round
  // closes, or an error at `deadline`.
  // Errors: INVALID_ARGUMENT bad names or sizes; NOT_FOUND unknown/dead node; FAILED_PRECONDITION
  // stale incarnation, a spec that differs from the job's, or a running fixed-size job it is not a
  // member of; DEADLINE_EXCEEDED the round did not close in time; ABORTED the node was lost or
  // restarted while waiting; CANCELLED shutdown.
  void JoinJob(const JoinRequest& req, absl::Time deadline, JoinDone done);

  // A member node leaves the running generation (one of its workers was lost): it ends, with
  // reason kNodeLeft. Errors: as KeySet's; FAILED_PRECONDITION the node is not a member.
  absl::Status LeaveJob(const std::string& job, uint64_t generation, const std::string& node,
                        const std::string& message);

  // A member node's workers of `generation` all detached cleanly; once every member node's have,
  // the generation ends (kJobFinished) and the job is later removed (job retention). Errors: as
  // LeaveJob's.
  absl::Status FinishJob(const std::string& job, uint64_t generation, const std::string& node);

  // The node's agent stops cleanly (SIGTERM): the node is no longer alive (LEFT), and every job it
  // is a member of ends its generation at once (kNodeLeft, naming the node), its joins refused —
  // the other nodes' workers are told now rather than after the heartbeat timeout. A node that is
  // already dead or left: OK, nothing changes. Errors: NOT_FOUND unknown node; FAILED_PRECONDITION
  // an older incarnation.
  absl::Status LeaveNode(const std::string& node, uint64_t incarnation, const std::string& message);

  // Calls `done` once when `generation` of `job` ends (at once if it already has). Returns an id
  // for CancelWatch. Errors (returned): NOT_FOUND unknown job; FAILED_PRECONDITION a generation
  // that has not started.
  absl::StatusOr<uint64_t> WatchJob(const std::string& job, uint64_t generation, WatchDone done);
  // Forgets a watch (its RPC went away). Unknown ids are ignored.
  void CancelWatch(uint64_t id);

  // KV and barriers of one running generation. Common errors: NOT_FOUND unknown job; ABORTED
  // `generation` has ended; FAILED_PRECONDITION it has not started (round still open);
  // INVALID_ARGUMENT empty or oversized key/value.
  void KeySet(const std::string& job, uint64_t generation, const std::string& key,
              std::string value, StatusDone done);
  // Also: NOT_FOUND key not set (no wait); DEADLINE_EXCEEDED not set by `deadline`.
  void KeyGet(const std::string& job, uint64_t generation, const std::string& key, bool wait,
              absl::Time deadline, BytesDone done);
  // Also: INVALID_ARGUMENT the value is not an integer.
  absl::StatusOr<int64_t> KeyAdd(const std::string& job, uint64_t generation,
                                 const std::string& key, int64_t delta);
  absl::StatusOr<KvStore::CasResult> KeyCompareSet(const std::string& job, uint64_t generation,
                                                   const std::string& key,
                                                   const std::string* expected,
                                                   std::string desired);
  // Also: DEADLINE_EXCEEDED some keys not set by `deadline` (the message names them);
  // INVALID_ARGUMENT no keys or more than kMaxWaitKeys.
  void KeyWait(const std::string& job, uint64_t generation, const std::vector<std::string>& keys,
               absl::Time deadline, StatusDone done);
  // Also: INVALID_ARGUMENT no keys or more than kMaxWaitKeys.
  absl::StatusOr<bool> KeyCheck(const std::string& job, uint64_t generation,
                                const std::vector<std::string>& keys);
  absl::StatusOr<bool> KeyDelete(const std::string& job, uint64_t generation,
                                 const std::string& key);
  absl::StatusOr<int64_t> KeyCount(const std::string& job, uint64_t generation);
  // The operations in order, each as its own method would (KvStore::Batch): answered at once when
  // one does not wait or a waiting one is satisfied, else held until one is. Also (the whole
  // call): INVALID_ARGUMENT no operations or more than kMaxBatchOps; DEADLINE_EXCEEDED.
  void KeyBatch(const std::string& job, uint64_t generation, std::vector<KvOp> ops,
                absl::Time deadline, BatchDone done);
  // Keys one KeyWait or KeyCheck may name.
  static constexpr size_t kMaxWaitKeys = domain::kMaxWaitKeys;
  // Also: INVALID_ARGUMENT count 0 or different from earlier arrivals; DEADLINE_EXCEEDED.
  void Barrier(const std::string& job, uint64_t generation, const std::string& name,
               const std::string& participant, uint32_t count, absl::Time deadline,
               StatusDone done);

  // One node's local ranks' spec of mesh `mesh_key` (checked against the other ranks': see
  // MeshExchange) and the NCCL ids of the groups they ask for (see GroupExchange): answered once
  // every group asked for has its ids, whoever else is late — or, with a non-zero
  // `partial_after`, from that long after it came, in part as soon as some groups have theirs
  // (the others named with no ids: the node asks again); with no groups (a spec check only),
  // once every rank of the mesh reported it.
  // Errors: as KeySet's, plus FAILED_PRECONDITION mismatched specs (and the generation ends when
  // ranks of the mesh were already answered) or a leader that could not mint; DEADLINE_EXCEEDED
  // (naming the groups' missing leaders, or the ranks that did not check); INVALID_ARGUMENT
  // malformed groups or ranks; PERMISSION_DENIED a group or id that is not the node's to ask or
  // mint; RESOURCE_EXHAUSTED too many meshes in the generation.
  // `groups` is taken (its minted ids move into the exchange).
  void ResolveGroups(const std::string& job, uint64_t generation, const std::string& node,
                     const std::string& mesh_key, const std::vector<RankSpec>& ranks,
                     std::vector<GroupRequest> groups, absl::Time deadline,
                     absl::Duration partial_after, GroupsDone done);

  // ---- Operators' verbs (coordinator_admin.cc) ----
  // Each is for a caller the transport found to be an operator (Caller::admin; PERMISSION_DENIED
  // otherwise, nothing changed), is logged as an event naming Caller::identity, and answers what
  // it changed. Common errors: INVALID_ARGUMENT a malformed name or a reason over
  // kMaxReasonBytes; NOT_FOUND unknown node or job; CANCELLED after Shutdown.
  static constexpr size_t kMaxReasonBytes = 256;
  // `cordoned`: the node joins no new rounds (its running jobs carry on), or again does.
  absl::StatusOr<AdminResult> CordonNode(const Caller& caller, const std::string& node,
                                         bool cordoned, const std::string& reason);
  // Cordons the node and ends the generations of its jobs (kNodeDrained), refusing its joins.
  absl::StatusOr<AdminResult> DrainNode(const Caller& caller, const std::string& node,
                                        const std::string& reason);
  // Removes a dead node's record. Also: FAILED_PRECONDITION it is alive.
  absl::StatusOr<AdminResult> ForgetNode(const Caller& caller, const std::string& node);
  // Ends the job's running generation (kJobEnded) and refuses the joins waiting for its next
  // round. Also: UNAVAILABLE the job is being recovered.
  absl::StatusOr<AdminResult> EndJob(const Caller& caller, const std::string& job,
                                     const std::string& reason);

  // Expires heartbeats, last-call windows and waits. Called by a ticker (or by tests).
  void CheckDeadlines();
  // Fails every wait with CANCELLED and refuses new work. Idempotent.
  void Shutdown();

  StatusView Status() const;
  std::vector<NodeView> Nodes() const;
  std::vector<JobView> Jobs() const;
  // With `waited_keys`, a running job's store names the keys most waited for (an operator's
  // view). Errors: NOT_FOUND unknown job.
  absl::StatusOr<JobView> Job(const std::string& job, bool waited_keys = false) const;

  // What a node was told at its last registration or heartbeat (the configured timing for an
  // unknown node).
  HeartbeatTiming HeartbeatTimingOf(const std::string& node) const;

 private:
  // RegisterNode's body; `caller` null: trusted (in-process callers and tests).
  absl::StatusOr<NodeRegistered> Register(const Caller* caller, const NodeInventory& inventory,
                                          const std::vector<RunningJob>& running)
      ABSL_LOCKS_EXCLUDED(mu_);
  std::string NewSecret() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The checks every operator's verb starts with: the caller is an operator, the name valid, the
  // reason short, the coordinator not shut down.
  absl::Status CheckAdmin(const Caller& caller, const char* what, const std::string& name,
                          size_t max_name, const std::string& reason) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // An operator's verb: under the lock, CheckAdmin, then `act(result, out)` (its error returned);
  // the completions after the lock (coordinator_admin.cc).
  template <typename Act>
  absl::StatusOr<AdminResult> AsOperator(const Caller& caller, const char* what,
                                         const std::string& name, size_t max_name,
                                         const std::string& reason, Act act)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The KV methods' one shape: under the lock, finds the running generation's store (noting a wait
  // until `wait_deadline`) and calls `op(store, out)`, whose result it returns, or the lookup's
  // error; runs the completions after the lock. Callers validate their arguments first.
  template <typename Op>
  auto WithStore(const std::string& job, uint64_t generation, absl::Time wait_deadline, Op op)
      -> decltype(op(std::declval<KvStore&>(), std::declval<Completions&>()));

  // Constant after construction.
  const Clock* const clock_;
  const CoordinatorOptions options_;
  const EventSink events_;
  const absl::Time started_;

  mutable absl::Mutex mu_;
  absl::BitGen secret_gen_ ABSL_GUARDED_BY(mu_);
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  NodeRegistry nodes_ ABSL_GUARDED_BY(mu_);
  JobRounds jobs_ ABSL_GUARDED_BY(mu_);  // reads nodes_, emits through events_
};

}  // namespace meshd::coordinator

#endif  // MESHD_DAEMON_COORDINATOR_COORDINATOR_H_
