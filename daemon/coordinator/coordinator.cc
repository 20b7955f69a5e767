// The coordinator's façade (see coordinator.h): validation, the lock, and the registries' calls.
#include "daemon/coordinator/coordinator.h"

#include <optional>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "daemon/domain/validation.h"
#include "daemon/domain/quote.h"

namespace meshd::coordinator {
namespace {

// Events about a node rather than a job carry no generation.
constexpr uint64_t kNoGeneration = 0;

// An event about a node rather than a job.
Event NodeEvent(EventKind kind, std::string what, const std::string& node) {
  Event e;
  e.kind = kind;
  e.what = std::move(what);
  e.node = node;
  e.generation = kNoGeneration;
  return e;
}

absl::Status ShuttingDown() { return absl::CancelledError("the coordinator is shutting down"); }

absl::Status ValidateJoin(const JoinRequest& req, uint32_t max_nodes) {
  if (absl::Status s = domain::ValidateName("job", req.job, domain::kMaxJobNameBytes); !s.ok()) {
    return s;
  }
  if (absl::Status s = domain::ValidateName("node", req.node, domain::kMaxNodeNameBytes); !s.ok()) {
    return s;
  }
  if (absl::Status s = domain::ValidateNodeCount(req.nodes, max_nodes); !s.ok()) return s;
  if (req.local_world < 1 || req.local_world > domain::kMaxLocalWorld) {
    return absl::InvalidArgumentError(absl::StrCat(
        "local_world ", req.local_world, " must be between 1 and ", domain::kMaxLocalWorld));
  }
  return absl::OkStatus();
}

// The event a registration makes (none for an agent registering its live incarnation again).
std::optional<Event> RegistrationEvent(const NodeRegistry::Registration& r,
                                       const NodeInventory& inv) {
  switch (r.arrival) {
    case NodeRegistry::Arrival::kNew:
      return NodeEvent(
          EventKind::kNodeRegistered,
          absl::StrCat("node registered with ", inv.gpus.size(), " GPUs",
                       !inv.gpus.empty() && inv.gpus[0].simulated ? " (simulated)" : ""),
          inv.node);
    case NodeRegistry::Arrival::kRestarted:
      return NodeEvent(EventKind::kNodeRestarted,
                       absl::StrCat("node restarted (incarnation ", r.previous_incarnation, " -> ",
                                    inv.incarnation, ")"),
                       inv.node);
    case NodeRegistry::Arrival::kBack:
      return NodeEvent(EventKind::kNodeBack, "node is back after it was declared dead", inv.node);
    case NodeRegistry::Arrival::kAgain:
      break;
  }
  return std::nullopt;
}

}  // namespace

Coordinator::Coordinator(const Clock* clock, CoordinatorOptions options, EventSink events)
    : clock_(clock),
      options_(options),
      events_(std::move(events)),
      started_(clock->Now()),
      nodes_(clock, NodeRegistry::Options{options.heartbeat_interval, options.heartbeat_timeout,
                                          options.max_heartbeats_per_second}),
      jobs_(clock,
            JobRounds::Options{options.recovery_window, options.sign_membership,
                               options.job_retention, options.kv_limits,
                               options.round_timeout},
            &nodes_, &events_) {}

Coordinator::~Coordinator() { Shutdown(); }

// ---- Nodes --------------------------------------------------------------------------------------

absl::StatusOr<bool> Coordinator::RegisterNode(const NodeInventory& inv,
                                               const std::vector<RunningJob>& running) {
  absl::StatusOr<NodeRegistered> r = Register(nullptr, inv, running);
  if (!r.ok()) return r.status();
  return r->restarted;
}

absl::StatusOr<NodeRegistered> Coordinator::RegisterNodeAs(const Caller& caller,
                                                           const NodeInventory& inv,
                                                           const std::vector<RunningJob>& running) {
  return Register(&caller, inv, running);
}

std::string Coordinator::NewSecret() {
  if (options_.new_secret) return options_.new_secret();
  return absl::StrCat(absl::Hex(absl::Uniform<uint64_t>(secret_gen_), absl::kZeroPad16),
                      absl::Hex(absl::Uniform<uint64_t>(secret_gen_), absl::kZeroPad16));
}

absl::StatusOr<NodeRegistered> Coordinator::Register(const Caller* caller,
                                                     const NodeInventory& inv,
                                                     const std::vector<RunningJob>& running) {
  if (absl::Status s = domain::ValidateInventory(inv, options_.max_gpus_per_node); !s.ok()) {
    return s;
  }
  if (absl::Status s = domain::ValidateRunningJobs(running, options_.max_nodes_per_job); !s.ok()) {
    return s;
  }
  Completions out;
  NodeRegistered result;
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return ShuttingDown();
    if (caller != nullptr) {
      if (absl::Status s = nodes_.MayRegister(*caller, inv.node); !s.ok()) return s;
    }
    if (absl::Status s = nodes_.CheckGpus(inv); !s.ok()) return s;
    // An agent chooses its secret (a random key per incarnation, sent with its registration), so
    // that a registration whose answer was lost, retried, is still its own, and its calls in
    // flight stay valid; a caller without one is given one.
    result.secret = caller != nullptr && caller->node == inv.node &&
                            caller->secret.size() >= domain::kMinNodeSecretBytes
                        ? caller->secret
                        : NewSecret();
    const NodeRegistry::Registration r = nodes_.Register(inv, result.secret);
    if (std::optional<Event> e = RegistrationEvent(r, inv)) Emit(events_, *std::move(e), out);
    result.restarted = r.arrival == NodeRegistry::Arrival::kRestarted;
    result.timing = nodes_.TimingOf(inv.node);
    if (result.restarted) {
      jobs_.DropNode(inv.node, EndReason::kNodeRestarted,
                     absl::StrCat("node '", inv.node, "' restarted"), out);
    } else {
      // A new incarnation runs no generation yet: what it would report belongs to the old one.
      jobs_.Recover(inv.node, running, out);
    }
  }
  RunAll(out);
  return result;
}

absl::Status Coordinator::AuthorizeNode(const Caller& caller, const std::string& node) const {
  absl::MutexLock lock(&mu_);
  return nodes_.Authenticate(caller, node);
}

absl::Status Coordinator::AuthorizeMember(const Caller& caller, const std::string& job,
                                          uint64_t generation) const {
  absl::MutexLock lock(&mu_);
  const absl::flat_hash_map<std::string, uint32_t>* members = jobs_.RunningMembers(job, generation);
  // Not running (or no such job): the call it guards answers its own error.
  if (members == nullptr) return absl::OkStatus();
  const auto authenticated_member = [&](const std::string& node) {
    return members->contains(node) && nodes_.Authenticate(caller, node).ok();
  };
  if (!caller.node.empty() && authenticated_member(caller.node)) return absl::OkStatus();
  for (const std::string& node : caller.certified_nodes) {
    if (authenticated_member(node)) return absl::OkStatus();
  }
  return absl::PermissionDeniedError(absl::StrCat(
      "generation ", generation, " of job '", job.substr(0, domain::kMaxJobNameBytes),
      "' serves its key-value store, barriers and watch only to its member nodes; this call's "
      "sender is ",
      caller.node.empty() && caller.certified_nodes.empty()
          ? "not authenticated as a node"
          : "not authenticated as one of them"));
}

absl::StatusOr<HeartbeatTiming> Coordinator::Heartbeat(const std::string& node,
                                                       uint64_t incarnation) {
  absl::MutexLock lock(&mu_);
  return nodes_.Heartbeat(node, incarnation);
}

HeartbeatTiming Coordinator::HeartbeatTimingOf(const std::string& node) const {
  absl::MutexLock lock(&mu_);
  return nodes_.TimingOf(node);
}

// ---- Jobs ---------------------------------------------------------------------------------------

void Coordinator::JoinJob(const JoinRequest& req, absl::Time deadline, JoinDone done) {
  Completions out;
  absl::Status status = ValidateJoin(req, options_.max_nodes_per_job);
  if (status.ok()) {
    absl::MutexLock lock(&mu_);
    // Admit the node: alive, and the incarnation that registered last.
    status = shut_down_ ? ShuttingDown() : nodes_.CheckCurrent(req.node, req.incarnation);
    if (status.ok()) jobs_.Join(req, deadline, std::move(done), out);
  }
  RunAll(out);
  if (!status.ok()) done(status);
}

absl::Status Coordinator::LeaveNode(const std::string& node, uint64_t incarnation,
                                    const std::string& message) {
  if (message.size() > kMaxReasonBytes) {
    return absl::InvalidArgumentError(absl::StrCat("the message is ", message.size(),
                                                   " bytes; at most ", kMaxReasonBytes));
  }
  Completions out;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<bool> left = nodes_.Depart(node, incarnation);
    if (!left.ok()) return left.status();
    if (*left) {
      const std::string why = absl::StrCat("node '", node, "' left: its agent stopped",
                                           message.empty() ? "" : absl::StrCat(" (", message, ")"));
      Emit(events_, NodeEvent(EventKind::kNodeLeft, why, node), out);
      jobs_.DropNode(node, EndReason::kNodeLeft, why, out);
    }
  }
  RunAll(out);
  return absl::OkStatus();
}

absl::Status Coordinator::FinishJob(const std::string& job, uint64_t generation,
                                    const std::string& node) {
  Completions out;
  absl::Status status;
  {
    absl::MutexLock lock(&mu_);
    status = jobs_.Finish(job, generation, node, out);
  }
  RunAll(out);
  return status;
}

absl::Status Coordinator::LeaveJob(const std::string& job, uint64_t generation,
                                   const std::string& node, const std::string& message) {
  Completions out;
  absl::Status status;
  {
    absl::MutexLock lock(&mu_);
    status = jobs_.Leave(job, generation, node, message, out);
  }
  RunAll(out);
  return status;
}

absl::StatusOr<uint64_t> Coordinator::WatchJob(const std::string& job, uint64_t generation,
                                               WatchDone done) {
  Completions out;
  absl::StatusOr<uint64_t> id;
  {
    absl::MutexLock lock(&mu_);
    id = jobs_.Watch(job, generation, shut_down_, std::move(done), out);
  }
  RunAll(out);
  return id;
}

void Coordinator::CancelWatch(uint64_t id) {
  absl::MutexLock lock(&mu_);
  jobs_.CancelWatch(id);
}

void Coordinator::ResolveGroups(const std::string& job, uint64_t generation,
                                const std::string& node, const std::string& mesh_key,
                                const std::vector<RankSpec>& ranks,
                                std::vector<GroupRequest> groups, absl::Time deadline,
                                absl::Duration partial_after, GroupsDone done) {
  Completions out;
  absl::Status status = domain::ValidateKey(mesh_key);
  if (status.ok() && ranks.empty()) {
    status = absl::InvalidArgumentError("ResolveGroups needs at least one rank's spec");
  }
  // Before the lock: a report's checks under it are linear in its ranks and groups.
  if (status.ok() && (ranks.size() > domain::kMaxRanksPerRequest ||
                      groups.size() > domain::kMaxGroupsPerRequest)) {
    status = absl::InvalidArgumentError(absl::StrCat(
        "ResolveGroups reports ", ranks.size(), " ranks and asks for ", groups.size(),
        " groups; one node's request has at most ", domain::kMaxRanksPerRequest, " ranks and ",
        domain::kMaxGroupsPerRequest, " groups"));
  }
  if (status.ok()) {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<JobRounds::Exchanges> ex =
        shut_down_ ? absl::StatusOr<JobRounds::Exchanges>(ShuttingDown())
                   : jobs_.Exchange(job, generation, mesh_key, node, ranks);
    status = ex.status();
    if (status.ok()) status = ex->groups->Validate(groups);
    if (status.ok()) {
      // The spec first: a rank that built another mesh is refused at once, and if ranks of the
      // mesh already went on, the generation ends so that they learn it too.
      const MeshExchange::Recorded recorded = ex->mesh->Record(node, ranks, out);
      status = recorded.status;
      if (recorded.end_generation) {
        jobs_.EndForMismatch(*ex->job, node, std::string(recorded.status.message()), out);
      }
    }
    if (status.ok() && groups.empty()) {
      jobs_.WaitAdded(deadline);
      ex->mesh->HoldCheck(deadline, std::move(done), out);
    } else if (status.ok()) {
      std::vector<std::vector<uint32_t>> leaders;
      const absl::StatusOr<MintRules>& rules = ex->mesh->Rules();
      status = rules.ok() ? rules->Check(node, ranks, groups, &leaders) : rules.status();
      if (status.ok()) status = ex->groups->CheckMints(groups);
      if (status.ok()) {
        ex->mesh->WentOn();
        jobs_.WaitAdded(ex->groups->Report(std::move(groups), std::move(leaders), clock_->Now(),
                                           {deadline, partial_after}, std::move(done), out));
      }
    }
  }
  RunAll(out);
  if (!status.ok()) done(status);
}

// ---- Key-value store and barriers ---------------------------------------------------------------

template <typename Op>
auto Coordinator::WithStore(const std::string& job, uint64_t generation, absl::Time wait_deadline,
                            Op op)
    -> decltype(op(std::declval<KvStore&>(), std::declval<Completions&>())) {
  using Result = decltype(op(std::declval<KvStore&>(), std::declval<Completions&>()));
  Completions out;
  Result result = [&]() -> Result {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<KvStore*> kv = jobs_.Store(job, generation);
    if (!kv.ok()) return kv.status();
    jobs_.WaitAdded(wait_deadline);
    return op(**kv, out);
  }();
  RunAll(out);
  return result;
}

void Coordinator::KeySet(const std::string& job, uint64_t generation, const std::string& key,
                         std::string value, StatusDone done) {
  absl::Status status = domain::ValidateKey(key);
  if (status.ok()) status = domain::ValidateValue(value);
  if (status.ok()) {
    status = WithStore(job, generation, absl::InfiniteFuture(), [&](KvStore& kv, Completions& out) {
      return kv.Set(key, std::move(value), out);
    });
  }
  done(status);
}

void Coordinator::KeyGet(const std::string& job, uint64_t generation, const std::string& key,
                         bool wait, absl::Time deadline, BytesDone done) {
  absl::Status status = domain::ValidateKey(key);
  if (status.ok()) {
    status = WithStore(job, generation, deadline, [&](KvStore& kv, Completions& out) {
      kv.Get(key, wait, deadline, std::move(done), out);
      return absl::OkStatus();
    });
  }
  if (!status.ok()) done(status);
}

absl::StatusOr<int64_t> Coordinator::KeyAdd(const std::string& job, uint64_t generation,
                                            const std::string& key, int64_t delta) {
  if (absl::Status s = domain::ValidateKey(key); !s.ok()) return s;
  return WithStore(job, generation, absl::InfiniteFuture(),
                   [&](KvStore& kv, Completions& out) { return kv.Add(key, delta, out); });
}

absl::StatusOr<KvStore::CasResult> Coordinator::KeyCompareSet(const std::string& job,
                                                              uint64_t generation,
                                                              const std::string& key,
                                                              const std::string* expected,
                                                              std::string desired) {
  if (absl::Status s = domain::ValidateKey(key); !s.ok()) return s;
  if (absl::Status s = domain::ValidateCompareSet(expected ? *expected : "", desired); !s.ok()) {
    return s;
  }
  return WithStore(job, generation, absl::InfiniteFuture(),
                   [&](KvStore& kv, Completions& out) -> absl::StatusOr<KvStore::CasResult> {
                     return kv.CompareSet(key, expected, std::move(desired), out);
                   });
}

void Coordinator::KeyWait(const std::string& job, uint64_t generation,
                          const std::vector<std::string>& keys, absl::Time deadline,
                          StatusDone done) {
  absl::Status status = domain::ValidateKeys(keys);
  if (status.ok()) {
    status = WithStore(job, generation, deadline, [&](KvStore& kv, Completions& out) {
      kv.Wait(keys, deadline, std::move(done), out);
      return absl::OkStatus();
    });
  }
  if (!status.ok()) done(status);
}

absl::StatusOr<bool> Coordinator::KeyCheck(const std::string& job, uint64_t generation,
                                           const std::vector<std::string>& keys) {
  if (absl::Status s = domain::ValidateKeys(keys); !s.ok()) return s;
  return WithStore(
      job, generation, absl::InfiniteFuture(),
      [&](KvStore& kv, Completions&) -> absl::StatusOr<bool> { return kv.Check(keys); });
}

absl::StatusOr<bool> Coordinator::KeyDelete(const std::string& job, uint64_t generation,
                                            const std::string& key) {
  if (absl::Status s = domain::ValidateKey(key); !s.ok()) return s;
  return WithStore(
      job, generation, absl::InfiniteFuture(),
      [&](KvStore& kv, Completions&) -> absl::StatusOr<bool> { return kv.Delete(key); });
}

absl::StatusOr<int64_t> Coordinator::KeyCount(const std::string& job, uint64_t generation) {
  return WithStore(
      job, generation, absl::InfiniteFuture(),
      [&](KvStore& kv, Completions&) -> absl::StatusOr<int64_t> { return kv.Count(); });
}

void Coordinator::KeyBatch(const std::string& job, uint64_t generation, std::vector<KvOp> ops,
                           absl::Time deadline, BatchDone done) {
  absl::Status status;
  if (ops.empty() || ops.size() > kMaxBatchOps) {
    status = absl::InvalidArgumentError(absl::StrCat("a batch carries 1-", kMaxBatchOps,
                                                     " operations, not ", ops.size()));
  }
  if (status.ok()) {
    status = WithStore(job, generation, deadline, [&](KvStore& kv, Completions& out) {
      kv.Batch(std::move(ops), deadline, std::move(done), out);
      return absl::OkStatus();
    });
  }
  if (!status.ok()) done(status);
}

void Coordinator::Barrier(const std::string& job, uint64_t generation, const std::string& name,
                          const std::string& participant, uint32_t count, absl::Time deadline,
                          StatusDone done) {
  absl::Status status = domain::ValidateKey(name);
  if (status.ok() && (participant.empty() || participant.size() > KvStore::kMaxKeyBytes)) {
    status = absl::InvalidArgumentError("barrier participant must be 1-1024 bytes");
  }
  if (status.ok() && count == 0) {
    status = absl::InvalidArgumentError(
        absl::StrCat("barrier ", domain::Quote(name), " needs a count of at least 1 participant"));
  }
  if (status.ok()) {
    status = WithStore(job, generation, deadline, [&](KvStore& kv, Completions& out) {
      kv.Barrier(name, participant, count, deadline, std::move(done), out);
      return absl::OkStatus();
    });
  }
  if (!status.ok()) done(status);
}

// ---- Time and shutdown --------------------------------------------------------------------------

void Coordinator::CheckDeadlines() {
  Completions out;
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    const absl::Time now = clock_->Now();
    nodes_.ExpireSilent(now, [&](const std::string& node, const std::string& why) {
      Emit(events_, NodeEvent(EventKind::kNodeLost, why, node), out);
      jobs_.DropNode(node, EndReason::kNodeLost, why, out);
    });
    nodes_.ExpireGone(now, options_.node_retention,
                      [&](const std::string& node, const NodeRegistry::Node& record) {
                        Emit(events_,
                             NodeEvent(EventKind::kNodeExpired,
                                       absl::StrCat("node removed: ", record.left ? "left" : "dead",
                                                    " for ",
                                                    absl::FormatDuration(now - record.gone_since)),
                                       node),
                             out);
                      });
    jobs_.CheckDeadlines(now, out);
  }
  RunAll(out);
}

void Coordinator::Shutdown() {
  Completions out;
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
    jobs_.Shutdown(ShuttingDown(), out);
  }
  RunAll(out);
}

// ---- Views --------------------------------------------------------------------------------------

StatusView Coordinator::Status() const {
  absl::MutexLock lock(&mu_);
  StatusView s;
  s.uptime = clock_->Now() - started_;
  s.heartbeat_timeout = nodes_.FairTiming().timeout;
  for (const auto& [name, node] : nodes_.nodes()) {
    (node->alive ? s.nodes_alive : node->left ? s.nodes_left : s.nodes_dead)++;
    if (node->cordoned) ++s.nodes_cordoned;
  }
  jobs_.Tally(s);
  s.waiters = s.waiting.total();
  return s;
}

std::vector<NodeView> Coordinator::Nodes() const {
  absl::MutexLock lock(&mu_);
  std::vector<NodeView> out;
  const absl::Time now = clock_->Now();
  for (const auto& [name, node] : nodes_.nodes()) {
    out.push_back(NodeView{node->inventory, node->alive, now - node->last_heard, node->restarts,
                           jobs_.JobsOf(name), node->cordoned, node->cordon_reason, node->left});
  }
  return out;
}

std::vector<JobView> Coordinator::Jobs() const {
  absl::MutexLock lock(&mu_);
  return jobs_.Views();
}

absl::StatusOr<JobView> Coordinator::Job(const std::string& job, bool waited_keys) const {
  absl::MutexLock lock(&mu_);
  return jobs_.View(job, waited_keys);
}

}  // namespace meshd::coordinator
