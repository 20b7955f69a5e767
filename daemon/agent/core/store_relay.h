// StoreRelay: the generation's key-value store for local workers (agent.proto's Key* calls, which
// are the coordinator's messages), relayed to the coordinator as they are, with two savings:
//   - identical waits (KeyGet with wait, KeyWait on the same keys) of local workers travel as one
//     coordinator call, whose answer goes to each (a get joins only a shared get sent since the
//     node's last answered write to the job's store, so that a worker reads its own writes);
//   - adds and sets of local workers on one key that arrive while one is in flight travel as one
//     call when it returns: a same-sign run of adds as their sum, each answered with the value it
//     would have seen alone (one by one again if the sum overflowed); sets as the last value.
// KeyAdd, KeyCompareSet and KeyDelete are sent once (an UNAVAILABLE may come after the coordinator
// applied them); the others are resent as Resender does.
//
// Thread-safety: thread-safe. `scope` is called without the relay's lock held.
#ifndef MESHD_DAEMON_AGENT_CORE_STORE_RELAY_H_
#define MESHD_DAEMON_AGENT_CORE_STORE_RELAY_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/time/clock.h"
#include "daemon/agent/core/coordinator_client.h"
#include "daemon/agent/core/resender.h"
#include "meshd/v1/coordinator.pb.h"

namespace meshd::agent {

class StoreRelay {
 public:
  // OK when local workers run `generation` of `job`, else the error to answer with
  // (FAILED_PRECONDITION not attached, ABORTED ended, CANCELLED stopping).
  using Scope = std::function<absl::Status(const std::string& job, uint64_t generation,
                                           std::optional<uint32_t> uid)>;
  struct Counts {
    uint64_t calls = 0;   // Key* calls from workers
    uint64_t shared = 0;  // of those, sent within another worker's coordinator call
  };

  StoreRelay(const Clock* clock, CoordinatorClient* client, Resender* resender, Scope scope)
      : clock_(clock), client_(client), resender_(resender), scope_(std::move(scope)) {}

  // One worker's call, answered by `deadline` (on the core's clock). Req/Resp: one of the
  // v1::Key{Set,Get,Add,CompareSet,Wait,Check,Delete,Count} pairs.
  template <typename Req, typename Resp>
  void Relay(Req req, absl::Time deadline, Answer<Resp> done,
             std::optional<uint32_t> uid = std::nullopt) ABSL_LOCKS_EXCLUDED(mu_);

  // Answers the shared waiters whose own deadline passed (a later joiner's may come before the
  // shared call's) with DEADLINE_EXCEEDED naming the keys.
  void ExpireWaiters(absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);

  Counts counts() const ABSL_LOCKS_EXCLUDED(mu_);

  // Local workers waiting on one identical KeyGet/KeyWait, answered by one coordinator call.
  template <typename Resp>
  struct SharedWait {
    struct Waiter {
      Answer<Resp> done;
      absl::Time deadline;
    };
    std::vector<Waiter> waiters;
    std::string what;  // "key 'k'" or "keys 'a', 'b'", for the message of an expired waiter
  };
  // Local workers' adds (or sets) on one key queued behind the one in flight.
  template <typename Resp>
  struct MergedWrites {
    struct Writer {
      int64_t delta = 0;  // KeyAdd
      std::string value;  // KeySet
      Answer<Resp> done;
      absl::Time deadline;
    };
    bool in_flight = false;
    size_t alone = 0;  // the first `alone` writers go one per call (a merged add overflowed)
    std::vector<Writer> queued;
  };

 private:
  using Completions = std::vector<std::function<void()>>;

  template <typename Resp>
  void Expire(absl::Time now, Completions& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends one call to the coordinator (`attempt` as Resender's).
  template <typename Req, typename Resp>
  void SendOne(Req req, absl::Time deadline, Answer<Resp> done, int attempt = 0);
  // Sends the one coordinator call of the shared wait `signature` (deadline: its first waiter's).
  template <typename Req, typename Resp>
  void SendSharedWait(const std::string& signature, Req req, absl::Time deadline)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Sends the queued writes of `signature` (job, generation, key) as one call; again on return
  // while more are queued.
  template <typename Req, typename Resp>
  void SendMergedWrites(const std::string& signature, Req request) ABSL_LOCKS_EXCLUDED(mu_);
  // A local worker's write was answered: later gets do not join shared gets sent before.
  void WriteAnswered(const std::string& job) ABSL_LOCKS_EXCLUDED(mu_);

  template <typename Resp>
  std::map<std::string, SharedWait<Resp>>& SharedWaits() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  template <typename Resp>
  std::map<std::string, MergedWrites<Resp>>& Merged() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Clock* const clock_;
  CoordinatorClient* const client_;
  Resender* const resender_;
  const Scope scope_;

  mutable absl::Mutex mu_;
  // Shared waits and merged writes by signature (kind, job, generation, keys).
  std::map<std::string, SharedWait<v1::KeyGetResponse>> shared_gets_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, SharedWait<v1::KeyWaitResponse>> shared_key_waits_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, MergedWrites<v1::KeyAddResponse>> merged_adds_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, MergedWrites<v1::KeySetResponse>> merged_sets_ ABSL_GUARDED_BY(mu_);
  // Writes answered per job (read-your-writes for shared gets).
  std::map<std::string, uint64_t> writes_ ABSL_GUARDED_BY(mu_);
  Counts counts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshd::agent

#endif  // MESHD_DAEMON_AGENT_CORE_STORE_RELAY_H_
