// Clock: the one way meshd code reads time, so that state machines can run on a fake clock in tests
// (advance it, call CheckDeadlines(), no sleeps). RealClock is for binaries; FakeClock for tests.
//
// Thread-safety: Now() may be called from any thread; FakeClock's Advance() too.
#ifndef MESHD_COMMON_TIME_CLOCK_H_
#define MESHD_COMMON_TIME_CLOCK_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace meshd {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
};

class RealClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
};

// For testing: time moves only when Advance() is called.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::UnixEpoch() + absl::Hours(24)) : now_(start) {}
  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshd

#endif  // MESHD_COMMON_TIME_CLOCK_H_
