// The coordinator state machine (see coordinator.h).
#include "daemon/coordinator/coordinator.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/topology/rank_order.h"
#include "daemon/coordinator/records.h"
#include "daemon/domain/validation.h"

namespace meshd::coordinator {
namespace {

// Events about a node rather than a job carry no generation.
constexpr uint64_t kNoGeneration = 0;
// Lists of nodes in messages are capped so that a 16,384-node job does not write a book.
constexpr size_t kMaxNamesInMessage = 8;

std::string NameList(const std::vector<std::string>& names) {
  if (names.size() <= kMaxNamesInMessage) return absl::StrJoin(names, ", ");
  return absl::StrCat(absl::StrJoin(names.begin(), names.begin() + kMaxNamesInMessage, ", "),
                      " and ", names.size() - kMaxNamesInMessage, " more");
}

void RunAll(Completions& out) {
  for (auto& f : out) f();
  out.clear();
}

}  // namespace

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
  }
  return "unknown";
}

Coordinator::Coordinator(const Clock* clock, CoordinatorOptions options, EventSink events)
    : clock_(clock), options_(options), events_(std::move(events)), started_(clock->Now()) {}

Coordinator::~Coordinator() { Shutdown(); }

void Coordinator::Emit(EventKind kind, std::string what, const std::string& job,
                       const std::string& node, uint64_t generation, Completions& out,
                       absl::Duration rendezvous, EndReason reason) {
  if (!events_) return;
  out.push_back([this, e = Event{kind, std::move(what), job, node, generation, rendezvous,
                                 reason}] { events_(e); });
}

absl::StatusOr<bool> Coordinator::RegisterNode(const NodeInventory& inv,
                                               const std::vector<RunningJob>& running) {
  if (absl::Status s = domain::ValidateInventory(inv, options_.max_gpus_per_node); !s.ok()) return s;
  if (absl::Status s = domain::ValidateRunningJobs(running, options_.max_nodes_per_job); !s.ok()) return s;
  Completions out;
  bool restarted = false;
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return absl::CancelledError("the coordinator is shutting down");
    for (const Gpu& g : inv.gpus) {
      auto owner = gpu_owner_.find(g.uuid);
      if (owner != gpu_owner_.end() && owner->second != inv.node && nodes_[owner->second]->alive) {
        return absl::AlreadyExistsError(absl::StrCat(
            "GPU ", g.uuid, " is already registered by live node '", owner->second, "'; node '",
            inv.node, "' cannot claim it (two agents on one host, or a copied node name?)"));
      }
    }
    std::unique_ptr<NodeRecord>& rec = nodes_[inv.node];
    if (rec == nullptr) {
      rec = std::make_unique<NodeRecord>();
      Emit(EventKind::kNodeRegistered,
           absl::StrCat("node registered with ", inv.gpus.size(), " GPUs",
                        !inv.gpus.empty() && inv.gpus[0].simulated ? " (simulated)" : ""),
           "", inv.node, kNoGeneration, out);
    } else if (rec->inventory.incarnation != inv.incarnation) {
      restarted = true;
      ++rec->restarts;
      Emit(EventKind::kNodeRestarted,
           absl::StrCat("node restarted (incarnation ", rec->inventory.incarnation, " -> ",
                        inv.incarnation, ")"),
           "", inv.node, kNoGeneration, out);
      DropNode(inv.node, EndReason::kNodeRestarted, absl::StrCat("node '", inv.node, "' restarted"),
               out);
    } else if (!rec->alive) {
      Emit(EventKind::kNodeBack, "node is back after it was declared dead", "", inv.node,
           kNoGeneration, out);
    }
    for (const Gpu& g : rec->inventory.gpus) gpu_owner_.erase(g.uuid);
    for (const Gpu& g : inv.gpus) gpu_owner_[g.uuid] = inv.node;
    rec->inventory = inv;
    std::vector<std::string> cliques;
    for (const Gpu& g : inv.gpus) cliques.push_back(g.nvlink_clique);
    rec->clique = topology::NodeClique(cliques);
    rec->last_heard = clock_->Now();
    Tell(*rec);
    rec->alive = true;
    // A new incarnation runs no generation yet: what it would report belongs to the old one.
    if (!restarted) RecoverJobs(inv.node, running, out);
  }
  RunAll(out);
  return restarted;
}

absl::StatusOr<HeartbeatTiming> Coordinator::Heartbeat(const std::string& node,
                                                       uint64_t incarnation) {
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(node);
  if (it == nodes_.end()) {
    return absl::NotFoundError(absl::StrCat("node '", node, "' is not registered; register first"));
  }
  NodeRecord& rec = *it->second;
  if (!rec.alive) {
    return absl::NotFoundError(absl::StrCat("node '", node,
                                            "' was declared dead after missing heartbeats; "
                                            "register again"));
  }
  if (rec.inventory.incarnation != incarnation) {
    return absl::FailedPreconditionError(
        absl::StrCat("node '", node, "' incarnation ", incarnation, " was replaced by incarnation ",
                     rec.inventory.incarnation, "; this agent is stale"));
  }
  rec.last_heard = clock_->Now();
  return Tell(rec);
}

HeartbeatTiming Coordinator::CurrentTiming() const {
  HeartbeatTiming t{options_.heartbeat_interval, options_.heartbeat_timeout};
  const double per_interval =
      options_.max_heartbeats_per_second * absl::ToDoubleSeconds(options_.heartbeat_interval);
  if (options_.max_heartbeats_per_second == 0 || nodes_.size() <= per_interval) return t;
  const double scale = static_cast<double>(nodes_.size()) / per_interval;
  return HeartbeatTiming{t.interval * scale, t.timeout * scale};
}

namespace {
double Hz(const HeartbeatTiming& t) {
  return t.interval > absl::ZeroDuration() ? 1 / absl::ToDoubleSeconds(t.interval) : 0;
}
}  // namespace

HeartbeatTiming Coordinator::Tell(NodeRecord& rec) {
  const HeartbeatTiming fair = CurrentTiming();
  HeartbeatTiming t = fair;
  // A new node's registration (or a heartbeat) during a burst of registrations: the nodes before
  // it were told intervals for a smaller cluster and keep them until their next heartbeat, which
  // comes within one fair interval and corrects them. Where their promised rate leaves less room
  // than this node's fair share, its interval stretches to what fits, at most to twice the fair
  // one, so its first heartbeat comes after theirs were corrected. Without this, 16,384 agents
  // registering at once heartbeat at ~2.5x the cap until the first answers reach them.
  const double others = std::max(0.0, promised_hz_ - (rec.alive ? Hz(rec.timing) : 0));
  const double room = options_.max_heartbeats_per_second - others;
  if (options_.max_heartbeats_per_second > 0 && room < Hz(fair) * (1 - 1e-9)) {
    const double stretch = room > 0 ? std::min(Hz(fair) / room, 2.0) : 2.0;
    t = HeartbeatTiming{fair.interval * stretch, fair.timeout * stretch};
  }
  promised_hz_ = others + Hz(t);
  rec.timing = t;
  nodes_due_ = std::min(nodes_due_, rec.last_heard + t.timeout);
  return t;
}

HeartbeatTiming Coordinator::HeartbeatTimingOf(const std::string& node) const {
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(node);
  if (it == nodes_.end()) return {options_.heartbeat_interval, options_.heartbeat_timeout};
  return it->second->timing;
}

void Coordinator::JoinJob(const JoinRequest& req, absl::Time deadline, JoinDone done) {
  Completions out;
  bool taken = false;  // `done` was answered or queued; it must not be queued again
  auto fail = [&out, &done, &taken](absl::Status s) {
    out.push_back([done = std::move(done), s = std::move(s)] { done(s); });
    taken = true;
  };
  absl::Status valid = domain::ValidateName("job", req.job, domain::kMaxJobNameBytes);
  if (valid.ok()) valid = domain::ValidateName("node", req.node, domain::kMaxNodeNameBytes);
  if (valid.ok()) valid = domain::ValidateNodeCount(req.nodes, options_.max_nodes_per_job);
  if (valid.ok() && (req.local_world < 1 || req.local_world > domain::kMaxLocalWorld)) {
    valid = absl::InvalidArgumentError(
        absl::StrCat("local_world ", req.local_world, " must be between 1 and ", domain::kMaxLocalWorld));
  }
  if (!valid.ok()) {
    fail(valid);
    RunAll(out);
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    waits_due_ = std::min(waits_due_, deadline);
    auto node_it = nodes_.find(req.node);
    if (shut_down_) {
      fail(absl::CancelledError("the coordinator is shutting down"));
    } else if (node_it == nodes_.end() || !node_it->second->alive) {
      fail(absl::NotFoundError(absl::StrCat("node '", req.node,
                                            "' is not registered (or was declared dead); its "
                                            "agent must register before joining")));
    } else if (node_it->second->inventory.incarnation != req.incarnation) {
      fail(absl::FailedPreconditionError(
          absl::StrCat("node '", req.node, "' incarnation ", req.incarnation,
                       " is stale; the node is now ", node_it->second->inventory.incarnation)));
    } else {
      std::unique_ptr<JobRecord>& job = jobs_[req.job];
      if (job == nullptr) {
        job = std::make_unique<JobRecord>();
        job->name = req.job;
        job->count = req.nodes;
        job->local_world = req.local_world;
        job->phase_since = clock_->Now();
        Emit(EventKind::kJobCreated,
             absl::StrCat("job created: ", req.nodes.min_nodes,
                          req.nodes.elastic() ? absl::StrCat(":", req.nodes.max_nodes) : "",
                          " nodes of ", req.local_world, " workers"),
             req.job, req.node, job->generation, out);
      }
      JobRecord& j = *job;
      if (!(j.count.min_nodes == req.nodes.min_nodes && j.count.max_nodes == req.nodes.max_nodes) ||
          j.local_world != req.local_world) {
        fail(absl::FailedPreconditionError(absl::StrCat(
            "job '", j.name, "' was started with nodes ", j.count.min_nodes, ":", j.count.max_nodes,
            " and local_world ", j.local_world, "; node '", req.node, "' asks for nodes ",
            req.nodes.min_nodes, ":", req.nodes.max_nodes, " and local_world ", req.local_world,
            " — every node of a job must use the same values")));
      } else if (j.phase == JobPhase::kRecovering) {
        fail(j.RecoveringError());
      } else if (j.phase == JobPhase::kRunning) {
        auto member = j.rank_of.find(req.node);
        if (member != j.rank_of.end()) {
          // A retry from a member: same generation, same answer.
          out.push_back(
              [done = std::move(done), a = j.AssignmentFor(member->second)] { done(a); });
          taken = true;
        } else if (!j.count.elastic()) {
          std::vector<std::string> names;
          for (const Member& m : *j.members) names.push_back(m.node);
          fail(absl::FailedPreconditionError(absl::StrCat(
              "job '", j.name, "' is running generation ", j.generation, " with its ",
              j.members->size(), " nodes (", NameList(names), "); node '", req.node,
              "' is not one of them. A fixed-size job admits no new nodes while it runs: use "
              "another job name, or an elastic size (min:max)")));
        } else if (j.members->size() < j.count.max_nodes) {
          EndGeneration(j, EndReason::kNodeJoining, req.node,
                        absl::StrCat("node '", req.node, "' asks to join; a new round opens"), out);
        } else {
          j.standby[req.node].incarnation = req.incarnation;
          j.standby[req.node].waiters.emplace_back(std::move(done), deadline);
          taken = true;
          Emit(EventKind::kNodeStandby, "node waits for the next round (job is at its max)", j.name,
               req.node, j.generation, out);
        }
      }
      if (!taken && j.phase == JobPhase::kJoining) {
        JobRecord::Joiner& joiner = j.joiners[req.node];
        joiner.incarnation = req.incarnation;
        joiner.waiters.emplace_back(std::move(done), deadline);
        Emit(EventKind::kNodeJoined,
             absl::StrCat("node joined the round (", j.joiners.size(), " of ", j.count.min_nodes,
                          j.count.elastic() ? absl::StrCat(":", j.count.max_nodes) : "", ")"),
             j.name, req.node, j.generation, out);
        if (j.joiners.size() >= j.count.max_nodes) {
          CloseRound(j, out);
        } else if (j.count.elastic() && j.joiners.size() >= j.count.min_nodes &&
                   !j.last_call_deadline) {
          j.last_call_deadline = clock_->Now() + j.count.last_call;
        }
      }
    }
  }
  RunAll(out);
}

void Coordinator::CloseRound(JobRecord& j, Completions& out) {
  std::vector<topology::NodePlacement> placements;
  std::vector<std::string> names;
  for (const auto& [node, joiner] : j.joiners) {
    const NodeRecord& rec = *nodes_.at(node);
    placements.push_back({node, rec.inventory.hostname, rec.clique});
    names.push_back(node);
  }
  auto members = std::make_shared<std::vector<Member>>();
  j.rank_of.clear();
  for (size_t i : topology::TopologyOrder(placements)) {
    const auto node_rank = static_cast<uint32_t>(members->size());
    j.rank_of[placements[i].node] = node_rank;
    members->push_back(Member{placements[i].node, placements[i].hostname, node_rank,
                              j.local_world, placements[i].clique});
  }
  j.members = std::move(members);
  j.phase = JobPhase::kRunning;
  const absl::Duration rendezvous = clock_->Now() - j.phase_since;
  j.phase_since = clock_->Now();
  ++counters_.generations_started;
  j.last_call_deadline.reset();
  j.previous_members.clear();
  // The event first: by the time any node has its rank, the start is logged and counted (a
  // scrape right after a worker attached shows the generation).
  Emit(EventKind::kGenerationStarted,
       absl::StrCat("generation ", j.generation, " started: ", j.members->size(), " nodes, world ",
                    j.members->size() * j.local_world, ", rendezvous ",
                    absl::FormatDuration(rendezvous), " (", NameList(names), ")"),
       j.name, "", j.generation, out, rendezvous);
  for (const Member& m : *j.members) {
    for (auto& [waiter, unused] : j.joiners[m.node].waiters) {
      out.push_back([waiter = std::move(waiter), a = j.AssignmentFor(m.node_rank)] { waiter(a); });
    }
  }
  j.joiners.clear();
}

void Coordinator::EndGeneration(JobRecord& j, EndReason reason, const std::string& node,
                                const std::string& message, Completions& out) {
  if (j.phase != JobPhase::kRunning) return;
  GenerationEnd end{j.name, j.generation, reason, node, message};
  ++counters_.generations_ended;
  // The event first, as for a start: logged and counted before any watcher hears of the end.
  Emit(EventKind::kGenerationEnded, absl::StrCat("generation ", j.generation, " ended: ", message),
       j.name, node, j.generation, out, absl::ZeroDuration(), reason);
  for (auto it = watchers_.begin(); it != watchers_.end();) {
    if (it->second.job == j.name && it->second.generation == j.generation) {
      out.push_back([done = std::move(it->second.done), end] { done(end); });
      it = watchers_.erase(it);
    } else {
      ++it;
    }
  }
  const absl::Status aborted =
      absl::AbortedError(absl::StrCat("generation ", j.generation, " of job '", j.name, "' ended (",
                                      message, "); re-join the job"));
  j.kv.FailAll(aborted, out);
  for (auto& [key, mesh] : j.meshes) mesh.FailAll(aborted, out);
  j.meshes.clear();
  j.last_end = end;
  j.previous_members.clear();
  for (const Member& m : *j.members) {
    if (m.node != node || reason == EndReason::kNodeJoining) j.previous_members.push_back(m.node);
  }
  j.members = NoMembers();
  j.rank_of.clear();
  ++j.generation;
  j.phase = JobPhase::kJoining;
  j.phase_since = clock_->Now();
  j.last_call_deadline.reset();
  j.joiners = std::move(j.standby);
  j.standby.clear();
  if (!j.joiners.empty() && j.joiners.size() >= j.count.max_nodes) {
    CloseRound(j, out);
  } else if (j.count.elastic() && j.joiners.size() >= j.count.min_nodes) {
    j.last_call_deadline = clock_->Now() + j.count.last_call;
  }
}

void Coordinator::DropNode(const std::string& node, EndReason reason, const std::string& message,
                           Completions& out) {
  const absl::Status aborted = absl::AbortedError(message);
  for (auto& [name, job] : jobs_) {
    JobRecord& j = *job;
    if (j.phase == JobPhase::kRunning && j.IsMember(node)) {
      EndGeneration(j, reason, node, message, out);
    } else if (j.phase == JobPhase::kRecovering && j.recovery->rank_of_node.contains(node)) {
      FailRecovery(j, node, message, out);
    }
    for (auto* pool : {&j.joiners, &j.standby}) {
      auto it = pool->find(node);
      if (it == pool->end()) continue;
      for (auto& [waiter, unused] : it->second.waiters) {
        out.push_back([waiter = std::move(waiter), aborted] { waiter(aborted); });
      }
      pool->erase(it);
    }
    if (j.phase == JobPhase::kJoining && j.joiners.size() < j.count.min_nodes) {
      j.last_call_deadline.reset();
    }
  }
}

absl::StatusOr<uint64_t> Coordinator::WatchJob(const std::string& job, uint64_t generation,
                                               WatchDone done) {
  Completions out;
  uint64_t id = 0;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(job);
    if (it == jobs_.end())
      return absl::NotFoundError(absl::StrCat("job '", job, "' does not exist"));
    JobRecord& j = *it->second;
    if (generation > j.generation ||
        (generation == j.generation && j.phase == JobPhase::kJoining)) {
      return absl::FailedPreconditionError(
          absl::StrCat("generation ", generation, " of job '", job,
                       "' has not started; the job is at generation ", j.generation,
                       j.phase == JobPhase::kJoining ? " (joining)" : " (running)"));
    }
    if (generation < j.generation) {
      GenerationEnd end =
          j.last_end && j.last_end->generation == generation
              ? *j.last_end
              : GenerationEnd{job, generation, EndReason::kNodeLeft, "",
                              absl::StrCat("generation ", generation, " ended earlier")};
      out.push_back([done = std::move(done), end] { done(end); });
    } else if (shut_down_) {
      out.push_back([done = std::move(done), job, generation] {
        done(GenerationEnd{job, generation, EndReason::kShutdown, "", "coordinator shutting down"});
      });
    } else {
      id = next_watch_id_++;
      watchers_.emplace(id, Watcher{job, generation, std::move(done)});
    }
  }
  RunAll(out);
  return id;
}

void Coordinator::CancelWatch(uint64_t id) {
  absl::MutexLock lock(&mu_);
  watchers_.erase(id);
}

absl::StatusOr<KvStore*> Coordinator::Store(const std::string& job, uint64_t generation) {
  absl::StatusOr<JobRecord*> j = Running(job, generation);
  if (!j.ok()) return j.status();
  return &(*j)->kv;
}

absl::StatusOr<Coordinator::JobRecord*> Coordinator::Running(const std::string& job,
                                                             uint64_t generation) {
  auto it = jobs_.find(job);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("job '", job, "' does not exist"));
  JobRecord& j = *it->second;
  if (generation < j.generation) {
    return absl::AbortedError(
        absl::StrCat("generation ", generation, " of job '", job, "' has ended",
                     j.last_end ? absl::StrCat(" (", j.last_end->message, ")") : "",
                     "; the job is at generation ", j.generation, ": re-join"));
  }
  if (generation == j.generation && j.phase == JobPhase::kRecovering) return j.RecoveringError();
  if (generation > j.generation || j.phase == JobPhase::kJoining) {
    return absl::FailedPreconditionError(absl::StrCat(
        "generation ", generation, " of job '", job, "' is not running; the job is at generation ",
        j.generation, j.phase == JobPhase::kJoining ? ", still joining" : ""));
  }
  return &j;
}

absl::Status Coordinator::LeaveJob(const std::string& job, uint64_t generation,
                                   const std::string& node, const std::string& message) {
  Completions out;
  absl::Status status;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<JobRecord*> j = Running(job, generation);
    if (!j.ok()) {
      status = j.status();
    } else if (!(*j)->IsMember(node)) {
      status = absl::FailedPreconditionError(absl::StrCat(
          "node '", node, "' is not a member of generation ", generation, " of job '", job, "'"));
    } else {
      EndGeneration(**j, EndReason::kNodeLeft, node,
                    message.empty() ? absl::StrCat("node '", node, "' left") : message, out);
    }
  }
  RunAll(out);
  return status;
}

void Coordinator::ResolveGroups(const std::string& job, uint64_t generation,
                                const std::string& node, const std::string& mesh_key,
                                const std::vector<RankSpec>& ranks,
                                std::vector<GroupRequest> groups, absl::Time deadline,
                                GroupsDone done) {
  Completions out;
  absl::Status status = domain::ValidateKey(mesh_key);
  if (status.ok() && ranks.empty()) {
    status = absl::InvalidArgumentError("ResolveGroups needs at least one rank's spec");
  }
  if (status.ok()) {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<JobRecord*> j = shut_down_
                                       ? absl::CancelledError("the coordinator is shutting down")
                                       : Running(job, generation);
    if (j.ok()) {
      waits_due_ = std::min(waits_due_, deadline);
      JobRecord& rec = **j;
      auto it =
          rec.meshes
              .try_emplace(mesh_key, job, mesh_key,
                           static_cast<uint32_t>(rec.members->size()) * rec.local_world, &counters_)
              .first;
      it->second.Report(node, ranks, std::move(groups), deadline, std::move(done), out);
    } else {
      status = j.status();
    }
  }
  if (!status.ok()) out.push_back([done = std::move(done), status] { done(status); });
  RunAll(out);
}

void Coordinator::KeySet(const std::string& job, uint64_t generation, const std::string& key,
                         std::string value, StatusDone done) {
  Completions out;
  absl::Status status = domain::ValidateKey(key);
  if (status.ok() && value.size() > KvStore::kMaxValueBytes) {
    status = absl::InvalidArgumentError(absl::StrCat(
        "value of ", value.size(), " bytes is larger than the limit of ", KvStore::kMaxValueBytes));
  }
  if (status.ok()) {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<KvStore*> kv = Store(job, generation);
    if (kv.ok()) {
      (*kv)->Set(key, std::move(value), out);
    } else {
      status = kv.status();
    }
  }
  out.push_back([done = std::move(done), status] { done(status); });
  RunAll(out);
}

void Coordinator::KeyGet(const std::string& job, uint64_t generation, const std::string& key,
                         bool wait, absl::Time deadline, BytesDone done) {
  Completions out;
  absl::Status status = domain::ValidateKey(key);
  if (status.ok()) {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<KvStore*> kv = Store(job, generation);
    if (kv.ok()) {
      waits_due_ = std::min(waits_due_, deadline);
      (*kv)->Get(key, wait, deadline, std::move(done), out);
    } else {
      status = kv.status();
    }
  }
  if (!status.ok()) out.push_back([done = std::move(done), status] { done(status); });
  RunAll(out);
}

absl::StatusOr<int64_t> Coordinator::KeyAdd(const std::string& job, uint64_t generation,
                                            const std::string& key, int64_t delta) {
  if (absl::Status s = domain::ValidateKey(key); !s.ok()) return s;
  Completions out;
  absl::StatusOr<int64_t> result;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<KvStore*> kv = Store(job, generation);
    result = kv.ok() ? (*kv)->Add(key, delta, out) : absl::StatusOr<int64_t>(kv.status());
  }
  RunAll(out);
  return result;
}

absl::StatusOr<KvStore::CasResult> Coordinator::KeyCompareSet(const std::string& job,
                                                              uint64_t generation,
                                                              const std::string& key,
                                                              const std::string* expected,
                                                              std::string desired) {
  if (absl::Status s = domain::ValidateKey(key); !s.ok()) return s;
  if (desired.size() > KvStore::kMaxValueBytes) {
    return absl::InvalidArgumentError("desired value is larger than the limit");
  }
  Completions out;
  absl::StatusOr<KvStore::CasResult> result;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<KvStore*> kv = Store(job, generation);
    if (kv.ok()) {
      result = (*kv)->CompareSet(key, expected, std::move(desired), out);
    } else {
      result = kv.status();
    }
  }
  RunAll(out);
  return result;
}

namespace {

absl::Status ValidateKeys(const std::vector<std::string>& keys) {
  if (keys.empty() || keys.size() > Coordinator::kMaxWaitKeys) {
    return absl::InvalidArgumentError(absl::StrCat("a wait or check names 1-",
                                                   Coordinator::kMaxWaitKeys, " keys, not ",
                                                   keys.size()));
  }
  for (const std::string& k : keys) {
    if (absl::Status s = domain::ValidateKey(k); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace

void Coordinator::KeyWait(const std::string& job, uint64_t generation,
                          const std::vector<std::string>& keys, absl::Time deadline,
                          StatusDone done) {
  Completions out;
  absl::Status status = ValidateKeys(keys);
  if (status.ok()) {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<KvStore*> kv = Store(job, generation);
    if (kv.ok()) {
      waits_due_ = std::min(waits_due_, deadline);
      (*kv)->Wait(keys, deadline, std::move(done), out);
    } else {
      status = kv.status();
    }
  }
  if (!status.ok()) out.push_back([done = std::move(done), status] { done(status); });
  RunAll(out);
}

absl::StatusOr<bool> Coordinator::KeyCheck(const std::string& job, uint64_t generation,
                                           const std::vector<std::string>& keys) {
  if (absl::Status s = ValidateKeys(keys); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  absl::StatusOr<KvStore*> kv = Store(job, generation);
  if (!kv.ok()) return kv.status();
  return (*kv)->Check(keys);
}

absl::StatusOr<bool> Coordinator::KeyDelete(const std::string& job, uint64_t generation,
                                            const std::string& key) {
  if (absl::Status s = domain::ValidateKey(key); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  absl::StatusOr<KvStore*> kv = Store(job, generation);
  if (!kv.ok()) return kv.status();
  return (*kv)->Delete(key);
}

absl::StatusOr<int64_t> Coordinator::KeyCount(const std::string& job, uint64_t generation) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<KvStore*> kv = Store(job, generation);
  if (!kv.ok()) return kv.status();
  return (*kv)->Count();
}

void Coordinator::Barrier(const std::string& job, uint64_t generation, const std::string& name,
                          const std::string& participant, uint32_t count, absl::Time deadline,
                          StatusDone done) {
  Completions out;
  absl::Status status = domain::ValidateKey(name);
  if (status.ok() && (participant.empty() || participant.size() > KvStore::kMaxKeyBytes)) {
    status = absl::InvalidArgumentError("barrier participant must be 1-1024 bytes");
  }
  if (status.ok() && count == 0) {
    status = absl::InvalidArgumentError(
        absl::StrCat("barrier '", name, "' needs a count of at least 1 participant"));
  }
  if (status.ok()) {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<KvStore*> kv = Store(job, generation);
    if (kv.ok()) {
      waits_due_ = std::min(waits_due_, deadline);
      (*kv)->Barrier(name, participant, count, deadline, std::move(done), out);
    } else {
      status = kv.status();
    }
  }
  if (!status.ok()) out.push_back([done = std::move(done), status] { done(status); });
  RunAll(out);
}

absl::Time Coordinator::ExpireJoinWaits(JobRecord& j, absl::Time now, Completions& out) {
  absl::Time next = absl::InfiniteFuture();
  for (auto* pool : {&j.joiners, &j.standby}) {
    for (auto it = pool->begin(); it != pool->end();) {
      auto& waiters = it->second.waiters;
      for (auto w = waiters.begin(); w != waiters.end();) {
        if (w->second > now) {
          next = std::min(next, w->second);
          ++w;
          continue;
        }
        const std::vector<std::string> joined = j.JoinerNames();
        out.push_back(
            [waiter = std::move(w->first),
             msg = absl::StrCat("job '", j.name, "' did not start in time: ", joined.size(), " of ",
                                j.count.min_nodes,
                                j.count.elastic() ? absl::StrCat(":", j.count.max_nodes) : "",
                                " nodes joined (", NameList(joined), ")")] {
              waiter(absl::DeadlineExceededError(msg));
            });
        w = waiters.erase(w);
      }
      it = waiters.empty() ? pool->erase(it) : std::next(it);
    }
  }
  return next;
}

void Coordinator::CheckDeadlines() {
  Completions out;
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    const absl::Time now = clock_->Now();
    if (now >= nodes_due_) {
      absl::Time next = absl::InfiniteFuture();
      for (auto& [name, rec] : nodes_) {
        if (!rec->alive) continue;
        if (now - rec->last_heard <= rec->timing.timeout) {
          next = std::min(next, rec->last_heard + rec->timing.timeout);
          continue;
        }
        rec->alive = false;
        promised_hz_ = std::max(0.0, promised_hz_ - Hz(rec->timing));
        const std::string message =
            absl::StrCat("node '", name, "' lost: no heartbeat for ",
                         absl::FormatDuration(now - rec->last_heard), " (timeout ",
                         absl::FormatDuration(rec->timing.timeout), ")");
        Emit(EventKind::kNodeLost, message, "", name, kNoGeneration, out);
        DropNode(name, EndReason::kNodeLost, message, out);
      }
      nodes_due_ = next;
    }
    const bool waits_due = now >= waits_due_;
    absl::Time next_wait = absl::InfiniteFuture();
    for (auto& [name, job] : jobs_) {
      JobRecord& j = *job;
      if (waits_due) next_wait = std::min(next_wait, ExpireJoinWaits(j, now, out));
      if (j.phase == JobPhase::kJoining) {
        if (j.count.elastic() && j.joiners.size() < j.count.min_nodes) j.last_call_deadline.reset();
        if (j.last_call_deadline && *j.last_call_deadline <= now) CloseRound(j, out);
      }
      if (!waits_due) continue;
      next_wait = std::min(next_wait, ExpireRecovery(j, now, out));
      next_wait = std::min(next_wait, j.kv.ExpireWaits(now, out));
      for (auto& [key, mesh] : j.meshes) {
        next_wait = std::min(next_wait, mesh.ExpireWaits(now, out));
      }
    }
    if (waits_due) waits_due_ = next_wait;
  }
  RunAll(out);
}

void Coordinator::Shutdown() {
  Completions out;
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
    const absl::Status cancelled = absl::CancelledError("the coordinator is shutting down");
    for (auto& [name, job] : jobs_) {
      for (auto* pool : {&job->joiners, &job->standby}) {
        for (auto& [node, joiner] : *pool) {
          for (auto& [waiter, unused] : joiner.waiters) {
            out.push_back([waiter = std::move(waiter), cancelled] { waiter(cancelled); });
          }
        }
        pool->clear();
      }
      job->kv.FailAll(cancelled, out);
      for (auto& [key, mesh] : job->meshes) mesh.FailAll(cancelled, out);
    }
    for (auto& [id, w] : watchers_) {
      out.push_back([done = std::move(w.done),
                     end = GenerationEnd{w.job, w.generation, EndReason::kShutdown, "",
                                         "coordinator shutting down"}] { done(end); });
    }
    watchers_.clear();
  }
  RunAll(out);
}

JobView Coordinator::View(const JobRecord& j) const {
  JobView v;
  v.job = j.name;
  v.phase = j.phase;
  v.generation = j.generation;
  v.nodes = j.count;
  v.in_phase = clock_->Now() - j.phase_since;
  if (j.phase == JobPhase::kRunning) {
    v.members = *j.members;
    v.world_size = static_cast<uint32_t>(j.members->size()) * j.local_world;
  } else if (j.phase == JobPhase::kRecovering) {
    v.members = ReportedMembers(j);
    v.world_size = j.recovery->num_nodes * j.local_world;
  } else {
    for (const auto& [node, joiner] : j.joiners) {
      const NodeRecord& rec = *nodes_.at(node);
      v.members.push_back(Member{node, rec.inventory.hostname, 0, j.local_world, rec.clique});
    }
    for (const std::string& n : j.previous_members) {
      if (!j.joiners.contains(n)) v.missing.push_back(n);
    }
  }
  if (j.last_end) {
    v.has_last_end = true;
    v.last_end = *j.last_end;
  }
  return v;
}

StatusView Coordinator::Status() const {
  absl::MutexLock lock(&mu_);
  StatusView s;
  s.uptime = clock_->Now() - started_;
  s.heartbeat_timeout = CurrentTiming().timeout;
  for (const auto& [name, rec] : nodes_) (rec->alive ? s.nodes_alive : s.nodes_dead)++;
  for (const auto& [name, job] : jobs_) {
    // A recovering generation is running on its workers.
    (job->phase == JobPhase::kJoining ? s.jobs_joining : s.jobs_running)++;
    for (const auto* pool : {&job->joiners, &job->standby}) {
      for (const auto& [node, joiner] : *pool) s.waiting.join += joiner.waiters.size();
    }
    s.waiting.kv += job->kv.waiters();
    for (const auto& [key, mesh] : job->meshes) s.waiting.groups += mesh.waiters();
  }
  s.waiting.watch = watchers_.size();
  s.waiters = s.waiting.total();
  s.counters = counters_;
  return s;
}

std::vector<NodeView> Coordinator::Nodes() const {
  absl::MutexLock lock(&mu_);
  std::vector<NodeView> out;
  const absl::Time now = clock_->Now();
  for (const auto& [name, rec] : nodes_) {
    NodeView v{rec->inventory, rec->alive, now - rec->last_heard, rec->restarts, {}};
    for (const auto& [job_name, job] : jobs_) {
      if (job->IsMember(name) || job->joiners.contains(name) || job->standby.contains(name)) {
        v.jobs.push_back(job_name);
      }
    }
    out.push_back(std::move(v));
  }
  return out;
}

std::vector<JobView> Coordinator::Jobs() const {
  absl::MutexLock lock(&mu_);
  std::vector<JobView> out;
  for (const auto& [name, job] : jobs_) out.push_back(View(*job));
  return out;
}

absl::StatusOr<JobView> Coordinator::Job(const std::string& job) const {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("job '", job, "' does not exist"));
  return View(*it->second);
}

}  // namespace meshd::coordinator
