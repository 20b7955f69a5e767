// StoreSim (see store_sim.h).
#include "bench/sim/store_sim.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "bench/sim/calls_in_flight.h"
#include "bench/sim/nodes.h"
#include "bench/sim/placement.h"
#include "bench/sim/proc_stats.h"
#include "common/time/clock.h"
#include "daemon/agent/core/resender.h"
#include "daemon/agent/core/store_relay.h"
#include "daemon/domain/caller.h"
#include "meshd/v1/coordinator.grpc.pb.h"

namespace meshd::bench {
namespace {

using Stub = v1::Coordinator::Stub;
using SteadyClock = std::chrono::steady_clock;

template <typename Req, typename Resp>
struct Call {
  grpc::ClientContext ctx;
  Req req;
  Resp resp;
};

class Sim {
 public:
  Sim(const StoreSimOptions& o, const StoreWorkload& w)
      : o_(o),
        w_(w),
        nodes_(w.world_size / w.gpus_per_node),
        node_state_(nodes_),
        ranks_(w.world_size),
        adds_sent_(w.groups.size()),
        beats_(nodes_) {
    for (const auto& channel : SimChannels(o.address, o.channels)) {
      stubs_.push_back(v1::Coordinator::NewStub(channel));
    }
    for (uint32_t i = 0; i < nodes_; ++i) {
      names_.push_back(SimulatedNodeName(i));
      registrations_.push_back(SimulatedRegistration(i, w.gpus_per_node));
    }
    secrets_.resize(names_.size());
    for (uint32_t i = 0; i < nodes_; ++i) {
      Node& n = node_state_[i];
      n.client = std::make_unique<SimClient>(this, i);
      n.relay = std::make_unique<agent::StoreRelay>(
          &clock_, n.client.get(), &resender_,
          [](const std::string&, uint64_t, std::optional<uint32_t>) { return absl::OkStatus(); },
          o.batch);
    }
    node_of_rank_.assign(nodes_, 0);
    steps_ = (w.barriers ? w.slots : 0) + w.slots;
  }

  absl::StatusOr<StoreSimResult> Run() {
    deadline_ = std::chrono::system_clock::now() +
                std::chrono::milliseconds(absl::ToInt64Milliseconds(o_.timeout));
    const absl::Time give_up = absl::Now() + o_.timeout;
    run_deadline_ = give_up;
    start_ = SteadyClock::now();
    for (uint32_t i = 0; i < nodes_; ++i) Register(i);
    std::thread heartbeats([this] { HeartbeatLoop(); });
    bool joined = false;
    {
      absl::MutexLock lock(&mu_);
      const auto all = [this] { return joined_ == nodes_ || !error_.ok(); };
      joined = mu_.AwaitWithDeadline(absl::Condition(&all), give_up) && error_.ok();
    }
    if (joined) {
      if (o_.on_store_start) o_.on_store_start();
      cpu_start_ = CpuClockSeconds(CLOCK_PROCESS_CPUTIME_ID);
      store_start_ = SteadyClock::now();
      for (uint32_t r = 0; r < w_.world_size; ++r) Next(r);
    }
    {
      absl::MutexLock lock(&mu_);
      const auto done = [this] { return finished_ || !error_.ok(); };
      while (!mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(1))) {
        if (absl::Now() > give_up) break;
        if (o_.progress && joined) {
          std::fprintf(stderr, "  store_bench: %.1f s, %u of %u ranks done, %llu calls sent\n",
                       Seconds(store_start_), done_ranks_.load(), w_.world_size,
                       static_cast<unsigned long long>(calls_.load()));
        }
      }
      stopping_ = true;
      if (!finished_ && error_.ok()) {
        error_ = absl::DeadlineExceededError(absl::StrCat(
            "the run did not finish within ", absl::FormatDuration(o_.timeout), ": ", registered_,
            " of ", nodes_, " nodes registered, ", joined_, " joined, ", done_ranks_.load(), " of ",
            w_.world_size, " ranks through the store workload"));
      }
    }
    // Every call gone before the stubs (and the channels) go with this Sim: see calls_in_flight.h.
    calls_in_flight_.StopAndDrain();
    heartbeats.join();
    absl::MutexLock lock(&mu_);
    if (!error_.ok()) return error_;
    result_.rank_adds = rank_adds_.load();
    result_.rank_sets = rank_sets_.load();
    result_.rank_waits = rank_waits_.load();
    result_.rank_gets = rank_gets_.load();
    result_.key_adds = key_adds_.load();
    result_.key_sets = key_sets_.load();
    result_.key_waits = key_waits_.load();
    result_.key_gets = key_gets_.load();
    result_.key_others = key_others_.load();
    result_.key_batches = key_batches_.load();
    result_.heartbeats = heartbeats_.load();
    result_.generation = generation_;
    return result_;
  }

 private:
  // A rank's place in its sequence: step s < barrier steps is the barrier of slot s (sub 0: add 1,
  // 1: add 0, 2: set last_worker, 3: wait), then one step per slot's id. Only the rank's own
  // chain of calls touches it, one call at a time.
  struct Rank {
    uint32_t step = 0;
    uint32_t sub = 0;
  };
  class SimClient;
  // A simulated node's agent relay (its client sends over the node's channel).
  struct Node {
    std::unique_ptr<SimClient> client;
    std::unique_ptr<agent::StoreRelay> relay;
    uint32_t node_rank = 0;
  };

  static double Seconds(SteadyClock::time_point since) {
    return std::chrono::duration<double>(SteadyClock::now() - since).count();
  }
  Stub::async_interface* Async(uint32_t node) { return stubs_[node % stubs_.size()]->async(); }
  uint32_t NodeOf(uint32_t rank) const { return node_of_rank_[rank / w_.gpus_per_node]; }

  // Registers the call of `node` as in flight, with the metadata its agent sends (the node, and
  // the secret its registration returned: see domain/caller.h).
  template <typename C>
  bool Begin(C* c, uint32_t node) {
    c->ctx.set_deadline(deadline_);
    c->ctx.AddMetadata(domain::kNodeMetadata, names_[node]);
    if (!secrets_[node].empty()) c->ctx.AddMetadata(domain::kNodeSecretMetadata, secrets_[node]);
    if (!calls_in_flight_.Add(&c->ctx)) return false;
    ++calls_;
    return true;
  }
  // First thing in a call's callback: it is answered (no longer cancelled).
  template <typename C>
  void End(C* c) {
    calls_in_flight_.Answered(&c->ctx);
  }
  void Fail(absl::Status s) {
    {
      absl::MutexLock lock(&mu_);
      if (error_.ok() && !stopping_) error_ = std::move(s);
    }
    calls_in_flight_.Refuse();  // no new calls once the run failed
  }
  static absl::Status Failed(absl::string_view what, absl::string_view where,
                             const grpc::Status& s) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                        absl::StrCat(what, " (", where, "): ", s.error_message()));
  }

  // ---- registration and join, as the agents do before their workers get ranks --------------

  void Register(uint32_t i) {
    auto* c = new Call<v1::RegisterNodeRequest, v1::RegisterNodeResponse>;
    c->req = std::move(registrations_[i]);
    if (!Begin(c, i)) return delete c;
    Async(i)->RegisterNode(&c->ctx, &c->req, &c->resp, [this, c, i](grpc::Status s) {
      CallsInFlight::Gone gone(&calls_in_flight_);  // after the call is deleted
      std::unique_ptr<std::remove_pointer_t<decltype(c)>> own(c);
      End(c);
      if (!s.ok()) return Fail(Failed("RegisterNode", names_[i], s));
      secrets_[i] = c->resp.node_secret();  // before any later call of node i
      {
        absl::MutexLock lock(&mu_);
        Beat& b = beats_[i];
        b.on = true;
        b.interval = std::chrono::milliseconds(c->resp.heartbeat_interval_ms());
        b.next = SteadyClock::now() + b.interval;
        if (++registered_ == nodes_) result_.t_registered_s = Seconds(start_);
      }
      Join(i);
    });
  }

  void Join(uint32_t i) {
    auto* c = new Call<v1::JoinJobRequest, v1::Assignment>;
    c->req.set_job(o_.job);
    c->req.set_node(names_[i]);
    c->req.set_incarnation(1);
    c->req.set_local_world(w_.gpus_per_node);
    c->req.mutable_nodes()->set_min_nodes(nodes_);
    c->req.mutable_nodes()->set_max_nodes(nodes_);
    if (!Begin(c, i)) return delete c;
    Async(i)->JoinJob(&c->ctx, &c->req, &c->resp, [this, c, i](grpc::Status s) {
      CallsInFlight::Gone gone(&calls_in_flight_);  // after the call is deleted
      std::unique_ptr<std::remove_pointer_t<decltype(c)>> own(c);
      End(c);
      if (!s.ok()) return Fail(Failed("JoinJob", names_[i], s));
      const uint32_t rank = c->resp.node_rank();
      if (rank >= nodes_ || c->resp.world_size() != w_.world_size) {
        return Fail(absl::InternalError(absl::StrCat(
            "JoinJob gave ", names_[i], " node rank ", rank, " in a world of ",
            c->resp.world_size(), "; expected a rank below ", nodes_, " of ", w_.world_size)));
      }
      absl::MutexLock lock(&mu_);
      if (!ranks_taken_.insert(rank).second) {
        if (error_.ok()) error_ = absl::InternalError(absl::StrCat("node rank ", rank, " twice"));
        return;
      }
      if (generation_ != 0 && generation_ != c->resp.generation()) {
        if (error_.ok()) error_ = absl::InternalError("nodes joined different generations");
        return;
      }
      generation_ = c->resp.generation();
      node_state_[i].node_rank = rank;
      node_of_rank_[rank] = i;
      if (++joined_ == nodes_) result_.t_joined_s = Seconds(start_);
    });
  }

  // ---- the store workload --------------------------------------------------------------------

  // Sends rank r's next call (or finishes it).
  void Next(uint32_t r) {
    Rank& rk = ranks_[r];
    const uint32_t barrier_steps = w_.barriers ? w_.slots : 0;
    if (rk.step == steps_) {
      if (++done_ranks_ == w_.world_size) {
        const double t = Seconds(store_start_);
        const double cpu = CpuClockSeconds(CLOCK_PROCESS_CPUTIME_ID) - cpu_start_;
        absl::MutexLock lock(&mu_);
        result_.store_s = t;
        result_.sim_cpu_s = cpu;
        finished_ = true;
      }
      return;
    }
    if (rk.step < barrier_steps) {
      const uint32_t g = w_.GroupOf(rk.step, r);
      const StoreGroup& group = w_.groups[g];
      switch (rk.sub) {
        case 0:  // add(K, 1)
          adds_sent_[g].fetch_add(1);
          return Add(r, group.barrier_key, 1, [this, r](int64_t) {
            ranks_[r].sub = 1;
            Next(r);
          });
        case 1:  // n = add(K, 0); the ranks that see the whole group set K:last_worker
          return Add(r, group.barrier_key, 0, [this, r, size = group.size](int64_t n) {
            ranks_[r].sub = n == size ? 2 : 3;
            Next(r);
          });
        case 2:
          return Set(r, group.last_worker_key, "1", [this, r] {
            ranks_[r].sub = 3;
            Next(r);
          });
        default:  // wait([K:last_worker])
          return SharedWait(
              r, /*get=*/false, group.last_worker_key, [this, r, g](const std::string&) {
                if (adds_sent_[g].load() != w_.groups[g].size) {
                  return Fail(absl::InternalError(absl::StrCat(
                      "rank ", r, ": the barrier of group ", w_.groups[g].name, " returned after ",
                      adds_sent_[g].load(), " of its ", w_.groups[g].size, " members added")));
                }
                ranks_[r].step++;
                ranks_[r].sub = 0;
                Next(r);
              });
      }
    }
    const uint32_t g = w_.GroupOf(rk.step - barrier_steps, r);
    const StoreGroup& group = w_.groups[g];
    const auto advance = [this, r] {
      ranks_[r].step++;
      Next(r);
    };
    if (group.leader == r) return Set(r, group.id_key, w_.IdOf(g), advance);
    SharedWait(r, /*get=*/true, group.id_key, [this, r, g, advance](const std::string& value) {
      if (value != w_.IdOf(g)) {
        return Fail(absl::InternalError(
            absl::StrCat("rank ", r, ": the id of group ", w_.groups[g].name,
                         " is not the one its leader set (", value.size(), " bytes)")));
      }
      advance();
    });
  }

  // Rank r's calls, through its node's agent relay: the agent's own StoreRelay (batches of the
  // node's calls, identical waits shared), sending over SimClient.
  agent::StoreRelay& Relay(uint32_t r) { return *node_state_[NodeOf(r)].relay; }
  template <typename Req>
  Req Request(const std::string& key) const {
    Req req;
    req.set_job(o_.job);
    req.set_generation(generation_);
    req.set_key(key);
    return req;
  }
  template <typename Resp>
  static absl::Status Checked(absl::string_view what, uint32_t r, const absl::StatusOr<Resp>& v) {
    if (v.ok()) return absl::OkStatus();
    return absl::Status(v.status().code(),
                        absl::StrCat(what, " of rank ", r, ": ", v.status().message()));
  }

  void Add(uint32_t r, const std::string& key, int64_t delta, std::function<void(int64_t)> then) {
    ++rank_adds_;
    v1::KeyAddRequest req = Request<v1::KeyAddRequest>(key);
    req.set_delta(delta);
    Relay(r).Relay<v1::KeyAddRequest, v1::KeyAddResponse>(
        std::move(req), run_deadline_,
        [this, r, then = std::move(then)](absl::StatusOr<v1::KeyAddResponse> v) {
          if (absl::Status s = Checked("KeyAdd", r, v); !s.ok()) return Fail(s);
          then(v->value());
        });
  }

  void Set(uint32_t r, const std::string& key, std::string value, std::function<void()> then) {
    ++rank_sets_;
    v1::KeySetRequest req = Request<v1::KeySetRequest>(key);
    req.set_value(std::move(value));
    Relay(r).Relay<v1::KeySetRequest, v1::KeySetResponse>(
        std::move(req), run_deadline_,
        [this, r, then = std::move(then)](absl::StatusOr<v1::KeySetResponse> v) {
          if (absl::Status s = Checked("KeySet", r, v); !s.ok()) return Fail(s);
          then();
        });
  }

  // A wait (KeyWait on [key]) or a get (KeyGet of key, waiting) of rank r.
  void SharedWait(uint32_t r, bool get, const std::string& key,
                  std::function<void(const std::string&)> then) {
    ++(get ? rank_gets_ : rank_waits_);
    if (get) {
      v1::KeyGetRequest req = Request<v1::KeyGetRequest>(key);
      req.set_wait(true);
      return Relay(r).Relay<v1::KeyGetRequest, v1::KeyGetResponse>(
          std::move(req), run_deadline_,
          [this, r, then = std::move(then)](absl::StatusOr<v1::KeyGetResponse> v) {
            if (absl::Status s = Checked("KeyGet", r, v); !s.ok()) return Fail(s);
            then(v->value());
          });
    }
    v1::KeyWaitRequest req;
    req.set_job(o_.job);
    req.set_generation(generation_);
    req.add_keys(key);
    Relay(r).Relay<v1::KeyWaitRequest, v1::KeyWaitResponse>(
        std::move(req), run_deadline_,
        [this, r, then = std::move(then)](absl::StatusOr<v1::KeyWaitResponse> v) {
          if (absl::Status s = Checked("KeyWait", r, v); !s.ok()) return Fail(s);
          then(std::string());
        });
  }

  // A simulated node's connection to the coordinator as its agent's StoreRelay sees it: the Key
  // calls over the node's shared channel, with its metadata; nothing else is asked of it.
  class SimClient final : public agent::CoordinatorClient {
   public:
    SimClient(Sim* sim, uint32_t node) : sim_(sim), node_(node) {}
    void RegisterNode(const domain::NodeInventory&, const std::vector<domain::RunningJob>&,
                      agent::CallOptions, agent::Answer<absl::Duration> done) override {
      done(Unused());
    }
    void Heartbeat(const std::string&, uint64_t, agent::CallOptions,
                   agent::Answer<absl::Duration> done) override {
      done(Unused());
    }
    void JoinJob(const domain::JoinRequest&, agent::CallOptions,
                 agent::Answer<domain::Assignment> done) override {
      done(Unused());
    }
    void LeaveJob(const std::string&, uint64_t, const std::string&, const std::string&,
                  agent::CallOptions, std::function<void(absl::Status)> done) override {
      done(Unused());
    }
    void FinishJob(const std::string&, uint64_t, const std::string&, agent::CallOptions,
                   std::function<void(absl::Status)> done) override {
      done(Unused());
    }
    void LeaveNode(const std::string&, uint64_t, const std::string&, agent::CallOptions,
                   std::function<void(absl::Status)> done) override {
      done(Unused());
    }
    void WatchJob(const std::string&, uint64_t, agent::CallOptions,
                  agent::Answer<domain::GenerationEnd> done) override {
      done(Unused());
    }
    void ResolveGroups(v1::ResolveGroupsRequest, agent::CallOptions,
                       agent::Answer<v1::ResolveGroupsResponse> done) override {
      done(Unused());
    }
#define MESHD_SIM_KEY(Name, counter)                                                      \
  void Key(v1::Name##Request r, agent::CallOptions, agent::Answer<v1::Name##Response> done) \
      override {                                                                          \
    ++sim_->counter;                                                                      \
    sim_->SendKey<v1::Name##Request, v1::Name##Response>(                                 \
        node_, std::move(r), std::move(done),                                             \
        [](Stub::async_interface* a, grpc::ClientContext* ctx, const v1::Name##Request* rq, \
           v1::Name##Response* rs, std::function<void(grpc::Status)> cb) {                \
          a->Name(ctx, rq, rs, std::move(cb));                                            \
        });                                                                               \
  }
    MESHD_SIM_KEY(KeySet, key_sets_)
    MESHD_SIM_KEY(KeyGet, key_gets_)
    MESHD_SIM_KEY(KeyAdd, key_adds_)
    MESHD_SIM_KEY(KeyCompareSet, key_others_)
    MESHD_SIM_KEY(KeyWait, key_waits_)
    MESHD_SIM_KEY(KeyCheck, key_others_)
    MESHD_SIM_KEY(KeyDelete, key_others_)
    MESHD_SIM_KEY(KeyCount, key_others_)
    MESHD_SIM_KEY(KeyBatch, key_batches_)
#undef MESHD_SIM_KEY
    void Shutdown() override {}

   private:
    static absl::Status Unused() {
      return absl::UnimplementedError("the store simulation sends only Key calls");
    }
    Sim* const sim_;
    const uint32_t node_;
  };

  // One Key call of `node` (its relay's), answered to the relay.
  template <typename Req, typename Resp, typename SendFn>
  void SendKey(uint32_t node, Req r, agent::Answer<Resp> done, SendFn send) {
    auto* c = new Call<Req, Resp>;
    c->req = std::move(r);
    if (!Begin(c, node)) {
      delete c;
      return done(absl::CancelledError("the run is over"));
    }
    send(Async(node), &c->ctx, &c->req, &c->resp,
         [this, c, done = std::move(done)](grpc::Status s) {
           CallsInFlight::Gone gone(&calls_in_flight_);  // after the call is deleted
           std::unique_ptr<Call<Req, Resp>> own(c);
           End(c);
           if (!s.ok()) {
             return done(absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                                      s.error_message()));
           }
           done(std::move(c->resp));
         });
  }

  // As agents do: every node heartbeats at the interval the coordinator gave it.
  struct Beat {
    bool on = false;  // registered
    std::chrono::milliseconds interval{1000};
    SteadyClock::time_point next;
  };
  void HeartbeatLoop() {
    while (true) {
      std::vector<uint32_t> beat;
      {
        absl::MutexLock lock(&mu_);
        const auto stop = [this] { return stopping_; };
        if (mu_.AwaitWithTimeout(absl::Condition(&stop), absl::Milliseconds(50))) return;
        const SteadyClock::time_point now = SteadyClock::now();
        for (uint32_t i = 0; i < nodes_; ++i) {
          Beat& b = beats_[i];
          if (!b.on || b.next > now) continue;
          beat.push_back(i);
          b.next = now + b.interval;
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
        Async(i)->Heartbeat(&c->ctx, &c->req, &c->resp, [this, c, i](grpc::Status s) {
          CallsInFlight::Gone gone(&calls_in_flight_);  // after the call is deleted
          std::unique_ptr<std::remove_pointer_t<decltype(c)>> own(c);
          End(c);
          if (!s.ok() && s.error_code() != grpc::StatusCode::CANCELLED) {
            return Fail(Failed("Heartbeat", names_[i], s));
          }
          if (s.ok() && c->resp.heartbeat_interval_ms() > 0) {
            absl::MutexLock lock(&mu_);
            beats_[i].interval = std::chrono::milliseconds(c->resp.heartbeat_interval_ms());
          }
        });
      }
    }
  }

  const StoreSimOptions& o_;
  const StoreWorkload& w_;
  const uint32_t nodes_;
  uint32_t steps_ = 0;
  std::vector<std::unique_ptr<Stub>> stubs_;
  std::vector<std::string> names_;
  // By node: the secret its registration returned (written once, before its next call).
  std::vector<std::string> secrets_;
  std::vector<v1::RegisterNodeRequest> registrations_;  // by node, moved out when sent
  std::chrono::system_clock::time_point deadline_;
  SteadyClock::time_point start_;
  SteadyClock::time_point store_start_;
  double cpu_start_ = 0;
  // Set before the store workload starts, read-only after.
  uint64_t generation_ = 0;
  std::vector<uint32_t> node_of_rank_;  // node rank -> node index

  std::vector<Node> node_state_;
  std::vector<Rank> ranks_;
  std::vector<std::atomic<uint32_t>> adds_sent_;  // by group: add(K, 1)s sent
  std::atomic<uint32_t> done_ranks_{0};
  std::atomic<uint64_t> calls_{0}, heartbeats_{0};
  std::atomic<uint64_t> rank_adds_{0}, rank_sets_{0}, rank_waits_{0}, rank_gets_{0};
  std::atomic<uint64_t> key_adds_{0}, key_sets_{0}, key_waits_{0}, key_gets_{0};
  std::atomic<uint64_t> key_others_{0}, key_batches_{0};
  // What the relays need of an agent's core: its clock, and a resender (whose timers never run:
  // a call the transport loses fails the run instead of waiting for a resend).
  RealClock clock_;
  agent::Timers timers_;
  agent::Resender resender_{&clock_, &timers_, nullptr};
  absl::Time run_deadline_;

  CallsInFlight calls_in_flight_;  // before it returns, Run waits until every call is gone

  absl::Mutex mu_;
  std::vector<Beat> beats_ ABSL_GUARDED_BY(mu_);  // by node
  absl::flat_hash_set<uint32_t> ranks_taken_ ABSL_GUARDED_BY(mu_);
  uint32_t registered_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t joined_ ABSL_GUARDED_BY(mu_) = 0;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  StoreSimResult result_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<StoreSimResult> RunStoreSim(const StoreSimOptions& options,
                                           const StoreWorkload& workload) {
  if (workload.gpus_per_node == 0 || workload.world_size % workload.gpus_per_node != 0) {
    return absl::InvalidArgumentError("the workload's world is not whole nodes");
  }
  Sim sim(options, workload);
  return sim.Run();
}

}  // namespace meshd::bench
