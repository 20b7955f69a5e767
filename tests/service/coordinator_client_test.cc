// The agent's gRPC coordinator client (daemon/agent/transport), against a coordinator that is not
// there: what Shutdown promises the agent's core.
#include <atomic>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "daemon/agent/transport/grpc_coordinator_client.h"
#include "gtest/gtest.h"

namespace meshd {
namespace {

// Found by ThreadSanitizer: Shutdown returned once a cancelled call's callback had begun, not once
// it had returned, so the agent destroyed its Session while a registration's answer was still
// running in it (Session::Registered unlocking the mutex ~Session destroyed).
TEST(GrpcCoordinatorClientTest, Shutdown_ReturnsOnlyOnceEveryAnswerHasReturned) {
  // Nothing listens on port 1; waiting for it to be ready holds the call until it is cancelled.
  agent::GrpcCoordinatorClient client("127.0.0.1:1", absl::Milliseconds(100));
  agent::CallOptions options;
  options.timeout = absl::Seconds(30);
  options.wait_for_ready = true;
  absl::Notification answering;
  std::atomic<bool> answered{false};
  client.Heartbeat("node-a", 1, options, [&](absl::StatusOr<absl::Duration> r) {
    EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled) << r.status();
    answering.Notify();
    absl::SleepFor(absl::Milliseconds(300));  // the answer takes a while
    answered = true;
  });
  client.Shutdown();
  EXPECT_TRUE(answering.HasBeenNotified());
  EXPECT_TRUE(answered.load()) << "Shutdown returned while an answer was still running";
}

}  // namespace
}  // namespace meshd
