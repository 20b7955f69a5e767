// CalibrateMutexClock: do once, at process start, the clock calibration Abseil's Mutex would
// otherwise do in the middle of the first contended lock.
//
// Abseil's Mutex (20220623, used by meshd and by gRPC 1.51) reads a thread's scheduling priority
// when it queues behind another waiter, about once per second of CPU cycles, and learns how many
// cycles a second is from base_internal::NominalCPUFrequency(). Where the kernel does not publish
// the TSC frequency (/sys/devices/system/cpu/cpu0/tsc_freq_khz is missing on most virtual machines)
// that call measures it by sleeping 1 ms, 2 ms, 4 ms, ... until two measurements agree within 1%,
// and the first time it does so holding the queue's Mutex spinlock. In a fresh coordinator that
// was the first burst of calls: 3-5 ms with the other threads spinning on the same Mutex (strace),
// a quarter of a 64-node rendezvous (bench/). Calling this once at start-up (it queues two threads
// on one Mutex) makes the measurement there; the result is cached for the process.
#ifndef MESHD_COMMON_TIME_MUTEX_CLOCK_H_
#define MESHD_COMMON_TIME_MUTEX_CLOCK_H_

#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace meshd {

inline void CalibrateMutexClock() {
  absl::Mutex mu;
  bool queued = false;  // the helper is (about to be) waiting on `mu`
  bool release = false;
  bool never = false;
  std::thread helper([&] {
    absl::MutexLock lock(&mu);
    queued = true;
    mu.AwaitWithTimeout(absl::Condition(&release), absl::Seconds(1));
  });
  {
    absl::MutexLock lock(&mu);
    // Whichever of the two threads queues second measures: the helper behind this one, or this one
    // (the second wait) behind the helper.
    mu.AwaitWithTimeout(absl::Condition(&queued), absl::Seconds(1));
    mu.AwaitWithTimeout(absl::Condition(&never), absl::Microseconds(1));
    release = true;
  }
  helper.join();
}

}  // namespace meshd

#endif  // MESHD_COMMON_TIME_MUTEX_CLOCK_H_
