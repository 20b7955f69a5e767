// NodeRegistry on its own, on a fake clock: what a registration is, who may act for a node, when a
// silent node is declared dead, and the heartbeat-rate policy.
#include "daemon/coordinator/node_registry.h"

#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/fake_clock.h"

namespace meshd::coordinator {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;
using Arrival = NodeRegistry::Arrival;

NodeInventory Node(const std::string& name, uint64_t incarnation = 1,
                   const std::string& clique = "") {
  return NodeInventory{name,
                       "host-" + name,
                       "unix:/x",
                       incarnation,
                       {Gpu{0, "GPU-" + name, "", "sim", 0, clique, true}}};
}

class NodeRegistryTest : public ::testing::Test {
 protected:
  // 1 s interval, 5 s timeout, no rate cap unless a test sets one.
  explicit NodeRegistryTest(uint32_t max_hz = 0)
      : nodes_(&clock_, NodeRegistry::Options{absl::Seconds(1), absl::Seconds(5), max_hz}) {}

  // Expires silent nodes; what was reported lost, as (node, why).
  std::vector<std::pair<std::string, std::string>> Expire() {
    std::vector<std::pair<std::string, std::string>> lost;
    nodes_.ExpireSilent(clock_.Now(), [&](const std::string& node, const std::string& why) {
      lost.emplace_back(node, why);
    });
    return lost;
  }

  FakeClock clock_;
  NodeRegistry nodes_;
};

TEST_F(NodeRegistryTest, Register_NewAgainBackRestarted) {
  EXPECT_EQ(nodes_.Register(Node("a")).arrival, Arrival::kNew);
  EXPECT_EQ(nodes_.Register(Node("a")).arrival, Arrival::kAgain);
  clock_.Advance(absl::Seconds(6));
  ASSERT_EQ(Expire().size(), 1u);
  EXPECT_EQ(nodes_.Register(Node("a")).arrival, Arrival::kBack);
  EXPECT_TRUE(nodes_.Get("a").alive);
  const NodeRegistry::Registration r = nodes_.Register(Node("a", 2));
  EXPECT_EQ(r.arrival, Arrival::kRestarted);
  EXPECT_EQ(r.previous_incarnation, 1u);
  EXPECT_EQ(nodes_.Get("a").restarts, 1u);
  EXPECT_EQ(nodes_.Get("a").inventory.incarnation, 2u);
}

TEST_F(NodeRegistryTest, Register_KeepsTheNodesClique) {
  nodes_.Register(Node("a", 1, "fabric-7"));
  EXPECT_EQ(nodes_.Get("a").clique, "fabric-7");
  EXPECT_EQ(nodes_.Get("a").inventory.hostname, "host-a");
}

TEST_F(NodeRegistryTest, CheckGpus_ClaimedByALiveNode_AlreadyExistsUntilItDies) {
  nodes_.Register(Node("a"));
  NodeInventory b = Node("b");
  b.gpus[0].uuid = "GPU-a";
  EXPECT_EQ(nodes_.CheckGpus(b).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(nodes_.CheckGpus(Node("a", 2)).ok());  // its own GPUs, a new incarnation
  clock_.Advance(absl::Seconds(6));
  Expire();
  EXPECT_TRUE(nodes_.CheckGpus(b).ok());
}

// A dead node's GPU claimed by another node stays that node's when the dead one comes back with
// other GPUs (it released the GPU it no longer owns — and with it the other node's claim).
TEST_F(NodeRegistryTest, DeadNodesGpuClaimedByAnother_StaysClaimedWhenItComesBack) {
  nodes_.Register(Node("a"));
  clock_.Advance(absl::Seconds(6));
  Expire();  // a dead
  NodeInventory b = Node("b");
  b.gpus[0].uuid = "GPU-a";
  ASSERT_TRUE(nodes_.CheckGpus(b).ok());
  nodes_.Register(b);
  NodeInventory a_again = Node("a", 2);
  a_again.gpus[0].uuid = "GPU-a2";
  ASSERT_TRUE(nodes_.CheckGpus(a_again).ok());
  nodes_.Register(a_again);
  NodeInventory c = Node("c");
  c.gpus[0].uuid = "GPU-a";  // b's, live
  EXPECT_EQ(nodes_.CheckGpus(c).code(), absl::StatusCode::kAlreadyExists);
}

TEST_F(NodeRegistryTest, CheckCurrent_UnknownDeadOrStale) {
  EXPECT_EQ(nodes_.CheckCurrent("ghost", 1).code(), absl::StatusCode::kNotFound);
  nodes_.Register(Node("a", 2));
  EXPECT_TRUE(nodes_.CheckCurrent("a", 2).ok());
  EXPECT_EQ(nodes_.CheckCurrent("a", 1).code(), absl::StatusCode::kFailedPrecondition);
  clock_.Advance(absl::Seconds(6));
  Expire();
  EXPECT_EQ(nodes_.CheckCurrent("a", 2).code(), absl::StatusCode::kNotFound);
}

TEST_F(NodeRegistryTest, Heartbeat_RecordsAndAnswersTheTiming) {
  EXPECT_EQ(nodes_.Heartbeat("a", 1).status().code(), absl::StatusCode::kNotFound);
  nodes_.Register(Node("a"));
  clock_.Advance(absl::Seconds(4));
  absl::StatusOr<HeartbeatTiming> t = nodes_.Heartbeat("a", 1);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->interval, absl::Seconds(1));
  EXPECT_EQ(t->timeout, absl::Seconds(5));
  EXPECT_EQ(nodes_.Get("a").last_heard, clock_.Now());
  EXPECT_EQ(nodes_.Heartbeat("a", 7).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(NodeRegistryTest, ExpireSilent_PastTheTimeoutOnly_InNameOrderWithWhy) {
  nodes_.Register(Node("b"));
  nodes_.Register(Node("a"));
  nodes_.Register(Node("c"));
  clock_.Advance(absl::Seconds(3));
  ASSERT_TRUE(nodes_.Heartbeat("c", 1).ok());
  clock_.Advance(absl::Seconds(2));
  EXPECT_TRUE(Expire().empty());  // exactly the timeout: alive
  clock_.Advance(absl::Milliseconds(1));
  const auto lost = Expire();
  ASSERT_EQ(lost.size(), 2u);
  EXPECT_EQ(lost[0].first, "a");
  EXPECT_EQ(lost[1].first, "b");
  EXPECT_THAT(lost[0].second, HasSubstr("no heartbeat for 5.001s (timeout 5s)"));
  EXPECT_FALSE(nodes_.Get("a").alive);
  EXPECT_TRUE(nodes_.Get("c").alive);
  EXPECT_TRUE(Expire().empty());  // the dead are reported once
}

// The walk is skipped until a node may be due; a node heard after a walk is still found on time.
TEST_F(NodeRegistryTest, ExpireSilent_NodeRegisteredAfterAWalk_FoundAtItsTimeout) {
  nodes_.Register(Node("a"));
  EXPECT_TRUE(Expire().empty());  // a is due at 5 s
  clock_.Advance(absl::Seconds(1));
  nodes_.Register(Node("b"));  // due at 6 s
  ASSERT_TRUE(nodes_.Heartbeat("a", 1).ok());
  clock_.Advance(absl::Seconds(4));
  ASSERT_TRUE(nodes_.Heartbeat("a", 1).ok());
  clock_.Advance(absl::Seconds(1) + absl::Milliseconds(1));
  EXPECT_THAT(Expire(), ElementsAre(Pair("b", HasSubstr("lost"))));
}

TEST_F(NodeRegistryTest, TimingOf_UnknownNode_TheConfiguredTiming) {
  EXPECT_EQ(nodes_.TimingOf("ghost").interval, absl::Seconds(1));
  EXPECT_EQ(nodes_.TimingOf("ghost").timeout, absl::Seconds(5));
}

// ---- The heartbeat-rate policy: 2 heartbeats/s at a 1 s interval
// ----------------------------------

class HeartbeatRateTest : public NodeRegistryTest {
 protected:
  HeartbeatRateTest() : NodeRegistryTest(/*max_hz=*/2) {}
};

TEST_F(HeartbeatRateTest, FairTiming_GrowsWithTheNodesBeyondTheCap) {
  EXPECT_EQ(nodes_.FairTiming().interval, absl::Seconds(1));
  nodes_.Register(Node("a"));
  nodes_.Register(Node("b"));
  EXPECT_EQ(nodes_.FairTiming().interval, absl::Seconds(1));  // two fit
  nodes_.Register(Node("c"));
  EXPECT_EQ(nodes_.FairTiming().interval, absl::Milliseconds(1500));
  nodes_.Register(Node("d"));
  EXPECT_EQ(nodes_.FairTiming().interval, absl::Seconds(2));
  EXPECT_EQ(nodes_.FairTiming().timeout, absl::Seconds(10));
}

TEST_F(HeartbeatRateTest, Burst_NewcomerStretchedAtMostTwiceItsFairShare) {
  nodes_.Register(Node("a"));
  nodes_.Register(Node("b"));  // a and b promised 1/s each: the cap is used up
  // c's fair interval is 1.5 s; no room is left, so it gets twice that.
  EXPECT_EQ(nodes_.Register(Node("c")).arrival, Arrival::kNew);
  EXPECT_EQ(nodes_.TimingOf("c").interval, absl::Seconds(3));
  EXPECT_EQ(nodes_.TimingOf("c").timeout, absl::Seconds(15));
  // Once a and b heartbeat, they are told the fair 1.5 s and the cap has room for c's fair share.
  ASSERT_TRUE(nodes_.Heartbeat("a", 1).ok());
  ASSERT_TRUE(nodes_.Heartbeat("b", 1).ok());
  EXPECT_EQ(nodes_.TimingOf("a").interval, absl::Milliseconds(1500));
  const absl::StatusOr<HeartbeatTiming> c = nodes_.Heartbeat("c", 1);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->interval, absl::Milliseconds(1500));
}

TEST_F(HeartbeatRateTest, DeadNodesReleaseTheirShare) {
  nodes_.Register(Node("a"));
  nodes_.Register(Node("b"));
  clock_.Advance(absl::Seconds(6));
  ASSERT_EQ(Expire().size(), 2u);
  // Only live nodes count: c alone (fair 1 s), none promised anything, gets it unstretched.
  nodes_.Register(Node("c"));
  EXPECT_EQ(nodes_.TimingOf("c").interval, absl::Seconds(1));
}

}  // namespace
}  // namespace meshd::coordinator
