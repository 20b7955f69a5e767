// Fuzzer for the coordinator core: the input is a program of operations on a small cluster (six
// node names, three job names) — register (with GPUs, restarts, reports of running jobs), heartbeat,
// join, leave, finish, leave the node, advance the fake clock and expire, KV, barriers, watches,
// ResolveGroups, the operators' verbs — and after every step the core's invariants are checked
// against its own views:
//   - a RUNNING job's members are distinct, registered, live (not dead, not departed) nodes with
//     ranks 0..n-1 in rank order, between its min and max node count;
//   - a JOINING job's joiners are distinct registered nodes;
//   - a node's job list names every job it runs in, and only jobs that exist;
//   - the status counts agree with the node and job views, and the waiter total with its parts;
//   - a job's generation never goes back while the job exists;
//   - every assignment handed out for a generation still running agrees with the job's view
//     (world size, node count, the node's rank), and no two nodes got the same rank of one
//     generation;
//   - every callback runs at most once, never under the core's lock (it calls the core back), and
//     after Shutdown every call still waiting has been answered, with no waiter left.
// A broken invariant aborts with the step and what broke; COORDINATOR_FUZZ_TRACE=1 also prints
// every join's answer.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "daemon/coordinator/coordinator.h"
#include "tests/support/fake_clock.h"

namespace meshd::coordinator {
namespace {

constexpr int kNodes = 6;
constexpr int kJobs = 3;

[[noreturn]] void Broken(int step, const std::string& what) {
  std::fprintf(stderr, "coordinator_fuzz: invariant broken after step %d: %s\n", step,
               what.c_str());
  std::abort();
}

// Counts the answers of one call: at most one, and exactly one once the core shut down.
struct Pending {
  int answers = 0;
};

class Program {
 public:
  explicit Program(FuzzedDataProvider& in)
      : in_(in),
        core_(&clock_, Options(in), [](const Event&) {}) {}

  void Run() {
    int step = 0;
    while (in_.remaining_bytes() > 0 && step < 400) {
      Step();
      Check(step++);
    }
    core_.Shutdown();
    Check(step);
    for (size_t i = 0; i < pending_.size(); ++i) {
      if (pending_[i]->answers != 1) {
        Broken(step, absl::StrCat("call ", i, " (", what_[i], ") answered ",
                                  pending_[i]->answers, " times after Shutdown"));
      }
    }
    if (core_.Status().waiters != 0) Broken(step, "waiters left after Shutdown");
  }

 private:
  static CoordinatorOptions Options(FuzzedDataProvider& in) {
    CoordinatorOptions o;
    o.heartbeat_interval = absl::Seconds(1);
    o.heartbeat_timeout = absl::Seconds(in.ConsumeIntegralInRange(2, 10));
    o.max_heartbeats_per_second = in.ConsumeBool() ? 0 : in.ConsumeIntegralInRange(1, 8);
    o.recovery_window = absl::Seconds(in.ConsumeIntegralInRange(2, 20));
    o.node_retention = absl::Seconds(in.ConsumeIntegralInRange(1, 60));
    o.job_retention = absl::Seconds(in.ConsumeIntegralInRange(1, 60));
    return o;
  }

  std::string NodeName() { return absl::StrCat("n", in_.ConsumeIntegralInRange(0, kNodes - 1)); }
  std::string JobName() { return absl::StrCat("j", in_.ConsumeIntegralInRange(0, kJobs - 1)); }
  // Mostly the node's current incarnation (so it stays alive), sometimes another.
  uint64_t Incarnation(const std::string& node) {
    if (in_.ConsumeIntegralInRange(0, 7) == 0) return in_.ConsumeIntegralInRange<uint64_t>(0, 4);
    auto it = incarnation_.find(node);
    return it == incarnation_.end() ? 1 : it->second;
  }
  // Mostly the job's current generation, sometimes another.
  uint64_t Generation(const std::string& job) {
    if (in_.ConsumeIntegralInRange(0, 7) == 0) return in_.ConsumeIntegralInRange<uint64_t>(0, 5);
    absl::StatusOr<JobView> v = core_.Job(job);
    return v.ok() ? v->generation : 1;
  }
  absl::Time Deadline() {
    return clock_.Now() + absl::Seconds(in_.ConsumeIntegralInRange(0, 30));
  }
  // A string from a small set of plausible and hostile values.
  std::string Short() {
    switch (in_.ConsumeIntegralInRange(0, 5)) {
      case 0: return "";
      case 1: return "k";
      case 2: return "key/1";
      case 3: return std::string(300, 'x');
      case 4: return "\xff\xfe";
      default: return in_.ConsumeRandomLengthString(16);
    }
  }

  // A call that answers later: its callback is counted, and calls the core back (which it may:
  // callbacks run after the lock is released).
  template <typename T>
  std::function<void(T)> Answer(const std::string& what) {
    auto p = std::make_shared<Pending>();
    pending_.push_back(p);
    what_.push_back(what);
    return [this, p](T) {
      ++p->answers;
      (void)core_.Status();
    };
  }

  void Step() {
    switch (in_.ConsumeIntegralInRange(0, 17)) {
      case 0:
      case 1:
        Register();
        break;
      case 2:
      case 3: {  // every live node heartbeats, as agents do
        for (const auto& [node, inc] : incarnation_) (void)core_.Heartbeat(node, inc);
        break;
      }
      case 4: {
        const std::string node = NodeName();
        (void)core_.Heartbeat(node, Incarnation(node));
        break;
      }
      case 5:
      case 6:
        Join();
        break;
      case 7: {
        const std::string job = JobName();
        (void)core_.LeaveJob(job, Generation(job), NodeName(), Short());
        break;
      }
      case 8: {
        const std::string job = JobName();
        (void)core_.FinishJob(job, Generation(job), NodeName());
        break;
      }
      case 9: {
        const std::string node = NodeName();
        if (core_.LeaveNode(node, Incarnation(node), Short()).ok()) incarnation_.erase(node);
        break;
      }
      case 10:
      case 11:
        clock_.Advance(absl::Milliseconds(in_.ConsumeIntegralInRange(0, 8000)));
        core_.CheckDeadlines();
        break;
      case 12:
        Kv();
        break;
      case 13: {
        const std::string job = JobName();
        core_.Barrier(job, Generation(job), in_.ConsumeBool() ? "b" : Short(), NodeName(),
                      in_.ConsumeIntegralInRange<uint32_t>(0, 4), Deadline(),
                      Answer<absl::Status>("Barrier"));
        break;
      }
      case 14: {
        const std::string job = JobName();
        auto done = Answer<const GenerationEnd&>("WatchJob");
        absl::StatusOr<uint64_t> id = core_.WatchJob(job, Generation(job), done);
        if (!id.ok()) {
          ++pending_.back()->answers;  // refused at once: `done` is never called
        } else if (in_.ConsumeBool()) {
          // Cancelled: `done` is never called after this (it may have been already: a generation
          // that had ended answers at once).
          core_.CancelWatch(*id);
          if (pending_.back()->answers == 0) ++pending_.back()->answers;
        }
        break;
      }
      case 15:
        Resolve();
        break;
      case 16:
        Admin();
        break;
      default: {  // the views themselves, with arguments
        (void)core_.Job(JobName());
        (void)core_.HeartbeatTimingOf(NodeName());
        break;
      }
    }
  }

  void Register() {
    const std::string node = NodeName();
    NodeInventory inv;
    inv.node = node;
    inv.hostname = in_.ConsumeBool() ? "host-" + node : Short();
    inv.agent_address = "unix:/run/" + node;
    inv.incarnation = in_.ConsumeIntegralInRange<uint64_t>(0, 3);
    const int gpus = in_.ConsumeIntegralInRange(0, 3);
    for (int i = 0; i < gpus; ++i) {
      // Sometimes another node's UUID: ALREADY_EXISTS.
      const std::string owner = in_.ConsumeIntegralInRange(0, 7) == 0 ? NodeName() : node;
      inv.gpus.push_back(Gpu{static_cast<uint32_t>(i), absl::StrCat("GPU-", owner, "-", i), "",
                             "sim", 0, in_.ConsumeBool() ? "" : "clique-a", true});
    }
    std::vector<RunningJob> running;
    if (in_.ConsumeIntegralInRange(0, 3) == 0) {  // a report of a job's generation (recovery)
      RunningJob r;
      r.job = JobName();
      r.generation = in_.ConsumeIntegralInRange<uint64_t>(0, 4);
      r.num_nodes = in_.ConsumeIntegralInRange<uint32_t>(0, 4);
      r.node_rank = in_.ConsumeIntegralInRange<uint32_t>(0, 4);
      r.local_world = in_.ConsumeIntegralInRange<uint32_t>(0, 3);
      r.nodes.min_nodes = in_.ConsumeIntegralInRange<uint32_t>(0, 4);
      r.nodes.max_nodes = in_.ConsumeIntegralInRange<uint32_t>(0, 4);
      running.push_back(r);
    }
    if (core_.RegisterNode(inv, running).ok()) incarnation_[node] = inv.incarnation;
  }

  void Join() {
    JoinRequest req;
    req.job = JobName();
    req.node = NodeName();
    req.incarnation = Incarnation(req.node);
    req.local_world = in_.ConsumeIntegralInRange<uint32_t>(0, 3);
    req.nodes.min_nodes = in_.ConsumeIntegralInRange<uint32_t>(0, 4);
    req.nodes.max_nodes = in_.ConsumeBool() ? req.nodes.min_nodes
                                            : in_.ConsumeIntegralInRange<uint32_t>(0, 5);
    req.nodes.last_call = absl::Milliseconds(in_.ConsumeIntegralInRange(0, 3000));
    auto p = std::make_shared<Pending>();
    pending_.push_back(p);
    what_.push_back("JoinJob " + req.job + " " + req.node);
    core_.JoinJob(req, Deadline(), [this, p, req](absl::StatusOr<Assignment> a) {
      ++p->answers;
      if (std::getenv("COORDINATOR_FUZZ_TRACE") != nullptr) {
        std::fprintf(stderr, "join %s %s -> %s\n", req.job.c_str(), req.node.c_str(),
                     a.ok() ? absl::StrCat("generation ", a->generation, " rank ", a->node_rank)
                                  .c_str()
                            : a.status().ToString().c_str());
      }
      if (a.ok()) assignments_.push_back({req.node, *a});
    });
  }

  void Kv() {
    const std::string job = JobName();
    const uint64_t gen = Generation(job);
    const std::string key = in_.ConsumeBool() ? "k" : Short();
    switch (in_.ConsumeIntegralInRange(0, 8)) {
      case 8:
        return Batch(job, gen);
      case 0:
        core_.KeySet(job, gen, key, Short(), Answer<absl::Status>("KeySet"));
        break;
      case 1:
        core_.KeyGet(job, gen, key, in_.ConsumeBool(), Deadline(),
                     Answer<absl::StatusOr<std::string>>("KeyGet"));
        break;
      case 2:
        (void)core_.KeyAdd(job, gen, key,
                           in_.ConsumeBool() ? in_.ConsumeIntegral<int64_t>() : 1);
        break;
      case 3: {
        const std::string expected = Short();
        (void)core_.KeyCompareSet(job, gen, key, in_.ConsumeBool() ? &expected : nullptr,
                                  Short());
        break;
      }
      case 4:
        core_.KeyWait(job, gen, {key, "k"}, Deadline(), Answer<absl::Status>("KeyWait"));
        break;
      case 5:
        (void)core_.KeyCheck(job, gen, {key});
        break;
      case 6:
        (void)core_.KeyDelete(job, gen, key);
        break;
      default:
        (void)core_.KeyCount(job, gen);
        break;
    }
  }

  // An agent's KeyBatch: a few operations of any kind (waiting or not, empty keys too).
  void Batch(const std::string& job, uint64_t gen) {
    std::vector<KvOp> ops(in_.ConsumeIntegralInRange(0, 4));
    for (KvOp& op : ops) {
      op.kind = static_cast<KvOp::Kind>(in_.ConsumeIntegralInRange(0, 7));
      const int keys = in_.ConsumeIntegralInRange(0, 2);
      for (int i = 0; i < keys; ++i) op.keys.push_back(in_.ConsumeBool() ? "k" : Short());
      op.value = Short();
      if (in_.ConsumeBool()) op.expected = Short();
      op.delta = in_.ConsumeBool() ? in_.ConsumeIntegral<int64_t>() : 1;
      op.wait = in_.ConsumeBool();
    }
    core_.KeyBatch(job, gen, std::move(ops), Deadline(),
                   Answer<absl::StatusOr<std::vector<KvOpResult>>>("KeyBatch"));
  }

  // A node's ResolveGroups for its ranks of the job's running generation (or made-up ones).
  void Resolve() {
    const std::string job = JobName();
    const std::string node = NodeName();
    const uint64_t gen = Generation(job);
    std::vector<RankSpec> ranks;
    absl::StatusOr<JobView> view = core_.Job(job);
    const std::string fingerprint =
        in_.ConsumeBool() ? absl::StrCat("identity(", view.ok() ? view->world_size : 1, ")|[(",
                                         view.ok() ? view->world_size : 1, "):(1)]|dp")
                          : Short();
    if (view.ok() && in_.ConsumeBool()) {
      for (const Member& m : view->members) {
        if (m.node != node) continue;
        for (uint32_t l = 0; l < m.local_world; ++l) {
          ranks.push_back(RankSpec{m.node_rank * m.local_world + l, fingerprint, "d"});
        }
      }
    } else {
      const int n = in_.ConsumeIntegralInRange(0, 3);
      for (int i = 0; i < n; ++i) {
        ranks.push_back(RankSpec{in_.ConsumeIntegralInRange<uint32_t>(0, 8), fingerprint, "d"});
      }
    }
    std::vector<GroupRequest> groups;
    const int g = in_.ConsumeIntegralInRange(0, 3);
    for (int i = 0; i < g; ++i) {
      GroupRequest r;
      // The 1-dim mesh's one group, the world's, another index, or anything.
      const uint32_t w = view.ok() ? view->world_size : 1;
      switch (in_.ConsumeIntegralInRange(0, 3)) {
        case 0: r.key = absl::StrCat("#0/(", w, "):(1)/0"); break;
        case 1: r.key = "world/0"; break;
        case 2: r.key = absl::StrCat("#0/(", w, "):(1)/", i); break;
        default: r.key = Short();
      }
      r.num_ids = in_.ConsumeIntegralInRange<uint32_t>(0, 3);
      if (in_.ConsumeBool()) {
        r.minted.push_back({in_.ConsumeIntegralInRange<uint32_t>(0, 3), std::string(128, 'i')});
      }
      if (in_.ConsumeIntegralInRange(0, 7) == 0) r.mint_error = "no NCCL";
      groups.push_back(std::move(r));
    }
    core_.ResolveGroups(job, gen, node, in_.ConsumeBool() ? "#0" : Short(), ranks,
                        std::move(groups), Deadline(),
                        in_.ConsumeBool()
                            ? absl::ZeroDuration()
                            : absl::Milliseconds(in_.ConsumeIntegralInRange(1, 3000)),
                        Answer<absl::StatusOr<std::vector<SharedGroupIds>>>("ResolveGroups"));
  }

  void Admin() {
    Caller op;
    op.admin = in_.ConsumeIntegralInRange(0, 7) != 0;
    op.identity = "fuzz";
    switch (in_.ConsumeIntegralInRange(0, 4)) {
      case 0:
        (void)core_.CordonNode(op, NodeName(), true, Short());
        break;
      case 1:
        (void)core_.CordonNode(op, NodeName(), false, "");
        break;
      case 2:
        (void)core_.DrainNode(op, NodeName(), Short());
        break;
      case 3: {
        const std::string node = NodeName();
        if (core_.ForgetNode(op, node).ok()) incarnation_.erase(node);
        break;
      }
      default:
        (void)core_.EndJob(op, JobName(), Short());
        break;
    }
  }

  void Check(int step) {
    const std::vector<NodeView> nodes = core_.Nodes();
    const std::vector<JobView> jobs = core_.Jobs();
    const StatusView status = core_.Status();

    std::map<std::string, const NodeView*> by_name;
    uint32_t alive = 0, dead = 0, left = 0, cordoned = 0;
    for (const NodeView& n : nodes) {
      if (!by_name.emplace(n.inventory.node, &n).second) {
        Broken(step, "node listed twice: " + n.inventory.node);
      }
      if (n.alive && n.left) Broken(step, "node alive and departed: " + n.inventory.node);
      (n.alive ? alive : n.left ? left : dead)++;
      if (n.cordoned) ++cordoned;
    }
    if (status.nodes_alive != alive || status.nodes_dead != dead || status.nodes_left != left ||
        status.nodes_cordoned != cordoned) {
      Broken(step, absl::StrCat("node counts: status alive/dead/left/cordoned ",
                                status.nodes_alive, "/", status.nodes_dead, "/",
                                status.nodes_left, "/", status.nodes_cordoned, ", views ", alive,
                                "/", dead, "/", left, "/", cordoned));
    }

    std::set<std::string> job_names;
    uint32_t joining = 0, running = 0;
    for (const JobView& j : jobs) {
      if (!job_names.insert(j.job).second) Broken(step, "job listed twice: " + j.job);
      (j.phase == JobPhase::kJoining ? joining : running)++;
      auto [it, inserted] = generation_.emplace(j.job, j.generation);
      if (!inserted) {
        if (j.generation < it->second) {
          Broken(step, absl::StrCat("job ", j.job, " went back from generation ", it->second,
                                    " to ", j.generation));
        }
        it->second = j.generation;
      }
      std::set<std::string> seen;
      for (const Member& m : j.members) {
        if (!seen.insert(m.node).second) Broken(step, "node twice in job " + j.job + ": " + m.node);
        auto n = by_name.find(m.node);
        if (n == by_name.end()) Broken(step, "job " + j.job + " holds unknown node " + m.node);
        if (j.phase == JobPhase::kJoining) continue;
        const auto& node_jobs = n->second->jobs;
        if (std::find(node_jobs.begin(), node_jobs.end(), j.job) == node_jobs.end()) {
          Broken(step, "node " + m.node + " runs in " + j.job + " but does not list it");
        }
      }
      if (j.phase != JobPhase::kRunning) continue;
      const size_t size = j.members.size();
      if (size == 0) Broken(step, "running job without members: " + j.job);
      if (size < j.nodes.min_nodes || size > j.nodes.max_nodes) {
        Broken(step, absl::StrCat("running job ", j.job, " has ", size, " nodes, not ",
                                  j.nodes.min_nodes, "-", j.nodes.max_nodes));
      }
      for (size_t r = 0; r < size; ++r) {
        const Member& m = j.members[r];
        if (m.node_rank != r) {
          Broken(step, absl::StrCat("job ", j.job, ": member ", r, " has node rank ", m.node_rank));
        }
        const NodeView& n = *by_name[m.node];
        if (!n.alive) Broken(step, "running job " + j.job + " holds a node not alive: " + m.node);
      }
      if (j.world_size != size * j.members[0].local_world) {
        Broken(step, "running job " + j.job + ": world size is not nodes x local world");
      }
      // The assignments handed out for this generation agree with the view.
      std::map<uint32_t, std::string> ranks;  // a node that joins again gets its rank again
      for (const auto& [node, a] : assignments_) {
        if (a.job != j.job || a.generation != j.generation) continue;
        if (a.world_size != j.world_size || a.num_nodes != size) {
          Broken(step, absl::StrCat("assignment of ", node, " in ", j.job, " says world ",
                                    a.world_size, " of ", a.num_nodes, " nodes; the view ",
                                    j.world_size, " of ", size));
        }
        if (auto [r, fresh] = ranks.emplace(a.node_rank, node); !fresh && r->second != node) {
          std::string all;
          for (const auto& [n2, a2] : assignments_) {
            if (a2.job == j.job && a2.generation == j.generation) {
              absl::StrAppend(&all, " ", n2, ":", a2.node_rank);
            }
          }
          Broken(step, absl::StrCat("two nodes got node rank ", a.node_rank, " in ", j.job,
                                    " generation ", j.generation, ":", all));
        }
        if (a.node_rank >= size || j.members[a.node_rank].node != node) {
          Broken(step, absl::StrCat("assignment of ", node, " in ", j.job, " says node rank ",
                                    a.node_rank, ", the view another"));
        }
      }
    }
    for (const NodeView& n : nodes) {
      for (const std::string& j : n.jobs) {
        if (!job_names.contains(j)) Broken(step, "node " + n.inventory.node + " lists gone job " + j);
      }
    }
    // A job removed (retention) may be created again from generation 1: forget what it handed out.
    for (auto it = generation_.begin(); it != generation_.end();) {
      it = job_names.contains(it->first) ? std::next(it) : generation_.erase(it);
    }
    std::erase_if(assignments_, [&](const auto& a) { return !job_names.contains(a.second.job); });
    if (status.jobs_joining != joining || status.jobs_running != running) {
      Broken(step, absl::StrCat("job counts: status joining/running ", status.jobs_joining, "/",
                                status.jobs_running, ", views ", joining, "/", running));
    }
    if (status.waiters != status.waiting.total()) Broken(step, "waiters != sum of its parts");
    for (size_t i = 0; i < pending_.size(); ++i) {
      if (pending_[i]->answers > 1) {
        Broken(step, absl::StrCat("call ", i, " (", what_[i], ") answered ",
                                  pending_[i]->answers, " times"));
      }
    }
  }

  FuzzedDataProvider& in_;
  FakeClock clock_;
  Coordinator core_;
  std::map<std::string, uint64_t> incarnation_;  // nodes registered (as far as we know)
  std::map<std::string, uint64_t> generation_;   // the last generation seen of each job
  std::vector<std::shared_ptr<Pending>> pending_;
  std::vector<std::string> what_;
  std::vector<std::pair<std::string, Assignment>> assignments_;
};

}  // namespace
}  // namespace meshd::coordinator

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  meshd::coordinator::Program(in).Run();
  return 0;
}
