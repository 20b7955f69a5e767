// StoreRelay: the generation's key-value store for local workers (agent.proto's Key* calls, which
// are the coordinator's messages), relayed to the coordinator in batches:
//   - the workers' calls of one generation travel as the operations of one coordinator KeyBatch:
//     one is sent at once when none that answers at once is in flight; calls arriving while one is
//     go together as the next when it returns (no timer: a lone call waits for nothing). The
//     coordinator runs them in order, each as its own call; each worker gets its own result;
//   - identical waits (KeyGet with wait, KeyWait on the same keys) of local workers are one
//     operation whose answer goes to each (a get joins only a shared get asked since the node's
//     last answered write to the job's store, so that a worker reads its own writes);
//   - a batch whose operations all wait is held by the coordinator until one is satisfied; the
//     others come back pending and go again, with whatever arrived meanwhile.
// A batch with a KeyAdd, KeyCompareSet or KeyDelete is sent once (an UNAVAILABLE may come after
// the coordinator applied them); the others are resent as Resender does. A coordinator without
// KeyBatch (an older one, UNIMPLEMENTED) gets every call on its own from then on, as does a relay
// built with `batch` false.
//
// Thread-safety: thread-safe. `scope` and the workers' answers run without the relay's lock held.
#ifndef MESHD_DAEMON_AGENT_CORE_STORE_RELAY_H_
#define MESHD_DAEMON_AGENT_CORE_STORE_RELAY_H_

#include <cstdint>
#include <deque>
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
    uint64_t calls = 0;         // Key* calls from workers
    uint64_t shared = 0;        // of those, sent within another worker's coordinator call
    uint64_t coordinator = 0;   // coordinator calls that carried them
  };

  StoreRelay(const Clock* clock, CoordinatorClient* client, Resender* resender, Scope scope,
             bool batch = true)
      : clock_(clock),
        client_(client),
        resender_(resender),
        scope_(std::move(scope)),
        batch_(batch) {}

  // One worker's call, answered by `deadline` (on the core's clock). Req/Resp: one of the
  // v1::Key{Set,Get,Add,CompareSet,Wait,Check,Delete,Count} pairs.
  template <typename Req, typename Resp>
  void Relay(Req req, absl::Time deadline, Answer<Resp> done,
             std::optional<uint32_t> uid = std::nullopt) ABSL_LOCKS_EXCLUDED(mu_);

  // Answers the shared waiters whose own deadline passed (a later joiner's may come before the
  // shared call's) with DEADLINE_EXCEEDED naming the keys, and so the calls still queued behind a
  // batch in flight.
  void ExpireWaiters(absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);

  Counts counts() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  using OpAnswer = std::function<void(absl::StatusOr<v1::KeyOpResult>)>;
  // Local workers waiting on one identical KeyGet/KeyWait, answered by one operation.
  struct SharedWait {
    struct Waiter {
      OpAnswer done;
      absl::Time deadline;
    };
    std::vector<Waiter> waiters;
    // "key 'k'" or "keys 'a', 'b'", for the message of an expired waiter; set while the
    // entry's operation is queued or in flight
    std::string what;
  };
  // One operation queued for, or in, a coordinator call.
  struct Pending {
    v1::KeyOp op;         // its job and generation left empty (the batch's)
    absl::Time deadline;  // its worker's (a shared wait's: its waiters')
    OpAnswer done;        // a worker's own; empty for a shared wait (answered through shared_)
    std::string shared;   // a shared wait's signature
    bool waits = false;   // KeyGet with wait, KeyWait
    bool once = false;    // KeyAdd, KeyCompareSet, KeyDelete: never sent twice
    bool sent = false;    // sent before (it came back pending)
    size_t bytes = 0;
  };
  // The operations of one generation (job, generation) not yet sent.
  struct Lane {
    std::string job;
    uint64_t generation = 0;
    std::deque<Pending> queued;
    bool busy = false;     // a batch that answers at once is in flight
    int handing_out = 0;   // answers being handed to workers (a call they make joins the next)
  };
  using Completions = std::vector<std::function<void()>>;

  // Queues `p` on its lane and sends what may go.
  void Enqueue(const std::string& job, uint64_t generation, Pending p) ABSL_LOCKS_EXCLUDED(mu_);
  // Sends the lane's next batches unless one that answers at once is in flight.
  void Flush(const std::string& lane) ABSL_LOCKS_EXCLUDED(mu_);
  // One batch of them; true when more may go at once (it was held, and more are queued).
  bool FlushOnce(const std::string& lane) ABSL_LOCKS_EXCLUDED(mu_);
  // A batch's answer: results to their workers, pending ones queued again (ahead of later ones).
  void Answered(const std::string& lane, const std::string& job, uint64_t generation,
                std::vector<Pending> batch, bool immediate, absl::StatusOr<v1::KeyBatchResponse> r)
      ABSL_LOCKS_EXCLUDED(mu_);
  // `p`'s result to its worker(s), appended to `out`. A DEADLINE_EXCEEDED of a held wait ends only
  // the waiters whose deadline has come: true when others wait on (send it again).
  bool Finish(Pending& p, absl::StatusOr<v1::KeyOpResult> r, absl::Time now, Completions& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether a shared wait still has waiters; its latest deadline into `p`.
  bool StillWaited(Pending& p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Without KeyBatch: `p` as its own call.
  void SendAlone(const std::string& job, uint64_t generation, Pending p) ABSL_LOCKS_EXCLUDED(mu_);
  template <typename Req, typename Resp>
  void SendOne(Req req, absl::Time deadline, Answer<Resp> done, int attempt);
  // A local worker's write was answered: later gets do not join shared gets sent before.
  void WriteAnswered(const std::string& job) ABSL_LOCKS_EXCLUDED(mu_);

  const Clock* const clock_;
  CoordinatorClient* const client_;
  Resender* const resender_;
  const Scope scope_;

  mutable absl::Mutex mu_;
  bool batch_ ABSL_GUARDED_BY(mu_);  // false: the coordinator has no KeyBatch
  std::map<std::string, SharedWait> shared_ ABSL_GUARDED_BY(mu_);  // by signature
  std::map<std::string, Lane> lanes_ ABSL_GUARDED_BY(mu_);         // by job and generation
  // Writes answered per job (read-your-writes for shared gets).
  std::map<std::string, uint64_t> writes_ ABSL_GUARDED_BY(mu_);
  Counts counts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshd::agent

#endif  // MESHD_DAEMON_AGENT_CORE_STORE_RELAY_H_
