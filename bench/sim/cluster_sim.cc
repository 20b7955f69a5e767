// ClusterSim (see cluster_sim.h).
#include "bench/sim/cluster_sim.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "bench/sim/calls_in_flight.h"
#include "bench/sim/nodes.h"
#include "bench/sim/placement.h"
#include "bench/sim/proc_stats.h"
#include "daemon/domain/caller.h"
#include "meshd/v1/coordinator.grpc.pb.h"

namespace meshd::bench {
namespace {

using Stub = v1::Coordinator::Stub;
using SteadyClock = std::chrono::steady_clock;

class Sim {
 public:
  Sim(const SimOptions& o, Workload* w) : o_(o), w_(*w), nodes_(o.nodes) {
    if (o.withhold_node_rank >= 0 && o.withhold_node_rank < o.nodes) {
      // The groups whose ids the late node mints, and the nodes that ask for one of them.
      for (const v1::GroupRequest& g : w_.requests[o.withhold_node_rank].groups()) {
        if (g.minted_size() > 0) late_minted_.insert(g.key());
      }
      waits_for_late_.assign(o.nodes, false);
      for (uint32_t r = 0; r < o.nodes; ++r) {
        if (r == o.withhold_node_rank) continue;
        for (const v1::GroupRequest& g : w_.requests[r].groups()) {
          if (late_minted_.contains(g.key())) waits_for_late_[r] = true;
        }
        result_.nodes_waiting_for_late += waits_for_late_[r] ? 1 : 0;
      }
      // Answered in part, the nodes asking for its groups hold the others' ids too.
      others_left_ = o.nodes - 1 -
                     (o.partial_after > absl::ZeroDuration() ? 0 : result_.nodes_waiting_for_late);
      holds_others_.assign(o.nodes, false);
      // Every other node waits for it: nothing to hold it back for (others_ids: none).
      if (others_left_ == 0) result_.t_others_ids_s = -1;
    }
    for (const auto& channel : SimChannels(o.address, o.channels)) {
      stubs_.push_back(v1::Coordinator::NewStub(channel));
    }
    for (uint32_t i = 0; i < o.nodes; ++i) {
      names_.push_back(SimulatedNodeName(o.first_node + i));
      registrations_.push_back(SimulatedRegistration(o.first_node + i, o.gpus_per_node));
    }
    secrets_.resize(names_.size());
  }

  absl::StatusOr<SimResult> Run() {
    deadline_ = std::chrono::system_clock::now() +
                std::chrono::milliseconds(absl::ToInt64Milliseconds(o_.timeout));
    start_ = SteadyClock::now();
    cpu_start_ = CpuClockSeconds(CLOCK_PROCESS_CPUTIME_ID);
    for (uint32_t i = 0; i < o_.nodes; ++i) Register(i);
    std::thread heartbeats([this] { HeartbeatLoop(); });
    if (o_.register_first) {
      {
        absl::MutexLock lock(&mu_);
        const auto all = [this] { return registered_ == o_.nodes || !error_.ok(); };
        mu_.AwaitWithTimeout(absl::Condition(&all), o_.timeout);
        result_.t_job_start_s = Elapsed();
      }
      for (uint32_t i = 0; i < o_.nodes; ++i) Join(i);
    }
    {
      absl::MutexLock lock(&mu_);
      const auto done = [this] { return finished_ || !error_.ok(); };
      mu_.AwaitWithTimeout(absl::Condition(&done), o_.timeout + absl::Seconds(5));
      if (finished_ && error_.ok() && o_.while_running) {
        mu_.Unlock();
        o_.while_running();
        mu_.Lock();
      }
      stopping_ = true;
      if (!finished_ && error_.ok()) {
        error_ = absl::DeadlineExceededError(absl::StrCat(
            "the run did not finish within ", absl::FormatDuration(o_.timeout), ": ",
            registered_, " of ", o_.nodes, " nodes registered, ", joined_, " joined, ", resolved_,
            " resolved their groups"));
      }
    }
    heartbeats.join();
    // Every call gone before the stubs (and the channels) go with this Sim: see calls_in_flight.h.
    calls_.StopAndDrain();
    absl::MutexLock lock(&mu_);
    if (!error_.ok()) return error_;
    result_.rpcs = rpcs_.load();
    result_.heartbeats = heartbeats_.load();
    for (const Node& n : nodes_) result_.node_ranks.push_back(n.node_rank);
    result_.generation = nodes_.empty() ? 0 : nodes_[0].generation;
    return result_;
  }

 private:
  struct Node {
    uint32_t node_rank = 0;
    uint64_t generation = 0;
    bool registered = false;
    std::chrono::milliseconds interval{1000};  // as the coordinator said, last
    SteadyClock::time_point next_beat;
  };

  template <typename Req, typename Resp>
  struct Call {
    grpc::ClientContext ctx;
    Req req;
    Resp resp;
  };

  double Elapsed() const {
    return std::chrono::duration<double>(SteadyClock::now() - start_).count();
  }
  Stub::async_interface* Async(uint32_t node) { return stubs_[node % stubs_.size()]->async(); }

  // Registers the call of `node` as in flight, with the metadata its agent sends (the node, and
  // the secret its registration returned: see domain/caller.h).
  template <typename C>
  bool Begin(C* c, uint32_t node) {
    c->ctx.set_deadline(deadline_);
    c->ctx.AddMetadata(domain::kNodeMetadata, names_[node]);
    if (!secrets_[node].empty()) c->ctx.AddMetadata(domain::kNodeSecretMetadata, secrets_[node]);
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return false;
    }
    if (!calls_.Add(&c->ctx)) return false;
    ++rpcs_;
    return true;
  }
  // First thing in a call's callback: it is answered (no longer cancelled).
  template <typename C>
  void End(C* c) {
    calls_.Answered(&c->ctx);
  }
  void Fail(absl::Status s) {
    absl::MutexLock lock(&mu_);
    if (error_.ok() && !stopping_) error_ = std::move(s);
  }
  static absl::Status Failed(absl::string_view what, const std::string& node,
                             const grpc::Status& s) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                        absl::StrCat(what, " for ", node, ": ", s.error_message()));
  }

  void Register(uint32_t i) {
    auto* c = new Call<v1::RegisterNodeRequest, v1::RegisterNodeResponse>;
    c->req = std::move(registrations_[i]);  // sent once
    if (!Begin(c, i)) return delete c;
    Async(i)->RegisterNode(&c->ctx, &c->req, &c->resp, [this, c, i](grpc::Status s) {
      CallsInFlight::Gone gone(&calls_);  // after the call (its channel reference) is deleted
      std::unique_ptr<std::remove_pointer_t<decltype(c)>> own(c);
      End(c);
      if (!s.ok()) return Fail(Failed("RegisterNode", names_[i], s));
      secrets_[i] = c->resp.node_secret();  // before any later call of node i
      {
        absl::MutexLock lock(&mu_);
        nodes_[i].registered = true;
        nodes_[i].interval = std::chrono::milliseconds(c->resp.heartbeat_interval_ms());
        nodes_[i].next_beat = SteadyClock::now() + nodes_[i].interval;
        if (registered_ == 0) result_.t_first_registered_s = Elapsed();
        if (++registered_ == o_.nodes) result_.t_registered_s = Elapsed();
      }
      if (!o_.register_first) Join(i);
    });
  }

  void Join(uint32_t i) {
    auto* c = new Call<v1::JoinJobRequest, v1::Assignment>;
    c->req.set_job(o_.job);
    c->req.set_node(names_[i]);
    c->req.set_incarnation(1);
    c->req.set_local_world(o_.gpus_per_node);
    c->req.mutable_nodes()->set_min_nodes(o_.nodes);
    c->req.mutable_nodes()->set_max_nodes(o_.nodes);
    if (!Begin(c, i)) return delete c;
    Async(i)->JoinJob(&c->ctx, &c->req, &c->resp, [this, c, i](grpc::Status s) {
      CallsInFlight::Gone gone(&calls_);  // after the call (its channel reference) is deleted
      std::unique_ptr<std::remove_pointer_t<decltype(c)>> own(c);
      End(c);
      if (!s.ok()) return Fail(Failed("JoinJob", names_[i], s));
      const uint32_t rank = c->resp.node_rank();
      if (rank >= o_.nodes || c->resp.world_size() != w_.world_size) {
        return Fail(absl::InternalError(absl::StrCat(
            "JoinJob gave ", names_[i], " node rank ", rank, " in a world of ",
            c->resp.world_size(), "; expected a rank below ", o_.nodes, " of ", w_.world_size)));
      }
      {
        absl::MutexLock lock(&mu_);
        if (!ranks_taken_.insert(rank).second) {
          error_ = absl::InternalError(absl::StrCat("node rank ", rank, " given twice"));
          return;
        }
        nodes_[i].node_rank = rank;
        nodes_[i].generation = c->resp.generation();
        if (++joined_ == o_.nodes) result_.t_ranks_s = Elapsed();
        if (rank == o_.withhold_node_rank && others_left_ > 0) {
          late_index_ = i;  // sent once the others hold their ids
          return;
        }
      }
      Resolve(i);
    });
  }

  // Node i's request: its workload's, or (`again`) what a partial answer left out.
  void Resolve(uint32_t i, std::optional<v1::ResolveGroupsRequest> again = std::nullopt) {
    auto* c = new Call<v1::ResolveGroupsRequest, v1::ResolveGroupsResponse>;
    if (again) {
      c->req = *std::move(again);
    } else {
      {
        absl::MutexLock lock(&mu_);
        c->req = std::move(w_.requests[nodes_[i].node_rank]);  // each rank's, once (ranks_taken_)
        c->req.set_generation(nodes_[i].generation);
      }
      c->req.set_job(o_.job);
      c->req.set_node(names_[i]);
      c->req.set_partial_after_ms(
          static_cast<uint32_t>(absl::ToInt64Milliseconds(o_.partial_after)));
    }
    if (!Begin(c, i)) return delete c;
    Async(i)->ResolveGroups(&c->ctx, &c->req, &c->resp, [this, c, i](grpc::Status s) {
      CallsInFlight::Gone gone(&calls_);  // after the call (its channel reference) is deleted
      std::unique_ptr<std::remove_pointer_t<decltype(c)>> own(c);
      End(c);
      if (!s.ok()) return Fail(Failed("ResolveGroups", names_[i], s));
      absl::flat_hash_set<std::string> missing;
      if (absl::Status v = Check(c->req, c->resp, &missing); !v.ok()) return Fail(v);
      std::optional<uint32_t> release;
      std::optional<v1::ResolveGroupsRequest> rest;
      absl::Cleanup send = [&] {
        if (rest) Resolve(i, std::move(rest));
        if (release) Resolve(*release);
      };
      // Answered in part: ask again for the groups missing (an agent also reports again the ids
      // its node minted, for a coordinator that restarted; none does here).
      if (!missing.empty()) {
        rest = std::move(c->req);
        auto* groups = rest->mutable_groups();
        groups->erase(std::remove_if(groups->begin(), groups->end(),
                                     [&](const v1::GroupRequest& g) {
                                       return !missing.contains(g.key());
                                     }),
                      groups->end());
      }
      absl::MutexLock lock(&mu_);
      result_.groups_checked += c->resp.groups_size() - missing.size();
      if (!missing.empty()) ++result_.partial_answers;
      const uint32_t rank = nodes_[i].node_rank;
      // Node i holds every id the late node does not mint once nothing else is missing.
      const bool holds_others = std::all_of(missing.begin(), missing.end(), [&](const auto& k) {
        return late_minted_.contains(k);
      });
      if (!holds_others_.empty() && rank != o_.withhold_node_rank && holds_others &&
          !holds_others_[rank] && (missing.empty() || o_.partial_after > absl::ZeroDuration())) {
        holds_others_[rank] = true;
        if (--others_left_ == 0) {
          result_.t_others_ids_s = Elapsed();
          release = late_index_;
        }
      }
      if (!missing.empty()) return;
      if (++resolved_ == o_.nodes) {
        result_.t_ids_s = Elapsed();
        result_.sim_cpu_s = CpuClockSeconds(CLOCK_PROCESS_CPUTIME_ID) - cpu_start_;
        finished_ = true;
      }
    });
  }

  // Every asked group came back with its ids, equal to what its leaders minted and to what
  // every other node got — or, in a partial answer, with none (into `missing`).
  absl::Status Check(const v1::ResolveGroupsRequest& req, const v1::ResolveGroupsResponse& resp,
                     absl::flat_hash_set<std::string>* missing) {
    absl::flat_hash_map<absl::string_view, const v1::GroupIds*> got;
    for (const v1::GroupIds& g : resp.groups()) got[g.key()] = &g;
    for (const v1::GroupRequest& asked : req.groups()) {
      auto it = got.find(asked.key());
      if (req.partial_after_ms() > 0 && it != got.end() && it->second->ids_size() == 0) {
        missing->insert(asked.key());
        continue;
      }
      if (it == got.end() || it->second->ids_size() != static_cast<int>(asked.num_ids())) {
        return absl::InternalError(absl::StrCat(req.node(), " got no complete ids for group ",
                                                asked.key()));
      }
      const v1::GroupIds& g = *it->second;
      for (const v1::MintedId& m : asked.minted()) {
        if (g.ids(static_cast<int>(m.index())) != m.id()) {
          return absl::InternalError(absl::StrCat("group ", asked.key(), " chunk ", m.index(),
                                                  ": the relayed id is not the one minted"));
        }
      }
      size_t h = 0;
      for (const std::string& id : g.ids()) {
        if (id.size() != 128) return absl::InternalError("an id is not 128 bytes");
        h = h * 1000003u ^ std::hash<std::string>()(id);
      }
      absl::MutexLock lock(&ids_mu_);
      auto [seen, fresh] = id_hashes_.emplace(asked.key(), h);
      if (!fresh && seen->second != h) {
        return absl::InternalError(
            absl::StrCat("group ", asked.key(), ": nodes received different ids"));
      }
    }
    return absl::OkStatus();
  }

  void HeartbeatLoop() {
    while (true) {
      std::vector<uint32_t> beat;
      {
        absl::MutexLock lock(&mu_);
        const auto stop = [this] { return stopping_; };
        if (mu_.AwaitWithTimeout(absl::Condition(&stop), absl::Milliseconds(50))) return;
        const SteadyClock::time_point now = SteadyClock::now();
        for (uint32_t i = 0; i < o_.nodes; ++i) {
          if (!nodes_[i].registered || nodes_[i].next_beat > now) continue;
          beat.push_back(i);
          nodes_[i].next_beat = now + nodes_[i].interval;
        }
      }
      for (uint32_t i : beat) {
        auto* c = new Call<v1::HeartbeatRequest, v1::HeartbeatResponse>;
        c->req.set_node(names_[i]);
        c->req.set_incarnation(1);
        if (!Begin(c, i)) {
          delete c;
          break;
        }
        ++heartbeats_;
        Async(i)->Heartbeat(&c->ctx, &c->req, &c->resp,
                            [this, c, i, sent = SteadyClock::now()](grpc::Status s) {
          CallsInFlight::Gone gone(&calls_);  // after the call (its channel reference) is deleted
      std::unique_ptr<std::remove_pointer_t<decltype(c)>> own(c);
          End(c);
          if (!s.ok() && s.error_code() != grpc::StatusCode::CANCELLED) {
            return Fail(Failed("Heartbeat", names_[i], s));
          }
          if (s.ok() && o_.on_heartbeat) {
            o_.on_heartbeat(std::chrono::duration<double>(SteadyClock::now() - sent).count());
          }
          if (s.ok() && c->resp.heartbeat_interval_ms() > 0) {
            absl::MutexLock lock(&mu_);
            nodes_[i].interval = std::chrono::milliseconds(c->resp.heartbeat_interval_ms());
          }
        });
      }
    }
  }

  const SimOptions& o_;
  Workload& w_;  // its requests are moved out as they are sent
  std::vector<std::unique_ptr<Stub>> stubs_;
  std::vector<std::string> names_;  // "node-00042": sorts like its index
  // By node: the secret its registration returned (written once, before its next call).
  std::vector<std::string> secrets_;
  std::vector<v1::RegisterNodeRequest> registrations_;  // by node, moved out when sent
  std::chrono::system_clock::time_point deadline_;
  SteadyClock::time_point start_;
  double cpu_start_ = 0;
  std::atomic<uint64_t> rpcs_{0};
  std::atomic<uint64_t> heartbeats_{0};

  absl::Mutex mu_;
  std::vector<Node> nodes_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<uint32_t> ranks_taken_ ABSL_GUARDED_BY(mu_);
  uint32_t registered_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t joined_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t resolved_ ABSL_GUARDED_BY(mu_) = 0;
  // withhold_node_rank: the groups the late node mints; by node rank, whether it asks for one of
  // them, and whether it holds every other id; how many of the others do not yet; the late
  // node's index once it joined.
  absl::flat_hash_set<std::string> late_minted_;
  std::vector<bool> waits_for_late_;
  std::vector<bool> holds_others_ ABSL_GUARDED_BY(mu_);
  uint32_t others_left_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<uint32_t> late_index_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  SimResult result_ ABSL_GUARDED_BY(mu_);

  CallsInFlight calls_;  // before it returns, Run waits until every call is gone

  absl::Mutex ids_mu_;
  absl::flat_hash_map<std::string, size_t> id_hashes_ ABSL_GUARDED_BY(ids_mu_);
};

}  // namespace

absl::StatusOr<SimResult> RunClusterSim(const SimOptions& options, Workload* workload) {
  if (workload->requests.size() != options.nodes) {
    return absl::InvalidArgumentError("the workload was built for another number of nodes");
  }
  Sim sim(options, workload);
  return sim.Run();
}

}  // namespace meshd::bench
