// WaitFor: the tests' one way to wait for what another thread or process does — poll a condition
// every few milliseconds until it holds or a deadline passes. Never a fixed sleep.
//
// Thread-safety: `condition` is called on the caller's thread.
#ifndef MESHD_TESTS_SUPPORT_WAIT_FOR_H_
#define MESHD_TESTS_SUPPORT_WAIT_FOR_H_

#include <functional>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace meshd::testing {

// Whether `condition` held within `timeout` (of real time).
inline bool WaitFor(const std::function<bool()>& condition,
                    absl::Duration timeout = absl::Seconds(10),
                    absl::Duration every = absl::Milliseconds(5)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(every);
  }
  return true;
}

}  // namespace meshd::testing

#endif  // MESHD_TESTS_SUPPORT_WAIT_FOR_H_
