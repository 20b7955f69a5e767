// Fuzzer for the node agent's core around its workers' attaches: the input is a program of
// operations on one agent with 3 GPUs and two job names — workers attach (local rank and world,
// the job's node count, uid, the client's process instance and attach sequence, a deadline),
// withdraw (their call went away), watch and detach; the fake coordinator answers the agent's
// registration, joins (an assignment, DEADLINE_EXCEEDED, UNAVAILABLE, FAILED_PRECONDITION),
// watches (the generation ends), finishes and leaves; the fake clock advances and the agent
// ticks. Checked throughout and at the end:
//   - every attach is answered at most once, never under the agent's lock (the answer calls the
//     agent back), and after Stop every attach has been answered;
//   - an attach answered OK got its own local rank, a generation the agent ran, and the world its
//     node joined with (local world x nodes of the join it came from);
//   - no two attaches of one job are answered OK for one local rank of one generation unless the
//     first one detached, withdrew or never watched (a restarted worker takes a free place);
//   - the agent's status lists no more waiting workers than attaches still unanswered.
// As gRPC would, the fake coordinator answers a join DEADLINE_EXCEEDED once its call's timeout
// passed, and a worker's attach still unanswered at its deadline is cancelled (WithdrawAttach,
// what the agent's service does when the call's deadline ends it).
// A broken invariant aborts with the step and what broke.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "daemon/agent/core/agent.h"
#include "tests/support/fake_clock.h"
#include "tests/unit/agent/fake_coordinator_client.h"

namespace meshd::agent {
namespace {

constexpr int kGpus = 3;
const char* const kJobs[] = {"train", "eval"};
const char* const kInstances[] = {"", "proc-a", "proc-b", "proc-c"};

// AGENT_ATTACH_FUZZ_TRACE=1: every step on stderr.
bool Tracing() {
  static const bool on = std::getenv("AGENT_ATTACH_FUZZ_TRACE") != nullptr;
  return on;
}
void Trace(int step, const std::string& what) {
  if (Tracing()) std::fprintf(stderr, "%d: %s\n", step, what.c_str());
}

[[noreturn]] void Broken(int step, const std::string& what) {
  std::fprintf(stderr, "agent_attach_fuzz: invariant broken at step %d: %s\n", step, what.c_str());
  std::abort();
}

struct Worker {
  std::string job;
  absl::Time deadline;
  uint32_t local_rank = 0;
  uint64_t id = 0;  // the agent's id for WithdrawAttach (0: answered at once)
  int answers = 0;
  bool ok = false;
  uint64_t generation = 0;
  bool watched = false, detached = false, withdrawn = false;
  std::function<void()> cancel_watch;
};

class Program {
 public:
  explicit Program(FuzzedDataProvider& in) : in_(in) {
    std::vector<domain::Gpu> gpus;
    for (int i = 0; i < kGpus; ++i) {
      gpus.push_back(
          domain::Gpu{static_cast<uint32_t>(i), absl::StrCat("SIM-", i), "", "", 0, "", true});
    }
    AgentOptions o;
    o.coordinator = "coordinator:7070";
    o.node_name = "node-a";
    o.hostname = "host-a";
    o.agent_address = "unix:/tmp/a.sock";
    o.incarnation = 77;
    o.allow_uids = {3000};
    agent_ = std::make_unique<Agent>(o, std::move(gpus), &clock_, &client_);
    agent_->Start();
  }

  void Run() {
    while (in_.remaining_bytes() > 0 && step_ < 300) {
      Step();
      TakeJoins();
      Check();
      ++step_;
    }
    for (auto& w : workers_) {
      if (w->cancel_watch) w->cancel_watch();
    }
    agent_->Stop();
    // What the client's Shutdown does to the calls it holds, for the joins held here.
    while (!joins_.empty()) {
      auto done = std::move(joins_.front().call.done);
      joins_.pop_front();
      done(absl::CancelledError("the client shut down"));
    }
    for (size_t i = 0; i < workers_.size(); ++i) {
      if (workers_[i]->answers != 1) {
        Broken(step_,
               absl::StrCat("attach ", i, " answered ", workers_[i]->answers, " times after Stop"));
      }
    }
  }

 private:
  void Step() {
    switch (in_.ConsumeIntegralInRange<int>(0, 11)) {
      case 0:
      case 1:
      case 2:
        return Attach();
      case 3:
        return Withdraw();
      case 4:
        return WatchOrDetach();
      case 5:
      case 6:
        return AnswerJoin();
      case 7:
        return AnswerWatch();
      case 8: {
        if (auto r = client_.TakeRegister()) r->done(absl::Seconds(1));
        if (auto h = client_.TakeHeartbeat()) h->done(absl::Seconds(1));
        return;
      }
      case 9: {
        if (auto f = client_.TakeFinish()) f->done(true);
        if (auto l = client_.TakeLeave()) l->done(true);
        return;
      }
      default:
        return Advance(absl::Milliseconds(in_.ConsumeIntegralInRange<int>(0, 40000)));
    }
  }

  // The clock moves; joins whose call timed out are answered so, and attaches whose deadline
  // passed are cancelled, as gRPC would; the agent ticks.
  void Advance(absl::Duration d) {
    clock_.Advance(d);
    for (int round = 0; round < 3; ++round) {
      TakeJoins();
      for (auto it = joins_.begin(); it != joins_.end();) {
        if (it->deadline > clock_.Now()) {
          ++it;
          continue;
        }
        auto done = std::move(it->call.done);
        it = joins_.erase(it);
        Trace(step_, "a join's call timed out");
        done(absl::DeadlineExceededError("the call's deadline passed"));
      }
      agent_->Tick();
    }
    for (auto& w : workers_) {
      if (w->answers == 0 && !w->withdrawn && w->id != 0 && w->deadline <= clock_.Now()) {
        w->withdrawn = true;
        Trace(step_, absl::StrCat("attach id ", w->id, " timed out: cancelled"));
        agent_->WithdrawAttach(w->job, w->local_rank, w->id);
      }
    }
  }

  // The agent's join calls, held here with the time their call times out.
  void TakeJoins() {
    while (auto j = client_.TakeJoin()) {
      const absl::Time deadline = clock_.Now() + j->options.timeout;
      joins_.push_back(HeldJoin{*std::move(j), deadline});
    }
  }

  void Attach() {
    auto w = std::make_unique<Worker>();
    Worker* wp = w.get();
    w->job = kJobs[in_.ConsumeIntegralInRange<int>(0, 1)];
    const uint32_t local_world = in_.ConsumeIntegralInRange<uint32_t>(1, kGpus + 1);
    w->local_rank = in_.ConsumeIntegralInRange<uint32_t>(0, local_world);
    const uint32_t nodes = in_.ConsumeIntegralInRange<uint32_t>(1, 2);
    const uint32_t uid = in_.ConsumeBool() ? 1000 : (in_.ConsumeBool() ? 2000 : 3000);
    const std::string instance = kInstances[in_.ConsumeIntegralInRange<int>(0, 3)];
    uint64_t& seq = sequences_[instance];
    // Mostly the process's next attach; now and then an earlier one arriving late.
    const uint64_t sequence = in_.ConsumeIntegralInRange<int>(0, 4) == 0 ? seq : ++seq;
    const absl::Time deadline =
        clock_.Now() + absl::Milliseconds(in_.ConsumeIntegralInRange<int>(500, 120000));
    wp->deadline = deadline;
    workers_.push_back(std::move(w));
    const size_t index = workers_.size() - 1;
    Trace(step_, absl::StrCat("attach ", index, ": ", wp->job, " rank ", wp->local_rank, "/",
                              local_world, " nodes ", nodes, " uid ", uid, " '", instance, "' #",
                              sequence, " +", absl::FormatDuration(deadline - clock_.Now())));
    wp->id = agent_->Attach(
        wp->job, wp->local_rank, local_world, domain::NodeCount{nodes, nodes, absl::Seconds(1)},
        deadline,
        [this, wp, index, local_world, nodes](absl::StatusOr<AttachResult> r) {
          (void)agent_->Status();  // never answered under the agent's lock
          if (++wp->answers > 1) Broken(step_, absl::StrCat("attach ", index, " answered twice"));
          Trace(step_, absl::StrCat("  attach ", index, " answered ",
                                    r.ok() ? absl::StrCat("generation ", r->assignment.generation)
                                           : r.status().ToString()));
          if (!r.ok()) return;
          if (r->local_rank != wp->local_rank) {
            Broken(step_, absl::StrCat("attach ", index, " of local rank ", wp->local_rank,
                                       " answered local rank ", r->local_rank));
          }
          if (r->assignment.local_world != local_world || r->assignment.num_nodes != nodes) {
            Broken(step_, absl::StrCat("attach ", index, " got a world of ",
                                       r->assignment.num_nodes, " x ", r->assignment.local_world,
                                       ", asked ", nodes, " x ", local_world));
          }
          const auto g = generations_.find(wp->job);
          if (g == generations_.end() || g->second != r->assignment.generation) {
            Broken(step_, absl::StrCat("attach ", index, " got generation ",
                                       r->assignment.generation, ", not the job's latest"));
          }
          wp->ok = true;
          wp->generation = r->assignment.generation;
          auto key = std::make_tuple(wp->job, wp->generation, wp->local_rank);
          if (auto held = holders_.find(key); held != holders_.end()) {
            const Worker& before = *workers_[held->second];
            if (!before.detached && !before.withdrawn && before.watched) {
              Broken(step_, absl::StrCat("attach ", index, " got local rank ", wp->local_rank,
                                         " of generation ", wp->generation, ", which attach ",
                                         held->second, " holds and watches"));
            }
          }
          holders_[key] = index;
        },
        uid, AttachOrigin{instance, sequence});
  }

  Worker* Pick() {
    if (workers_.empty()) return nullptr;
    return workers_[in_.ConsumeIntegralInRange<size_t>(0, workers_.size() - 1)].get();
  }

  void Withdraw() {
    Worker* w = Pick();
    if (w == nullptr || w->id == 0 || w->answers > 0) return;
    w->withdrawn = true;
    Trace(step_, absl::StrCat("withdraw attach id ", w->id));
    agent_->WithdrawAttach(w->job, w->local_rank, w->id);
  }

  void WatchOrDetach() {
    if (workers_.empty()) return;
    const size_t index = in_.ConsumeIntegralInRange<size_t>(0, workers_.size() - 1);
    Worker* w = workers_[index].get();
    if (!w->ok || w->detached) return;
    // Only the place's latest holder acts for it (an earlier one was a worker that restarted).
    if (holders_[std::make_tuple(w->job, w->generation, w->local_rank)] != index) return;
    if (!w->watched && in_.ConsumeBool()) {
      auto cancel =
          agent_->Watch(w->job, w->generation, w->local_rank, [](const domain::GenerationEnd&) {});
      Trace(step_, absl::StrCat("watch ", w->job, " ", w->generation, " rank ", w->local_rank, ": ",
                                cancel.status().ToString()));
      if (cancel.ok()) {
        w->watched = true;
        w->cancel_watch = *std::move(cancel);
      }
      return;
    }
    const absl::Status s = agent_->Detach(w->job, w->generation, w->local_rank);
    Trace(step_, absl::StrCat("detach ", w->job, " ", w->generation, " rank ", w->local_rank, ": ",
                              s.ToString()));
    if (s.ok()) w->detached = true;
  }

  void AnswerJoin() {
    TakeJoins();
    if (joins_.empty()) return;
    auto join = std::make_optional(std::move(joins_.front().call));
    joins_.pop_front();
    Trace(step_, absl::StrCat("join of ", join->request.job, " answered"));
    switch (in_.ConsumeIntegralInRange<int>(0, 4)) {
      case 0:
        return join->done(absl::DeadlineExceededError("only some nodes joined in time"));
      case 1:
        return join->done(absl::UnavailableError("coordinator away"));
      case 2:
        return join->done(absl::FailedPreconditionError("refused"));
      default: {
        const domain::JoinRequest& rq = join->request;
        const uint64_t generation = ++generation_counter_;
        generations_[rq.job] = generation;
        const uint32_t nodes = rq.nodes.max_nodes;
        return join->done(domain::Assignment{
            rq.job, generation, nodes * rq.local_world, 0, rq.local_world, nodes, nullptr, {}});
      }
    }
  }

  void AnswerWatch() {
    auto watch = client_.TakeWatch();
    if (!watch) return;
    Trace(step_,
          absl::StrCat("watch of ", watch->request.job, " ", watch->request.generation, " ends"));
    watch->done(domain::GenerationEnd{watch->request.job, watch->request.generation,
                                      domain::EndReason::kJobFinished, "", "finished"});
  }

  void Check() {
    size_t unanswered = 0;
    for (const auto& w : workers_) {
      if (w->answers == 0 && !w->withdrawn) ++unanswered;
    }
    const size_t waiting = [&] {
      size_t n = 0;
      for (const auto& w : agent_->Status().workers) {
        if (w.generation == 0) ++n;
      }
      return n;
    }();
    if (waiting > unanswered) {
      Broken(step_, absl::StrCat("the agent lists ", waiting, " waiting workers; ", unanswered,
                                 " attaches are unanswered"));
    }
  }

  struct HeldJoin {
    FakeCall<domain::JoinRequest, domain::Assignment> call;
    absl::Time deadline;
  };

  FuzzedDataProvider& in_;
  FakeClock clock_;
  FakeCoordinatorClient client_;
  std::unique_ptr<Agent> agent_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::deque<HeldJoin> joins_;
  std::map<std::string, uint64_t> sequences_;
  std::map<std::string, uint64_t> generations_;  // by job: the latest assigned
  std::map<std::tuple<std::string, uint64_t, uint32_t>, size_t> holders_;
  uint64_t generation_counter_ = 0;
  int step_ = 0;
};

}  // namespace
}  // namespace meshd::agent

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  meshd::agent::Program(in).Run();
  return 0;
}
