// Session: the node's standing with the coordinator — registration (with the generations its
// workers run, so that a restarted coordinator rebuilds its jobs), re-registration with jittered
// backoff, and heartbeats at the interval the coordinator asks for. Driven by Tick() on the
// injected clock; one registration or heartbeat in flight at a time.
//
//   UNREGISTERED --RegisterNode ok--> REGISTERED --heartbeat NOT_FOUND/FAILED_PRECONDITION-->
//        ^   (failure: backoff 100 ms doubling to max_backoff, jittered)       |
//        +------------------------ RunAfterRegistering (re-register now) ------+
//
// Thread-safety: thread-safe. Hooks and queued functions run outside the lock.
#ifndef MESHD_DAEMON_AGENT_CORE_SESSION_H_
#define MESHD_DAEMON_AGENT_CORE_SESSION_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/time/clock.h"
#include "daemon/agent/core/coordinator_client.h"
#include "daemon/domain/types.h"

namespace meshd::agent {

struct SessionOptions {
  std::string coordinator;  // for logs
  absl::Duration rpc_timeout = absl::Seconds(5);
  absl::Duration max_backoff = absl::Seconds(5);
};

class Session {
 public:
  struct Hooks {
    // The generations the node's workers run, reported when registering.
    std::function<std::vector<domain::RunningJob>()> running_jobs;
    // After each successful registration (before the functions queued by RunAfterRegistering).
    std::function<void()> registered;
  };
  struct Counts {
    uint64_t registrations = 0;
    uint64_t heartbeats = 0;  // answered
    uint64_t heartbeat_failures = 0;
  };

  Session(const domain::NodeInventory* inventory, SessionOptions options, const Clock* clock,
          CoordinatorClient* client, Hooks hooks);

  // Registers now.
  void Start() ABSL_LOCKS_EXCLUDED(mu_);
  // Sends the registration or heartbeat that is due.
  void Tick() ABSL_LOCKS_EXCLUDED(mu_);
  // Sends nothing more; runs the functions queued by RunAfterRegistering.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);
  // Registers again now and runs `f` after that registration succeeded (or at Stop).
  void RunAfterRegistering(std::function<void()> f) ABSL_LOCKS_EXCLUDED(mu_);

  bool registered() const ABSL_LOCKS_EXCLUDED(mu_);
  Counts counts() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // Sends RegisterNode unless a call is in flight (then registers once it returns).
  void Register() ABSL_LOCKS_EXCLUDED(mu_);
  void Registered(absl::StatusOr<absl::Duration> interval, std::vector<domain::RunningJob> running,
                  std::vector<std::function<void()>> after) ABSL_LOCKS_EXCLUDED(mu_);
  void Heartbeated(absl::StatusOr<absl::Duration> interval) ABSL_LOCKS_EXCLUDED(mu_);
  // The call in flight returned: register again if asked meanwhile.
  void CallReturned() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const domain::NodeInventory* const inventory_;
  const SessionOptions options_;
  const Clock* const clock_;
  CoordinatorClient* const client_;
  const Hooks hooks_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool registered_ ABSL_GUARDED_BY(mu_) = false;
  bool in_flight_ ABSL_GUARDED_BY(mu_) = false;       // a registration or heartbeat
  bool register_again_ ABSL_GUARDED_BY(mu_) = false;  // once the call in flight returns
  absl::Time next_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();  // the next call is due
  absl::Duration backoff_ ABSL_GUARDED_BY(mu_) = absl::Milliseconds(100);
  absl::Duration heartbeat_interval_ ABSL_GUARDED_BY(mu_) = absl::Seconds(1);
  bool heartbeat_failing_ ABSL_GUARDED_BY(mu_) = false;  // logs the first failure and the recovery
  std::vector<std::function<void()>> after_register_ ABSL_GUARDED_BY(mu_);
  Counts counts_ ABSL_GUARDED_BY(mu_);
  absl::BitGen gen_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshd::agent

#endif  // MESHD_DAEMON_AGENT_CORE_SESSION_H_
