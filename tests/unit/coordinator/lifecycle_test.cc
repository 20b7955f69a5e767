// A node's and a job's end of life in the coordinator core, on a fake clock: a node whose agent
// stops cleanly leaves (its jobs' generations end at once), dead and departed nodes and idle jobs
// are removed after their retention, and only live nodes count toward the heartbeat-rate policy.
#include <optional>

#include "absl/strings/str_cat.h"
#include "daemon/coordinator/coordinator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/fake_clock.h"

namespace meshd::coordinator {
namespace {

using ::testing::HasSubstr;

class LifecycleTest : public ::testing::Test {
 protected:
  LifecycleTest() : coord_(&clock_, Options(), [this](const Event& e) { events_.push_back(e); }) {}
  static CoordinatorOptions Options() {
    CoordinatorOptions o;
    o.heartbeat_interval = absl::Seconds(1);
    o.heartbeat_timeout = absl::Seconds(5);
    o.node_retention = absl::Minutes(10);
    o.job_retention = absl::Minutes(10);
    o.round_timeout = absl::Minutes(20);
    return o;
  }
  void Register(const std::string& name) {
    NodeInventory inv{name, "host-" + name, "unix:/run/" + name, 1, {}};
    inv.gpus.push_back(Gpu{0, "GPU-" + name, "", "sim", 0, "", true});
    ASSERT_TRUE(coord_.RegisterNode(inv).ok());
  }
  // Generation 1 of "train" on `nodes`.
  void Run(const std::vector<std::string>& nodes) {
    std::vector<std::optional<absl::StatusOr<Assignment>>> got(nodes.size());
    for (size_t i = 0; i < nodes.size(); ++i) {
      coord_.JoinJob(JoinRequest{"train", nodes[i], 1, 1,
                                 NodeCount{static_cast<uint32_t>(nodes.size()),
                                           static_cast<uint32_t>(nodes.size()), absl::Seconds(1)}},
                     clock_.Now() + absl::Seconds(30),
                     [&got, i](absl::StatusOr<Assignment> a) { got[i] = std::move(a); });
    }
    for (auto& g : got) ASSERT_TRUE(g && g->ok());
  }
  // Advances the clock by `d` in heartbeat-sized steps, keeping `alive` alive.
  void Pass(absl::Duration d, const std::vector<std::string>& alive) {
    for (absl::Duration step = absl::Seconds(1); d > absl::ZeroDuration(); d -= step) {
      clock_.Advance(step);
      for (const auto& n : alive) ASSERT_TRUE(coord_.Heartbeat(n, 1).ok()) << n;
      coord_.CheckDeadlines();
    }
  }
  std::optional<NodeView> ViewOf(const std::string& node) {
    for (const NodeView& n : coord_.Nodes()) {
      if (n.inventory.node == node) return n;
    }
    return std::nullopt;
  }
  int Count(EventKind kind) const {
    int n = 0;
    for (const Event& e : events_) n += e.kind == kind;
    return n;
  }

  FakeClock clock_;
  std::vector<Event> events_;
  Coordinator coord_;
};

TEST_F(LifecycleTest, LeaveNode_ItsJobsEndAtOnceNamingIt_ThenItIsLeftNotDead) {
  Register("a");
  Register("b");
  Run({"a", "b"});
  std::optional<GenerationEnd> end;
  ASSERT_TRUE(coord_.WatchJob("train", 1, [&](const GenerationEnd& e) { end = e; }).ok());

  ASSERT_TRUE(coord_.LeaveNode("b", 1, "").ok());
  ASSERT_TRUE(end.has_value());  // at once: no clock advanced
  EXPECT_EQ(end->reason, EndReason::kNodeLeft);
  EXPECT_EQ(end->node, "b");
  EXPECT_THAT(end->message, HasSubstr("node 'b' left: its agent stopped"));
  EXPECT_EQ(Count(EventKind::kNodeLeft), 1);
  EXPECT_FALSE(ViewOf("b")->alive);
  EXPECT_TRUE(ViewOf("b")->left);
  EXPECT_EQ(coord_.Status().nodes_left, 1u);
  EXPECT_EQ(coord_.Status().nodes_dead, 0u);

  EXPECT_TRUE(coord_.LeaveNode("b", 1, "").ok());  // again: nothing more
  EXPECT_EQ(Count(EventKind::kNodeLeft), 1);
  EXPECT_EQ(coord_.LeaveNode("a", 7, "").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(coord_.LeaveNode("zed", 1, "").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(coord_.Heartbeat("b", 1).status().code(), absl::StatusCode::kNotFound);
  // Its agent may come back, as a new incarnation or the same.
  Register("b");
  EXPECT_TRUE(ViewOf("b")->alive);
  EXPECT_FALSE(ViewOf("b")->left);
}

TEST_F(LifecycleTest, GoneNodes_RemovedAfterTheRetention_LiveOnesKept) {
  Register("a");
  Register("b");
  Register("c");
  ASSERT_TRUE(coord_.LeaveNode("c", 1, "").ok());
  Pass(absl::Seconds(6), {"a"});  // b is declared dead
  ASSERT_FALSE(ViewOf("b")->alive);
  Pass(absl::Minutes(9), {"a"});
  EXPECT_TRUE(ViewOf("b").has_value());
  EXPECT_TRUE(ViewOf("c").has_value());
  Pass(absl::Minutes(1), {"a"});
  EXPECT_FALSE(ViewOf("b").has_value());
  EXPECT_FALSE(ViewOf("c").has_value());
  EXPECT_TRUE(ViewOf("a").has_value());
  EXPECT_EQ(Count(EventKind::kNodeExpired), 2);
  const StatusView s = coord_.Status();
  EXPECT_EQ(s.nodes_alive, 1u);
  EXPECT_EQ(s.nodes_dead + s.nodes_left, 0u);
  // Its GPU is free, its name anyone's.
  Register("b");
  EXPECT_EQ(ViewOf("b")->restarts, 0u);
}

TEST_F(LifecycleTest, EndedJobNobodyRejoins_RemovedAfterTheRetention) {
  Register("a");
  Register("b");
  Run({"a", "b"});
  ASSERT_TRUE(coord_.LeaveNode("b", 1, "").ok());  // generation 1 ends; nobody joins again
  Pass(absl::Minutes(9), {"a"});
  ASSERT_TRUE(coord_.Job("train").ok());
  Pass(absl::Seconds(61), {"a"});
  EXPECT_EQ(coord_.Job("train").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Count(EventKind::kJobExpired), 1);
  EXPECT_TRUE(coord_.Jobs().empty());
}

TEST_F(LifecycleTest, JobWithAJoinerWaiting_Kept) {
  Register("a");
  std::optional<absl::StatusOr<Assignment>> got;
  coord_.JoinJob(JoinRequest{"train", "a", 1, 1, NodeCount{2, 2, absl::Seconds(1)}},
                 clock_.Now() + absl::Minutes(30), [&](absl::StatusOr<Assignment> a) { got = a; });
  Pass(absl::Minutes(11), {"a"});
  EXPECT_TRUE(coord_.Job("train").ok());
  EXPECT_FALSE(got.has_value());
  coord_.Shutdown();  // answers the wait while `got` is still there
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->status().code(), absl::StatusCode::kCancelled);
}

// The squat: a 1-second JoinJob of a 64-node "train" held the name, refusing every other
// size for the job retention. A join that gave up leaves no size behind.
TEST_F(LifecycleTest, AbandonedJoin_NameHoldsNoSize) {
  Register("a");
  Register("b");
  std::optional<absl::StatusOr<Assignment>> squat;
  coord_.JoinJob(JoinRequest{"train", "a", 1, 1, NodeCount{64, 64, absl::Seconds(1)}},
                 clock_.Now() + absl::Seconds(1), [&](absl::StatusOr<Assignment> a) { squat = a; });
  Pass(absl::Seconds(2), {"a", "b"});
  ASSERT_TRUE(squat.has_value());
  EXPECT_EQ(squat->status().code(), absl::StatusCode::kDeadlineExceeded);
  std::optional<absl::StatusOr<Assignment>> real;
  coord_.JoinJob(JoinRequest{"train", "b", 1, 8, NodeCount{1, 1, absl::Seconds(1)}},
                 clock_.Now() + absl::Seconds(30), [&](absl::StatusOr<Assignment> a) { real = a; });
  ASSERT_TRUE(real.has_value());
  ASSERT_TRUE(real->ok()) << real->status();
  EXPECT_EQ((*real)->num_nodes, 1u);
}

// A round that a live node keeps open (its join held as long as the coordinator allows, and sent
// again) holds the name only for the round timeout: then its joiners are refused, saying why, and
// another size may start.
TEST_F(LifecycleTest, RoundOpenPastTheRoundTimeout_JoinersRefused_NameFree) {
  Register("a");
  Register("b");
  std::optional<absl::StatusOr<Assignment>> held;
  coord_.JoinJob(JoinRequest{"train", "a", 1, 1, NodeCount{64, 64, absl::Seconds(1)}},
                 clock_.Now() + absl::Hours(1), [&](absl::StatusOr<Assignment> a) { held = a; });
  Pass(absl::Minutes(19), {"a", "b"});
  EXPECT_FALSE(held.has_value());
  Pass(absl::Minutes(1), {"a", "b"});
  ASSERT_TRUE(held.has_value());
  EXPECT_EQ(held->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(held->status().message(), HasSubstr("--round-timeout"));
  EXPECT_THAT(held->status().message(), HasSubstr("1 of 64 nodes joined (a)"));
  EXPECT_EQ(Count(EventKind::kRoundTimedOut), 1);
  std::optional<absl::StatusOr<Assignment>> other;
  coord_.JoinJob(JoinRequest{"train", "b", 1, 2, NodeCount{1, 1, absl::Seconds(1)}},
                 clock_.Now() + absl::Seconds(30), [&](absl::StatusOr<Assignment> a) { other = a; });
  ASSERT_TRUE(other.has_value() && other->ok());
}

// Dead nodes do not stretch the heartbeat timing the live ones are told (a burst of fake
// registrations that die must not raise the timeout for good).
TEST_F(LifecycleTest, HeartbeatRateCountsLiveNodesOnly) {
  CoordinatorOptions o = Options();
  o.max_heartbeats_per_second = 10;  // 10 nodes at 1 s intervals
  Coordinator c(&clock_, o);
  for (int i = 0; i < 40; ++i) {
    NodeInventory inv{absl::StrCat("n", i), "h", "", 1, {}};
    ASSERT_TRUE(c.RegisterNode(inv).ok());
  }
  EXPECT_EQ(c.Status().heartbeat_timeout, absl::Seconds(20));  // 40 nodes: stretched 4x
  for (int i = 1; i < 40; ++i) ASSERT_TRUE(c.LeaveNode(absl::StrCat("n", i), 1, "").ok());
  EXPECT_EQ(c.Status().heartbeat_timeout, absl::Seconds(5));  // one live node
}

}  // namespace
}  // namespace meshd::coordinator

namespace meshd::coordinator {
namespace {

// A job whose workers all detached cleanly on every node is finished: its generation ends
// (nobody is left to tell) and the job goes after the retention; one node alone finishing ends
// nothing, and a node whose workers come back is not finished any more.
TEST_F(LifecycleTest, EveryNodeFinished_GenerationEnds_ThenTheJobGoes) {
  Register("a");
  Register("b");
  Run({"a", "b"});
  std::optional<GenerationEnd> end;
  ASSERT_TRUE(coord_.WatchJob("train", 1, [&](const GenerationEnd& e) { end = e; }).ok());
  ASSERT_TRUE(coord_.FinishJob("train", 1, "a").ok());
  EXPECT_FALSE(end.has_value());
  // a's workers attach again: it is a member asking again, no longer finished.
  std::optional<absl::StatusOr<Assignment>> again;
  coord_.JoinJob(JoinRequest{"train", "a", 1, 1, NodeCount{2, 2, absl::Seconds(1)}},
                 clock_.Now() + absl::Seconds(30),
                 [&](absl::StatusOr<Assignment> x) { again = std::move(x); });
  ASSERT_TRUE(again && again->ok());
  ASSERT_TRUE(coord_.FinishJob("train", 1, "b").ok());
  EXPECT_FALSE(end.has_value());
  EXPECT_EQ(coord_.FinishJob("train", 1, "zed").code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(coord_.FinishJob("train", 1, "a").ok());
  ASSERT_TRUE(end.has_value());
  EXPECT_EQ(end->reason, EndReason::kJobFinished);
  EXPECT_EQ(coord_.Job("train")->phase, JobPhase::kJoining);
  EXPECT_EQ(coord_.FinishJob("train", 1, "a").code(), absl::StatusCode::kAborted);
  Pass(absl::Minutes(10) + absl::Seconds(1), {"a", "b"});
  EXPECT_EQ(coord_.Job("train").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace meshd::coordinator
