// The node agent's logic (see agent.h).
#include "daemon/agent/agent.h"

#include <algorithm>
#include <optional>
#include <type_traits>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "common/log/log.h"
#include "daemon/domain/limits.h"
#include "daemon/domain/validation.h"
#include "daemon/wire/convert.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

namespace meshd::agent {
namespace {

void RunAll(std::vector<std::function<void()>>& out) {
  for (auto& f : out) f();
  out.clear();
}

using wire::FromGrpc;
using wire::FromProto;
using wire::ToProto;

}  // namespace

// One coordinator WatchJob stream; reports the end to the agent once. A stream lost to the
// transport (UNAVAILABLE: the coordinator unreachable, a connection reset) is not an end: the agent
// watches again, waiting for the coordinator to answer, so a network blip does not end a running
// job. A coordinator that answers without the job may have restarted and not yet heard from this
// node: the agent registers again, reporting the generation (which lets the coordinator rebuild
// the job), and watches once more; a coordinator that still does not know it then ends it.
class Agent::WatchCall final : public grpc::ClientReadReactor<v1::GenerationEnd> {
 public:
  WatchCall(Agent* agent, std::string job, uint64_t generation, bool again, bool after_register)
      : agent_(agent),
        job_(std::move(job)),
        generation_(generation),
        again_(again),
        after_register_(after_register) {}
  grpc::ClientContext* context() { return &ctx_; }
  void Start() {
    req_.set_job(job_);
    req_.set_generation(generation_);
    // Watching again: wait for the coordinator to be reachable instead of failing at once.
    if (again_) ctx_.set_wait_for_ready(true);
    agent_->stub_->async()->WatchJob(&ctx_, &req_, this);
    StartRead(&end_);
    StartCall();
  }
  void OnReadDone(bool ok) override { got_ = ok; }
  void OnDone(const grpc::Status& s) override {
    domain::GenerationEnd end{job_, generation_, domain::EndReason::kNodeLost, "", ""};
    if (got_) {
      end.reason = FromProto(end_.reason());
      end.node = end_.node();
      end.message = end_.message();
    } else if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
      agent_->WatchAgain(job_, generation_, s.error_message());
      agent_->CallDone(&ctx_);
      delete this;
      return;
    } else if (s.error_code() == grpc::StatusCode::NOT_FOUND && !after_register_) {
      agent_->WatchAfterRegistering(job_, generation_);
      agent_->CallDone(&ctx_);
      delete this;
      return;
    } else if (s.error_code() == grpc::StatusCode::NOT_FOUND) {
      end.reason = domain::EndReason::kShutdown;
      end.message = absl::StrCat("the coordinator no longer knows the job (it restarted): ",
                                 s.error_message());
    } else {
      end.message = absl::StrCat("lost the watch on the coordinator: ", s.error_message());
    }
    if (got_ || s.error_code() != grpc::StatusCode::CANCELLED) agent_->OnGenerationEnd(job_, end);
    agent_->CallDone(&ctx_);
    delete this;
  }

 private:
  Agent* const agent_;
  const std::string job_;
  const uint64_t generation_;
  const bool again_;
  const bool after_register_;  // the agent registered again since the coordinator said NOT_FOUND
  grpc::ClientContext ctx_;
  v1::WatchJobRequest req_;
  v1::GenerationEnd end_;
  bool got_ = false;
};

Agent::Agent(AgentOptions options, std::vector<domain::Gpu> gpus, const Clock* clock)
    : options_(std::move(options)), clock_(clock) {
  inventory_.node = options_.node_name;
  inventory_.hostname = options_.hostname;
  inventory_.agent_address = options_.agent_address;
  absl::BitGen gen;
  inventory_.incarnation =
      options_.incarnation != 0 ? options_.incarnation : (absl::Uniform<uint64_t>(gen) | 1);
  inventory_.gpus = std::move(gpus);
  // gRPC's reconnect backoff grows to 120 s by default: after a long coordinator outage an agent
  // could come back minutes late, past the window in which a restarted coordinator takes its
  // running jobs back. Capped at the agent's own registration backoff.
  grpc::ChannelArguments args;
  // Answers carry key-value store values of up to 4 MiB plus their framing.
  args.SetMaxReceiveMessageSize(8 << 20);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(options_.max_backoff)));
  channel_ =
      grpc::CreateCustomChannel(options_.coordinator, grpc::InsecureChannelCredentials(), args);
  stub_ = v1::Coordinator::NewStub(channel_);
}

Agent::~Agent() { Stop(); }

void Agent::Start() {
  loop_ = std::thread([this] { Loop(); });
}

bool Agent::RegisterOnce() {
  v1::RegisterNodeRequest req;
  ToProto(inventory_, req.mutable_inventory());
  {
    // The generations this node's workers run: a coordinator that restarted rebuilds its jobs
    // from them.
    absl::MutexLock lock(&mu_);
    for (const auto& [name, e] : jobs_) {
      if (!e.assignment) continue;
      const domain::Assignment& a = *e.assignment;
      ToProto(domain::RunningJob{name, a.generation, a.node_rank, a.num_nodes, a.local_world,
                                      e.nodes},
              req.add_running_jobs());
    }
  }
  v1::RegisterNodeResponse resp;
  const auto send = [&] {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + options_.rpc_timeout));
    return stub_->RegisterNode(&ctx, req, &resp);
  };
  grpc::Status s = send();
  if (s.error_code() == grpc::StatusCode::INVALID_ARGUMENT && req.running_jobs_size() > 0) {
    // A coordinator that refuses the reports (another version?) must not keep the node out:
    // register without them; those generations then end when their watches find no job.
    log::Warn("the coordinator refused this node's running jobs; registering without them",
              {{"error", s.error_message()}});
    req.clear_running_jobs();
    s = send();
  }
  if (!s.ok()) {
    log::Warn("cannot register with the coordinator; retrying",
              {{"coordinator", options_.coordinator},
               {"code", absl::StatusCodeToString(static_cast<absl::StatusCode>(s.error_code()))},
               {"error", s.error_message()}});
    return false;
  }
  Completions out;
  {
    absl::MutexLock lock(&mu_);
    registered_ = true;
    ++registrations_;
    heartbeat_interval_ = absl::Milliseconds(std::max<uint32_t>(resp.heartbeat_interval_ms(), 10));
    LaunchJoins(out);
    for (auto& f : after_register_) out.push_back(std::move(f));
    after_register_.clear();
  }
  log::Info("registered with the coordinator",
            {{"coordinator", options_.coordinator},
             {"running_jobs", absl::StrCat(req.running_jobs_size())},
             {"node", inventory_.node},
             {"gpus",
              absl::StrCat(inventory_.gpus.size(),
                           !inventory_.gpus.empty() && inventory_.gpus[0].simulated ? " (simulated)"
                                                                                    : "")}});
  RunAll(out);
  return true;
}

void Agent::Loop() {
  absl::BitGen gen;
  absl::Duration backoff = absl::Milliseconds(100);
  while (true) {
    bool registered;
    absl::Duration wait;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      if (register_now_) {
        register_now_ = false;
        registered_ = false;
      }
      registered = registered_;
      wait = heartbeat_interval_;
    }
    if (!registered) {
      if (RegisterOnce()) {
        backoff = absl::Milliseconds(100);
        continue;
      }
      // Jittered exponential backoff, so a restarted coordinator is not hit by every agent at once.
      wait = backoff * absl::Uniform(gen, 0.5, 1.5);
      backoff = std::min(backoff * 2, options_.max_backoff);
    } else {
      v1::HeartbeatRequest req;
      req.set_node(inventory_.node);
      req.set_incarnation(inventory_.incarnation);
      v1::HeartbeatResponse resp;
      grpc::ClientContext ctx;
      ctx.set_deadline(absl::ToChronoTime(absl::Now() + std::min(wait, options_.rpc_timeout)));
      const grpc::Status s = stub_->Heartbeat(&ctx, req, &resp);
      if (s.error_code() == grpc::StatusCode::NOT_FOUND ||
          s.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
        log::Warn("the coordinator does not know this node any more; registering again",
                  {{"error", s.error_message()}});
        absl::MutexLock lock(&mu_);
        registered_ = false;
        continue;
      }
      bool first_failure = false;
      bool recovered = false;
      {
        absl::MutexLock lock(&mu_);
        if (s.ok()) {
          recovered = heartbeat_failing_;
          heartbeat_failing_ = false;
          ++heartbeats_;
        } else {
          first_failure = !heartbeat_failing_;
          heartbeat_failing_ = true;
          ++heartbeat_failures_;
        }
        if (s.ok() && resp.heartbeat_interval_ms() > 0) {
          // The coordinator stretches the interval as the cluster grows (its heartbeat rate cap).
          wait = absl::Milliseconds(std::max<uint32_t>(resp.heartbeat_interval_ms(), 10));
          heartbeat_interval_ = wait;
        }
      }
      if (first_failure) {
        log::Warn(
            "heartbeats to the coordinator fail; retrying",
            {{"node", inventory_.node},
             {"coordinator", options_.coordinator},
             {"code", absl::StatusCodeToString(static_cast<absl::StatusCode>(s.error_code()))},
             {"error", s.error_message()}});
      } else if (recovered) {
        log::Info("heartbeats to the coordinator answered again",
                  {{"node", inventory_.node}, {"coordinator", options_.coordinator}});
      }
    }
    absl::MutexLock lock(&mu_);
    auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || register_now_; };
    mu_.AwaitWithTimeout(absl::Condition(&wake), wait);
  }
}

void Agent::Stop() {
  Completions out;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    for (grpc::ClientContext* ctx : calls_) ctx->TryCancel();
    // Calls waiting to be sent again: sent now, they see the stop and answer CANCELLED.
    for (auto& [at, f] : later_) out.push_back(std::move(f));
    later_.clear();
    for (auto& f : after_register_) out.push_back(std::move(f));
    after_register_.clear();
    const absl::Status cancelled = absl::CancelledError("the agent is shutting down");
    for (auto& [name, job] : jobs_) {
      for (auto& [rank, p] : job.pending) {
        out.push_back([done = std::move(p.done), cancelled] { done(cancelled); });
      }
      job.pending.clear();
      for (auto& [key, asks] : job.meshes) {
        for (auto& [rank, ask] : asks) {
          out.push_back([done = std::move(ask.done), cancelled] { done(cancelled); });
        }
      }
      job.meshes.clear();
      for (auto& [id, w] : job.watchers) {
        out.push_back(
            [done = std::move(w.second),
             end = domain::GenerationEnd{name, w.first, domain::EndReason::kShutdown, "",
                                              "the agent is shutting down"}] { done(end); });
      }
      job.watchers.clear();
    }
  }
  if (loop_.joinable()) loop_.join();
  RunAll(out);
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return calls_.empty(); };
  mu_.AwaitWithTimeout(absl::Condition(&idle), absl::Seconds(5));
}

void Agent::CallDone(grpc::ClientContext* ctx) {
  absl::MutexLock lock(&mu_);
  calls_.erase(ctx);
}

AttachResult Agent::ResultFor(const domain::Assignment& a, uint32_t local_rank) const {
  return AttachResult{a, local_rank, a.node_rank * a.local_world + local_rank,
                      inventory_.gpus[local_rank]};
}

uint64_t Agent::Attach(const std::string& job, uint32_t local_rank, uint32_t local_world,
                       const domain::NodeCount& nodes, absl::Time deadline, AttachDone done) {
  Completions out;
  uint64_t id = 0;
  auto fail = [&out, &done](absl::Status s) {
    out.push_back([done = std::move(done), s = std::move(s)] { done(s); });
  };
  absl::Status valid = domain::ValidateName("job", job, domain::kMaxJobNameBytes);
  if (valid.ok()) valid = domain::ValidateNodeCount(nodes, 100000);
  if (valid.ok() && (local_world < 1 || local_rank >= local_world)) {
    valid = absl::InvalidArgumentError(absl::StrCat("local_rank ", local_rank,
                                                    " must be below local_world ", local_world,
                                                    ", which must be at least 1"));
  }
  if (valid.ok() && local_world > inventory_.gpus.size()) {
    valid = absl::FailedPreconditionError(
        absl::StrCat("job '", job, "' asks for ", local_world, " workers on node '",
                     inventory_.node, "', which has ", inventory_.gpus.size(), " GPUs"));
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
    if (created || (e.phase == JobEntry::Phase::kCollecting && e.pending.empty())) {
      e.local_world = local_world;
      e.nodes = nodes;
    }
    if (stopping_) {
      fail(absl::CancelledError("the agent is shutting down"));
    } else if (e.local_world != local_world || !(e.nodes == nodes)) {
      fail(absl::InvalidArgumentError(
          absl::StrCat("workers of job '", job, "' on this node disagree: local_world ",
                       e.local_world, " and nodes ", e.nodes.min_nodes, ":", e.nodes.max_nodes,
                       " were given first; this one "
                       "asks for local_world ",
                       local_world, " and nodes ", nodes.min_nodes, ":", nodes.max_nodes)));
    } else if (e.phase == JobEntry::Phase::kJoined) {
      // The generation is running: a worker that restarted gets its place again.
      out.push_back(
          [done = std::move(done), r = ResultFor(*e.assignment, local_rank)] { done(r); });
      e.attached.insert(local_rank);
    } else if (e.pending.contains(local_rank)) {
      fail(absl::AlreadyExistsError(absl::StrCat("local rank ", local_rank, " of job '", job,
                                                 "' is already attached on node '", inventory_.node,
                                                 "'; each worker needs its own")));
    } else {
      id = next_attach_id_++;
      e.pending.emplace(local_rank, Pending{std::move(done), deadline, id});
      LaunchJoins(out);
    }
  }
  RunAll(out);
  return id;
}

void Agent::WithdrawAttach(const std::string& job, uint32_t local_rank, uint64_t id) {
  AttachDone done;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(job);
    if (it == jobs_.end() || it->second.phase != JobEntry::Phase::kCollecting) return;
    auto p = it->second.pending.find(local_rank);
    if (p == it->second.pending.end() || p->second.id != id) return;
    done = std::move(p->second.done);
    it->second.pending.erase(p);
  }
  log::Info("a worker waiting for its job's round went away; its place is free again",
            {{"job", job}, {"local_rank", absl::StrCat(local_rank)}});
  done(absl::CancelledError("the worker went away while waiting for the round"));
}

void Agent::LaunchJoins(Completions& out) {
  if (!registered_ || stopping_) return;
  for (auto& [name, e] : jobs_) {
    if (e.phase != JobEntry::Phase::kCollecting || e.pending.size() < e.local_world) continue;
    e.phase = JobEntry::Phase::kJoining;
    absl::Time deadline = clock_->Now();
    for (const auto& [rank, p] : e.pending) deadline = std::max(deadline, p.deadline);
    v1::JoinJobRequest req;
    req.set_job(name);
    req.set_node(inventory_.node);
    req.set_incarnation(inventory_.incarnation);
    req.set_local_world(e.local_world);
    req.mutable_nodes()->set_min_nodes(e.nodes.min_nodes);
    req.mutable_nodes()->set_max_nodes(e.nodes.max_nodes);
    req.mutable_nodes()->set_last_call_ms(
        static_cast<uint32_t>(absl::ToInt64Milliseconds(e.nodes.last_call)));
    log::Info("joining job for all local workers",
              {{"job", name}, {"local_world", absl::StrCat(e.local_world)}});
    out.push_back([this, job = name, req = std::move(req),
                   deadline = absl::Now() + (deadline - clock_->Now())]() mutable {
      CallCoordinator<v1::JoinJobRequest, v1::Assignment>(
          "JoinJob", std::move(req), deadline,
          [this](grpc::ClientContext* ctx, const v1::JoinJobRequest* rq, v1::Assignment* rs,
                 std::function<void(grpc::Status)> cb) {
            stub_->async()->JoinJob(ctx, rq, rs, std::move(cb));
          },
          [this, job](const grpc::Status& s, v1::Assignment& resp) {
            OnJoined(job, s.ok() ? absl::StatusOr<domain::Assignment>(FromProto(resp))
                                 : FromGrpc(s));
          },
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
      e.assignment = *result;
      for (auto& [rank, p] : e.pending) {
        e.attached.insert(rank);
        out.push_back([done = std::move(p.done), r = ResultFor(*result, rank)] { done(r); });
      }
      log::Info("job round closed", {{"job", job},
                                     {"generation", absl::StrCat(result->generation)},
                                     {"node_rank", absl::StrCat(result->node_rank)},
                                     {"world", absl::StrCat(result->world_size)}});
      if (!stopping_) StartWatch(job, result->generation, out);
    } else {
      e.phase = JobEntry::Phase::kCollecting;
      for (auto& [rank, p] : e.pending) {
        out.push_back([done = std::move(p.done), s = result.status()] { done(s); });
      }
      log::Warn("joining the job failed", {{"job", job}, {"error", result.status().ToString()}});
    }
    e.pending.clear();
  }
  RunAll(out);
}

template <typename Req, typename Resp>
void Agent::CallCoordinator(const char* what, Req req, absl::Time deadline,
                            CoordinatorMethod<Req, Resp> send,
                            std::function<void(const grpc::Status&, Resp&)> done,
                            bool resend_when_unregistered, int attempt) {
  struct Call {
    grpc::ClientContext ctx;
    Req req;
    Resp resp;
  };
  auto* call = new Call();
  call->req = std::move(req);
  call->ctx.set_deadline(absl::ToChronoTime(deadline));
  // Again after a transport failure: wait for the coordinator to be reachable (gRPC reconnects
  // with its own backoff) instead of failing at once.
  if (attempt > 0) call->ctx.set_wait_for_ready(true);
  bool stopping;
  {
    absl::MutexLock lock(&mu_);
    stopping = stopping_;
    if (!stopping) calls_.insert(&call->ctx);  // Stop() cancels it, started or not
  }
  if (stopping) {
    done(grpc::Status(grpc::StatusCode::CANCELLED, "the agent is shutting down"), call->resp);
    delete call;
    return;
  }
  send(&call->ctx, &call->req, &call->resp,
       [this, call, what, deadline, send, done = std::move(done), resend_when_unregistered,
        attempt](grpc::Status s) mutable {
         const bool unregistered =
             resend_when_unregistered && s.error_code() == grpc::StatusCode::NOT_FOUND;
         if ((s.error_code() == grpc::StatusCode::UNAVAILABLE || unregistered) &&
             attempt + 1 < kCoordinatorAttempts && absl::Now() < deadline) {
           if (attempt == 0 || unregistered) {
             log::Warn(
                 absl::StrCat(what, unregistered ? " found the node unknown to the coordinator; "
                                                   "sending it again once registered"
                                                 : " failed on the way to (or in) the coordinator; "
                                                   "sending it again"),
                 {{"error", s.error_message()}});
           }
           // Once registered again, a NOT_FOUND is final (the job or node is really unknown).
           auto again = [this, what, req = std::move(call->req), deadline, send,
                         done = std::move(done), resend = resend_when_unregistered && !unregistered,
                         attempt]() mutable {
             CallCoordinator<Req, Resp>(what, std::move(req), deadline, std::move(send),
                                        std::move(done), resend, attempt + 1);
           };
           if (unregistered) {
             RunAfterRegistering(std::move(again));
           } else {
             RunLater(clock_->Now() + std::min(absl::Milliseconds(50) * (1 << std::min(attempt, 5)),
                                               absl::Seconds(1)),
                      std::move(again));
           }
         } else {
           done(s, call->resp);
         }
         CallDone(&call->ctx);
         delete call;
       });
}

void Agent::RunLater(absl::Time at, std::function<void()> f) {
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      later_.emplace(at, std::move(f));
      return;
    }
  }
  f();  // stopping: the call sees it and answers CANCELLED
}

void Agent::RunAfterRegistering(std::function<void()> f) {
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      after_register_.push_back(std::move(f));
      register_now_ = true;  // wakes the loop
      return;
    }
  }
  f();
}

void Agent::StartWatch(const std::string& job, uint64_t generation, Completions& out, bool again,
                       bool after_register) {
  auto* call = new WatchCall(this, job, generation, again, after_register);
  calls_.insert(call->context());
  out.push_back([call] { call->Start(); });
}

bool Agent::Runs(const std::string& job, uint64_t generation) const {
  auto it = jobs_.find(job);
  return !stopping_ && it != jobs_.end() && it->second.assignment &&
         it->second.assignment->generation == generation;
}

void Agent::WatchAgain(const std::string& job, uint64_t generation, const std::string& error) {
  Completions out;
  {
    absl::MutexLock lock(&mu_);
    if (!Runs(job, generation)) return;  // over here already (or stopping): nothing to watch
    StartWatch(job, generation, out, /*again=*/true);
  }
  log::Warn(
      "lost the watch on the coordinator; watching again once it answers (the generation "
      "goes on; an end is reported when the coordinator is back)",
      {{"job", job}, {"generation", absl::StrCat(generation)}, {"error", error}});
  RunAll(out);
}

void Agent::WatchAfterRegistering(const std::string& job, uint64_t generation) {
  {
    absl::MutexLock lock(&mu_);
    if (!Runs(job, generation)) return;
  }
  log::Warn(
      "the coordinator does not know a running job (did it restart?): registering again, "
      "reporting it, then watching it again",
      {{"job", job}, {"generation", absl::StrCat(generation)}});
  RunAfterRegistering([this, job, generation] {
    Completions out;
    {
      absl::MutexLock lock(&mu_);
      if (Runs(job, generation)) {
        StartWatch(job, generation, out, /*again=*/true, /*after_register=*/true);
      }
    }
    RunAll(out);
  });
}

void Agent::OnGenerationEnd(const std::string& job, const domain::GenerationEnd& end) {
  Completions out;
  {
    absl::MutexLock lock(&mu_);
    JobEntry& e = jobs_[job];
    if (e.assignment && e.assignment->generation == end.generation) {
      e.phase = JobEntry::Phase::kCollecting;
      e.assignment.reset();
      e.attached.clear();
      e.detached.clear();
      const absl::Status aborted = absl::AbortedError(
          absl::StrCat("generation ", end.generation, " of job '", job, "' ended: ", end.message));
      for (auto& [key, asks] : e.meshes) {
        for (auto& [rank, ask] : asks) {
          out.push_back([done = std::move(ask.done), aborted] { done(aborted); });
        }
      }
      e.meshes.clear();
    }
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
                                                   uint32_t local_rank, EndDone done) {
  Completions out;
  std::function<void()> cancel = [] {};
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(job);
    if (it == jobs_.end()) {
      return absl::NotFoundError(
          absl::StrCat("no worker of this node attached to job '", job, "'"));
    }
    JobEntry& e = it->second;
    if (e.last_end && generation <= e.last_end->generation) {
      out.push_back([done = std::move(done), end = *e.last_end] { done(end); });
    } else if (e.assignment && e.assignment->generation == generation) {
      const uint64_t id = next_watch_id_++;
      e.watchers.emplace(id, std::make_pair(generation, std::move(done)));
      cancel = [this, job, id, generation, local_rank] {
        {
          absl::MutexLock cancel_lock(&mu_);
          if (auto j = jobs_.find(job); j != jobs_.end()) j->second.watchers.erase(id);
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

void Agent::ResolveGroups(RankGroups request, absl::Time deadline, domain::GroupsDone done) {
  Completions out;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(request.job);
    absl::Status status;
    if (stopping_) {
      status = absl::CancelledError("the agent is shutting down");
    } else if (it == jobs_.end() || !it->second.assignment ||
               it->second.assignment->generation != request.generation ||
               !it->second.attached.contains(request.local_rank)) {
      const bool ended = it != jobs_.end() && it->second.last_end &&
                         it->second.last_end->generation >= request.generation;
      status = ended ? absl::AbortedError(
                           absl::StrCat("generation ", request.generation, " of job '", request.job,
                                        "' ended: ", it->second.last_end->message, "; re-attach"))
                     : absl::FailedPreconditionError(absl::StrCat(
                           "local rank ", request.local_rank, " is not attached to generation ",
                           request.generation, " of job '", request.job, "'; attach first"));
    } else {
      JobEntry& e = it->second;
      auto& asks = e.meshes[request.mesh_key];
      if (asks.contains(request.local_rank)) {
        status = absl::AlreadyExistsError(absl::StrCat(
            "local rank ", request.local_rank, " already asked for mesh '", request.mesh_key, "'"));
      } else {
        const std::string key = request.mesh_key;
        asks.emplace(request.local_rank, MeshAsk{std::move(request), std::move(done), deadline});
        if (asks.size() == e.local_world) SendMesh(it->first, key, out);
      }
    }
    if (!status.ok()) out.push_back([done = std::move(done), status] { done(status); });
  }
  RunAll(out);
}

void Agent::SendMesh(const std::string& job, const std::string& mesh_key, Completions& out) {
  JobEntry& e = jobs_[job];
  std::map<uint32_t, MeshAsk>& asks = e.meshes[mesh_key];
  v1::ResolveGroupsRequest req;
  absl::Time deadline = clock_->Now();
  std::map<std::string, v1::GroupRequest*> merged;
  req.set_job(job);
  req.set_generation(e.assignment->generation);
  req.set_node(inventory_.node);
  req.set_mesh_key(mesh_key);
  for (const auto& [local_rank, ask] : asks) {
    deadline = std::max(deadline, ask.deadline);
    auto* spec = req.add_ranks();
    spec->set_rank(e.assignment->node_rank * e.local_world + local_rank);
    spec->mutable_spec()->set_fingerprint(ask.request.fingerprint);
    spec->mutable_spec()->set_description(ask.request.description);
    for (const domain::GroupRequest& g : ask.request.groups) {
      v1::GroupRequest*& m = merged[g.key];
      if (m == nullptr) {
        m = req.add_groups();
        m->set_key(g.key);
        m->set_num_ids(g.num_ids);
      }
      if (!g.mint_error.empty()) m->set_mint_error(g.mint_error);
      for (const auto& [index, id] : g.minted) {
        v1::MintedId* minted = m->add_minted();
        minted->set_index(index);
        minted->set_id(id);
      }
    }
  }
  out.push_back([this, job, mesh_key, req = std::move(req),
                 deadline = absl::Now() + (deadline - clock_->Now())]() mutable {
    CallCoordinator<v1::ResolveGroupsRequest, v1::ResolveGroupsResponse>(
        "ResolveGroups", std::move(req), deadline,
        [this](grpc::ClientContext* ctx, const v1::ResolveGroupsRequest* rq,
               v1::ResolveGroupsResponse* rs, std::function<void(grpc::Status)> cb) {
          stub_->async()->ResolveGroups(ctx, rq, rs, std::move(cb));
        },
        [this, job, mesh_key](const grpc::Status& s, v1::ResolveGroupsResponse& resp) {
          Completions answers;
          {
            absl::MutexLock lock(&mu_);
            auto j = jobs_.find(job);
            auto m = j == jobs_.end() ? decltype(j->second.meshes)::iterator()
                                      : j->second.meshes.find(mesh_key);
            if (j != jobs_.end() && m != j->second.meshes.end()) {
              std::map<std::string, domain::SharedGroupIds> ids;
              for (const v1::GroupIds& g : resp.groups()) {
                ids[g.key()] = std::make_shared<const domain::GroupIds>(domain::GroupIds{
                    g.key(), std::vector<std::string>(g.ids().begin(), g.ids().end())});
              }
              for (auto& [local_rank, ask] : m->second) {
                if (!s.ok()) {
                  answers.push_back([done = std::move(ask.done), st = FromGrpc(s)] { done(st); });
                  continue;
                }
                std::vector<domain::SharedGroupIds> mine;
                for (const domain::GroupRequest& g : ask.request.groups) {
                  domain::SharedGroupIds& got = ids[g.key];
                  if (got == nullptr) {  // the coordinator left it out: an empty answer
                    got = std::make_shared<const domain::GroupIds>(
                        domain::GroupIds{g.key, {}});
                  }
                  mine.push_back(got);
                }
                answers.push_back(
                    [done = std::move(ask.done), mine = std::move(mine)] { done(mine); });
              }
              j->second.meshes.erase(m);
            }
          }
          RunAll(answers);
        },
        /*resend_when_unregistered=*/true);
  });
}

absl::Status Agent::Detach(const std::string& job, uint64_t generation, uint32_t local_rank) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job);
  if (it == jobs_.end())
    return absl::NotFoundError(absl::StrCat("no job '", job, "' on this node"));
  JobEntry& e = it->second;
  if (e.assignment && e.assignment->generation == generation) e.detached.insert(local_rank);
  return absl::OkStatus();
}

void Agent::WorkerGone(const std::string& job, uint64_t generation, uint32_t local_rank) {
  Completions out;
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
    struct Call {
      grpc::ClientContext ctx;
      v1::LeaveJobRequest req;
      v1::LeaveJobResponse resp;
    };
    auto* call = new Call();
    call->ctx.set_deadline(absl::ToChronoTime(absl::Now() + options_.rpc_timeout));
    call->req.set_job(job);
    call->req.set_generation(generation);
    call->req.set_node(inventory_.node);
    call->req.set_message(absl::StrCat("worker local rank ", local_rank, " (rank ",
                                       e.assignment->node_rank * e.local_world + local_rank,
                                       ") on node '", inventory_.node,
                                       "' went away without detaching"));
    log::Warn("a worker went away without detaching; leaving the generation",
              {{"job", job},
               {"generation", absl::StrCat(generation)},
               {"local_rank", absl::StrCat(local_rank)}});
    calls_.insert(&call->ctx);
    out.push_back([this, call] {
      stub_->async()->LeaveJob(&call->ctx, &call->req, &call->resp, [this, call](grpc::Status s) {
        if (!s.ok()) log::Warn("LeaveJob failed", {{"error", s.error_message()}});
        CallDone(&call->ctx);
        delete call;
      });
    });
  }
  RunAll(out);
}

void Agent::CheckDeadlines() {
  Completions out;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = clock_->Now();
    ExpireSharedWaiters<v1::KeyGetResponse>(now, out);
    ExpireSharedWaiters<v1::KeyWaitResponse>(now, out);
    while (!later_.empty() && later_.begin()->first <= now) {
      out.push_back(std::move(later_.begin()->second));
      later_.erase(later_.begin());
    }
    for (auto& [name, e] : jobs_) {
      for (auto& [key, asks] : e.meshes) {
        if (asks.size() >= e.local_world) continue;  // sent: the coordinator enforces the deadline
        for (auto it = asks.begin(); it != asks.end();) {
          if (it->second.deadline > now) {
            ++it;
            continue;
          }
          out.push_back(
              [done = std::move(it->second.done),
               msg = absl::StrCat("only ", asks.size(), " of ", e.local_world,
                                  " local workers of job '", name, "' asked for mesh '", key,
                                  "' in time")] { done(absl::DeadlineExceededError(msg)); });
          it = asks.erase(it);
        }
      }
      if (e.phase != JobEntry::Phase::kCollecting) continue;
      for (auto it = e.pending.begin(); it != e.pending.end();) {
        if (it->second.deadline > now) {
          ++it;
          continue;
        }
        out.push_back([done = std::move(it->second.done),
                       msg = absl::StrCat("only ", e.pending.size(), " of ", e.local_world,
                                          " local workers of job '", name, "' attached to node '",
                                          inventory_.node, "' in time")] {
          done(absl::DeadlineExceededError(msg));
        });
        it = e.pending.erase(it);
      }
    }
  }
  RunAll(out);
}

AgentStatusView Agent::Status() const {
  absl::MutexLock lock(&mu_);
  AgentStatusView v{inventory_, options_.coordinator, registered_, {}};
  v.registrations = registrations_;
  v.heartbeats = heartbeats_;
  v.heartbeat_failures = heartbeat_failures_;
  v.key_calls = key_calls_;
  v.key_calls_shared = key_calls_shared_;
  for (const auto& [name, e] : jobs_) {
    for (const auto& [rank, p] : e.pending) v.workers.push_back({name, rank, 0, 0});
    if (e.assignment) {
      for (uint32_t rank : e.attached) {
        v.workers.push_back(
            {name, rank, e.assignment->generation, e.assignment->node_rank * e.local_world + rank});
      }
    }
  }
  return v;
}

// ---- The generation's key-value store, relayed for local workers ----

namespace {

// Per request type: the coordinator method's name and how to send it.
template <typename Req>
struct KeyMethod;

#define MESHD_KEY_METHOD(Name)                                              \
  template <>                                                               \
  struct KeyMethod<v1::Name##Request> {                                     \
    using Resp = v1::Name##Response;                                        \
    static constexpr const char* kName = #Name;                             \
    static void Send(v1::Coordinator::Stub* stub, grpc::ClientContext* ctx, \
                     const v1::Name##Request* req, Resp* resp,              \
                     std::function<void(grpc::Status)> cb) {                \
      stub->async()->Name(ctx, req, resp, std::move(cb));                   \
    }                                                                       \
  };
MESHD_KEY_METHOD(KeySet)
MESHD_KEY_METHOD(KeyGet)
MESHD_KEY_METHOD(KeyAdd)
MESHD_KEY_METHOD(KeyCompareSet)
MESHD_KEY_METHOD(KeyWait)
MESHD_KEY_METHOD(KeyCheck)
MESHD_KEY_METHOD(KeyDelete)
MESHD_KEY_METHOD(KeyCount)
#undef MESHD_KEY_METHOD

// Length-prefixed parts, so that no two different calls share a signature.
void AppendPart(std::string& out, absl::string_view part) {
  absl::StrAppend(&out, part.size(), ":", part);
}

// "kind|" and the request's job, generation and key: what identical calls on one key share.
template <typename Req>
std::string KeySignature(absl::string_view kind, const Req& req) {
  std::string sig = absl::StrCat(kind, "|");
  AppendPart(sig, req.job());
  AppendPart(sig, absl::StrCat(req.generation()));
  AppendPart(sig, req.key());
  return sig;
}

// The signature of a call that may share a coordinator call with identical ones; empty when it
// may not (only waits share: KeyGet with wait, KeyWait).
template <typename Req>
std::string ShareSignature(const Req&) {
  return "";
}
template <>
std::string ShareSignature(const v1::KeyGetRequest& req) {
  return req.wait() ? KeySignature("get", req) : "";
}
template <>
std::string ShareSignature(const v1::KeyWaitRequest& req) {
  std::string sig = "wait|";
  AppendPart(sig, req.job());
  AppendPart(sig, absl::StrCat(req.generation()));
  for (const std::string& k : req.keys()) AppendPart(sig, k);
  return sig;
}

}  // namespace

template <>
std::map<std::string, Agent::SharedWait<v1::KeyGetResponse>>& Agent::SharedWaits() {
  return shared_gets_;
}
template <>
std::map<std::string, Agent::SharedWait<v1::KeyWaitResponse>>& Agent::SharedWaits() {
  return shared_key_waits_;
}

namespace {

std::string QuotedKey(absl::string_view key) {
  return absl::StrCat("'", key.size() <= 64 ? key : key.substr(0, 64),
                      key.size() <= 64 ? "" : "...", "'");
}
std::string WaitedKeys(const v1::KeyGetRequest& req) {
  return absl::StrCat("key ", QuotedKey(req.key()));
}
std::string WaitedKeys(const v1::KeyWaitRequest& req) {
  std::string out = req.keys_size() == 1 ? "key " : "keys ";
  for (int i = 0; i < req.keys_size() && i < 4; ++i)
    absl::StrAppend(&out, i ? ", " : "", QuotedKey(req.keys(i)));
  if (req.keys_size() > 4) absl::StrAppend(&out, " and ", req.keys_size() - 4, " more");
  return out;
}

}  // namespace

template <typename Resp>
void Agent::ExpireSharedWaiters(absl::Time now, Completions& out) {
  for (auto& [signature, shared] : SharedWaits<Resp>()) {
    auto& waiters = shared.waiters;
    for (auto it = waiters.begin(); it != waiters.end();) {
      if (it->deadline > now) {
        ++it;
        continue;
      }
      out.push_back([done = std::move(it->done), what = shared.what] {
        Resp empty;
        done(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                          absl::StrCat(what, " not set in time")),
             empty);
      });
      it = waiters.erase(it);
    }
    // An entry left without waiters stays until its coordinator call returns (and erases it).
  }
}

absl::Status Agent::KeyScope(const std::string& job, uint64_t generation) const {
  if (stopping_) return absl::CancelledError("the agent is shutting down");
  auto it = jobs_.find(job);
  if (it != jobs_.end() && it->second.assignment &&
      it->second.assignment->generation == generation && !it->second.attached.empty()) {
    return absl::OkStatus();
  }
  if (it != jobs_.end() && it->second.last_end && it->second.last_end->generation >= generation) {
    return absl::AbortedError(absl::StrCat("generation ", generation, " of job '", job,
                                           "' ended: ", it->second.last_end->message,
                                           "; its key-value store is gone; re-attach"));
  }
  return absl::FailedPreconditionError(
      absl::StrCat("no worker of this node is attached to generation ", generation, " of job '",
                   job.substr(0, 128), "'; attach first"));
}

template <>
std::map<std::string, Agent::MergedWrites<v1::KeyAddResponse>>& Agent::Merged() {
  return merged_adds_;
}
template <>
std::map<std::string, Agent::MergedWrites<v1::KeySetResponse>>& Agent::Merged() {
  return merged_sets_;
}

template <typename Req, typename Resp>
void Agent::RelayKeyCall(Req req, absl::Time deadline,
                         std::function<void(const grpc::Status&, Resp&)> done) {
  constexpr bool kShareable =
      std::is_same_v<Resp, v1::KeyGetResponse> || std::is_same_v<Resp, v1::KeyWaitResponse>;
  constexpr bool kMergeable =
      std::is_same_v<Resp, v1::KeyAddResponse> || std::is_same_v<Resp, v1::KeySetResponse>;
  constexpr bool kWrite = kMergeable || std::is_same_v<Resp, v1::KeyCompareSetResponse> ||
                          std::is_same_v<Resp, v1::KeyDeleteResponse>;
  std::string signature = ShareSignature(req);
  absl::Status scope;
  bool first = true;
  std::string merge_signature;
  if constexpr (kMergeable) {
    // Checked here too: a merged set sends only the last value, so a bad one must not hide in it.
    scope = domain::ValidateKey(req.key());
    if constexpr (std::is_same_v<Resp, v1::KeySetResponse>) {
      if (scope.ok() && req.value().size() > domain::kMaxValueBytes) {
        scope = absl::InvalidArgumentError(absl::StrCat("value of ", req.value().size(),
                                                        " bytes is larger than the limit of ",
                                                        domain::kMaxValueBytes));
      }
    }
  }
  if constexpr (kWrite) {
    // Answered: later gets of local workers must see it (read your writes).
    done = [this, job = req.job(), done = std::move(done)](const grpc::Status& s, Resp& r) {
      StoreWriteAnswered(job);
      done(s, r);
    };
  }
  {
    absl::MutexLock lock(&mu_);
    ++key_calls_;
    if (scope.ok()) scope = KeyScope(req.job(), req.generation());
    if constexpr (std::is_same_v<Resp, v1::KeyGetResponse>) {
      if (scope.ok() && !signature.empty()) {
        absl::StrAppend(&signature, "#", jobs_.find(req.job())->second.store_writes);
      }
    }
    if constexpr (kShareable) {
      if (scope.ok() && !signature.empty()) {
        auto& shared = SharedWaits<Resp>()[signature];
        if (shared.what.empty()) shared.what = WaitedKeys(req);
        first = shared.waiters.empty();
        if (!first) ++key_calls_shared_;
        shared.waiters.push_back({std::move(done), deadline});
      }
    }
    if constexpr (kMergeable) {
      if (scope.ok()) {
        merge_signature = KeySignature("write", req);
        auto& merged = Merged<Resp>()[merge_signature];
        typename MergedWrites<Resp>::Writer w;
        if constexpr (std::is_same_v<Resp, v1::KeyAddResponse>) {
          w.delta = req.delta();
        } else {
          w.value = std::move(*req.mutable_value());
        }
        w.done = std::move(done);
        w.deadline = deadline;
        merged.queued.push_back(std::move(w));
        first = !merged.in_flight;
        merged.in_flight = true;
        if (!first) ++key_calls_shared_;
      }
    }
  }
  if (!scope.ok()) {
    Resp empty;
    done(wire::ToGrpc(scope), empty);
    return;
  }
  if constexpr (kShareable) {
    if (!signature.empty()) {
      if (first) SendSharedWait<Req, Resp>(signature, std::move(req), deadline);
      return;
    }
  }
  if constexpr (kMergeable) {
    if (first) SendMergedWrites<Req, Resp>(merge_signature, std::move(req));
    return;
  }
  SendKeyCall<Req, Resp>(std::move(req), deadline, std::move(done), kWrite ? kSendOnce : 0);
}

template <typename Req, typename Resp>
void Agent::SendKeyCall(Req req, absl::Time deadline,
                        std::function<void(const grpc::Status&, Resp&)> done, int attempt) {
  CallCoordinator<Req, Resp>(
      KeyMethod<Req>::kName, std::move(req), absl::Now() + (deadline - clock_->Now()),
      [this](grpc::ClientContext* ctx, const Req* rq, Resp* rs,
             std::function<void(grpc::Status)> cb) {
        KeyMethod<Req>::Send(stub_.get(), ctx, rq, rs, std::move(cb));
      },
      std::move(done), /*resend_when_unregistered=*/false, attempt);
}

void Agent::StoreWriteAnswered(const std::string& job) {
  absl::MutexLock lock(&mu_);
  if (auto it = jobs_.find(job); it != jobs_.end()) ++it->second.store_writes;
}

template <typename Req, typename Resp>
void Agent::SendMergedWrites(const std::string& signature, Req request) {
  using Writer = typename MergedWrites<Resp>::Writer;
  constexpr bool kAdd = std::is_same_v<Resp, v1::KeyAddResponse>;
  std::vector<Writer> batch;
  int64_t sum = 0;
  absl::Time deadline = clock_->Now();
  {
    absl::MutexLock lock(&mu_);
    auto it = Merged<Resp>().find(signature);
    if (it == Merged<Resp>().end()) return;
    MergedWrites<Resp>& m = it->second;
    if (m.queued.empty()) {
      Merged<Resp>().erase(it);
      return;
    }
    // Adds: a run of deltas of one sign (so that every partial sum lies between the counter and
    // its final value: if the merged add does not overflow, none of the adds one by one would
    // have) whose sum fits int64; at least one. One alone after a merged add overflowed the
    // counter, so that each gets the answer it would have got by itself.
    size_t take = m.queued.size();
    if (m.alone > 0) {
      take = 1;
      --m.alone;
      if constexpr (kAdd) sum = m.queued.front().delta;
    } else if constexpr (kAdd) {
      take = 0;
      int sign = 0;
      for (const Writer& w : m.queued) {
        const int s = (w.delta > 0) - (w.delta < 0);
        int64_t next = 0;
        if (take > 0 &&
            ((s != 0 && sign != 0 && s != sign) || __builtin_add_overflow(sum, w.delta, &next))) {
          break;
        }
        sum = take == 0 ? w.delta : next;
        if (s != 0) sign = s;
        ++take;
      }
    }
    batch.assign(std::make_move_iterator(m.queued.begin()),
                 std::make_move_iterator(m.queued.begin() + take));
    m.queued.erase(m.queued.begin(), m.queued.begin() + take);
    for (const Writer& w : batch) deadline = std::max(deadline, w.deadline);
  }
  if constexpr (kAdd) {
    request.set_delta(sum);
  } else {
    request.set_value(batch.back().value);
  }
  Req again = request;  // the job, generation and key for the next batch
  SendKeyCall<Req, Resp>(
      std::move(request), deadline,
      [this, signature, again = std::move(again), batch = std::move(batch), sum](
          const grpc::Status& s, Resp& resp) mutable {
        if constexpr (kAdd) {
          if (s.error_code() == grpc::StatusCode::OUT_OF_RANGE && batch.size() > 1) {
            // The sum overflowed where the adds one by one might not all have: send them again,
            // one per call, in their order, ahead of the later ones.
            {
              absl::MutexLock lock(&mu_);
              MergedWrites<Resp>& m = Merged<Resp>()[signature];
              m.queued.insert(m.queued.begin(), std::make_move_iterator(batch.begin()),
                              std::make_move_iterator(batch.end()));
              m.alone += batch.size();
            }
            SendMergedWrites<Req, Resp>(signature, std::move(again));
            return;
          }
          int64_t value = s.ok() ? resp.value() - sum : 0;
          for (Writer& w : batch) {
            Resp each;
            if (s.ok()) {
              value += w.delta;
              each.set_value(value);
            }
            w.done(s, each);
          }
        } else {
          for (Writer& w : batch) {
            Resp each;
            w.done(s, each);
          }
        }
        SendMergedWrites<Req, Resp>(signature, std::move(again));
      },
      kAdd ? kSendOnce : 0);
}

template <typename Req, typename Resp>
void Agent::SendSharedWait(const std::string& signature, Req req, absl::Time deadline) {
  Req copy = req;
  SendKeyCall<Req, Resp>(
      std::move(req), deadline,
      [this, signature, copy = std::move(copy)](const grpc::Status& s, Resp& resp) mutable {
        std::vector<typename SharedWait<Resp>::Waiter> answer;
        std::optional<absl::Time> again;  // the deadline of a call for the waiters left
        {
          absl::MutexLock lock(&mu_);
          auto it = SharedWaits<Resp>().find(signature);
          if (it == SharedWaits<Resp>().end()) return;
          auto& waiters = it->second.waiters;
          const absl::Time now = clock_->Now();
          // A wait that expired in the coordinator ends only the workers whose own deadline has
          // come; one that joined later with a later deadline waits on in a new call.
          if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
            std::vector<typename SharedWait<Resp>::Waiter> left;
            for (auto& w : waiters) {
              if (w.deadline > now + absl::Milliseconds(5)) {
                if (!again || w.deadline < *again) again = w.deadline;
                left.push_back(std::move(w));
              } else {
                answer.push_back(std::move(w));
              }
            }
            waiters = std::move(left);
          } else {
            answer = std::move(waiters);
            waiters.clear();
          }
          if (waiters.empty()) SharedWaits<Resp>().erase(it);
        }
        for (auto& w : answer) {
          Resp each = resp;
          w.done(s, each);
        }
        if (again) SendSharedWait<Req, Resp>(signature, std::move(copy), *again);
      });
}

#define MESHD_KEY_RELAY(Name)                                               \
  template void Agent::RelayKeyCall<v1::Name##Request, v1::Name##Response>( \
      v1::Name##Request, absl::Time,                                        \
      std::function<void(const grpc::Status&, v1::Name##Response&)>);
MESHD_KEY_RELAY(KeySet)
MESHD_KEY_RELAY(KeyGet)
MESHD_KEY_RELAY(KeyAdd)
MESHD_KEY_RELAY(KeyCompareSet)
MESHD_KEY_RELAY(KeyWait)
MESHD_KEY_RELAY(KeyCheck)
MESHD_KEY_RELAY(KeyDelete)
MESHD_KEY_RELAY(KeyCount)
#undef MESHD_KEY_RELAY

}  // namespace meshd::agent
