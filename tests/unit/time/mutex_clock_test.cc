// CalibrateMutexClock: Abseil's one-time CPU frequency measurement happens in the call, not later
// inside a Mutex wait. Each TEST runs in its own process (ctest), so nothing measured it before.
#include "common/time/mutex_clock.h"

#include <fstream>

#include "absl/base/internal/sysinfo.h"  // only to observe the cache the helper fills
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace meshd {
namespace {

TEST(MutexClock, FrequencyIsMeasuredByTheCallAndCachedAfter) {
  const bool published = std::ifstream("/sys/devices/system/cpu/cpu0/tsc_freq_khz").good();
  const absl::Time start = absl::Now();
  CalibrateMutexClock();
  const absl::Duration calibration = absl::Now() - start;
  // Where the kernel does not publish the TSC frequency, Abseil sleeps 1 ms, then 2 ms, ...
  if (!published) {
    EXPECT_GE(calibration, absl::Milliseconds(3));
  }

  const absl::Time asked = absl::Now();
  EXPECT_GT(absl::base_internal::NominalCPUFrequency(), 1.0);  // 1.0: "could not tell"
  EXPECT_LT(absl::Now() - asked, absl::Milliseconds(1)) << "measured here, not by CalibrateMutexClock";
}

}  // namespace
}  // namespace meshd
