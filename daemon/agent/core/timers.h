// Timers: functions to run at a time on the agent core's clock, run by its Tick (the core owns no
// thread; the daemon's ticker, or a test after advancing a fake clock, calls Tick).
//
// Thread-safety: thread-safe; functions run outside the lock.
#ifndef MESHD_DAEMON_AGENT_CORE_TIMERS_H_
#define MESHD_DAEMON_AGENT_CORE_TIMERS_H_

#include <functional>
#include <map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace meshd::agent {

class Timers {
 public:
  // Runs `f` at the first Run(now) with now >= at; at once after Stop.
  void At(absl::Time at, std::function<void()> f) ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      if (!stopped_) {
        due_.emplace(at, std::move(f));
        return;
      }
    }
    f();
  }
  // Runs the functions due at `now`.
  void Run(absl::Time now) ABSL_LOCKS_EXCLUDED(mu_) {
    std::vector<std::function<void()>> run;
    {
      absl::MutexLock lock(&mu_);
      while (!due_.empty() && due_.begin()->first <= now) {
        run.push_back(std::move(due_.begin()->second));
        due_.erase(due_.begin());
      }
    }
    for (auto& f : run) f();
  }
  // Runs every function left now (each sees the stop: a call it sends is refused), and later ones
  // at once.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_) {
    std::multimap<absl::Time, std::function<void()>> run;
    {
      absl::MutexLock lock(&mu_);
      stopped_ = true;
      run.swap(due_);
    }
    for (auto& [at, f] : run) f();
  }

 private:
  absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::multimap<absl::Time, std::function<void()>> due_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshd::agent

#endif  // MESHD_DAEMON_AGENT_CORE_TIMERS_H_
