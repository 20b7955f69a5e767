// JobRounds: joins, rounds, generations, watches and deadlines (see job_rounds.h). Recovery after
// a coordinator restart is in job_recovery.cc, the read-only views in job_views.cc.
#include "daemon/coordinator/job_rounds.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/topology/rank_order.h"
#include "daemon/coordinator/job_record.h"
#include "daemon/domain/quote.h"

namespace meshd::coordinator {
namespace {

// Lists of nodes in messages are capped so that a 16,384-node job does not write a book.
constexpr size_t kMaxNamesInMessage = 8;

std::string NameList(const std::vector<std::string>& names) {
  if (names.size() <= kMaxNamesInMessage) return absl::StrJoin(names, ", ");
  return absl::StrCat(absl::StrJoin(names.begin(), names.begin() + kMaxNamesInMessage, ", "),
                      " and ", names.size() - kMaxNamesInMessage, " more");
}

// "2" for a fixed size, "2:4" for an elastic one.
std::string SizeText(const NodeCount& c) {
  return absl::StrCat(c.min_nodes, c.elastic() ? absl::StrCat(":", c.max_nodes) : "");
}

// Every node of a job must ask for the same size and local world.
absl::Status SameSpec(const JobRecord& j, const JoinRequest& req) {
  if (j.count.min_nodes == req.nodes.min_nodes && j.count.max_nodes == req.nodes.max_nodes &&
      j.local_world == req.local_world) {
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "job '", j.name, "' was started with nodes ", j.count.min_nodes, ":", j.count.max_nodes,
      " and local_world ", j.local_world, "; node '", req.node, "' asks for nodes ",
      req.nodes.min_nodes, ":", req.nodes.max_nodes, " and local_world ", req.local_world,
      " — every node of a job must use the same values"));
}

}  // namespace

JobRounds::JobRounds(const Clock* clock, Options options, const NodeRegistry* nodes,
                     const EventSink* events)
    : clock_(clock), options_(options), nodes_(nodes), events_(events) {}

JobRounds::~JobRounds() = default;

void JobRounds::Emit(EventKind kind, std::string what, const JobRecord& job,
                     const std::string& node, Completions& out, absl::Duration rendezvous,
                     EndReason reason) {
  coordinator::Emit(
      *events_, Event{kind, std::move(what), job.name, node, job.generation, rendezvous, reason, {}},
      out);
}

// ---- Join ---------------------------------------------------------------------------------------

void JobRounds::Join(const JoinRequest& req, absl::Time deadline, JoinDone done, Completions& out) {
  waits_due_ = std::min(waits_due_, deadline);
  if (absl::Status s = CordonedJoin(req); !s.ok()) {
    out.push_back([done = std::move(done), s] { done(s); });
    return;
  }
  JobRecord& j = FindOrCreate(req, out);
  if (j.phase == JobPhase::kJoining && j.joiners.empty() && j.standby.empty()) {
    // No round open: the name holds no size until its first joiner, so that a join that gave up
    // (or timed out) leaves nothing behind that refuses the next job of that name.
    j.count = req.nodes;
    j.local_world = req.local_world;
  }
  absl::Status refused = SameSpec(j, req);
  if (refused.ok() && j.phase == JobPhase::kRecovering) refused = j.RecoveringError();
  if (!refused.ok()) {
    out.push_back([done = std::move(done), refused] { done(refused); });
    return;
  }
  if (j.phase == JobPhase::kRunning && !JoinRunning(j, req, deadline, done, out)) return;
  JoinRound(j, req, deadline, std::move(done), out);
}

absl::Status JobRounds::CordonedJoin(const JoinRequest& req) const {
  const NodeRegistry::Node& node = nodes_->Get(req.node);
  if (!node.cordoned) return absl::OkStatus();
  auto it = jobs_.find(req.job);
  if (it != jobs_.end() && it->second->phase == JobPhase::kRunning &&
      it->second->IsMember(req.node)) {
    return absl::OkStatus();  // a member asking again: its job carries on
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "node '", req.node, "' is cordoned",
      node.cordon_reason.empty() ? "" : absl::StrCat(" (", node.cordon_reason, ")"),
      ": it joins no new rounds until an operator runs `meshctl node uncordon ", req.node, "`"));
}

JobRecord& JobRounds::FindOrCreate(const JoinRequest& req, Completions& out) {
  std::unique_ptr<JobRecord>& job = jobs_[req.job];
  if (job == nullptr) {
    job = std::make_unique<JobRecord>(options_.kv_limits);
    job->name = req.job;
    job->count = req.nodes;
    job->local_world = req.local_world;
    job->phase_since = clock_->Now();
    Emit(EventKind::kJobCreated,
         absl::StrCat("job created: ", SizeText(req.nodes), " nodes of ", req.local_world,
                      " workers"),
         *job, req.node, out);
  }
  return *job;
}

bool JobRounds::JoinRunning(JobRecord& j, const JoinRequest& req, absl::Time deadline,
                            JoinDone& done, Completions& out) {
  auto member = j.rank_of.find(req.node);
  if (member != j.rank_of.end()) {
    // A retry from a member (or its workers back): same generation, same answer; not done.
    j.finished.erase(req.node);
    out.push_back([done = std::move(done), a = AssignmentOf(j, req.node, member->second)] {
      done(a);
    });
    return false;
  }
  if (!j.count.elastic()) {
    std::vector<std::string> names;
    for (const Member& m : *j.members) names.push_back(m.node);
    out.push_back([done = std::move(done),
                   s = absl::FailedPreconditionError(absl::StrCat(
                       "job '", j.name, "' is running generation ", j.generation, " with its ",
                       j.members->size(), " nodes (", NameList(names), "); node '", req.node,
                       "' is not one of them. A fixed-size job admits no new nodes while it "
                       "runs: use another job name, or an elastic size (min:max)"))] { done(s); });
    return false;
  }
  if (j.members->size() >= j.count.max_nodes) {
    JobRecord::Joiner& standby = j.standby[req.node];
    standby.incarnation = req.incarnation;
    standby.waiters.emplace_back(std::move(done), deadline);
    Emit(EventKind::kNodeStandby, "node waits for the next round (job is at its max)", j, req.node,
         out);
    return false;
  }
  EndGeneration(j, EndReason::kNodeJoining, req.node,
                absl::StrCat("node '", req.node, "' asks to join; a new round opens"), out);
  return true;
}

void JobRounds::JoinRound(JobRecord& j, const JoinRequest& req, absl::Time deadline, JoinDone done,
                          Completions& out) {
  if (j.joiners.empty()) j.round_opened = clock_->Now();
  JobRecord::Joiner& joiner = j.joiners[req.node];
  joiner.incarnation = req.incarnation;
  joiner.waiters.emplace_back(std::move(done), deadline);
  Emit(EventKind::kNodeJoined,
       absl::StrCat("node joined the round (", j.joiners.size(), " of ", SizeText(j.count), ")"), j,
       req.node, out);
  if (j.joiners.size() >= j.count.max_nodes) {
    CloseRound(j, out);
  } else if (j.count.elastic() && j.joiners.size() >= j.count.min_nodes && !j.last_call_deadline) {
    j.last_call_deadline = clock_->Now() + j.count.last_call;
  }
}

// ---- Generations --------------------------------------------------------------------------------

Assignment JobRounds::AssignmentOf(const JobRecord& j, const std::string& node,
                                   uint32_t node_rank) const {
  Assignment a = j.AssignmentFor(node_rank);
  a.membership_token =
      MembershipToken(j.name, j.generation, node, node_rank, a.num_nodes, j.local_world);
  return a;
}

std::string JobRounds::MembershipToken(const std::string& job, uint64_t generation,
                                       const std::string& node, uint32_t node_rank,
                                       uint32_t num_nodes, uint32_t local_world) const {
  if (!options_.sign_membership) return "";
  // Fields a name cannot contain a NUL of apart: one message, one place.
  return options_.sign_membership(absl::StrCat("meshd membership v1", std::string(1, '\0'), job,
                                               std::string(1, '\0'), generation, "/", node,
                                               std::string(1, '\0'), node_rank, "/", num_nodes,
                                               "/", local_world));
}

void JobRounds::CloseRound(JobRecord& j, Completions& out) {
  std::vector<topology::NodePlacement> placements;
  std::vector<std::string> names;
  for (const auto& [node, joiner] : j.joiners) {
    const NodeRegistry::Node& rec = nodes_->Get(node);
    placements.push_back({node, rec.inventory.hostname, rec.clique});
    names.push_back(node);
  }
  auto members = std::make_shared<std::vector<Member>>();
  j.rank_of.clear();
  for (size_t i : topology::TopologyOrder(placements)) {
    const auto node_rank = static_cast<uint32_t>(members->size());
    j.rank_of[placements[i].node] = node_rank;
    members->push_back(Member{placements[i].node, placements[i].hostname, node_rank, j.local_world,
                              placements[i].clique});
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
       j, "", out, rendezvous);
  for (const Member& m : *j.members) {
    for (auto& [waiter, unused] : j.joiners[m.node].waiters) {
      out.push_back(
          [waiter = std::move(waiter), a = AssignmentOf(j, m.node, m.node_rank)] { waiter(a); });
    }
  }
  j.joiners.clear();
}

void JobRounds::EndGeneration(JobRecord& j, EndReason reason, const std::string& node,
                              const std::string& message, Completions& out) {
  if (j.phase != JobPhase::kRunning) return;
  GenerationEnd end{j.name, j.generation, reason, node, message};
  ++counters_.generations_ended;
  // The event first, as for a start: logged and counted before any watcher hears of the end.
  Emit(EventKind::kGenerationEnded, absl::StrCat("generation ", j.generation, " ended: ", message),
       j, node, out, absl::ZeroDuration(), reason);
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
  if (j.groups) j.groups->FailAll(aborted, out);
  j.groups.reset();
  j.last_end = end;
  j.previous_members.clear();
  for (const Member& m : *j.members) {
    if (m.node != node || reason == EndReason::kNodeJoining) j.previous_members.push_back(m.node);
  }
  j.members = NoMembers();
  j.rank_of.clear();
  j.finished.clear();
  ++j.generation;
  j.phase = JobPhase::kJoining;
  j.phase_since = clock_->Now();
  j.last_call_deadline.reset();
  // The nodes that stood by are the new round's first joiners.
  j.joiners = std::move(j.standby);
  j.standby.clear();
  j.round_opened = clock_->Now();
  if (!j.joiners.empty() && j.joiners.size() >= j.count.max_nodes) {
    CloseRound(j, out);
  } else if (j.count.elastic() && j.joiners.size() >= j.count.min_nodes) {
    j.last_call_deadline = clock_->Now() + j.count.last_call;
  }
}

absl::Status JobRounds::Leave(const std::string& job, uint64_t generation, const std::string& node,
                              const std::string& message, Completions& out) {
  absl::StatusOr<JobRecord*> j = Running(job, generation);
  if (!j.ok()) return j.status();
  if (!(*j)->IsMember(node)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "node '", node, "' is not a member of generation ", generation, " of job '", job, "'"));
  }
  EndGeneration(**j, EndReason::kNodeLeft, node,
                message.empty() ? absl::StrCat("node '", node, "' left") : message, out);
  return absl::OkStatus();
}

absl::Status JobRounds::Finish(const std::string& job, uint64_t generation,
                               const std::string& node, Completions& out) {
  absl::StatusOr<JobRecord*> j = Running(job, generation);
  if (!j.ok()) return j.status();
  JobRecord& rec = **j;
  if (!rec.IsMember(node)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "node '", node, "' is not a member of generation ", generation, " of job '", job, "'"));
  }
  rec.finished.insert(node);
  if (rec.finished.size() == rec.members->size()) {
    EndGeneration(rec, EndReason::kJobFinished, "",
                  absl::StrCat("finished: the workers of all ", rec.members->size(),
                               " nodes detached"),
                  out);
  }
  return absl::OkStatus();
}

void JobRounds::DropNode(const std::string& node, EndReason reason, const std::string& message,
                         Completions& out, std::vector<std::pair<std::string, uint64_t>>* ended) {
  const absl::Status aborted = absl::AbortedError(message);
  for (auto& [name, job] : jobs_) {
    JobRecord& j = *job;
    if (j.phase == JobPhase::kRunning && j.IsMember(node)) {
      if (ended != nullptr) ended->emplace_back(name, j.generation);
      EndGeneration(j, reason, node, message, out);
    } else if (j.phase == JobPhase::kRecovering && j.recovery->rank_of_node.contains(node)) {
      FailRecovery(j, node, message, out);
    }
    for (auto* pool : {&j.joiners, &j.standby}) {
      auto it = pool->find(node);
      if (it == pool->end()) continue;
      it->second.Fail(aborted, out);
      pool->erase(it);
    }
    if (j.phase == JobPhase::kJoining && j.joiners.size() < j.count.min_nodes) {
      j.last_call_deadline.reset();
    }
  }
}

absl::StatusOr<uint64_t> JobRounds::End(const std::string& job, const std::string& message,
                                        Completions& out) {
  auto it = jobs_.find(job);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("job ", domain::Quote(job), " does not exist"));
  JobRecord& j = *it->second;
  if (j.phase == JobPhase::kRecovering) return j.RecoveringError();
  // Nobody waits for an ended job's next round: standby nodes (which the end would make that
  // round's first joiners) and an open round's joiners are refused first.
  const absl::Status aborted = absl::AbortedError(
      absl::StrCat("job '", j.name, "' was ended by an operator (", message, "); join it again "
                   "to start its next generation"));
  for (auto* pool : {&j.joiners, &j.standby}) {
    for (auto& [node, joiner] : *pool) joiner.Fail(aborted, out);
    pool->clear();
  }
  uint64_t ended = 0;
  if (j.phase == JobPhase::kRunning) {
    ended = j.generation;
    EndGeneration(j, EndReason::kJobEnded, "", message, out);
  }
  j.last_call_deadline.reset();
  j.previous_members.clear();
  return ended;
}

// ---- The running generation ---------------------------------------------------------------------

absl::StatusOr<JobRecord*> JobRounds::Running(const std::string& job, uint64_t generation) {
  auto it = jobs_.find(job);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("job ", domain::Quote(job), " does not exist"));
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

const absl::flat_hash_map<std::string, uint32_t>* JobRounds::RunningMembers(
    const std::string& job, uint64_t generation) const {
  auto it = jobs_.find(job);
  if (it == jobs_.end()) return nullptr;
  const JobRecord& j = *it->second;
  if (generation != j.generation || j.phase != JobPhase::kRunning) return nullptr;
  return &j.rank_of;
}

absl::StatusOr<KvStore*> JobRounds::Store(const std::string& job, uint64_t generation) {
  absl::StatusOr<JobRecord*> j = Running(job, generation);
  if (!j.ok()) return j.status();
  return &(*j)->kv;
}

absl::StatusOr<JobRounds::Exchanges> JobRounds::Exchange(const std::string& job,
                                                         uint64_t generation,
                                                         const std::string& mesh_key,
                                                         const std::string& node,
                                                         const std::vector<RankSpec>& ranks) {
  absl::StatusOr<JobRecord*> j = Running(job, generation);
  if (!j.ok()) return j.status();
  JobRecord& rec = **j;
  auto member = rec.rank_of.find(node);
  if (member == rec.rank_of.end()) {
    return absl::PermissionDeniedError(
        absl::StrCat("node '", node.substr(0, 64), "' is not a member of generation ", generation,
                     " of job '", job, "'; only its members exchange its groups' ids"));
  }
  const uint64_t first = uint64_t{member->second} * rec.local_world;
  const uint64_t world = uint64_t{rec.local_world} * rec.members->size();
  for (const RankSpec& r : ranks) {
    // A rank beyond the world is malformed (the exchange says INVALID_ARGUMENT); one of another
    // node's is not this node's to report.
    if (r.rank < world && (r.rank < first || r.rank >= first + rec.local_world)) {
      return absl::PermissionDeniedError(absl::StrCat(
          "node '", node, "' holds ranks ", first, "-", first + rec.local_world - 1,
          " of generation ", generation, " of job '", job, "'; it reported rank ", r.rank));
    }
  }
  auto it = rec.meshes.find(mesh_key);
  if (it == rec.meshes.end()) {
    if (rec.meshes.size() >= kMaxMeshesPerGeneration) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "generation ", generation, " of job '", job, "' has ", rec.meshes.size(),
          " meshes, the most one generation may build; reuse a mesh's views instead of building "
          "new meshes"));
    }
    it = rec.meshes
             .try_emplace(mesh_key, job, mesh_key,
                          static_cast<uint32_t>(rec.members->size()) * rec.local_world)
             .first;
  }
  if (!rec.groups) rec.groups.emplace(job, &counters_);
  return Exchanges{&rec, &it->second, &*rec.groups};
}

// ---- Watches ------------------------------------------------------------------------------------

absl::StatusOr<uint64_t> JobRounds::Watch(const std::string& job, uint64_t generation,
                                          bool shut_down, WatchDone done, Completions& out) {
  auto it = jobs_.find(job);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("job ", domain::Quote(job), " does not exist"));
  JobRecord& j = *it->second;
  if (generation > j.generation || (generation == j.generation && j.phase == JobPhase::kJoining)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "generation ", generation, " of job '", job, "' has not started; the job is at generation ",
        j.generation, j.phase == JobPhase::kJoining ? " (joining)" : " (running)"));
  }
  if (generation < j.generation) {
    GenerationEnd end =
        j.last_end && j.last_end->generation == generation
            ? *j.last_end
            : GenerationEnd{job, generation, EndReason::kNodeLeft, "",
                            absl::StrCat("generation ", generation, " ended earlier")};
    out.push_back([done = std::move(done), end] { done(end); });
    return 0;
  }
  if (shut_down) {
    out.push_back([done = std::move(done), job, generation] {
      done(GenerationEnd{job, generation, EndReason::kShutdown, "", "coordinator shutting down"});
    });
    return 0;
  }
  const uint64_t id = next_watch_id_++;
  watchers_.emplace(id, Watcher{job, generation, std::move(done)});
  return id;
}

// ---- Time and shutdown --------------------------------------------------------------------------

absl::Time JobRounds::ExpireJoinWaits(JobRecord& j, absl::Time now, Completions& out) {
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
                                SizeText(j.count), " nodes joined (", NameList(joined), ")")] {
              waiter(absl::DeadlineExceededError(msg));
            });
        w = waiters.erase(w);
      }
      it = waiters.empty() ? pool->erase(it) : std::next(it);
    }
  }
  return next;
}

void JobRounds::AbandonRound(JobRecord& j, absl::Time now, Completions& out) {
  const std::vector<std::string> joined = j.JoinerNames();
  const std::string message = absl::StrCat(
      "the round of job '", j.name, "' did not close within the coordinator's --round-timeout (",
      absl::FormatDuration(options_.round_timeout), "): ", joined.size(), " of ", SizeText(j.count),
      " nodes joined (", NameList(joined), "); join again once every node can");
  for (auto& [node, joiner] : j.joiners) joiner.Fail(absl::DeadlineExceededError(message), out);
  j.joiners.clear();
  j.last_call_deadline.reset();
  j.phase_since = now;
  Emit(EventKind::kRoundTimedOut, message, j, "", out);
}

void JobRounds::CheckDeadlines(absl::Time now, Completions& out) {
  const bool waits_due = now >= waits_due_;
  absl::Time next_wait = absl::InfiniteFuture();
  for (auto it = jobs_.begin(); it != jobs_.end();) {
    JobRecord& j = *it->second;
    if (j.phase == JobPhase::kJoining && j.joiners.empty() && j.standby.empty() &&
        now - j.phase_since >= options_.job_retention) {
      // Nobody joined its next round for the retention: forgotten (a join creates it again).
      Emit(EventKind::kJobExpired,
           absl::StrCat("job removed: no node joined it for ",
                        absl::FormatDuration(now - j.phase_since),
                        j.last_end ? absl::StrCat(" since its generation ", j.generation - 1,
                                                  " ended (", j.last_end->message, ")")
                                   : ""),
           j, "", out);
      it = jobs_.erase(it);
      continue;
    }
    ++it;
    if (waits_due) next_wait = std::min(next_wait, ExpireJoinWaits(j, now, out));
    if (j.phase == JobPhase::kJoining && !j.joiners.empty() &&
        now - j.round_opened >= options_.round_timeout) {
      AbandonRound(j, now, out);
    }
    if (j.phase == JobPhase::kJoining) {
      if (j.count.elastic() && j.joiners.size() < j.count.min_nodes) j.last_call_deadline.reset();
      if (j.last_call_deadline && *j.last_call_deadline <= now) CloseRound(j, out);
    }
    if (!waits_due) continue;
    next_wait = std::min(next_wait, ExpireRecovery(j, now, out));
    next_wait = std::min(next_wait, j.kv.ExpireWaits(now, out));
    for (auto& [key, mesh] : j.meshes) next_wait = std::min(next_wait, mesh.ExpireWaits(now, out));
    if (j.groups) next_wait = std::min(next_wait, j.groups->ExpireWaits(now, out));
  }
  if (waits_due) waits_due_ = next_wait;
}

void JobRounds::Shutdown(const absl::Status& cancelled, Completions& out) {
  for (auto& [name, job] : jobs_) {
    for (auto* pool : {&job->joiners, &job->standby}) {
      for (auto& [node, joiner] : *pool) joiner.Fail(cancelled, out);
      pool->clear();
    }
    job->kv.FailAll(cancelled, out);
    for (auto& [key, mesh] : job->meshes) mesh.FailAll(cancelled, out);
    if (job->groups) job->groups->FailAll(cancelled, out);
  }
  for (auto& [id, w] : watchers_) {
    out.push_back([done = std::move(w.done),
                   end = GenerationEnd{w.job, w.generation, EndReason::kShutdown, "",
                                       "coordinator shutting down"}] { done(end); });
  }
  watchers_.clear();
}

}  // namespace meshd::coordinator
