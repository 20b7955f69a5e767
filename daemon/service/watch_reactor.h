// GenerationWatchReactor: a server stream that sends one GenerationEnd when it happens and
// finishes, or finishes CANCELLED when the client goes away first. Initial metadata is sent as the
// watch is armed, so a client can wait for it (ClientReader::WaitForInitialMetadata) before relying
// on it. Shared by the Coordinator's WatchJob and the Agent's Watch.
//
// Thread-safety: the delivery callback may run on any thread, concurrently with OnCancel; exactly
// one of them finishes the stream (decided under a lock that outlives the reactor).
#ifndef MESHD_DAEMON_SERVICE_WATCH_REACTOR_H_
#define MESHD_DAEMON_SERVICE_WATCH_REACTOR_H_

#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/support/server_callback.h"
#include "meshd/v1/types.pb.h"

namespace meshd::service {

class GenerationWatchReactor final : public grpc::ServerWriteReactor<v1::GenerationEnd> {
 public:
  using Deliver = std::function<void(const v1::GenerationEnd&)>;
  using Cancel = std::function<void()>;
  // Registers `deliver` somewhere and returns how to unregister it, or an error to finish with.
  using Subscribe = std::function<absl::StatusOr<Cancel>(Deliver)>;

  explicit GenerationWatchReactor(const Subscribe& subscribe);

  void OnCancel() override;
  void OnDone() override;

 private:
  struct Shared {
    absl::Mutex mu;
    bool finished ABSL_GUARDED_BY(mu) = false;
  };
  // True for the one caller that may finish the stream.
  static bool Claim(Shared& shared);

  const std::shared_ptr<Shared> shared_ = std::make_shared<Shared>();
  v1::GenerationEnd message_;
  absl::Mutex cancel_mu_;
  Cancel cancel_ ABSL_GUARDED_BY(cancel_mu_);
};

}  // namespace meshd::service

#endif  // MESHD_DAEMON_SERVICE_WATCH_REACTOR_H_
