// SoakSim (see soak_sim.h).
#include "bench/sim/soak_sim.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "bench/sim/call_batch.h"
#include "bench/sim/generation_watches.h"
#include "bench/sim/placement.h"
#include "bench/sim/workload.h"
#include "meshd/v1/admin.grpc.pb.h"
#include "meshd/v1/coordinator.grpc.pb.h"

namespace meshd::bench {
namespace {

constexpr uint32_t kGpusPerNode = 2;

// How a job ends (its index modulo kWays).
enum class Way { kFinished, kLeft, kLost, kEnded };
constexpr uint32_t kWays = 4;

struct Agent {
  std::string name;
  uint64_t incarnation = 0;
  std::string secret;
  uint32_t job = 0;  // index within the wave
  uint32_t node_rank = 0;
  uint64_t generation = 0;
};

v1::RegisterNodeRequest Registration(const Agent& a) {
  v1::RegisterNodeRequest req;
  v1::NodeInventory* inv = req.mutable_inventory();
  inv->set_node(a.name);
  inv->set_hostname(a.name);
  inv->set_agent_address(absl::StrCat("unix:/run/meshd/", a.name, ".sock"));
  inv->set_incarnation(a.incarnation);
  for (uint32_t g = 0; g < kGpusPerNode; ++g) {
    v1::Gpu* gpu = inv->add_gpus();
    gpu->set_index(g);
    gpu->set_uuid(absl::StrCat("GPU-soak-", a.name, "-", g));
    gpu->set_name("simulated GPU (soak_bench)");
    gpu->set_simulated(true);
  }
  return req;
}

absl::Status Failed(absl::string_view what, const std::string& who, const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(what, " for ", who, ": ", s.error_message()));
}

class Soak {
 public:
  explicit Soak(const SoakOptions& o) : o_(o) {
    for (const auto& channel : SimChannels(o.address, o.channels)) {
      stubs_.push_back(v1::Coordinator::NewStub(channel));
      admins_.push_back(v1::Admin::NewStub(channel));
    }
  }

  absl::StatusOr<SoakResult> Run() {
    if (o_.jobs == 0 || o_.jobs_per_wave == 0 || o_.incarnations % o_.jobs != 0 ||
        o_.incarnations / o_.jobs < 1 || o_.name_pool == 0) {
      return absl::InvalidArgumentError(
          "the soak needs jobs >= 1, incarnations a multiple of jobs, and a name pool");
    }
    nodes_per_job_ = o_.incarnations / o_.jobs;
    if (const uint64_t at_once = (uint64_t{o_.jobs_per_wave} * nodes_per_job_ + 1) / 2;
        o_.name_pool < at_once) {
      return absl::InvalidArgumentError(absl::StrCat("a name pool of ", o_.name_pool,
                                                     " is too small: a wave registers ", at_once,
                                                     " of its agents under pool names at once"));
    }
    WorkloadOptions wo;
    wo.nodes = nodes_per_job_;
    wo.gpus_per_node = kGpusPerNode;
    absl::StatusOr<Workload> w = BuildWorkload(wo);
    if (!w.ok()) return w.status();
    workload_ = *std::move(w);

    const auto start = std::chrono::steady_clock::now();
    std::thread heartbeats([this] { HeartbeatLoop(); });
    absl::Status status;
    for (uint32_t first = 0; first < o_.jobs && status.ok(); first += o_.jobs_per_wave) {
      status = Wave(first, std::min(o_.jobs_per_wave, o_.jobs - first));
      ++result_.waves;
      if (status.ok() && o_.after_wave) o_.after_wave(result_.waves);
    }
    {
      absl::MutexLock lock(&mu_);
      live_.clear();  // the last waves' agents stop too (silently: their records die and expire)
      stopping_ = true;
    }
    heartbeats.join();
    if (!status.ok()) return status;
    if (absl::Status s = watches_.WaitAll(); !s.ok()) return s;
    result_.generation_ends = watches_.Ends();
    result_.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    result_.rpcs = rpcs_;
    result_.heartbeats = heartbeats_;
    result_.heartbeat_errors = heartbeat_errors_;
    return result_;
  }

 private:
  struct Live {
    uint64_t incarnation;
    std::string secret;
  };

  v1::Coordinator::Stub* Stub(uint64_t i) { return stubs_[i % stubs_.size()].get(); }

  // Jobs [first, first + count) of the run, with their agents.
  absl::Status Wave(uint32_t first, uint32_t count) {
    std::vector<Agent> agents(count * nodes_per_job_);
    for (uint32_t k = 0; k < agents.size(); ++k) {
      Agent& a = agents[k];
      a.name = k % 2 == 0
                   ? absl::StrFormat("%s-node-p%05u", o_.prefix, pool_next_++ % o_.name_pool)
                   : absl::StrFormat("%s-node-f%06u", o_.prefix, fresh_next_++);
      a.incarnation = ++incarnation_;
      a.job = k / nodes_per_job_;
      auto [it, fresh] = secrets_.try_emplace(a.name);
      if (!fresh) ++result_.reused_names;
      a.secret = it->second;  // a live earlier incarnation is replaced only by its own agent
    }
    if (absl::Status s = Register(agents); !s.ok()) return s;
    if (absl::Status s = Join(first, agents); !s.ok()) return s;
    if (absl::Status s = UseGeneration(first, agents); !s.ok()) return s;
    if (absl::Status s = End(first, count, agents); !s.ok()) return s;
    result_.jobs += count;
    result_.incarnations += agents.size();
    return absl::OkStatus();
  }

  absl::Status Register(std::vector<Agent>& agents) {
    CallBatch batch(o_.call_timeout);
    std::vector<CallBatch::Call<v1::RegisterNodeRequest, v1::RegisterNodeResponse>*> calls;
    for (uint32_t k = 0; k < agents.size(); ++k) {
      ++rpcs_;
      calls.push_back(batch.Start<v1::RegisterNodeRequest, v1::RegisterNodeResponse>(
          Registration(agents[k]), agents[k].name, agents[k].secret,
          [&](auto... a) { Stub(k)->async()->RegisterNode(a...); }));
    }
    batch.Wait();
    absl::MutexLock lock(&mu_);
    for (uint32_t k = 0; k < agents.size(); ++k) {
      if (!calls[k]->status.ok()) return Failed("RegisterNode", agents[k].name, calls[k]->status);
      agents[k].secret = calls[k]->resp.node_secret();
      secrets_[agents[k].name] = agents[k].secret;
      live_[agents[k].name] = Live{agents[k].incarnation, agents[k].secret};
      interval_ = std::chrono::milliseconds(calls[k]->resp.heartbeat_interval_ms());
    }
    return absl::OkStatus();
  }

  std::string JobName(uint32_t job) const { return absl::StrFormat("%s-job-%05u", o_.prefix, job); }

  absl::Status Join(uint32_t first, std::vector<Agent>& agents) {
    CallBatch batch(o_.call_timeout);
    std::vector<CallBatch::Call<v1::JoinJobRequest, v1::Assignment>*> calls;
    for (uint32_t k = 0; k < agents.size(); ++k) {
      v1::JoinJobRequest req;
      req.set_job(JobName(first + agents[k].job));
      req.set_node(agents[k].name);
      req.set_incarnation(agents[k].incarnation);
      req.set_local_world(kGpusPerNode);
      req.mutable_nodes()->set_min_nodes(nodes_per_job_);
      req.mutable_nodes()->set_max_nodes(nodes_per_job_);
      ++rpcs_;
      calls.push_back(batch.Start<v1::JoinJobRequest, v1::Assignment>(
          std::move(req), agents[k].name, agents[k].secret,
          [&](auto... a) { Stub(k)->async()->JoinJob(a...); }));
    }
    batch.Wait();
    for (uint32_t k = 0; k < agents.size(); ++k) {
      if (!calls[k]->status.ok()) return Failed("JoinJob", agents[k].name, calls[k]->status);
      agents[k].node_rank = calls[k]->resp.node_rank();
      agents[k].generation = calls[k]->resp.generation();
      if (agents[k].node_rank >= nodes_per_job_) {
        return absl::InternalError(absl::StrCat("JoinJob gave ", agents[k].name, " node rank ",
                                                agents[k].node_rank));
      }
      if (agents[k].node_rank == 0) {  // one watch per job, its first node's
        ++rpcs_;
        watches_.Start(Stub(k), JobName(first + agents[k].job), agents[k].generation,
                       agents[k].name, agents[k].secret,
                       std::chrono::system_clock::now() +
                           std::chrono::milliseconds(absl::ToInt64Milliseconds(o_.call_timeout)));
      }
    }
    return absl::OkStatus();
  }

  // What a generation's workers make the coordinator hold: a key in the job's store and the
  // mesh's group ids.
  absl::Status UseGeneration(uint32_t first, const std::vector<Agent>& agents) {
    CallBatch batch(o_.call_timeout);
    std::vector<CallBatch::Call<v1::KeySetRequest, v1::KeySetResponse>*> sets;
    std::vector<CallBatch::Call<v1::ResolveGroupsRequest, v1::ResolveGroupsResponse>*> resolves;
    std::vector<CallBatch::Call<v1::HeartbeatRequest, v1::HeartbeatResponse>*> beats;
    for (uint32_t k = 0; k < agents.size(); ++k) {
      const Agent& a = agents[k];
      v1::HeartbeatRequest beat;  // as its heartbeat loop would send while the job runs
      beat.set_node(a.name);
      beat.set_incarnation(a.incarnation);
      ++rpcs_;
      ++heartbeats_;
      beats.push_back(batch.Start<v1::HeartbeatRequest, v1::HeartbeatResponse>(
          std::move(beat), a.name, a.secret, [&](auto... x) { Stub(k)->async()->Heartbeat(x...); }));
      v1::KeySetRequest set;
      set.set_job(JobName(first + a.job));
      set.set_generation(a.generation);
      set.set_key(absl::StrCat("soak/", a.name));
      set.set_value(std::string(256, 'v'));
      v1::ResolveGroupsRequest resolve = workload_.requests[a.node_rank];
      resolve.set_job(JobName(first + a.job));
      resolve.set_generation(a.generation);
      resolve.set_node(a.name);
      rpcs_ += 2;
      sets.push_back(batch.Start<v1::KeySetRequest, v1::KeySetResponse>(
          std::move(set), a.name, a.secret, [&](auto... x) { Stub(k)->async()->KeySet(x...); }));
      resolves.push_back(batch.Start<v1::ResolveGroupsRequest, v1::ResolveGroupsResponse>(
          std::move(resolve), a.name, a.secret,
          [&](auto... x) { Stub(k)->async()->ResolveGroups(x...); }));
    }
    batch.Wait();
    for (uint32_t k = 0; k < agents.size(); ++k) {
      if (!beats[k]->status.ok()) return Failed("Heartbeat", agents[k].name, beats[k]->status);
      if (!sets[k]->status.ok()) return Failed("KeySet", agents[k].name, sets[k]->status);
      if (!resolves[k]->status.ok()) {
        return Failed("ResolveGroups", agents[k].name, resolves[k]->status);
      }
      if (resolves[k]->resp.groups_size() != resolves[k]->req.groups_size()) {
        return absl::InternalError(
            absl::StrCat("ResolveGroups answered ", agents[k].name, " part of its groups"));
      }
    }
    return absl::OkStatus();
  }

  absl::Status End(uint32_t first, uint32_t count, const std::vector<Agent>& agents) {
    const auto way = [&](uint32_t job) { return static_cast<Way>((first + job) % kWays); };
    {  // Finished (every member's FinishJob) or ended by an operator, before the agents stop.
      CallBatch batch(o_.call_timeout);
      std::vector<CallBatch::Call<v1::FinishJobRequest, v1::FinishJobResponse>*> finishes;
      std::vector<CallBatch::Call<v1::EndJobRequest, v1::AdminResponse>*> ends;
      for (uint32_t k = 0; k < agents.size(); ++k) {
        const Agent& a = agents[k];
        if (way(a.job) != Way::kFinished) continue;
        v1::FinishJobRequest req;
        req.set_job(JobName(first + a.job));
        req.set_generation(a.generation);
        req.set_node(a.name);
        ++rpcs_;
        finishes.push_back(batch.Start<v1::FinishJobRequest, v1::FinishJobResponse>(
            std::move(req), a.name, a.secret,
            [&](auto... x) { Stub(k)->async()->FinishJob(x...); }));
      }
      for (uint32_t j = 0; j < count; ++j) {
        if (way(j) != Way::kEnded) continue;
        v1::EndJobRequest req;
        req.set_job(JobName(first + j));
        req.set_reason("soak_bench");
        ++rpcs_;
        ends.push_back(batch.Start<v1::EndJobRequest, v1::AdminResponse>(
            std::move(req), "", "",
            [&](auto... x) { admins_[j % admins_.size()]->async()->EndJob(x...); }));
      }
      batch.Wait();
      for (const auto* c : finishes) {
        if (!c->status.ok()) return Failed("FinishJob", c->req.node(), c->status);
      }
      for (const auto* c : ends) {
        if (!c->status.ok()) return Failed("Admin.EndJob", c->req.job(), c->status);
        if (!c->resp.changed()) {
          return absl::InternalError(absl::StrCat("Admin.EndJob of ", c->req.job(),
                                                  " changed nothing: ", c->resp.summary()));
        }
      }
    }
    for (uint32_t j = 0; j < count; ++j) {
      switch (way(j)) {
        case Way::kFinished: ++result_.ended_finished; break;
        case Way::kLeft: ++result_.ended_left; break;
        case Way::kLost: ++result_.ended_lost; break;
        case Way::kEnded: ++result_.ended_by_operator; break;
      }
    }
    {  // The agents stop: cleanly (LeaveNode), or silently (lost).
      absl::MutexLock lock(&mu_);
      for (const Agent& a : agents) live_.erase(a.name);
    }
    // No heartbeat of theirs is still on its way (an agent sends none after it left).
    { absl::MutexLock wait_for_beats(&beating_); }
    CallBatch batch(o_.call_timeout);
    std::vector<CallBatch::Call<v1::LeaveNodeRequest, v1::LeaveNodeResponse>*> leaves;
    for (uint32_t k = 0; k < agents.size(); ++k) {
      const Agent& a = agents[k];
      if (way(a.job) == Way::kLost) continue;
      v1::LeaveNodeRequest req;
      req.set_node(a.name);
      req.set_incarnation(a.incarnation);
      req.set_message("soak_bench: agent stopped");
      ++rpcs_;
      leaves.push_back(batch.Start<v1::LeaveNodeRequest, v1::LeaveNodeResponse>(
          std::move(req), a.name, a.secret,
          [&](auto... x) { Stub(k)->async()->LeaveNode(x...); }));
    }
    batch.Wait();
    for (const auto* c : leaves) {
      if (!c->status.ok()) return Failed("LeaveNode", c->req.node(), c->status);
    }
    return absl::OkStatus();
  }

  // Every live agent heartbeats once per interval the coordinator told it.
  void HeartbeatLoop() {
    uint64_t n = 0;
    while (true) {
      std::vector<std::pair<std::string, Live>> beat;
      {
        absl::MutexLock lock(&mu_);
        const auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
        const absl::Duration wait = absl::FromChrono(interval_);
        if (mu_.AwaitWithTimeout(absl::Condition(&stop), wait)) return;
        beat.assign(live_.begin(), live_.end());
      }
      absl::MutexLock beating(&beating_);
      CallBatch batch(o_.call_timeout);
      std::vector<CallBatch::Call<v1::HeartbeatRequest, v1::HeartbeatResponse>*> calls;
      for (const auto& [name, live] : beat) {
        v1::HeartbeatRequest req;
        req.set_node(name);
        req.set_incarnation(live.incarnation);
        ++rpcs_;
        calls.push_back(batch.Start<v1::HeartbeatRequest, v1::HeartbeatResponse>(
            std::move(req), name, live.secret,
            [&](auto... x) { Stub(++n)->async()->Heartbeat(x...); }));
      }
      batch.Wait();
      heartbeats_ += calls.size();
      for (const auto* c : calls) {
        if (!c->status.ok()) ++heartbeat_errors_;
      }
    }
  }

  const SoakOptions& o_;
  std::vector<std::unique_ptr<v1::Coordinator::Stub>> stubs_;
  std::vector<std::unique_ptr<v1::Admin::Stub>> admins_;
  GenerationWatches watches_;  // goes before the stubs
  uint32_t nodes_per_job_ = 0;
  Workload workload_;  // one job's ResolveGroups requests, by node rank
  uint64_t pool_next_ = 0;   // the next registration under a pool name takes this one (modulo)
  uint64_t fresh_next_ = 0;  // and under a new name
  uint64_t incarnation_ = 0;  // the last one given (unique across names, increasing)
  // Every name registered so far -> the secret of its last registration.
  absl::flat_hash_map<std::string, std::string> secrets_;
  SoakResult result_;  // the run's thread's
  std::atomic<uint64_t> rpcs_{0};
  std::atomic<uint64_t> heartbeats_{0};
  std::atomic<uint64_t> heartbeat_errors_{0};

  absl::Mutex beating_;  // held while a round of heartbeats is in flight
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Live> live_ ABSL_GUARDED_BY(mu_);  // agents that heartbeat
  std::chrono::milliseconds interval_ ABSL_GUARDED_BY(mu_){1000};
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

absl::StatusOr<SoakResult> RunSoak(const SoakOptions& options) {
  Soak soak(options);
  return soak.Run();
}

}  // namespace meshd::bench
