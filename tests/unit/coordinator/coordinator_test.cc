// The coordinator core on a fake clock: every transition is stepped explicitly, nothing sleeps.
#include "daemon/coordinator/coordinator.h"

#include <limits>
#include <optional>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/fake_clock.h"

namespace meshd::coordinator {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::HasSubstr;
using ::testing::Not;

// Holds what a callback received.
template <typename T>
struct Got {
  std::optional<T> value;
  auto Callback() {
    return [this](T v) { value = std::move(v); };
  }
  bool done() const { return value.has_value(); }
};

class CoordinatorTest : public ::testing::Test {
 protected:
  CoordinatorTest()
      : coord_(&clock_, CoordinatorOptions{absl::Seconds(1), absl::Seconds(5), 64, 100000},
               [this](const Event& e) { events_.push_back(e); }) {}

  NodeInventory Node(const std::string& name, uint64_t incarnation = 1, int gpus = 2,
                     const std::string& clique = "") {
    NodeInventory inv{name, "host-" + name, "unix:/run/" + name, incarnation, {}};
    for (int i = 0; i < gpus; ++i) {
      inv.gpus.push_back(Gpu{static_cast<uint32_t>(i), "GPU-" + name + "-" + std::to_string(i), "",
                             "sim", 0, clique, true});
    }
    return inv;
  }
  void Register(const std::string& name, uint64_t incarnation = 1, const std::string& clique = "") {
    ASSERT_TRUE(coord_.RegisterNode(Node(name, incarnation, 2, clique)).ok());
  }
  JoinRequest Join(const std::string& job, const std::string& node, uint32_t min, uint32_t max = 0,
                   uint64_t incarnation = 1) {
    return JoinRequest{job, node, incarnation, 2,
                       NodeCount{min, max == 0 ? min : max, absl::Seconds(1)}};
  }
  absl::Time Deadline(absl::Duration d = absl::Seconds(30)) { return clock_.Now() + d; }
  // Keeps `nodes` alive while time passes.
  void Beat(const std::vector<std::string>& nodes) {
    for (const auto& n : nodes) ASSERT_TRUE(coord_.Heartbeat(n, 1).ok()) << n;
  }

  FakeClock clock_;
  std::vector<Event> events_;
  Coordinator coord_;
};

// ---- Registration and liveness
// -------------------------------------------------------------------

TEST_F(CoordinatorTest, RegisterNode_NewThenSameIncarnation_NotARestart) {
  EXPECT_EQ(*coord_.RegisterNode(Node("a")), false);
  EXPECT_EQ(*coord_.RegisterNode(Node("a")), false);
  EXPECT_EQ(coord_.Nodes().size(), 1u);
  EXPECT_EQ(coord_.Nodes()[0].restarts, 0u);
}

TEST_F(CoordinatorTest, RegisterNode_NewIncarnation_IsRestart) {
  Register("a");
  EXPECT_EQ(*coord_.RegisterNode(Node("a", 2)), true);
  EXPECT_EQ(coord_.Nodes()[0].restarts, 1u);
  EXPECT_EQ(coord_.Heartbeat("a", 1).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(coord_.Heartbeat("a", 2).ok());
}

TEST_F(CoordinatorTest, RegisterNode_BadInventory_InvalidArgument) {
  NodeInventory bad = Node("a");
  bad.node = "";
  EXPECT_EQ(coord_.RegisterNode(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad = Node("a b");
  EXPECT_THAT(std::string(coord_.RegisterNode(bad).status().message()), HasSubstr("may only hold"));
  bad = Node("a", 0);
  EXPECT_THAT(std::string(coord_.RegisterNode(bad).status().message()), HasSubstr("incarnation"));
  bad = Node("a");
  bad.gpus[1].uuid = bad.gpus[0].uuid;
  EXPECT_THAT(std::string(coord_.RegisterNode(bad).status().message()), HasSubstr("twice"));
  bad = Node("a", 1, 65);
  EXPECT_THAT(std::string(coord_.RegisterNode(bad).status().message()), HasSubstr("at most 64"));
  bad = Node(std::string(300, 'x'));
  EXPECT_THAT(std::string(coord_.RegisterNode(bad).status().message()), HasSubstr("longer than"));
  EXPECT_TRUE(coord_.Nodes().empty());
}

TEST_F(CoordinatorTest, RegisterNode_SomeoneElsesGpu_AlreadyExists) {
  Register("a");
  NodeInventory b = Node("b");
  b.gpus[0].uuid = "GPU-a-0";
  const auto r = coord_.RegisterNode(b);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("live node 'a'"));
  // Once 'a' is dead, its GPUs can move (a host renamed).
  clock_.Advance(absl::Seconds(6));
  coord_.CheckDeadlines();
  EXPECT_TRUE(coord_.RegisterNode(b).ok());
}

TEST_F(CoordinatorTest, Heartbeat_UnknownNode_NotFound) {
  EXPECT_EQ(coord_.Heartbeat("ghost", 1).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(CoordinatorTest, HeartbeatExpiry_NodeDeadUntilItRegistersAgain) {
  Register("a");
  clock_.Advance(absl::Seconds(4));
  coord_.CheckDeadlines();
  EXPECT_TRUE(coord_.Nodes()[0].alive);
  EXPECT_TRUE(coord_.Heartbeat("a", 1).ok());
  clock_.Advance(absl::Seconds(5));
  coord_.CheckDeadlines();
  EXPECT_TRUE(coord_.Nodes()[0].alive);  // exactly the timeout: still alive
  clock_.Advance(absl::Milliseconds(1));
  coord_.CheckDeadlines();
  EXPECT_FALSE(coord_.Nodes()[0].alive);
  EXPECT_EQ(coord_.Heartbeat("a", 1).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(*coord_.RegisterNode(Node("a")), false);
  EXPECT_TRUE(coord_.Nodes()[0].alive);
}

// CheckDeadlines walks the nodes only once one may have timed out; the bound it keeps must follow
// every node heard since: a node registered or silent after a walk is still found at its timeout,
// among others that keep beating.
TEST_F(CoordinatorTest, HeartbeatExpiry_FoundOnTimeAmongLiveNodesAfterSkippedTicks) {
  coord_.CheckDeadlines();  // walks an empty cluster: nothing will ever be due
  Register("a");
  clock_.Advance(absl::Seconds(3));
  Register("b");                  // due at t=8s
  for (int i = 0; i < 10; ++i) {  // t=3s..8s: a keeps beating, b is silent
    clock_.Advance(absl::Milliseconds(500));
    Beat({"a"});
    coord_.CheckDeadlines();
  }
  EXPECT_TRUE(coord_.Nodes()[1].alive);  // exactly b's timeout
  clock_.Advance(absl::Milliseconds(1));
  coord_.CheckDeadlines();
  EXPECT_TRUE(coord_.Nodes()[0].alive);
  EXPECT_FALSE(coord_.Nodes()[1].alive);
}

// A wait added after a walk that found only later deadlines still ends at its own deadline.
TEST_F(CoordinatorTest, WaitDeadline_ShorterWaitAfterLongerOne_EndsOnTime) {
  Register("a");
  Register("b");
  Got<absl::StatusOr<Assignment>> patient, hurried;
  coord_.JoinJob(Join("slow", "a", 3), Deadline(absl::Seconds(60)), patient.Callback());
  coord_.CheckDeadlines();  // walks: nothing due before t=60s
  coord_.JoinJob(Join("fast", "b", 3), Deadline(absl::Seconds(2)), hurried.Callback());
  clock_.Advance(absl::Seconds(1));
  Beat({"a", "b"});
  coord_.CheckDeadlines();
  EXPECT_FALSE(hurried.done());
  clock_.Advance(absl::Seconds(1));
  coord_.CheckDeadlines();
  ASSERT_TRUE(hurried.done());
  EXPECT_EQ(hurried.value->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_FALSE(patient.done());
  // Ended here, while `patient` lives (the fixture's coordinator would answer it after).
  coord_.Shutdown();
  ASSERT_TRUE(patient.done());
  EXPECT_EQ(patient.value->status().code(), absl::StatusCode::kCancelled);
}

// 2 heartbeats/s at a 1 s interval: two nodes fit; four need a 2 s interval (and a 10 s timeout).
Coordinator RateCappedCoordinator(FakeClock& clock) {
  return Coordinator(&clock, CoordinatorOptions{absl::Seconds(1), absl::Seconds(5), 64, 100000, 2});
}
NodeInventory RateNode(const std::string& name) {
  return NodeInventory{name, name, "unix:/x", 1, {Gpu{0, "GPU-" + name, "", "sim", 0, "", true}}};
}

TEST(CoordinatorHeartbeatRate, BurstStretchesNewcomersWhileEarlierNodesFillTheCap) {
  FakeClock clock;
  Coordinator coord = RateCappedCoordinator(clock);
  for (const char* n : {"a", "b"}) ASSERT_TRUE(coord.RegisterNode(RateNode(n)).ok());
  EXPECT_EQ(coord.HeartbeatTimingOf("b").interval, absl::Seconds(1));
  // a and b were told 1 s and use the whole cap until their next heartbeat: c (fair 1.5 s with
  // three nodes) and d (fair 2 s) get twice their fair interval and timeout.
  for (const char* n : {"c", "d"}) ASSERT_TRUE(coord.RegisterNode(RateNode(n)).ok());
  EXPECT_EQ(coord.HeartbeatTimingOf("c").interval, absl::Seconds(3));
  EXPECT_EQ(coord.HeartbeatTimingOf("d").interval, absl::Seconds(4));
  EXPECT_EQ(coord.HeartbeatTimingOf("d").timeout, absl::Seconds(20));
  EXPECT_EQ(coord.HeartbeatTimingOf("a").timeout, absl::Seconds(5));  // told before the growth
  EXPECT_EQ(coord.Status().heartbeat_timeout, absl::Seconds(10));     // the fair timing
  // Each node is judged by the timeout it was told: a and b 5 s, c 15 s, d 20 s.
  clock.Advance(absl::Seconds(6));
  coord.CheckDeadlines();
  for (const NodeView& v : coord.Nodes()) {
    EXPECT_EQ(v.alive, v.inventory.node == "c" || v.inventory.node == "d") << v.inventory.node;
  }
  // The dead release their share and no longer count: e (fair 1.5 s with three live nodes) fits
  // beside c and d.
  ASSERT_TRUE(coord.RegisterNode(RateNode("e")).ok());
  EXPECT_EQ(coord.HeartbeatTimingOf("e").interval, absl::Milliseconds(1500));
  EXPECT_EQ(coord.HeartbeatTimingOf("e").timeout, absl::Milliseconds(7500));
  clock.Advance(absl::Seconds(7));  // 13 s: c (15 s), d (20 s), e (7.5 s from 6 s) live
  coord.CheckDeadlines();
  for (const NodeView& v : coord.Nodes()) {
    EXPECT_EQ(v.alive, v.inventory.node != "a" && v.inventory.node != "b") << v.inventory.node;
  }
  clock.Advance(absl::Seconds(3));  // 16 s: c's 15 s and e's 7.5 s are up; d (20 s) lives
  coord.CheckDeadlines();
  for (const NodeView& v : coord.Nodes()) {
    EXPECT_EQ(v.alive, v.inventory.node == "d") << v.inventory.node;
  }
}

TEST(CoordinatorHeartbeatRate, HeartbeatAnswersConvergeToTheFairTiming) {
  FakeClock clock;
  Coordinator coord = RateCappedCoordinator(clock);
  const std::vector<std::string> nodes = {"a", "b", "c", "d"};
  for (const std::string& n : nodes) ASSERT_TRUE(coord.RegisterNode(RateNode(n)).ok());
  for (int round = 0; round < 2; ++round) {
    for (const std::string& n : nodes) ASSERT_TRUE(coord.Heartbeat(n, 1).ok());
  }
  for (const std::string& n : nodes) {
    EXPECT_EQ(coord.HeartbeatTimingOf(n).interval, absl::Seconds(2)) << n;
    EXPECT_EQ(coord.HeartbeatTimingOf(n).timeout, absl::Seconds(10)) << n;
  }
}

// ---- Fixed rounds -------------------------------------------------------------------------------

TEST_F(CoordinatorTest, FixedRound_ClosesWhenAllJoined_DistinctNodeRanks) {
  Register("b");
  Register("a");
  Got<absl::StatusOr<Assignment>> a, b;
  coord_.JoinJob(Join("job", "b", 2), Deadline(), b.Callback());
  EXPECT_FALSE(b.done());
  EXPECT_EQ(coord_.Job("job")->phase, JobPhase::kJoining);
  coord_.JoinJob(Join("job", "a", 2), Deadline(), a.Callback());
  ASSERT_TRUE(a.done() && b.done());
  ASSERT_TRUE(a.value->ok() && b.value->ok());
  EXPECT_EQ((*a.value)->node_rank, 0u);  // host-a sorts first
  EXPECT_EQ((*b.value)->node_rank, 1u);
  EXPECT_EQ((*a.value)->generation, 1u);
  EXPECT_EQ((*a.value)->world_size, 4u);
  EXPECT_EQ((*b.value)->members->size(), 2u);
  EXPECT_EQ(coord_.Job("job")->phase, JobPhase::kRunning);
}

TEST_F(CoordinatorTest, FixedRound_CliqueOrderBeatsHostname) {
  Register("a", 1, "X");
  Register("b", 1, "Y");
  Register("c", 1, "X");
  Got<absl::StatusOr<Assignment>> got;
  coord_.JoinJob(Join("job", "a", 3), Deadline(), [](auto) {});
  coord_.JoinJob(Join("job", "b", 3), Deadline(), [](auto) {});
  coord_.JoinJob(Join("job", "c", 3), Deadline(), got.Callback());
  ASSERT_TRUE(got.done() && got.value->ok());
  std::vector<std::string> order;
  for (const Member& m : *(*got.value)->members) order.push_back(m.node);
  EXPECT_EQ(order, (std::vector<std::string>{"a", "c", "b"}));
}

TEST_F(CoordinatorTest, FixedRound_MemberRetry_SameAnswer) {
  Register("a");
  Got<absl::StatusOr<Assignment>> first, retry;
  coord_.JoinJob(Join("job", "a", 1), Deadline(), first.Callback());
  coord_.JoinJob(Join("job", "a", 1), Deadline(), retry.Callback());
  ASSERT_TRUE(retry.done() && retry.value->ok());
  EXPECT_EQ((*retry.value)->generation, (*first.value)->generation);
}

TEST_F(CoordinatorTest, FixedRound_NonMemberWhileRunning_FailedPrecondition) {
  Register("a");
  Register("b");
  coord_.JoinJob(Join("job", "a", 1), Deadline(), [](auto) {});
  Got<absl::StatusOr<Assignment>> late;
  coord_.JoinJob(Join("job", "b", 1), Deadline(), late.Callback());
  ASSERT_TRUE(late.done());
  EXPECT_EQ(late.value->status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(late.value->status().message()), HasSubstr("admits no new nodes"));
}

TEST_F(CoordinatorTest, Join_SpecMismatch_FailedPrecondition) {
  Register("a");
  Register("b");
  coord_.JoinJob(Join("job", "a", 2), Deadline(), [](auto) {});
  Got<absl::StatusOr<Assignment>> got;
  coord_.JoinJob(Join("job", "b", 3), Deadline(), got.Callback());
  EXPECT_EQ(got.value->status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(got.value->status().message()), HasSubstr("every node of a job"));
}

TEST_F(CoordinatorTest, Join_BadRequests) {
  Register("a");
  struct Case {
    JoinRequest req;
    absl::StatusCode code;
  };
  JoinRequest zero_world = Join("job", "a", 1);
  zero_world.local_world = 0;
  const std::vector<Case> cases = {
      {Join("", "a", 1), absl::StatusCode::kInvalidArgument},
      {Join("bad name!", "a", 1), absl::StatusCode::kInvalidArgument},
      {Join("job", "a", 0), absl::StatusCode::kInvalidArgument},
      {Join("job", "a", 3, 2), absl::StatusCode::kInvalidArgument},
      {zero_world, absl::StatusCode::kInvalidArgument},
      {Join("job", "ghost", 1), absl::StatusCode::kNotFound},
      {Join("job", "a", 1, 0, /*incarnation=*/9), absl::StatusCode::kFailedPrecondition},
  };
  for (const Case& c : cases) {
    Got<absl::StatusOr<Assignment>> got;
    coord_.JoinJob(c.req, Deadline(), got.Callback());
    ASSERT_TRUE(got.done());
    EXPECT_EQ(got.value->status().code(), c.code) << got.value->status();
  }
  EXPECT_TRUE(coord_.Jobs().empty());  // no bad request created a job
}

TEST_F(CoordinatorTest, Join_Deadline_ExceededWithProgress_NodeLeavesRound) {
  Register("a");
  Got<absl::StatusOr<Assignment>> got;
  coord_.JoinJob(Join("job", "a", 3), Deadline(absl::Seconds(2)), got.Callback());
  clock_.Advance(absl::Seconds(1));
  Beat({"a"});
  coord_.CheckDeadlines();
  EXPECT_FALSE(got.done());
  clock_.Advance(absl::Seconds(1));
  coord_.CheckDeadlines();
  ASSERT_TRUE(got.done());
  EXPECT_EQ(got.value->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(got.value->status().message()), HasSubstr("1 of 3 nodes joined (a)"));
  EXPECT_TRUE(coord_.Job("job")->members.empty());
}

// ---- Elastic rounds -----------------------------------------------------------------------------

TEST_F(CoordinatorTest, Elastic_ClosesAtMinAfterLastCall) {
  Register("a");
  Register("b");
  Got<absl::StatusOr<Assignment>> a;
  coord_.JoinJob(Join("job", "a", 2, 4), Deadline(), a.Callback());
  coord_.JoinJob(Join("job", "b", 2, 4), Deadline(), [](auto) {});
  coord_.CheckDeadlines();
  EXPECT_FALSE(a.done());
  clock_.Advance(absl::Seconds(1));
  Beat({"a", "b"});
  coord_.CheckDeadlines();
  ASSERT_TRUE(a.done() && a.value->ok());
  EXPECT_EQ((*a.value)->members->size(), 2u);
}

TEST_F(CoordinatorTest, Elastic_ClosesAtMaxAtOnce) {
  for (auto n : {"a", "b", "c"}) Register(n);
  Got<absl::StatusOr<Assignment>> got;
  coord_.JoinJob(Join("job", "a", 1, 3), Deadline(), [](auto) {});
  coord_.JoinJob(Join("job", "b", 1, 3), Deadline(), [](auto) {});
  coord_.JoinJob(Join("job", "c", 1, 3), Deadline(), got.Callback());
  ASSERT_TRUE(got.done() && got.value->ok());
  EXPECT_EQ((*got.value)->world_size, 6u);
}

TEST_F(CoordinatorTest, Elastic_NewNodeEndsGenerationAndJoinsNextRound) {
  for (auto n : {"a", "b", "c"}) Register(n);
  coord_.JoinJob(Join("job", "a", 2, 3), Deadline(), [](auto) {});
  coord_.JoinJob(Join("job", "b", 2, 3), Deadline(), [](auto) {});
  clock_.Advance(absl::Seconds(1));
  Beat({"a", "b", "c"});
  coord_.CheckDeadlines();
  ASSERT_EQ(coord_.Job("job")->phase, JobPhase::kRunning);
  Got<GenerationEnd> end;
  ASSERT_TRUE(coord_.WatchJob("job", 1, end.Callback()).ok());
  Got<absl::StatusOr<Assignment>> c;
  coord_.JoinJob(Join("job", "c", 2, 3), Deadline(), c.Callback());
  ASSERT_TRUE(end.done());
  EXPECT_EQ(end.value->reason, EndReason::kNodeJoining);
  EXPECT_EQ(end.value->node, "c");
  const JobView v = *coord_.Job("job");
  EXPECT_EQ(v.generation, 2u);
  EXPECT_EQ(v.missing, (std::vector<std::string>{"a", "b"}));
  coord_.JoinJob(Join("job", "a", 2, 3), Deadline(), [](auto) {});
  coord_.JoinJob(Join("job", "b", 2, 3), Deadline(), [](auto) {});
  ASSERT_TRUE(c.done() && c.value->ok());
  EXPECT_EQ((*c.value)->generation, 2u);
  EXPECT_EQ((*c.value)->members->size(), 3u);
}

TEST_F(CoordinatorTest, Elastic_AtMax_NewNodeWaitsForNextRound) {
  for (auto n : {"a", "b", "c"}) Register(n);
  coord_.JoinJob(Join("job", "a", 1, 2), Deadline(), [](auto) {});
  coord_.JoinJob(Join("job", "b", 1, 2), Deadline(), [](auto) {});
  Got<absl::StatusOr<Assignment>> c;
  coord_.JoinJob(Join("job", "c", 1, 2), Deadline(absl::Seconds(60)), c.Callback());
  EXPECT_FALSE(c.done());
  EXPECT_EQ(coord_.Job("job")->generation, 1u);
  // b dies: the next round starts with c waiting in it; a re-joins; at max=2 it closes.
  clock_.Advance(absl::Seconds(6));
  Beat({"a", "c"});
  coord_.CheckDeadlines();
  coord_.JoinJob(Join("job", "a", 1, 2), Deadline(), [](auto) {});
  ASSERT_TRUE(c.done() && c.value->ok());
  EXPECT_EQ((*c.value)->generation, 2u);
}

// ---- Failure and generations --------------------------------------------------------------------

class RunningJobTest : public CoordinatorTest {
 protected:
  void SetUp() override {
    Register("a");
    Register("b");
    coord_.JoinJob(Join("job", "a", 2), Deadline(), [](auto) {});
    coord_.JoinJob(Join("job", "b", 2), Deadline(), [](auto) {});
    ASSERT_EQ(coord_.Job("job")->phase, JobPhase::kRunning);
  }
};

TEST_F(RunningJobTest, NodeLost_WatchersToldWithNodeAndReason) {
  Got<GenerationEnd> end;
  bool told_after_event = false;  // the end is logged and counted before watchers hear of it
  ASSERT_TRUE(coord_
                  .WatchJob("job", 1,
                            [&](GenerationEnd e) {
                              told_after_event = !events_.empty() &&
                                                 events_.back().kind == EventKind::kGenerationEnded;
                              end.value = std::move(e);
                            })
                  .ok());
  clock_.Advance(absl::Seconds(3));
  Beat({"a"});
  clock_.Advance(absl::Seconds(3));  // b silent for 6 s > 5 s
  coord_.CheckDeadlines();
  ASSERT_TRUE(end.done());
  EXPECT_TRUE(told_after_event);
  EXPECT_EQ(end.value->reason, EndReason::kNodeLost);
  EXPECT_EQ(end.value->node, "b");
  EXPECT_THAT(end.value->message, HasSubstr("no heartbeat"));
  const JobView v = *coord_.Job("job");
  EXPECT_EQ(v.phase, JobPhase::kJoining);
  EXPECT_EQ(v.generation, 2u);
  EXPECT_EQ(v.missing, (std::vector<std::string>{"a"}));
  ASSERT_TRUE(v.has_last_end);
}

TEST_F(RunningJobTest, NodeRestarted_EndsGeneration) {
  Got<GenerationEnd> end;
  ASSERT_TRUE(coord_.WatchJob("job", 1, end.Callback()).ok());
  ASSERT_TRUE(coord_.RegisterNode(Node("b", 2)).ok());
  ASSERT_TRUE(end.done());
  EXPECT_EQ(end.value->reason, EndReason::kNodeRestarted);
}

TEST_F(RunningJobTest, StaleGeneration_Aborted) {
  Got<absl::Status> set;
  coord_.KeySet("job", 1, "k", "v", set.Callback());
  ASSERT_TRUE(set.value->ok());
  ASSERT_TRUE(coord_.RegisterNode(Node("b", 2)).ok());
  Got<absl::StatusOr<std::string>> get;
  coord_.KeyGet("job", 1, "k", false, Deadline(), get.Callback());
  EXPECT_EQ(get.value->status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(std::string(get.value->status().message()), HasSubstr("re-join"));
  EXPECT_EQ(coord_.KeyAdd("job", 1, "n", 1).status().code(), absl::StatusCode::kAborted);
  // Generation 2 has not started: its round is open.
  EXPECT_EQ(coord_.KeyAdd("job", 2, "n", 1).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(RunningJobTest, PendingKvWaitsAbortedWhenGenerationEnds) {
  Got<absl::StatusOr<std::string>> get;
  coord_.KeyGet("job", 1, "never", true, Deadline(), get.Callback());
  Got<absl::Status> barrier;
  coord_.Barrier("job", 1, "b", "rank0", 2, Deadline(), barrier.Callback());
  EXPECT_FALSE(get.done() || barrier.done());
  ASSERT_TRUE(coord_.RegisterNode(Node("a", 2)).ok());
  EXPECT_EQ(get.value->status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(barrier.value->code(), absl::StatusCode::kAborted);
}

TEST_F(RunningJobTest, FixedJob_ReRendezvousAfterLoss) {
  clock_.Advance(absl::Seconds(6));
  Beat({"a"});
  coord_.CheckDeadlines();  // b lost
  Got<absl::StatusOr<Assignment>> a;
  coord_.JoinJob(Join("job", "a", 2), Deadline(), a.Callback());
  EXPECT_FALSE(a.done());  // fixed: needs 2 nodes again
  ASSERT_TRUE(coord_.RegisterNode(Node("b", 2)).ok());
  coord_.JoinJob(Join("job", "b", 2, 0, 2), Deadline(), [](auto) {});
  ASSERT_TRUE(a.done() && a.value->ok());
  EXPECT_EQ((*a.value)->generation, 2u);
}

TEST_F(RunningJobTest, Watch_EndedGenerationAnswersAtOnce_FutureRefused) {
  ASSERT_TRUE(coord_.RegisterNode(Node("b", 2)).ok());
  Got<GenerationEnd> end;
  ASSERT_TRUE(coord_.WatchJob("job", 1, end.Callback()).ok());
  ASSERT_TRUE(end.done());
  EXPECT_EQ(end.value->reason, EndReason::kNodeRestarted);
  EXPECT_EQ(coord_.WatchJob("job", 2, [](auto) {}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(coord_.WatchJob("nope", 1, [](auto) {}).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(RunningJobTest, CancelWatch_NotCalled) {
  Got<GenerationEnd> end;
  const uint64_t id = *coord_.WatchJob("job", 1, end.Callback());
  coord_.CancelWatch(id);
  ASSERT_TRUE(coord_.RegisterNode(Node("b", 2)).ok());
  EXPECT_FALSE(end.done());
}

// ---- KV and barriers ----------------------------------------------------------------------------

TEST_F(RunningJobTest, Kv_SetGetAddCompareSet) {
  Got<absl::StatusOr<std::string>> waiting;
  coord_.KeyGet("job", 1, "id", true, Deadline(), waiting.Callback());
  EXPECT_FALSE(waiting.done());
  coord_.KeySet("job", 1, "id", std::string(128, '\x07'),
                [](absl::Status s) { ASSERT_TRUE(s.ok()); });
  ASSERT_TRUE(waiting.done() && waiting.value->ok());
  EXPECT_EQ(**waiting.value, std::string(128, '\x07'));

  Got<absl::StatusOr<std::string>> missing;
  coord_.KeyGet("job", 1, "nope", false, Deadline(), missing.Callback());
  EXPECT_EQ(missing.value->status().code(), absl::StatusCode::kNotFound);

  EXPECT_EQ(*coord_.KeyAdd("job", 1, "n", 5), 5);
  EXPECT_EQ(*coord_.KeyAdd("job", 1, "n", -2), 3);
  EXPECT_EQ(coord_.KeyAdd("job", 1, "id", 1).status().code(), absl::StatusCode::kInvalidArgument);

  auto cas = coord_.KeyCompareSet("job", 1, "leader", nullptr, "a");
  EXPECT_TRUE(cas->swapped);
  cas = coord_.KeyCompareSet("job", 1, "leader", nullptr, "b");
  EXPECT_FALSE(cas->swapped);
  EXPECT_EQ(cas->value, "a");
  const std::string expected = "a";
  cas = coord_.KeyCompareSet("job", 1, "leader", &expected, "b");
  EXPECT_TRUE(cas->swapped);
  EXPECT_EQ(cas->value, "b");
}

TEST_F(RunningJobTest, Kv_WaitDeadline_Exceeded) {
  Got<absl::StatusOr<std::string>> get;
  coord_.KeyGet("job", 1, "k", true, Deadline(absl::Seconds(2)), get.Callback());
  clock_.Advance(absl::Seconds(2));
  Beat({"a", "b"});
  coord_.CheckDeadlines();
  ASSERT_TRUE(get.done());
  EXPECT_EQ(get.value->status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(RunningJobTest, KeyWait_AllKeysSet_AnsweredOnceTheLastIsSet) {
  Got<absl::Status> both;
  coord_.KeyWait("job", 1, {"a", "b"}, Deadline(), both.Callback());
  coord_.KeySet("job", 1, "a", "1", [](absl::Status) {});
  EXPECT_FALSE(both.done());
  coord_.KeySet("job", 1, "b", "2", [](absl::Status) {});
  ASSERT_TRUE(both.done());
  EXPECT_TRUE(both.value->ok());
  // Keys already set: at once.
  Got<absl::Status> now;
  coord_.KeyWait("job", 1, {"b", "a"}, Deadline(), now.Callback());
  ASSERT_TRUE(now.done());
  EXPECT_TRUE(now.value->ok());
}

TEST_F(RunningJobTest, KeyWait_Deadline_NamesTheMissingKeys) {
  Got<absl::Status> w;
  coord_.KeySet("job", 1, "here", "1", [](absl::Status) {});
  coord_.KeyWait("job", 1, {"here", "late"}, Deadline(absl::Seconds(2)), w.Callback());
  clock_.Advance(absl::Seconds(2));
  Beat({"a", "b"});
  coord_.CheckDeadlines();
  ASSERT_TRUE(w.done());
  EXPECT_EQ(w.value->code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(w.value->message(), HasSubstr("1 of 2 keys"));
  EXPECT_THAT(w.value->message(), HasSubstr("'late'"));
  EXPECT_THAT(w.value->message(), Not(HasSubstr("'here'")));
  // The expired wait is gone: setting the key later answers nobody twice.
  coord_.KeySet("job", 1, "late", "1", [](absl::Status) {});
}

TEST_F(RunningJobTest, KeyWait_GenerationEnds_Aborted) {
  Got<absl::Status> w;
  coord_.KeyWait("job", 1, {"never"}, Deadline(), w.Callback());
  ASSERT_TRUE(coord_.RegisterNode(Node("b", 2)).ok());  // b restarts: generation 1 ends
  ASSERT_TRUE(w.done());
  EXPECT_EQ(w.value->code(), absl::StatusCode::kAborted);
}

TEST_F(RunningJobTest, KeyCheckDeleteCount) {
  EXPECT_EQ(*coord_.KeyCount("job", 1), 0);
  EXPECT_FALSE(*coord_.KeyCheck("job", 1, {"x"}));
  coord_.KeySet("job", 1, "x", "1", [](absl::Status) {});
  coord_.KeySet("job", 1, "y", "", [](absl::Status) {});
  EXPECT_TRUE(*coord_.KeyCheck("job", 1, {"x", "y"}));
  EXPECT_FALSE(*coord_.KeyCheck("job", 1, {"x", "z"}));
  EXPECT_EQ(*coord_.KeyCount("job", 1), 2);
  EXPECT_TRUE(*coord_.KeyDelete("job", 1, "x"));
  EXPECT_FALSE(*coord_.KeyDelete("job", 1, "x"));
  EXPECT_EQ(*coord_.KeyCount("job", 1), 1);
  EXPECT_EQ(coord_.KeyCheck("job", 1, {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(coord_.KeyCheck("job", 1, std::vector<std::string>(1025, "k")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(coord_.KeyDelete("job", 1, "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(coord_.KeyCount("nope", 1).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(coord_.KeyCount("job", 2).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(RunningJobTest, KeyAdd_Overflow_OutOfRange) {
  EXPECT_EQ(*coord_.KeyAdd("job", 1, "n", std::numeric_limits<int64_t>::max()),
            std::numeric_limits<int64_t>::max());
  EXPECT_EQ(coord_.KeyAdd("job", 1, "n", 1).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(*coord_.KeyAdd("job", 1, "n", 0), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(*coord_.KeyAdd("job", 1, "m", std::numeric_limits<int64_t>::min()),
            std::numeric_limits<int64_t>::min());
  EXPECT_EQ(coord_.KeyAdd("job", 1, "m", -1).status().code(), absl::StatusCode::kOutOfRange);
}

TEST_F(RunningJobTest, KeyCompareSet_AbsentKey_SaysItIsAbsent) {
  const std::string expected = "e";
  auto cas = coord_.KeyCompareSet("job", 1, "k", &expected, "d");
  ASSERT_TRUE(cas.ok());
  EXPECT_FALSE(cas->swapped);
  EXPECT_FALSE(cas->present);
  cas = coord_.KeyCompareSet("job", 1, "k", nullptr, "d");
  EXPECT_TRUE(cas->swapped && cas->present);
  EXPECT_EQ(cas->value, "d");
}

TEST_F(RunningJobTest, Kv_BadKeysAndValues_InvalidArgument) {
  Got<absl::Status> s;
  coord_.KeySet("job", 1, "", "v", s.Callback());
  EXPECT_EQ(s.value->code(), absl::StatusCode::kInvalidArgument);
  coord_.KeySet("job", 1, std::string(2000, 'k'), "v", s.Callback());
  EXPECT_EQ(s.value->code(), absl::StatusCode::kInvalidArgument);
  coord_.KeySet("job", 1, "k", std::string(KvStore::kMaxValueBytes + 1, 'v'), s.Callback());
  EXPECT_EQ(s.value->code(), absl::StatusCode::kInvalidArgument);
  coord_.KeySet("nope", 1, "k", "v", s.Callback());
  EXPECT_EQ(s.value->code(), absl::StatusCode::kNotFound);
}

TEST_F(RunningJobTest, Barrier_CompletesAtCount_DuplicatesCountOnce) {
  Got<absl::Status> r0, r0_again, r1;
  coord_.Barrier("job", 1, "init", "rank0", 2, Deadline(), r0.Callback());
  coord_.Barrier("job", 1, "init", "rank0", 2, Deadline(), r0_again.Callback());
  EXPECT_FALSE(r0.done() || r0_again.done());
  coord_.Barrier("job", 1, "init", "rank1", 2, Deadline(), r1.Callback());
  EXPECT_TRUE(r0.value->ok() && r0_again.value->ok() && r1.value->ok());
  Got<absl::Status> late;
  coord_.Barrier("job", 1, "init", "rank9", 2, Deadline(), late.Callback());
  EXPECT_EQ(late.value->code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(RunningJobTest, Barrier_CountMismatchZeroAndDeadline) {
  Got<absl::Status> first, mismatch, zero;
  coord_.Barrier("job", 1, "b", "r0", 3, Deadline(absl::Seconds(1)), first.Callback());
  coord_.Barrier("job", 1, "b", "r1", 2, Deadline(), mismatch.Callback());
  EXPECT_EQ(mismatch.value->code(), absl::StatusCode::kInvalidArgument);
  coord_.Barrier("job", 1, "c", "r1", 0, Deadline(), zero.Callback());
  EXPECT_EQ(zero.value->code(), absl::StatusCode::kInvalidArgument);
  clock_.Advance(absl::Seconds(1));
  Beat({"a", "b"});
  coord_.CheckDeadlines();
  EXPECT_EQ(first.value->code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(first.value->message()), HasSubstr("1 of 3"));
}

// ---- Isolation, shutdown, locking ---------------------------------------------------------------

TEST_F(RunningJobTest, Jobs_AreIsolated) {
  Register("c");
  coord_.JoinJob(Join("other", "c", 1), Deadline(), [](auto) {});
  coord_.KeySet("job", 1, "k", "from job", [](auto) {});
  Got<absl::StatusOr<std::string>> get;
  coord_.KeyGet("other", 1, "k", false, Deadline(), get.Callback());
  EXPECT_EQ(get.value->status().code(), absl::StatusCode::kNotFound);
  // Losing a node of "other" does not touch "job".
  clock_.Advance(absl::Seconds(6));
  Beat({"a", "b"});
  coord_.CheckDeadlines();
  EXPECT_EQ(coord_.Job("job")->phase, JobPhase::kRunning);
  EXPECT_EQ(coord_.Job("job")->generation, 1u);
  EXPECT_EQ(coord_.Job("other")->phase, JobPhase::kJoining);
}

TEST_F(CoordinatorTest, Shutdown_CancelsWaitsAndRefusesWork) {
  Register("a");
  Got<absl::StatusOr<Assignment>> join;
  coord_.JoinJob(Join("job", "a", 2), Deadline(), join.Callback());
  coord_.Shutdown();
  EXPECT_EQ(join.value->status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(coord_.RegisterNode(Node("b")).status().code(), absl::StatusCode::kCancelled);
  coord_.Shutdown();  // idempotent
}

TEST_F(CoordinatorTest, Callbacks_RunOutsideTheLock) {
  Register("a");
  bool called = false;
  // Re-entering the coordinator from a completion would deadlock if it ran under the lock.
  coord_.JoinJob(Join("job", "a", 1), Deadline(), [&](absl::StatusOr<Assignment> a) {
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(coord_.Status().jobs_running, 1u);
    called = true;
  });
  EXPECT_TRUE(called);
}

TEST_F(RunningJobTest, IntrospectionAndEvents) {
  const StatusView s = coord_.Status();
  EXPECT_EQ(s.nodes_alive, 2u);
  EXPECT_EQ(s.jobs_running, 1u);
  EXPECT_EQ(s.counters.generations_started, 1u);
  EXPECT_EQ(s.counters.generations_ended, 0u);
  const std::vector<NodeView> nodes = coord_.Nodes();
  EXPECT_EQ(nodes[0].jobs, (std::vector<std::string>{"job"}));
  std::vector<std::string> kinds;
  for (const Event& e : events_) kinds.push_back(EventKindName(e.kind));
  EXPECT_EQ(kinds, (std::vector<std::string>{"node_registered", "node_registered", "job_created",
                                             "node_joined", "node_joined", "generation_started"}));
  EXPECT_EQ(events_[3].node, "a");
  EXPECT_EQ(events_[3].job, "job");
  EXPECT_EQ(events_[3].generation, 1u);
  EXPECT_EQ(events_.back().job, "job");
  EXPECT_EQ(events_.back().generation, 1u);
}

// Every transition carries its kind, job, node and generation; the start of a generation says how
// long the rendezvous took, its end says why.
TEST_F(CoordinatorTest, Events_RendezvousDurationAndEndReason) {
  Register("a");
  Register("b");
  // Each answer comes after the generation_started event (metrics show it once a node has its
  // rank).
  int answered_after_event = 0;
  auto answer = [&](auto) {
    if (!events_.empty() && events_.back().kind == EventKind::kGenerationStarted) {
      ++answered_after_event;
    }
  };
  coord_.JoinJob(Join("job", "a", 2), Deadline(), answer);
  clock_.Advance(absl::Milliseconds(1500));
  Beat({"a", "b"});
  coord_.JoinJob(Join("job", "b", 2), Deadline(), answer);
  EXPECT_EQ(answered_after_event, 2);
  ASSERT_EQ(events_.back().kind, EventKind::kGenerationStarted);
  EXPECT_EQ(events_.back().rendezvous, absl::Milliseconds(1500));
  EXPECT_THAT(events_.back().what, HasSubstr("rendezvous 1.5s"));
  clock_.Advance(absl::Seconds(6));
  Beat({"a"});
  coord_.CheckDeadlines();  // b lost
  const Event& lost = events_[events_.size() - 2];
  EXPECT_EQ(lost.kind, EventKind::kNodeLost);
  EXPECT_EQ(lost.node, "b");
  const Event& ended = events_.back();
  EXPECT_EQ(ended.kind, EventKind::kGenerationEnded);
  EXPECT_EQ(ended.reason, EndReason::kNodeLost);
  EXPECT_EQ(ended.job, "job");
  EXPECT_EQ(ended.node, "b");
  EXPECT_EQ(ended.generation, 1u);
  const StatusView s = coord_.Status();
  EXPECT_EQ(s.counters.generations_ended, 1u);
  EXPECT_EQ(s.nodes_dead, 1u);
  // A new round: a waits for b (its join is held).
  coord_.JoinJob(Join("job", "a", 2), Deadline(), [](auto) {});
  EXPECT_EQ(coord_.Status().waiting.join, 1u);
  EXPECT_EQ(coord_.Status().waiters, 1u);
}

}  // namespace
}  // namespace meshd::coordinator

namespace meshd::coordinator {
namespace {

// ---- NCCL id exchange ---------------------------------------------------------------------------

// Job "job" running with nodes a (ranks 0,1) and b (ranks 2,3); mesh "mesh" is dp=2 x tp=2:
// tp groups {0,1} (led by 0) and {2,3} (led by 2), dp groups {0,2} (led by 0) and {1,3} (led by 1).
// Groups are keyed by what they are: "<root key>/<dim layout>/<index>".
class ResolveGroupsTest : public RunningJobTest {
 protected:
  static constexpr char kA[] = "identity(4)|[(2):(2), (2):(1)]|dp,tp";
  static constexpr char kB[] = "identity(4)|[(4):(1)]|dp";
  static constexpr char kTp0[] = "mesh/(2):(1)/0";
  static constexpr char kTp1[] = "mesh/(2):(1)/1";
  static constexpr char kDp0[] = "mesh/(2):(2)/0";
  static constexpr char kDp1[] = "mesh/(2):(2)/1";
  static constexpr char kWorld[] = "world/0";
  static std::string Id(char c) { return std::string(domain::kIdBytes, c); }
  static std::vector<RankSpec> Specs(std::vector<uint32_t> ranks, const std::string& fp = kA) {
    std::vector<RankSpec> out;
    const std::string desc = fp == kA ? "DeviceMesh(A)" : fp == kB ? "DeviceMesh(B)" : fp;
    for (uint32_t r : ranks) out.push_back(RankSpec{r, fp, desc});
    return out;
  }
  using Result = Got<absl::StatusOr<std::vector<SharedGroupIds>>>;
  void Resolve(const std::string& node, std::vector<RankSpec> specs,
               std::vector<GroupRequest> groups, Result& got,
               absl::Duration timeout = absl::Seconds(30),
               absl::Duration partial_after = absl::ZeroDuration()) {
    coord_.ResolveGroups("job", 1, node, "mesh", specs, groups, Deadline(timeout), partial_after,
                         got.Callback());
  }
};

TEST_F(ResolveGroupsTest, IdsRelayed_SharedRecordPerGroup) {
  Result a, b;
  Resolve("a", Specs({0, 1}),
          {{kTp0, 1, {{0, Id('t')}}}, {kDp0, 1, {{0, Id('d')}}}, {kDp1, 1, {{0, Id('e')}}}}, a);
  Resolve("b", Specs({2, 3}), {{kTp1, 1, {{0, Id('u')}}}, {kDp0, 1, {}}, {kDp1, 1, {}}}, b);
  ASSERT_TRUE(a.done() && b.done());
  ASSERT_TRUE(a.value->ok() && b.value->ok()) << a.value->status() << b.value->status();
  const std::vector<SharedGroupIds>& got_b = **b.value;
  ASSERT_EQ(got_b.size(), 3u);
  EXPECT_EQ(got_b[0]->key, kTp1);
  EXPECT_EQ(got_b[0]->ids[0], Id('u'));
  EXPECT_EQ(got_b[1]->ids[0], Id('d'));  // minted on node a, relayed to node b
  EXPECT_EQ((**a.value)[1]->ids[0], Id('d'));
  EXPECT_EQ((**a.value)[1], got_b[1]);  // one shared record for both answers
  const Counters c = coord_.Status().counters;
  EXPECT_EQ(c.groups_answered, 2u);
  EXPECT_EQ(c.ids_relayed, 6u);  // 3 groups' ids to each of 2 nodes
}

// A node is answered as soon as every group it asked for has its ids: a node that has not asked
// delays only the groups whose ids it mints, not the others, nor anyone else's.
TEST_F(ResolveGroupsTest, AnsweredPerGroup_LateNodeDelaysOnlyItsGroups) {
  Result a_tp, b_dp;
  Resolve("a", Specs({0, 1}), {{kTp0, 1, {{0, Id('t')}}}}, a_tp);
  ASSERT_TRUE(a_tp.done());  // b has not asked for anything: no matter, tp/0 is a's alone
  ASSERT_TRUE(a_tp.value->ok()) << a_tp.value->status();
  EXPECT_EQ((**a_tp.value)[0]->ids[0], Id('t'));
  Resolve("b", Specs({2, 3}), {{kTp1, 1, {{0, Id('u')}}}, {kDp0, 1, {}}}, b_dp);
  EXPECT_FALSE(b_dp.done());  // dp/0's id is rank 0's to mint, and a has not asked for it
  Result a_dp;
  Resolve("a", Specs({0, 1}), {{kDp0, 1, {{0, Id('d')}}}}, a_dp);
  ASSERT_TRUE(a_dp.done() && b_dp.done());
  ASSERT_TRUE(b_dp.value->ok()) << b_dp.value->status();
  EXPECT_EQ((**b_dp.value)[1]->ids[0], Id('d'));
}

// A request that allows a partial answer gets, once held that long, the groups that have their
// ids (the others named, with none) so that the node's workers whose groups are complete go on;
// it asks again for the rest. Before that time, and without the option, it is answered whole.
TEST_F(ResolveGroupsTest, PartialAnswer_AfterItsTime_CompleteGroupsWithIdsOthersNamed) {
  const absl::Duration after = absl::Milliseconds(250);
  Result b, whole;
  // b's tp/1 is its own; dp/0 and dp/1 are minted by a, which is late.
  Resolve("b", Specs({2, 3}), {{kTp1, 1, {{0, Id('u')}}}, {kDp0, 1, {}}, {kDp1, 1, {}}}, b,
          absl::Seconds(30), after);
  Resolve("b", Specs({2, 3}), {{kTp1, 1, {}}, {kDp1, 1, {}}}, whole);
  clock_.Advance(absl::Milliseconds(249));
  coord_.CheckDeadlines();
  EXPECT_FALSE(b.done());
  clock_.Advance(absl::Milliseconds(1));
  coord_.CheckDeadlines();
  ASSERT_TRUE(b.done());
  ASSERT_TRUE(b.value->ok()) << b.value->status();
  const std::vector<SharedGroupIds>& got = **b.value;
  ASSERT_EQ(got.size(), 3u);  // as asked, in order
  EXPECT_EQ(got[0]->key, kTp1);
  EXPECT_THAT(got[0]->ids, ElementsAre(Id('u')));
  EXPECT_EQ(got[1]->key, kDp0);
  EXPECT_THAT(got[1]->ids, IsEmpty());
  EXPECT_EQ(got[2]->key, kDp1);
  EXPECT_THAT(got[2]->ids, IsEmpty());
  EXPECT_FALSE(whole.done());  // no partial answer without asking for one
  EXPECT_EQ(coord_.Status().counters.partial_answers, 1u);
  // b asks again for the rest: answered whole once a minted them.
  Result again, a;
  Resolve("b", Specs({2, 3}), {{kDp0, 1, {}}, {kDp1, 1, {}}}, again, absl::Seconds(30), after);
  Resolve("a", Specs({0, 1}), {{kDp0, 1, {{0, Id('d')}}}, {kDp1, 1, {{0, Id('e')}}}}, a);
  ASSERT_TRUE(again.done() && whole.done() && a.done());
  ASSERT_TRUE(again.value->ok()) << again.value->status();
  EXPECT_THAT((**again.value)[0]->ids, ElementsAre(Id('d')));
  EXPECT_THAT((**again.value)[1]->ids, ElementsAre(Id('e')));
  ASSERT_TRUE(whole.value->ok()) << whole.value->status();
  EXPECT_THAT((**whole.value)[1]->ids, ElementsAre(Id('e')));
  EXPECT_EQ(coord_.Status().counters.partial_answers, 1u);
}

// A partial answer waits for the exchange to go quiet — no id minted for a quarter of
// partial_after — so that it answers what waits for ranks that have not asked, not what the next
// reports would complete: a request with nothing to hand on waits for its first group, then for
// the quiet after it.
TEST_F(ResolveGroupsTest, PartialAnswer_WaitsForTheExchangeToGoQuiet) {
  const absl::Duration after = absl::Seconds(1);
  Result b;
  Resolve("b", Specs({2, 3}), {{kDp0, 1, {}}, {kDp1, 1, {}}}, b, absl::Seconds(30), after);
  clock_.Advance(absl::Seconds(2));
  coord_.CheckDeadlines();
  EXPECT_FALSE(b.done());  // nothing to hand on yet
  Result a;
  Resolve("a", Specs({0, 1}), {{kDp1, 1, {{0, Id('e')}}}}, a);  // a mints dp/1 only
  EXPECT_FALSE(b.done());  // a mint just came: others may follow
  clock_.Advance(absl::Milliseconds(150));
  Result a_tp;
  Resolve("a", Specs({0, 1}), {{kTp0, 1, {{0, Id('t')}}}}, a_tp);  // another mint, not b's
  clock_.Advance(absl::Milliseconds(150));
  coord_.CheckDeadlines();
  EXPECT_FALSE(b.done());  // 150 ms of quiet
  clock_.Advance(absl::Milliseconds(100));
  coord_.CheckDeadlines();
  ASSERT_TRUE(b.done());
  ASSERT_TRUE(b.value->ok()) << b.value->status();
  EXPECT_THAT((**b.value)[0]->ids, IsEmpty());
  EXPECT_THAT((**b.value)[1]->ids, ElementsAre(Id('e')));

  Result late;
  Resolve("b", Specs({2, 3}), {{kDp0, 1, {}}}, late, absl::Seconds(2), after);
  clock_.Advance(absl::Seconds(2));
  coord_.CheckDeadlines();
  ASSERT_TRUE(late.done());
  EXPECT_EQ(late.value->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(late.value->status().message(), HasSubstr("minted by rank 0"));
}

// A request overdue for a partial answer whose groups one report completes together is answered
// whole (and counted so).
TEST_F(ResolveGroupsTest, PartialAnswerDue_AllGroupsCompleteTogether_AnsweredWhole) {
  Result b, a;
  Resolve("b", Specs({2, 3}), {{kDp0, 1, {}}, {kDp1, 1, {}}}, b, absl::Seconds(30),
          absl::Milliseconds(250));
  clock_.Advance(absl::Seconds(5));
  coord_.CheckDeadlines();
  Resolve("a", Specs({0, 1}), {{kDp0, 1, {{0, Id('d')}}}, {kDp1, 1, {{0, Id('e')}}}}, a);
  ASSERT_TRUE(b.done());
  ASSERT_TRUE(b.value->ok()) << b.value->status();
  EXPECT_THAT((**b.value)[0]->ids, ElementsAre(Id('d')));
  EXPECT_THAT((**b.value)[1]->ids, ElementsAre(Id('e')));
  EXPECT_EQ(coord_.Status().counters.partial_answers, 0u);
  EXPECT_EQ(coord_.Status().counters.groups_answered, 2u);
}

// Any view of the root asks under the same key for the same group: a flattened dp_tp (layout
// (4):(1), every rank) is one group led by rank 0, whoever flattened it.
TEST_F(ResolveGroupsTest, ViewsOfTheRoot_KeysByLayout_OthersRefused) {
  Result a, b;
  Resolve("b", Specs({2, 3}), {{"mesh/(4):(1)/0", 1, {}}}, b);
  Resolve("a", Specs({0, 1}), {{"mesh/(4):(1)/0", 1, {{0, Id('f')}}}}, a);
  ASSERT_TRUE(a.done() && b.done());
  ASSERT_TRUE(b.value->ok()) << b.value->status();
  EXPECT_EQ((**b.value)[0]->ids[0], Id('f'));
  for (const char* key : {"mesh/(3):(1)/0", "mesh/(2,2):(2,1)/0", "mesh/(2):(1)/2",
                          "mesh/(2):(1)/01", "other/(2):(1)/0", "mesh/dp/0", "mesh/world/0"}) {
    SCOPED_TRACE(key);
    Result r;
    Resolve("a", Specs({0, 1}), {{key, 1, {}}}, r);
    ASSERT_TRUE(r.done());
    EXPECT_EQ(r.value->status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(r.value->status().message(), HasSubstr("names no group"));
  }
}

// One job's ids are served only to its members, and a member reports only its own ranks: a node
// that is not in the generation learns nothing and changes nothing; a member claiming another's
// rank (to plant its own id in that rank's groups) is refused, and the real exchange goes on.
TEST_F(ResolveGroupsTest, NonMember_PermissionDenied_LearnsNothing) {
  Result mallory, a, b;
  Resolve("mallory", Specs({0, 1}), {{kDp0, 1, {{0, Id('m')}}}}, mallory);
  ASSERT_TRUE(mallory.done());
  EXPECT_EQ(mallory.value->status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(mallory.value->status().message(), HasSubstr("not a member"));
  EXPECT_THAT(mallory.value->status().message(), Not(HasSubstr("'a'")));
  Resolve("a", Specs({0, 1}), {{kDp0, 1, {{0, Id('t')}}}}, a);
  Resolve("b", Specs({2, 3}), {{kDp0, 1, {}}}, b);
  ASSERT_TRUE(a.done() && b.done());
  ASSERT_TRUE(b.value->ok()) << b.value->status();
  EXPECT_EQ((**b.value)[0]->ids[0], Id('t'));
}

// A node asks only for groups its ranks are in, and mints only the chunks its ranks lead.
TEST_F(ResolveGroupsTest, GroupOfOthersOrIdOfAnotherLeader_PermissionDenied) {
  Result theirs, forged;
  Resolve("a", Specs({0, 1}), {{kTp1, 1, {}}}, theirs);
  EXPECT_EQ(theirs.value->status().code(), absl::StatusCode::kPermissionDenied);
  Resolve("b", Specs({2, 3}), {{kDp0, 1, {{0, Id('f')}}}}, forged);
  EXPECT_EQ(forged.value->status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(forged.value->status().message(), HasSubstr("which rank 0 leads"));
}

// One node's report is bounded in ranks and groups before the coordinator's lock is taken (a
// report's checks under it are linear in both): past either limit it is refused whole, and the
// exchange goes on as if it had never come.
TEST_F(ResolveGroupsTest, PastRankOrGroupLimit_InvalidArgument_NothingRecorded) {
  Result groups, ranks, a, b;
  std::vector<GroupRequest> many(domain::kMaxGroupsPerRequest + 1, GroupRequest{kDp0, 1});
  many[0].minted = {{0, Id('m')}};
  Resolve("a", Specs({0, 1}), std::move(many), groups);
  ASSERT_TRUE(groups.done());
  EXPECT_EQ(groups.value->status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(groups.value->status().message(), HasSubstr("at most 1024 ranks and 65536 groups"));
  std::vector<RankSpec> specs = Specs({0, 1});
  specs.resize(domain::kMaxRanksPerRequest + 1, specs[0]);
  Resolve("a", specs, {{kDp0, 1, {{0, Id('m')}}}}, ranks);
  ASSERT_TRUE(ranks.done());
  EXPECT_EQ(ranks.value->status().code(), absl::StatusCode::kInvalidArgument);
  Resolve("a", Specs({0, 1}), {{kDp0, 1, {{0, Id('t')}}}}, a);
  Resolve("b", Specs({2, 3}), {{kDp0, 1, {}}}, b);
  ASSERT_TRUE(a.done() && b.done());
  ASSERT_TRUE(b.value->ok()) << b.value->status();
  EXPECT_EQ((**b.value)[0]->ids[0], Id('t'));
}

TEST_F(ResolveGroupsTest, MemberReportingAnotherNodesRank_PermissionDenied_IdNotPlanted) {
  Result forged, a, b;
  Resolve("b", Specs({0}), {{kDp0, 1, {{0, Id('f')}}}}, forged);
  ASSERT_TRUE(forged.done());
  EXPECT_EQ(forged.value->status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(forged.value->status().message(), HasSubstr("holds ranks 2-3"));
  Resolve("a", Specs({0, 1}), {{kDp0, 1, {{0, Id('t')}}}}, a);
  Resolve("b", Specs({2, 3}), {{kDp0, 1, {}}}, b);
  ASSERT_TRUE(a.done() && b.done());
  ASSERT_TRUE(a.value->ok()) << a.value->status();
  EXPECT_EQ((**a.value)[0]->ids[0], Id('t'));
}

// A spec check alone (no groups) waits for every rank of the mesh, so a mismatch reaches every
// rank as FAILED_PRECONDITION, naming both specs and who asked for which; the generation goes on.
TEST_F(ResolveGroupsTest, SpecCheckMismatch_EveryRankToldBothSpecsAndWho) {
  Result a, b;
  Resolve("a", Specs({0, 1}, kA), {}, a);
  EXPECT_FALSE(a.done());
  Resolve("b", Specs({2, 3}, kB), {}, b);
  ASSERT_TRUE(a.done() && b.done());
  for (Result* r : {&a, &b}) {
    EXPECT_EQ(r->value->status().code(), absl::StatusCode::kFailedPrecondition);
    const std::string msg(r->value->status().message());
    EXPECT_THAT(msg, HasSubstr("ranks 0-1 asked for DeviceMesh(A)"));
    EXPECT_THAT(msg, HasSubstr("ranks 2-3 asked for DeviceMesh(B)"));
  }
  // Later askers of the same mesh get the same error at once.
  Result late;
  Resolve("a", Specs({0}), {}, late);
  EXPECT_EQ(late.value->status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(coord_.Job("job")->phase, JobPhase::kRunning);
}

// With ids, ranks are answered without waiting for the others' specs: a rank that then asks for
// another mesh under the same key is refused FAILED_PRECONDITION at once, and the generation ends
// (MESH_MISMATCH, the same message) so that the ranks already answered learn it too.
TEST_F(ResolveGroupsTest, MismatchAfterRanksWereAnswered_GenerationEnds) {
  Got<GenerationEnd> end;
  ASSERT_TRUE(coord_.WatchJob("job", 1, [&](GenerationEnd e) { end.value = std::move(e); }).ok());
  Result a, b;
  Resolve("a", Specs({0, 1}, kA), {{kTp0, 1, {{0, Id('t')}}}}, a);
  ASSERT_TRUE(a.done());
  ASSERT_TRUE(a.value->ok()) << a.value->status();
  Resolve("b", Specs({2, 3}, kB), {{"mesh/(4):(1)/0", 1, {}}}, b);
  ASSERT_TRUE(b.done());
  EXPECT_EQ(b.value->status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(b.value->status().message(), HasSubstr("ranks 2-3 asked for DeviceMesh(B)"));
  ASSERT_TRUE(end.done());
  EXPECT_EQ(end.value->reason, EndReason::kMeshMismatch);
  EXPECT_EQ(end.value->node, "b");
  EXPECT_THAT(end.value->message, HasSubstr("ranks 0-1 asked for DeviceMesh(A)"));
  EXPECT_THAT(end.value->message, HasSubstr("ranks 2-3 asked for DeviceMesh(B)"));
}

// A report is checked whole before anything of it is recorded: a key twice (with other id counts,
// to size a group one way and write it another), a chunk twice, or more ids than a request may
// ask for are refused, and the leader's own report then goes through.
TEST_F(ResolveGroupsTest, RepeatedKeyOrChunk_TooManyIds_InvalidArgument_NothingPlanted) {
  Result twice, chunk_twice, many, a, b;
  Resolve("a", Specs({0, 1}), {{kWorld, 1, {}}, {kWorld, 4, {{1, Id('x')}}}}, twice);
  EXPECT_EQ(twice.value->status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(twice.value->status().message(), HasSubstr("twice in one request"));
  Resolve("a", Specs({0, 1}), {{kWorld, 2, {{0, Id('x')}, {0, Id('y')}}}}, chunk_twice);
  EXPECT_EQ(chunk_twice.value->status().code(), absl::StatusCode::kInvalidArgument);
  std::vector<GroupRequest> lots;
  for (int i = 0; i < 65; ++i) lots.push_back({absl::StrCat("k", i), 4096, {}});
  Resolve("a", Specs({0, 1}), std::move(lots), many);
  EXPECT_EQ(many.value->status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(many.value->status().message(), HasSubstr("ids in all"));
  Resolve("b", Specs({2, 3}), {{kWorld, 2, {{1, Id('1')}}}}, b);
  Resolve("a", Specs({0, 1}), {{kWorld, 2, {{0, Id('0')}}}}, a);
  ASSERT_TRUE(a.done() && b.done());
  ASSERT_TRUE(b.value->ok()) << b.value->status();
  EXPECT_EQ((**b.value)[0]->ids, (std::vector<std::string>{Id('0'), Id('1')}));
}

// A report refused by the rules answers nobody: a later mismatch under the same key does not end
// the generation (no rank of the mesh went on).
TEST_F(ResolveGroupsTest, RefusedReportThenMismatch_GenerationGoesOn) {
  Result refused, other;
  Resolve("a", Specs({0, 1}, kA), {{kTp1, 1, {}}}, refused);  // not a's group
  EXPECT_EQ(refused.value->status().code(), absl::StatusCode::kPermissionDenied);
  Resolve("b", Specs({2, 3}, kB), {{"mesh/(4):(1)/0", 1, {}}}, other);
  EXPECT_EQ(other.value->status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(coord_.Job("job")->phase, JobPhase::kRunning);
  EXPECT_EQ(coord_.Job("job")->generation, 1u);
}

TEST_F(ResolveGroupsTest, SpecCheckMissingRanks_DeadlineNamesThem) {
  Result a;
  Resolve("a", Specs({0, 1}), {}, a, absl::Seconds(2));
  clock_.Advance(absl::Seconds(2));
  Beat({"a", "b"});
  coord_.CheckDeadlines();
  ASSERT_TRUE(a.done());
  EXPECT_EQ(a.value->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(a.value->status().message()), HasSubstr("missing ranks 2-3"));
}

TEST_F(ResolveGroupsTest, LeaderNeverAsked_DeadlineNamesGroupAndLeader) {
  Result b;
  Resolve("b", Specs({2, 3}), {{kTp1, 1, {{0, Id('u')}}}, {kDp1, 1, {}}}, b, absl::Seconds(2));
  EXPECT_FALSE(b.done());
  clock_.Advance(absl::Seconds(2));
  Beat({"a", "b"});
  coord_.CheckDeadlines();
  ASSERT_TRUE(b.done());
  EXPECT_EQ(b.value->status().code(), absl::StatusCode::kDeadlineExceeded);
  const std::string msg(b.value->status().message());
  EXPECT_THAT(msg, HasSubstr("1 of 2 groups"));
  EXPECT_THAT(msg, HasSubstr("'mesh/(2):(2)/1' (minted by rank 1)"));
}

TEST_F(ResolveGroupsTest, LeaderCouldNotMint_MembersToldWhyAtOnce) {
  Result a, b;
  GroupRequest failed{kDp0, 1, {}, "rank 0: cannot load NCCL (libnccl.so.2)"};
  Resolve("a", Specs({0, 1}), {failed}, a);
  Resolve("b", Specs({2, 3}), {{kDp0, 1, {}}}, b);
  ASSERT_TRUE(a.done() && b.done());
  for (Result* r : {&a, &b}) {
    EXPECT_EQ(r->value->status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(std::string(r->value->status().message()), HasSubstr("cannot load NCCL"));
  }
}

TEST_F(ResolveGroupsTest, ScalableGroup_OneIdPerChunk) {
  Result a, b;
  // The world group of 4 ranks in 2 chunks: led by ranks 0 (node a) and 2 (node b).
  Resolve("a", Specs({0, 1}), {{kWorld, 2, {{0, Id('0')}}}}, a);
  EXPECT_FALSE(a.done());
  Resolve("b", Specs({2, 3}), {{kWorld, 2, {{1, Id('1')}}}}, b);
  ASSERT_TRUE(a.done() && a.value->ok());
  EXPECT_EQ((**a.value)[0]->ids, (std::vector<std::string>{Id('0'), Id('1')}));
}

TEST_F(ResolveGroupsTest, BadRequests_InvalidArgument) {
  Result r;
  Resolve("a", Specs({9}), {}, r);
  EXPECT_EQ(r.value->status().code(), absl::StatusCode::kInvalidArgument);
  Resolve("a", Specs({0}), {{kDp0, 1, {{0, "short"}}}}, r);
  EXPECT_EQ(r.value->status().code(), absl::StatusCode::kInvalidArgument);
  Resolve("a", Specs({0}), {{kDp0, 0, {}}}, r);
  EXPECT_EQ(r.value->status().code(), absl::StatusCode::kInvalidArgument);
  Resolve("a", {}, {}, r);
  EXPECT_EQ(r.value->status().code(), absl::StatusCode::kInvalidArgument);
  // A report rejected at its second group records nothing of its first.
  Resolve("a", Specs({0}), {{kWorld, 1, {{0, Id('k')}}}, {kDp0, 1, {{0, "short"}}}}, r);
  EXPECT_EQ(r.value->status().code(), absl::StatusCode::kInvalidArgument);
  // Had it recorded "world/0" with 1 id, this would be rejected ("asked with 3 ids after 1"); it
  // waits.
  Result other_size;
  Resolve("b", Specs({2}), {{kWorld, 3, {}}}, other_size);
  EXPECT_FALSE(other_size.done());
  coord_.Shutdown();  // fails the waiter while it is alive
  EXPECT_EQ(other_size.value->status().code(), absl::StatusCode::kCancelled);
}

// A chunk is minted once: its leader's node sending another id for it is refused; any other node
// minting it is refused for not holding the leader.
TEST_F(ResolveGroupsTest, ConflictingMints_InvalidArgument) {
  Result r;
  Resolve("a", Specs({0}), {{kDp0, 1, {{0, Id('x')}}}}, r);
  ASSERT_TRUE(r.done() && r.value->ok());  // a group of ids known is answered at once
  Result twice, other;
  Resolve("a", Specs({0}), {{kDp0, 1, {{0, Id('y')}}}}, twice);
  EXPECT_EQ(twice.value->status().code(), absl::StatusCode::kInvalidArgument);
  Resolve("b", Specs({2}), {{kDp0, 1, {{0, Id('y')}}}}, other);
  EXPECT_EQ(other.value->status().code(), absl::StatusCode::kPermissionDenied);
}

TEST_F(ResolveGroupsTest, GenerationEnd_AbortsWaiters_StaleGenerationAborted) {
  Result a;
  Resolve("a", Specs({0, 1}), {{kWorld, 1, {{0, Id('x')}}}, {kDp0, 1, {}}}, a);
  EXPECT_FALSE(a.done());  // the world's id is known, dp/0's not (rank 0 did not mint it)
  ASSERT_TRUE(coord_.RegisterNode(Node("b", 2)).ok());
  ASSERT_TRUE(a.done());
  EXPECT_EQ(a.value->status().code(), absl::StatusCode::kAborted);
  Result late;
  Resolve("a", Specs({0, 1}), {}, late);
  EXPECT_EQ(late.value->status().code(), absl::StatusCode::kAborted);
}

}  // namespace
}  // namespace meshd::coordinator
