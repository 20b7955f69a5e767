// Clock: the one way meshd code reads time, so that state machines can run on a fake clock in tests
// (advance it, call CheckDeadlines(), no sleeps). RealClock is for binaries; the tests' FakeClock is
// in tests/support/fake_clock.h.
//
// Thread-safety: Now() may be called from any thread.
#ifndef MESHD_COMMON_TIME_CLOCK_H_
#define MESHD_COMMON_TIME_CLOCK_H_

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

}  // namespace meshd

#endif  // MESHD_COMMON_TIME_CLOCK_H_
