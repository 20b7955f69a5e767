// The TSan run's own check (scripts/check-sanitizers.sh tsan), before the tests: that the
// instrumented Abseil is the one loaded and that a race in meshd's code is still reported and
// failed by tests/tsan/triage.py, whatever the suppressions and the ignore list leave out.
//   tsan_canary guarded   two threads count under an absl::Mutex, handing over with an
//                         absl::Notification: no report (with Debian's Abseil, every access is)
//   tsan_canary racy      the same without the mutex: a data race in this file
#include <cstdio>
#include <cstring>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

namespace {

absl::Mutex mu;
long counted = 0;
absl::Notification started;
absl::Notification copied;

void Count(bool guarded) {
  for (int i = 0; i < 10000; ++i) {
    if (guarded) {
      absl::MutexLock lock(&mu);
      ++counted;
    } else {
      ++counted;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 || (std::strcmp(argv[1], "guarded") != 0 && std::strcmp(argv[1], "racy") != 0)) {
    std::fprintf(stderr, "usage: tsan_canary guarded|racy\n");
    return 2;
  }
  const bool guarded = std::strcmp(argv[1], "guarded") == 0;
  long before = 0;
  std::thread other([&] {
    started.WaitForNotification();
    before = counted;  // ordered after main's write by `started` alone
    copied.Notify();
    Count(guarded);
  });
  counted = 1;
  started.Notify();
  copied.WaitForNotification();
  Count(guarded);
  other.join();
  std::printf("tsan_canary %s: %ld (started from %ld)\n", argv[1], counted, before);
  return 0;
}
