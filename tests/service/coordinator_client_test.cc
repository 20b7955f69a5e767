// The agent's gRPC coordinator client (daemon/agent/transport), against a coordinator that is not
// there: what Shutdown promises the agent's core.
#include <atomic>
#include <thread>

#include "absl/synchronization/notification.h"
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
  absl::Notification answering, release, shut_down;
  std::atomic<bool> answered{false};
  client.Heartbeat("node-a", 1, options, [&](absl::StatusOr<absl::Duration> r) {
    EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled) << r.status();
    answering.Notify();
    // The answer runs until the test lets it end (bounded: a broken Shutdown must not hang it).
    release.WaitForNotificationWithTimeout(absl::Seconds(10));
    answered = true;
  });
  bool answered_at_return = false;
  std::thread shut([&] {
    client.Shutdown();
    answered_at_return = answered.load();
    shut_down.Notify();
  });
  ASSERT_TRUE(answering.WaitForNotificationWithTimeout(absl::Seconds(10)));
  // While the answer runs, Shutdown has not returned (a broken one returns as the answer begins).
  EXPECT_FALSE(shut_down.WaitForNotificationWithTimeout(absl::Milliseconds(200)))
      << "Shutdown returned while an answer was still running";
  release.Notify();
  shut.join();
  EXPECT_TRUE(answered_at_return);
}

}  // namespace
}  // namespace meshd
