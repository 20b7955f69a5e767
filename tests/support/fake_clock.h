// FakeClock: a Clock for tests; time moves only when Advance() is called, so deadlines, heartbeat
// expiry and backoff are tested in microseconds of real time.
//
// Thread-safety: Now() and Advance() may be called from any thread.
#ifndef MESHD_TESTS_SUPPORT_FAKE_CLOCK_H_
#define MESHD_TESTS_SUPPORT_FAKE_CLOCK_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/time/clock.h"

namespace meshd {

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

#endif  // MESHD_TESTS_SUPPORT_FAKE_CLOCK_H_
