// Resender: how the agent's core sends a coordinator call that must survive a coordinator restart
// or a broken connection. A call that failed with UNAVAILABLE — the transport (a connection reset;
// the next send waits for the coordinator to be reachable) or a coordinator recovering the job after
// a restart — is sent again after a backoff (50 ms doubling to 1 s, on the core's clock), while its
// deadline allows, up to kAttempts sends. With `resend_when_unregistered` (JoinJob,
// ResolveGroups), a NOT_FOUND (the coordinator restarted, or declared the node dead) is sent again
// once the agent has registered again (which reports the node's running generations), once. The
// coordinator's JoinJob and ResolveGroups are idempotent for a node, so a call that did arrive
// before the connection broke is harmless to send again; calls that must not apply twice (KeyAdd,
// KeyCompareSet, KeyDelete) use kSendOnce: one send that waits for the coordinator to be reachable.
//
// Thread-safety: thread-safe; `done` runs once, outside any lock of the core.
#ifndef MESHD_DAEMON_AGENT_CORE_RESENDER_H_
#define MESHD_DAEMON_AGENT_CORE_RESENDER_H_

#include <algorithm>
#include <functional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/log/log.h"
#include "common/time/clock.h"
#include "daemon/agent/core/coordinator_client.h"
#include "daemon/agent/core/session.h"
#include "daemon/agent/core/timers.h"

namespace meshd::agent {

class Resender {
 public:
  static constexpr int kAttempts = 16;
  static constexpr int kSendOnce = kAttempts - 1;

  Resender(const Clock* clock, Timers* timers, Session* session)
      : clock_(clock), timers_(timers), session_(session) {}

  // `send(options, answer)` sends the call once. `deadline` is on the core's clock. `attempt`:
  // sends so far (kSendOnce: one send, never again).
  template <typename T>
  void Send(const char* what, absl::Time deadline,
            std::function<void(CallOptions, Answer<T>)> send, Answer<T> done,
            bool resend_when_unregistered = false, int attempt = 0) {
    // Again after a transport failure: wait for the coordinator to be reachable (gRPC reconnects
    // with its own backoff) instead of failing at once.
    const CallOptions options{std::max(deadline - clock_->Now(), absl::ZeroDuration()),
                              attempt > 0};
    auto answer = [this, what, deadline, send, done = std::move(done), resend_when_unregistered,
                   attempt](absl::StatusOr<T> result) mutable {
      const absl::StatusCode code = result.status().code();
      const bool unregistered = resend_when_unregistered && code == absl::StatusCode::kNotFound;
      if ((code != absl::StatusCode::kUnavailable && !unregistered) || attempt + 1 >= kAttempts ||
          clock_->Now() >= deadline) {
        return done(std::move(result));
      }
      if (attempt == 0 || unregistered) {
        log::Warn(absl::StrCat(what, unregistered
                                         ? " found the node unknown to the coordinator; sending it "
                                           "again once registered"
                                         : " failed on the way to (or in) the coordinator; sending "
                                           "it again"),
                  {{"error", std::string(result.status().message())}});
      }
      // Once registered again, a NOT_FOUND is final (the job or node is really unknown).
      auto again = [this, what, deadline, send = std::move(send), done = std::move(done),
                    resend = resend_when_unregistered && !unregistered, attempt]() mutable {
        Send<T>(what, deadline, std::move(send), std::move(done), resend, attempt + 1);
      };
      if (unregistered) {
        session_->RunAfterRegistering(std::move(again));
      } else {
        timers_->At(clock_->Now() + std::min(absl::Milliseconds(50) * (1 << std::min(attempt, 5)),
                                             absl::Seconds(1)),
                    std::move(again));
      }
    };
    send(options, std::move(answer));
  }

 private:
  const Clock* const clock_;
  Timers* const timers_;
  Session* const session_;
};

}  // namespace meshd::agent

#endif  // MESHD_DAEMON_AGENT_CORE_RESENDER_H_
