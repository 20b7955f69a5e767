// Fuzzer for the agent's store relay (agent/core/store_relay.h) over the coordinator's real
// key-value store: the input is a program of workers' calls on four keys (set, get with and
// without waiting, add, compare-set, wait, check, delete, count; each with its deadline), batches
// the relay sent answered by coordinator::KvStore (through the wire conversion the coordinator's
// service uses) or lost (UNAVAILABLE), and the fake clock advancing (the store's waits and the
// relay's waiters expire, the resender's timers run); the relay batches or sends alone. Checked:
//   - every call is answered at most once, and once everything was served and every deadline
//     passed, exactly once;
//   - a get answers a value its key held in the store; a wait answers OK only for keys the store
//     held; an add answers the counter the store computed for that very add (key, delta), each
//     such result to one caller only — no result goes to another worker's call.
// A broken invariant aborts with the step and what broke.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "daemon/agent/core/resender.h"
#include "daemon/agent/core/store_relay.h"
#include "daemon/agent/core/timers.h"
#include "daemon/coordinator/kv_store.h"
#include "daemon/wire/kv_batch_convert.h"
#include "tests/support/fake_clock.h"
#include "tests/unit/agent/fake_coordinator_client.h"

namespace meshd::agent {
namespace {

const char* const kKeys[] = {"a", "b", "c", "n"};
const char* const kValues[] = {"", "1", "2", "x", "17"};
constexpr char kJob[] = "job";
constexpr uint64_t kGeneration = 1;

[[noreturn]] void Broken(int step, const std::string& what) {
  std::fprintf(stderr, "store_relay_fuzz: invariant broken at step %d: %s\n", step, what.c_str());
  std::abort();
}

class Program {
 public:
  explicit Program(FuzzedDataProvider& in)
      : in_(in),
        relay_(&clock_, &client_, &resender_,
               [](const std::string&, uint64_t, std::optional<uint32_t>) {
                 return absl::OkStatus();
               }) {}

  void Run() {
    while (in_.remaining_bytes() > 0 && step_ < 400) {
      switch (in_.ConsumeIntegralInRange<int>(0, 9)) {
        case 0:
        case 1:
        case 2:
        case 3:
          Call();
          break;
        case 4:
        case 5:
        case 6:
          Serve(/*may_lose=*/true);
          break;
        default:
          Advance(absl::Milliseconds(in_.ConsumeIntegralInRange<int>(0, 3000)));
      }
      ++step_;
    }
    // Everything served, every deadline passed: every call answered.
    for (int round = 0; round < 20; ++round) {
      while (Serve(/*may_lose=*/false)) {
      }
      Advance(absl::Seconds(30));
    }
    for (size_t i = 0; i < answers_.size(); ++i) {
      if (answers_[i] != 1) {
        Broken(step_, absl::StrCat("call ", i, " (", what_[i], ") answered ", answers_[i],
                                   " times at the end"));
      }
    }
  }

 private:
  template <typename Req>
  Req Request() {
    Req r;
    r.set_job(kJob);
    r.set_generation(kGeneration);
    return r;
  }
  std::string Key() { return kKeys[in_.ConsumeIntegralInRange<int>(0, 3)]; }
  std::string Value() { return kValues[in_.ConsumeIntegralInRange<int>(0, 4)]; }

  // A new call's index; its answer counted (at most once).
  size_t Begin(std::string what, absl::Time deadline) {
    answers_.push_back(0);
    deadlines_.push_back(deadline);
    what_.push_back(std::move(what));
    return answers_.size() - 1;
  }
  // Call i answered with `s`: once, and with an error only its own can explain: its deadline
  // (not before it, less the relay's few ms of slack), a lost batch, or the store's refusal.
  void Answered(size_t i, const absl::Status& s) {
    if (++answers_[i] > 1)
      Broken(step_, absl::StrCat("call ", i, " (", what_[i], ") answered twice"));
    switch (s.code()) {
      case absl::StatusCode::kOk:
      case absl::StatusCode::kNotFound:         // a get that does not wait
      case absl::StatusCode::kInvalidArgument:  // an add to a value that is not a number
      case absl::StatusCode::kOutOfRange:       // an add past int64
        return;
      case absl::StatusCode::kUnavailable:
        if (lost_ > 0) return;
        break;
      case absl::StatusCode::kDeadlineExceeded:
        if (clock_.Now() >= deadlines_[i] - absl::Milliseconds(10)) return;
        break;
      default:
        break;
    }
    Broken(step_, absl::StrCat("call ", i, " (", what_[i], ") answered ", s.ToString(), " at ",
                               absl::FormatDuration(deadlines_[i] - clock_.Now()),
                               " before its deadline"));
  }

  // A call whose answer is checked only by Answered.
  template <typename Req, typename Resp>
  void Send(Req r, std::string what, absl::Time deadline) {
    const size_t i = Begin(std::move(what), deadline);
    relay_.Relay<Req, Resp>(std::move(r), deadline,
                            [this, i](absl::StatusOr<Resp> v) { Answered(i, v.status()); });
  }

  void Call() {
    const absl::Time deadline =
        clock_.Now() + absl::Milliseconds(in_.ConsumeIntegralInRange<int>(10, 10000));
    switch (in_.ConsumeIntegralInRange<int>(0, 7)) {
      case 0: {
        auto r = Request<v1::KeySetRequest>();
        r.set_key(Key());
        r.set_value(Value());
        std::string what = absl::StrCat("set ", r.key());
        return Send<v1::KeySetRequest, v1::KeySetResponse>(std::move(r), std::move(what),
                                                           deadline);
      }
      case 1: {
        auto r = Request<v1::KeyGetRequest>();
        r.set_key(Key());
        r.set_wait(in_.ConsumeBool());
        const std::string key = r.key();
        const size_t i = Begin(absl::StrCat("get ", key), deadline);
        return relay_.Relay<v1::KeyGetRequest, v1::KeyGetResponse>(
            std::move(r), deadline, [this, i, key](absl::StatusOr<v1::KeyGetResponse> v) {
              Answered(i, v.status());
              if (v.ok() && !written_[key].contains(v->value())) {
                Broken(step_, absl::StrCat("get ", key, " answered '", v->value(),
                                           "', which the key never held"));
              }
            });
      }
      case 2: {
        auto r = Request<v1::KeyAddRequest>();
        r.set_key(Key());
        r.set_delta(in_.ConsumeIntegralInRange<int64_t>(-3, 1000));
        const std::string key = r.key();
        const int64_t delta = r.delta();
        const size_t i = Begin(absl::StrCat("add ", key, " ", delta), deadline);
        return relay_.Relay<v1::KeyAddRequest, v1::KeyAddResponse>(
            std::move(r), deadline, [this, i, key, delta](absl::StatusOr<v1::KeyAddResponse> v) {
              Answered(i, v.status());
              if (!v.ok()) return;
              auto it = adds_.find(std::make_tuple(key, delta, v->value()));
              if (it == adds_.end()) {
                Broken(step_, absl::StrCat("add ", key, " ", delta, " answered ", v->value(),
                                           ", which the store did not compute for such an add "
                                           "(or gave to another call)"));
              }
              adds_.erase(it);
            });
      }
      case 3: {
        auto r = Request<v1::KeyCompareSetRequest>();
        r.set_key(Key());
        r.set_expected(Value());
        r.set_expect_absent(r.expected().empty() && in_.ConsumeBool());
        r.set_desired(Value());
        std::string what = absl::StrCat("compare-set ", r.key());
        return Send<v1::KeyCompareSetRequest, v1::KeyCompareSetResponse>(
            std::move(r), std::move(what), deadline);
      }
      case 4: {
        auto r = Request<v1::KeyWaitRequest>();
        const int n = in_.ConsumeIntegralInRange<int>(1, 2);
        for (int k = 0; k < n; ++k) r.add_keys(Key());
        std::vector<std::string> keys(r.keys().begin(), r.keys().end());
        const size_t i = Begin("wait", deadline);
        return relay_.Relay<v1::KeyWaitRequest, v1::KeyWaitResponse>(
            std::move(r), deadline, [this, i, keys](absl::StatusOr<v1::KeyWaitResponse> v) {
              Answered(i, v.status());
              if (!v.ok()) return;
              for (const std::string& k : keys) {
                if (written_[k].empty()) {
                  Broken(step_, absl::StrCat("a wait for '", k, "' answered OK; it was never set"));
                }
              }
            });
      }
      case 5: {
        auto r = Request<v1::KeyCheckRequest>();
        r.add_keys(Key());
        return Send<v1::KeyCheckRequest, v1::KeyCheckResponse>(std::move(r), "check", deadline);
      }
      case 6: {
        auto r = Request<v1::KeyDeleteRequest>();
        r.set_key(Key());
        return Send<v1::KeyDeleteRequest, v1::KeyDeleteResponse>(std::move(r), "delete",
                                                                 deadline);
      }
      default: {
        return Send<v1::KeyCountRequest, v1::KeyCountResponse>(Request<v1::KeyCountRequest>(),
                                                               "count", deadline);
      }
    }
  }

  // One call the relay sent (a batch, or a call of its own) answered by the store, or lost.
  // False when there was none.
  bool Serve(bool may_lose) {
    if (auto batch = client_.TakeBatch()) {
      if (may_lose && in_.ConsumeIntegralInRange<int>(0, 7) == 0) {
        ++lost_;
        batch->done(absl::UnavailableError("connection reset"));
        return true;
      }
      auto ops = wire::BatchOps(batch->request);
      if (!ops.ok()) {
        batch->done(ops.status());
        return true;
      }
      std::vector<domain::KvOp::Kind> kinds;
      for (const auto& op : *ops) kinds.push_back(op.kind);
      const std::vector<domain::KvOp> copy = *ops;
      coordinator::Completions out;
      store_.Batch(
          *std::move(ops), clock_.Now() + batch->options.timeout,
          [this, kinds, copy, done = std::move(batch->done)](
              absl::StatusOr<std::vector<domain::KvOpResult>> r) mutable {
            // Learnt as the store answers; handed to the relay once every answer of this step
            // was learnt (a wake may be answered before the write that woke it).
            if (r.ok()) Learn(copy, *r);
            deliveries_.push_back([kinds, done = std::move(done), r = std::move(r)]() mutable {
              if (!r.ok()) return done(r.status());
              done(wire::BatchAnswer(kinds, *std::move(r)));
            });
          },
          out);
      for (auto& f : out) f();
      Deliver();
      return true;
    }
    return false;
  }

  void Deliver() {
    while (!deliveries_.empty()) {
      std::vector<std::function<void()>> now;
      now.swap(deliveries_);
      for (auto& f : now) f();
    }
  }

  // What the store's answer says the keys held: every value set, stored by compare-set or
  // counted by add; every add's (key, delta, counter).
  void Learn(const std::vector<domain::KvOp>& ops, const std::vector<domain::KvOpResult>& rs) {
    for (size_t i = 0; i < ops.size() && i < rs.size(); ++i) {
      const domain::KvOp& op = ops[i];
      const domain::KvOpResult& r = rs[i];
      if (!r.status.ok() || r.pending) continue;
      switch (op.kind) {
        case domain::KvOp::Kind::kSet:
          written_[op.keys[0]].insert(op.value);
          break;
        case domain::KvOp::Kind::kAdd:
          written_[op.keys[0]].insert(absl::StrCat(r.number));
          adds_.insert(std::make_tuple(op.keys[0], op.delta, r.number));
          break;
        case domain::KvOp::Kind::kCompareSet:
          if (r.present) written_[op.keys[0]].insert(r.value);
          break;
        default:
          break;
      }
    }
  }

  void Advance(absl::Duration d) {
    clock_.Advance(d);
    coordinator::Completions out;
    store_.ExpireWaits(clock_.Now(), out);
    for (auto& f : out) f();
    Deliver();
    relay_.ExpireWaiters(clock_.Now());
    timers_.Run(clock_.Now());
  }

  FuzzedDataProvider& in_;
  FakeClock clock_;
  FakeCoordinatorClient client_;
  Timers timers_;
  Resender resender_{&clock_, &timers_, nullptr};
  StoreRelay relay_;
  coordinator::KvStore store_;
  std::vector<std::function<void()>> deliveries_;
  std::vector<int> answers_;
  std::vector<absl::Time> deadlines_;
  int lost_ = 0;
  std::vector<std::string> what_;
  std::map<std::string, std::set<std::string>> written_;
  std::multiset<std::tuple<std::string, int64_t, int64_t>> adds_;
  int step_ = 0;
};

}  // namespace
}  // namespace meshd::agent

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  meshd::agent::Program(in).Run();
  return 0;
}
