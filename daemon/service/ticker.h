// Ticker: calls a function every `period` on its own thread until stopped (drives the coordinator's
// CheckDeadlines() in production). Real time lives here, outside the core.
//
// Thread-safety: Stop() is thread-safe and idempotent; the destructor stops.
#ifndef MESHD_DAEMON_SERVICE_TICKER_H_
#define MESHD_DAEMON_SERVICE_TICKER_H_

#include <functional>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace meshd::service {

class Ticker {
 public:
  Ticker(absl::Duration period, std::function<void()> tick);
  ~Ticker() { Stop(); }
  Ticker(const Ticker&) = delete;
  Ticker& operator=(const Ticker&) = delete;
  void Stop();

 private:
  void Run();

  const absl::Duration period_;
  const std::function<void()> tick_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace meshd::service

#endif  // MESHD_DAEMON_SERVICE_TICKER_H_
