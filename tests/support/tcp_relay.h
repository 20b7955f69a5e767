// TcpRelay: a real TCP forwarder on 127.0.0.1 for tests that need a connection to break. Every
// connection accepted is relayed byte for byte to the target; Cut() closes every relayed connection
// at once (both sides see the peer go away, as after a network fault), and new connections are
// relayed again right after.
//
// Thread-safety: Cut() and address() may be called from any thread.
#ifndef MESHD_TESTS_SUPPORT_TCP_RELAY_H_
#define MESHD_TESTS_SUPPORT_TCP_RELAY_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace meshd::testing {

class TcpRelay {
 public:
  // Listens on 127.0.0.1:0 and relays to `target_port` on 127.0.0.1.
  static absl::StatusOr<std::unique_ptr<TcpRelay>> Start(int target_port);
  ~TcpRelay();

  std::string address() const;  // "127.0.0.1:PORT"
  // Closes every connection relayed so far; returns how many were open.
  int Cut();
  // Connections relayed so far (a client that reconnected after a Cut adds one).
  int relayed() const { return relayed_; }
  // Relays new connections to `port` from now on (a coordinator restarted elsewhere).
  void SetTarget(int port) { target_port_ = port; }

 private:
  TcpRelay(int listen_fd, int port, int target_port);
  void Serve();

  const int listen_fd_;
  const int port_;
  std::atomic<int> target_port_;
  int wake_[2] = {-1, -1};  // a pipe: wakes Serve() for Cut() and for the destructor
  std::atomic<bool> stop_{false};
  std::atomic<int> relayed_{0};
  absl::Mutex mu_;
  int cuts_ ABSL_GUARDED_BY(mu_) = 0;
  int cut_open_ ABSL_GUARDED_BY(mu_) = 0;  // what the last cut closed
  int cuts_done_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace meshd::testing

#endif  // MESHD_TESTS_SUPPORT_TCP_RELAY_H_
