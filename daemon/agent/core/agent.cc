// The node agent's core (see agent.h).
#include "daemon/agent/core/agent.h"

#include <algorithm>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "common/log/log.h"
#include "daemon/agent/core/agent_errors.h"
#include "daemon/agent/core/mesh_request.h"
#include "daemon/domain/limits.h"
#include "daemon/domain/validation.h"
#include "daemon/domain/quote.h"

namespace meshd::agent {
namespace {

// How long a state change the agent owes the coordinator (a lost worker's LeaveJob) is sent again
// while the coordinator is unreachable or recovering.
constexpr absl::Duration kOwedCallDeadline = absl::Minutes(10);

void RunAll(std::vector<std::function<void()>>& out) {
  for (auto& f : out) f();
  out.clear();
}

const absl::Status& ShuttingDown() {
  static const absl::Status* const kStatus =
      new absl::Status(absl::CancelledError("the agent is shutting down"));
  return *kStatus;
}

// Longest AttachRequest.client_instance.
constexpr size_t kMaxClientInstanceBytes = 64;

// Both attaches come from one worker process, as its client library says.
bool SameProcess(const AttachOrigin& a, const AttachOrigin& b) {
  return !a.instance.empty() && a.instance == b.instance;
}

}  // namespace

Agent::Agent(AgentOptions options, std::vector<domain::Gpu> gpus, const Clock* clock,
             CoordinatorClient* client)
    : options_(std::move(options)),
      clock_(clock),
      client_(client),
      session_(&inventory_, SessionOptions{options_.coordinator, options_.rpc_timeout,
                                           options_.max_backoff},
               clock, client,
               Session::Hooks{[this] { return RunningJobs(); },
                              [this] {
                                Completions out;
                                {
                                  absl::MutexLock lock(&mu_);
                                  LaunchJoins(out);
                                }
                                RunAll(out);
                                // A coordinator that restarted lost what the node reported of
                                // its meshes; others may still wait for it.
                                mesh_.Rereport();
                              }}),
      resender_(clock, &timers_, &session_),
      store_(clock, client, &resender_,
             [this](const std::string& job, uint64_t generation, WorkerUid uid) {
               return KeyScope(job, generation, uid);
             }),
      mesh_(options_.node_name, clock, &timers_, client, &resender_),
      watch_(client, &session_,
             GenerationWatch::Hooks{[this](const std::string& job, uint64_t generation) {
                                      absl::MutexLock lock(&mu_);
                                      return Runs(job, generation);
                                    },
                                    [this](const std::string& job,
                                           const domain::GenerationEnd& end) {
                                      OnGenerationEnd(job, end);
                                    }}) {
  inventory_.node = options_.node_name;
  inventory_.hostname = options_.hostname;
  inventory_.agent_address = options_.agent_address;
  absl::BitGen gen;
  inventory_.incarnation =
      options_.incarnation != 0 ? options_.incarnation : (absl::Uniform<uint64_t>(gen) | 1);
  inventory_.gpus = std::move(gpus);
}

Agent::~Agent() { Stop(); }

void Agent::Start() { session_.Start(); }

void Agent::Tick() {
  const absl::Time now = clock_->Now();
  session_.Tick();
  timers_.Run(now);
  store_.ExpireWaiters(now);
  mesh_.Expire(now);
  Completions out;
  {
    absl::MutexLock lock(&mu_);
    ExpireWorkers(now, out);
  }
  RunAll(out);
}

void Agent::Depart(const std::string& message, absl::Duration timeout,
                   std::function<void(absl::Status)> done) {
  // Its own workers hear of the shutdown first; the ends the coordinator then sends for this
  // node's jobs (NODE_LEFT) are for the other nodes' workers.
  EndWorkers();
  if (!session_.registered()) {
    return done(absl::FailedPreconditionError("not registered with the coordinator"));
  }
  CallOptions options;
  options.timeout = timeout;
  client_->LeaveNode(inventory_.node, inventory_.incarnation, message, options, std::move(done));
}

void Agent::Stop() {
  EndWorkers();
  {
    absl::MutexLock lock(&mu_);
    if (client_shut_down_) return;
    client_shut_down_ = true;
  }
  // Calls in flight answer CANCELLED; those waiting to be sent again are sent now and refused.
  client_->Shutdown();
  timers_.Stop();
  session_.Stop();
}

void Agent::EndWorkers() {
  Completions out;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    for (auto& [name, job] : jobs_) {
      for (auto& [rank, p] : job.pending) {
        if (p.withdrawn) continue;
        out.push_back([done = std::move(p.done)] { done(ShuttingDown()); });
      }
      job.pending.clear();
      out.push_back([this, job = name] { mesh_.End(job, UINT64_MAX, ShuttingDown()); });
      for (auto& [id, w] : job.watchers) {
        out.push_back(
            [done = std::move(w.second),
             end = domain::GenerationEnd{name, w.first, domain::EndReason::kShutdown, "",
                                         "the agent is shutting down"}] { done(end); });
      }
      job.watchers.clear();
    }
  }
  RunAll(out);
}

std::vector<domain::RunningJob> Agent::RunningJobs() const {
  std::vector<domain::RunningJob> running;
  absl::MutexLock lock(&mu_);
  for (const auto& [name, e] : jobs_) {
    if (!e.assignment) continue;
    const domain::Assignment& a = *e.assignment;
    running.push_back(
        domain::RunningJob{name,          a.generation, a.node_rank, a.num_nodes,
                           a.local_world, e.nodes,      a.membership_token});
  }
  return running;
}

AttachResult Agent::ResultFor(const domain::Assignment& a, uint32_t local_rank) const {
  return AttachResult{a, local_rank, a.node_rank * a.local_world + local_rank,
                      inventory_.gpus[local_rank]};
}

uint64_t Agent::Attach(const std::string& job, uint32_t local_rank, uint32_t local_world,
                       const domain::NodeCount& nodes, absl::Time deadline, AttachDone done,
                       WorkerUid uid, AttachOrigin origin) {
  Completions out;
  uint64_t id = 0;
  auto fail = [&out, &done](absl::Status s) {
    out.push_back([done = std::move(done), s = std::move(s)] { done(s); });
  };
  absl::Status valid = domain::ValidateName("job", job, domain::kMaxJobNameBytes);
  if (valid.ok()) valid = domain::ValidateNodeCount(nodes, domain::kMaxNodes);
  if (valid.ok() && (local_world < 1 || local_rank >= local_world)) {
    valid = errors::BadLocalRank(local_rank, local_world);
  }
  if (valid.ok() && origin.instance.size() > kMaxClientInstanceBytes) {
    valid = absl::InvalidArgumentError(absl::StrCat("client_instance is ", origin.instance.size(),
                                                    " bytes; at most ",
                                                    kMaxClientInstanceBytes));
  }
  if (valid.ok() && local_world > inventory_.gpus.size()) {
    valid = errors::TooManyWorkers(job, local_world, inventory_.node, inventory_.gpus.size());
  }
  if (!valid.ok()) {
    fail(valid);
    RunAll(out);
    return 0;
  }
  {
    absl::MutexLock lock(&mu_);
    auto [it, created] = jobs_.try_emplace(job);
    JobEntry& e = it->second;
    absl::Status owner = CheckUid(job, e, uid);
    // The only waiting worker is this process's earlier attach, which this one supersedes.
    const auto only_superseded = [&] {
      if (e.pending.size() != 1) return false;
      const auto& [rank, p] = *e.pending.begin();
      return rank == local_rank && SameProcess(p.origin, origin) &&
             p.origin.sequence < origin.sequence;
    };
    const bool vacant =
        created || (e.phase == JobEntry::Phase::kCollecting &&
                    (e.pending.empty() || (owner.ok() && !stopping_ && only_superseded())));
    if (vacant) {
      // No worker of the job waits on the node: its first one decides its sizes.
      e.local_world = local_world;
      e.nodes = nodes;
    }
    if (stopping_) {
      fail(ShuttingDown());
    } else if (!owner.ok()) {
      fail(std::move(owner));
    } else if (e.local_world != local_world || !(e.nodes == nodes)) {
      fail(errors::WorkersDisagree(job, e.local_world, e.nodes, local_world, nodes));
    } else if (e.phase == JobEntry::Phase::kJoined && e.attached.contains(local_rank) &&
               !e.detached.contains(local_rank) && e.watching[local_rank] > 0) {
      fail(errors::RankRunning(job, local_rank, e.assignment->generation, inventory_.node));
    } else if (e.phase == JobEntry::Phase::kJoined && !e.finishing) {
      // The generation is running and the place is free (its worker detached, or never watched):
      // a worker that restarted gets it again. (Once the node is done with the generation — every
      // worker detached, or one went away — a worker attaching waits below for the next round.)
      out.push_back(
          [done = std::move(done), r = ResultFor(*e.assignment, local_rank)] { done(r); });
      e.attached.insert(local_rank);
      e.detached.erase(local_rank);
      if (!e.owner_uid) e.owner_uid = uid;
    } else if (auto held = e.pending.find(local_rank);
               held != e.pending.end() && !held->second.withdrawn &&
               !SameProcess(held->second.origin, origin)) {
      fail(errors::RankWaiting(job, local_rank, inventory_.node));
    } else if (held != e.pending.end() && !held->second.withdrawn &&
               held->second.origin.sequence >= origin.sequence) {
      // An attach of this process that it gave up, arriving after its later one.
      fail(errors::AttachSuperseded(local_rank));
    } else {
      if (held != e.pending.end()) {
        // The same process asks again (it gave its waiting attach up; the cancellation may come
        // after this call), or the holder went away during the node's join: the new call takes
        // the place (and, while that join is in flight, its deadline).
        if (!held->second.withdrawn) {
          out.push_back([done = std::move(held->second.done), local_rank] {
            done(errors::AttachSuperseded(local_rank));
          });
        }
        e.pending.erase(held);
      }
      // Admitted: the job's first worker binds it to its uid, until no worker of it is on the
      // node (a generation's end does not free it: its workers come back for the next one).
      if (!e.owner_uid) e.owner_uid = uid;
      id = next_attach_id_++;
      e.pending.emplace(local_rank, Pending{std::move(done), deadline, id, std::move(origin)});
      LaunchJoins(out);
    }
  }
  RunAll(out);
  return id;
}

void Agent::ReleaseIfIdle(JobEntry& e) {
  if (e.pending.empty() && !e.assignment) e.owner_uid.reset();
}

absl::Status Agent::CheckUid(const std::string& job, const JobEntry& e, WorkerUid uid) const {
  if (!uid || !e.owner_uid || *uid == *e.owner_uid) return absl::OkStatus();
  for (uint32_t allowed : options_.allow_uids) {
    if (allowed == *uid) return absl::OkStatus();
  }
  return errors::OtherUid(job, inventory_.node, *e.owner_uid, *uid);
}

bool Agent::Gathering(const JobEntry& e) {
  return e.phase == JobEntry::Phase::kCollecting ||
         (e.phase == JobEntry::Phase::kJoined && e.finishing);
}

void Agent::WithdrawAttach(const std::string& job, uint32_t local_rank, uint64_t id) {
  AttachDone done;
  {
    absl::MutexLock lock(&mu_);
    // Workers wait (in `pending`) only while the job gathers or joins.
    auto it = jobs_.find(job);
    if (it == jobs_.end()) return;
    auto p = it->second.pending.find(local_rank);
    if (p == it->second.pending.end() || p->second.id != id || p->second.withdrawn) return;
    done = std::move(p->second.done);
    if (it->second.phase == JobEntry::Phase::kJoining) {
      p->second.withdrawn = true;  // the join in flight counts it; OnJoined skips it
    } else {
      it->second.pending.erase(p);
      ReleaseIfIdle(it->second);
    }
  }
  log::Info("a worker waiting for its job's round went away; its place is free again",
            {{"job", job}, {"local_rank", absl::StrCat(local_rank)}});
  done(absl::CancelledError("the worker went away while waiting for the round"));
}

void Agent::LaunchJoins(Completions& out) {
  if (stopping_ || !session_.registered()) return;
  for (auto& [name, e] : jobs_) {
    if (e.phase != JobEntry::Phase::kCollecting || e.pending.size() < e.local_world) continue;
    e.phase = JobEntry::Phase::kJoining;
    absl::Time deadline = clock_->Now();
    for (const auto& [rank, p] : e.pending) deadline = std::max(deadline, p.deadline);
    e.join_deadline = deadline;
    log::Info("joining job for all local workers",
              {{"job", name}, {"local_world", absl::StrCat(e.local_world)}});
    out.push_back([this, job = name, deadline,
                   req = domain::JoinRequest{name, inventory_.node, inventory_.incarnation,
                                             e.local_world, e.nodes}] {
      resender_.Send<domain::Assignment>(
          "JoinJob", deadline,
          [this, req](CallOptions options, Answer<domain::Assignment> answer) {
            client_->JoinJob(req, options, std::move(answer));
          },
          [this, job](absl::StatusOr<domain::Assignment> a) { OnJoined(job, std::move(a)); },
          /*resend_when_unregistered=*/true);
    });
  }
}

void Agent::OnJoined(const std::string& job, absl::StatusOr<domain::Assignment> result) {
  Completions out;
  {
    absl::MutexLock lock(&mu_);
    JobEntry& e = jobs_[job];
    if (result.ok()) {
      e.phase = JobEntry::Phase::kJoined;
      e.finishing = false;
      e.assignment = *result;
      for (auto& [rank, p] : e.pending) {
        e.attached.insert(rank);  // a withdrawn one's place: free for a restarted worker
        if (p.withdrawn) continue;
        out.push_back([done = std::move(p.done), r = ResultFor(*result, rank)] { done(r); });
      }
      log::Info("job round closed", {{"job", job},
                                     {"generation", absl::StrCat(result->generation)},
                                     {"node_rank", absl::StrCat(result->node_rank)},
                                     {"world", absl::StrCat(result->world_size)}});
      if (!stopping_) {
        out.push_back([this, job, generation = result->generation] {
          watch_.Start(job, generation);
        });
      }
      e.pending.clear();
    } else {
      e.phase = JobEntry::Phase::kCollecting;
      const bool expired = result.status().code() == absl::StatusCode::kDeadlineExceeded;
      for (auto it = e.pending.begin(); it != e.pending.end();) {
        // The join ran out of its time: a worker that took an interrupted attach's place with a
        // later deadline than the join's waits on, and the node joins again for it.
        if (expired && !it->second.withdrawn && it->second.deadline > e.join_deadline) {
          ++it;
          continue;
        }
        if (!it->second.withdrawn) {
          out.push_back([done = std::move(it->second.done), s = result.status()] { done(s); });
        }
        it = e.pending.erase(it);
      }
      ReleaseIfIdle(e);
      log::Warn("joining the job failed", {{"job", job}, {"error", result.status().ToString()}});
      LaunchJoins(out);
    }
  }
  RunAll(out);
}

bool Agent::Runs(const std::string& job, uint64_t generation) const {
  auto it = jobs_.find(job);
  return !stopping_ && it != jobs_.end() && it->second.assignment &&
         it->second.assignment->generation == generation;
}

void Agent::OnGenerationEnd(const std::string& job, const domain::GenerationEnd& end) {
  Completions out;
  {
    absl::MutexLock lock(&mu_);
    JobEntry& e = jobs_[job];
    if (e.assignment && e.assignment->generation == end.generation) {
      // A generation every worker of which left cleanly frees the job on this node; one that
      // ended otherwise keeps it bound (its workers come back for the next).
      const bool all_left =
          !e.attached.empty() && std::includes(e.detached.begin(), e.detached.end(),
                                               e.attached.begin(), e.attached.end());
      e.phase = JobEntry::Phase::kCollecting;
      e.finishing = false;
      e.assignment.reset();
      e.attached.clear();
      e.detached.clear();
      e.watching.clear();
      if (all_left) ReleaseIfIdle(e);
      // Workers that attached while it was finishing join the next round.
      if (!e.pending.empty()) LaunchJoins(out);
    }
    out.push_back([this, job, generation = end.generation,
                   aborted = absl::AbortedError(absl::StrCat("generation ", end.generation,
                                                             " of job '", job,
                                                             "' ended: ", end.message))] {
      mesh_.End(job, generation, aborted);
    });
    e.last_end = end;
    for (auto it = e.watchers.begin(); it != e.watchers.end();) {
      if (it->second.first <= end.generation) {
        out.push_back([done = std::move(it->second.second), end] { done(end); });
        it = e.watchers.erase(it);
      } else {
        ++it;
      }
    }
  }
  log::Info(absl::StrCat("generation ended: ", end.message),
            {{"job", job}, {"generation", absl::StrCat(end.generation)}, {"node", end.node}});
  RunAll(out);
}

absl::StatusOr<std::function<void()>> Agent::Watch(const std::string& job, uint64_t generation,
                                                   uint32_t local_rank, EndDone done,
                                                   WorkerUid uid) {
  Completions out;
  std::function<void()> cancel = [] {};
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(job);
    if (it == jobs_.end()) {
      return absl::NotFoundError(
          absl::StrCat("no worker of this node attached to job ", domain::Quote(job)));
    }
    JobEntry& e = it->second;
    if (absl::Status s = CheckUid(job, e, uid); !s.ok()) return s;
    if (e.last_end && generation <= e.last_end->generation) {
      out.push_back([done = std::move(done), end = *e.last_end] { done(end); });
    } else if (e.assignment && e.assignment->generation == generation) {
      const uint64_t id = next_watch_id_++;
      e.watchers.emplace(id, std::make_pair(generation, std::move(done)));
      ++e.watching[local_rank];
      cancel = [this, job, id, generation, local_rank] {
        {
          absl::MutexLock cancel_lock(&mu_);
          if (auto j = jobs_.find(job); j != jobs_.end()) {
            j->second.watchers.erase(id);
            if (j->second.assignment && j->second.assignment->generation == generation &&
                --j->second.watching[local_rank] <= 0) {
              j->second.watching.erase(local_rank);
            }
          }
        }
        WorkerGone(job, generation, local_rank);
      };
    } else {
      return absl::FailedPreconditionError(absl::StrCat(
          "this node is not in generation ", generation, " of job '", job, "'; attach first"));
    }
  }
  RunAll(out);
  return cancel;
}

absl::Status Agent::Detach(const std::string& job, uint64_t generation, uint32_t local_rank,
                           WorkerUid uid) {
  bool finished = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(job);
    if (it == jobs_.end())
      return absl::NotFoundError(absl::StrCat("no job ", domain::Quote(job), " on this node"));
    JobEntry& e = it->second;
    if (absl::Status s = CheckUid(job, e, uid); !s.ok()) return s;
    if (e.assignment && e.assignment->generation == generation &&
        e.detached.insert(local_rank).second) {
      // Every local rank of the generation attached and then detached cleanly: done here.
      finished = e.attached.size() == e.local_world &&
                 std::includes(e.detached.begin(), e.detached.end(), e.attached.begin(),
                               e.attached.end());
      if (finished) e.finishing = true;
    }
  }
  if (finished) {
    SendOwed(
        "FinishJob", job, generation,
        [this, job, generation](CallOptions options, std::function<void(absl::Status)> done) {
          client_->FinishJob(job, generation, inventory_.node, options, std::move(done));
        },
        "could not tell the coordinator that this node's workers finished",
        /*aborted_is_done=*/true);
  }
  return absl::OkStatus();
}

void Agent::SendOwed(const char* what, const std::string& job, uint64_t generation,
                     std::function<void(CallOptions, std::function<void(absl::Status)>)> send,
                     const char* failure, bool aborted_is_done) {
  resender_.Send<bool>(
      what, clock_->Now() + kOwedCallDeadline,
      [send = std::move(send)](CallOptions options, Answer<bool> answer) {
        send(options, [answer = std::move(answer)](absl::Status s) {
          if (s.ok()) return answer(true);
          answer(s);
        });
      },
      [job, generation, failure, aborted_is_done](absl::StatusOr<bool> r) {
        if (r.ok() || (aborted_is_done && r.status().code() == absl::StatusCode::kAborted)) {
          return;
        }
        log::Warn(failure, {{"job", job},
                            {"generation", absl::StrCat(generation)},
                            {"error", r.status().ToString()}});
      },
      /*resend_when_unregistered=*/true);
}

void Agent::WorkerGone(const std::string& job, uint64_t generation, uint32_t local_rank) {
  std::string message;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(job);
    if (stopping_ || it == jobs_.end()) return;
    JobEntry& e = it->second;
    if (!e.assignment || e.assignment->generation != generation ||
        !e.attached.contains(local_rank) || e.detached.contains(local_rank)) {
      return;  // detached cleanly, or the generation is already over
    }
    e.detached.insert(local_rank);
    e.finishing = true;  // the generation ends: a worker restarting waits for the next round
    message = absl::StrCat("worker local rank ", local_rank, " (rank ",
                           e.assignment->node_rank * e.local_world + local_rank, ") on node '",
                           inventory_.node, "' went away without detaching");
  }
  log::Warn("a worker went away without detaching; leaving the generation",
            {{"job", job},
             {"generation", absl::StrCat(generation)},
             {"local_rank", absl::StrCat(local_rank)}});
  // Owed: sent again until acknowledged, so no failure is lost while the coordinator is away (after
  // its restart, the recovered generation then ends at once).
  SendOwed(
      "LeaveJob", job, generation,
      [this, job, generation, message](CallOptions options,
                                       std::function<void(absl::Status)> done) {
        client_->LeaveJob(job, generation, inventory_.node, message, options, std::move(done));
      },
      "could not tell the coordinator that a worker was lost", /*aborted_is_done=*/false);
}

void Agent::ResolveGroups(v1::RankGroupsRequest request, absl::Time deadline,
                          Answer<v1::ResolveGroupsResponse> done, WorkerUid uid) {
  absl::Status status;
  uint32_t local_world = 0;
  uint32_t first_rank = 0;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(request.job());
    const absl::Status owner =
        it == jobs_.end() ? absl::OkStatus() : CheckUid(request.job(), it->second, uid);
    if (stopping_) {
      status = ShuttingDown();
    } else if (!owner.ok()) {
      status = owner;
    } else if (it == jobs_.end() || !it->second.assignment ||
               it->second.assignment->generation != request.generation() ||
               !it->second.attached.contains(request.local_rank())) {
      const bool ended = it != jobs_.end() && it->second.last_end &&
                         it->second.last_end->generation >= request.generation();
      status = ended ? errors::GenerationEnded(request.job(), request.generation(),
                                               it->second.last_end->message, "")
                     : errors::RankNotAttached(request.job(), request.local_rank(),
                                               request.generation());
    } else {
      local_world = it->second.local_world;
      first_rank = it->second.assignment->node_rank * local_world;
    }
  }
  if (!status.ok()) return done(status);
  mesh_.Ask(std::move(request), local_world, first_rank, clock_->Now(), deadline, std::move(done));
}

void Agent::ExpireWorkers(absl::Time now, Completions& out) {
  for (auto& [name, e] : jobs_) {
    if (!Gathering(e)) continue;
    for (auto it = e.pending.begin(); it != e.pending.end();) {
      if (it->second.deadline > now) {
        ++it;
        continue;
      }
      std::string msg =
          e.finishing
              ? absl::StrCat("job '", name, "' was still finishing generation ",
                             e.assignment->generation, " on node '", inventory_.node,
                             "' (its workers had left it; the coordinator had not ended it yet)")
              : absl::StrCat("only ", e.pending.size(), " of ", e.local_world,
                             " local workers of job '", name, "' attached to node '",
                             inventory_.node, "' in time");
      out.push_back([done = std::move(it->second.done), msg = std::move(msg)] {
        done(absl::DeadlineExceededError(msg));
      });
      it = e.pending.erase(it);
    }
    ReleaseIfIdle(e);
  }
}

absl::Status Agent::KeyScope(const std::string& job, uint64_t generation, WorkerUid uid) const {
  absl::MutexLock lock(&mu_);
  if (stopping_) return ShuttingDown();
  auto it = jobs_.find(job);
  if (it != jobs_.end()) {
    if (absl::Status s = CheckUid(job, it->second, uid); !s.ok()) return s;
  }
  if (it != jobs_.end() && it->second.assignment &&
      it->second.assignment->generation == generation && !it->second.attached.empty()) {
    return absl::OkStatus();
  }
  if (it != jobs_.end() && it->second.last_end && it->second.last_end->generation >= generation) {
    return errors::GenerationEnded(job, generation, it->second.last_end->message,
                                   "its key-value store is gone");
  }
  return errors::NoWorkerAttached(job, generation);
}

domain::AgentView Agent::Status() const {
  domain::AgentView v;
  v.inventory = inventory_;
  v.coordinator = options_.coordinator;
  v.connected = session_.registered();
  const Session::Counts session = session_.counts();
  v.registrations = session.registrations;
  v.heartbeats = session.heartbeats;
  v.heartbeat_failures = session.heartbeat_failures;
  const StoreRelay::Counts store = store_.counts();
  v.key_calls = store.calls;
  v.key_calls_shared = store.shared;
  v.key_coordinator_calls = store.coordinator;
  absl::MutexLock lock(&mu_);
  for (const auto& [name, e] : jobs_) {
    for (const auto& [rank, p] : e.pending) {
      if (!p.withdrawn) v.workers.push_back({name, rank, 0, 0});
    }
    if (e.assignment) {
      for (uint32_t rank : e.attached) {
        // A worker that detached (its client closed) is no longer attached, though its
        // generation runs on until it ends.
        if (e.detached.contains(rank)) continue;
        v.workers.push_back(
            {name, rank, e.assignment->generation, e.assignment->node_rank * e.local_world + rank});
      }
    }
  }
  return v;
}

}  // namespace meshd::agent
