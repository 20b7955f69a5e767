// A restarted coordinator rebuilds running jobs from what the agents report when they register
// again (RunningJob): on a fake clock, a fresh Coordinator stands for the restarted one.
#include <optional>

#include "daemon/coordinator/coordinator.h"
#include "daemon/security/membership_key.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/fake_clock.h"

namespace meshd::coordinator {
namespace {

using ::testing::HasSubstr;

class JobRecoveryTest : public ::testing::Test {
 protected:
  JobRecoveryTest()
      : coord_(&clock_, Options(), [this](const Event& e) { events_.push_back(e); }) {}
  static CoordinatorOptions Options() {
    CoordinatorOptions o;
    o.heartbeat_interval = absl::Seconds(1);
    o.heartbeat_timeout = absl::Seconds(5);
    o.recovery_window = absl::Seconds(10);
    return o;
  }
  static NodeInventory Node(const std::string& name, uint64_t incarnation = 1) {
    NodeInventory inv{name, "host-" + name, "unix:/run/" + name, incarnation, {}};
    inv.gpus.push_back(Gpu{0, "GPU-" + name, "", "sim", 0, "", true});
    return inv;
  }
  // What node `node_rank` of a 3-node generation 4 of "train" reports.
  static RunningJob Train(uint32_t node_rank, uint32_t num_nodes = 3, uint64_t generation = 4) {
    return RunningJob{"train", generation, node_rank, num_nodes, 2, NodeCount{3, 3}};
  }
  absl::Status Report(const std::string& node, std::vector<RunningJob> running,
                      uint64_t incarnation = 1) {
    return coord_.RegisterNode(Node(node, incarnation), running).status();
  }
  JobView Job() { return *coord_.Job("train"); }
  bool Saw(EventKind kind) const {
    for (const Event& e : events_) {
      if (e.kind == kind) return true;
    }
    return false;
  }

  FakeClock clock_;
  std::vector<Event> events_;
  Coordinator coord_;
};

TEST_F(JobRecoveryTest, EveryNodeReports_RunningAgainWithTheSameGenerationAndRanks) {
  ASSERT_TRUE(Report("c", {Train(2)}).ok());
  EXPECT_EQ(Job().phase, JobPhase::kRecovering);
  EXPECT_TRUE(Saw(EventKind::kJobRecovering));
  std::optional<GenerationEnd> ended;
  // Watches of the reported generation are armed while it recovers (the workers keep watching).
  ASSERT_TRUE(coord_.WatchJob("train", 4, [&](const GenerationEnd& e) { ended = e; }).ok());
  ASSERT_TRUE(Report("a", {Train(0)}).ok());
  ASSERT_TRUE(Report("b", {Train(1)}).ok());

  const JobView j = Job();
  EXPECT_EQ(j.phase, JobPhase::kRunning);
  EXPECT_EQ(j.generation, 4u);
  EXPECT_EQ(j.world_size, 6u);
  ASSERT_EQ(j.members.size(), 3u);
  EXPECT_EQ(j.members[0].node, "a");
  EXPECT_EQ(j.members[2].node, "c");
  EXPECT_EQ(j.members[2].node_rank, 2u);
  EXPECT_EQ(j.members[2].hostname, "host-c");
  EXPECT_TRUE(Saw(EventKind::kGenerationRecovered));
  EXPECT_FALSE(ended.has_value());

  // It is a running generation like any other: its KV works, and a lost node ends it.
  std::optional<absl::Status> set;
  coord_.KeySet("train", 4, "k", "v", [&](absl::Status s) { set = s; });
  ASSERT_TRUE(set.has_value());
  EXPECT_TRUE(set->ok()) << *set;
  clock_.Advance(absl::Seconds(4));
  ASSERT_TRUE(coord_.Heartbeat("a", 1).ok());
  ASSERT_TRUE(coord_.Heartbeat("b", 1).ok());
  clock_.Advance(absl::Seconds(2));
  coord_.CheckDeadlines();
  ASSERT_TRUE(ended.has_value());
  EXPECT_EQ(ended->reason, EndReason::kNodeLost);
  EXPECT_EQ(ended->node, "c");
}

// The recovered generation's store starts empty: a key set before the restart is gone, and every
// "not set" answer says why; the next generation's store is whole again.
TEST_F(JobRecoveryTest, Recovered_KeysNotSetSayTheRestartLostThem) {
  ASSERT_TRUE(Report("a", {Train(0)}).ok());
  ASSERT_TRUE(Report("b", {Train(1)}).ok());
  ASSERT_TRUE(Report("c", {Train(2)}).ok());
  ASSERT_EQ(Job().phase, JobPhase::kRunning);
  std::optional<absl::StatusOr<std::string>> lost, waited;
  coord_.KeyGet("train", 4, "before", false, absl::InfiniteFuture(),
                [&](absl::StatusOr<std::string> r) { lost = std::move(r); });
  ASSERT_TRUE(lost.has_value());
  EXPECT_EQ(lost->status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(lost->status().message()),
              HasSubstr("the coordinator restarted during this generation"));
  coord_.KeyGet("train", 4, "before", true, clock_.Now() + absl::Seconds(1),
                [&](absl::StatusOr<std::string> r) { waited = std::move(r); });
  clock_.Advance(absl::Seconds(1));
  coord_.CheckDeadlines();
  ASSERT_TRUE(waited.has_value());
  EXPECT_EQ(waited->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(waited->status().message()), HasSubstr("keys set before the restart"));
}

TEST_F(JobRecoveryTest, WhileRecovering_CallsOfTheGenerationAreUnavailable) {
  ASSERT_TRUE(Report("a", {Train(0)}).ok());
  std::optional<absl::Status> set;
  coord_.KeySet("train", 4, "k", "v", [&](absl::Status s) { set = s; });
  ASSERT_TRUE(set.has_value());
  EXPECT_EQ(set->code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(set->message(), HasSubstr("1 of 3 nodes"));
  std::optional<absl::StatusOr<Assignment>> joined;
  coord_.JoinJob(JoinRequest{"train", "a", 1, 2, NodeCount{3, 3}}, clock_.Now() + absl::Seconds(5),
                 [&](absl::StatusOr<Assignment> a) { joined = std::move(a); });
  ASSERT_TRUE(joined.has_value());
  EXPECT_EQ(joined->status().code(), absl::StatusCode::kUnavailable);
}

// Found by tests/fuzz/coordinator_fuzz.cc: while the job recovered, its view listed the node as a
// member but the node's own view (meshctl nodes) listed no job.
TEST_F(JobRecoveryTest, WhileRecovering_ReportedNodesListTheJob) {
  ASSERT_TRUE(Report("a", {Train(0)}).ok());
  ASSERT_TRUE(Report("b", {}).ok());
  ASSERT_EQ(Job().phase, JobPhase::kRecovering);
  for (const NodeView& n : coord_.Nodes()) {
    if (n.inventory.node == "a") {
      EXPECT_THAT(n.jobs, ::testing::ElementsAre("train"));
    } else {
      EXPECT_THAT(n.jobs, ::testing::IsEmpty()) << n.inventory.node;
    }
  }
}

TEST_F(JobRecoveryTest, ARankMissingAtTheWindow_GenerationEndsAndTheJobReforms) {
  ASSERT_TRUE(Report("a", {Train(0)}).ok());
  ASSERT_TRUE(Report("b", {Train(1)}).ok());
  std::optional<GenerationEnd> ended;
  ASSERT_TRUE(coord_.WatchJob("train", 4, [&](const GenerationEnd& e) { ended = e; }).ok());
  for (int s = 0; s < 9; ++s) {
    clock_.Advance(absl::Seconds(1));
    ASSERT_TRUE(coord_.Heartbeat("a", 1).ok());
    ASSERT_TRUE(coord_.Heartbeat("b", 1).ok());
    coord_.CheckDeadlines();
  }
  EXPECT_FALSE(ended.has_value());
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(coord_.Heartbeat("a", 1).ok());
  ASSERT_TRUE(coord_.Heartbeat("b", 1).ok());
  coord_.CheckDeadlines();
  ASSERT_TRUE(ended.has_value());
  EXPECT_EQ(ended->generation, 4u);
  EXPECT_EQ(ended->reason, EndReason::kNodeLost);
  EXPECT_THAT(ended->message, HasSubstr("node ranks 2 of 3 did not report generation 4"));
  const JobView j = Job();
  EXPECT_EQ(j.phase, JobPhase::kJoining);
  EXPECT_EQ(j.generation, 5u);
  EXPECT_THAT(j.missing, ::testing::ElementsAre("a", "b"));  // expected at the next round
}

TEST_F(JobRecoveryTest, AReportedNodeLostMeanwhile_EndsTheGenerationNamingIt) {
  ASSERT_TRUE(Report("a", {Train(0)}).ok());
  ASSERT_TRUE(Report("b", {Train(1)}).ok());
  std::optional<GenerationEnd> ended;
  ASSERT_TRUE(coord_.WatchJob("train", 4, [&](const GenerationEnd& e) { ended = e; }).ok());
  ASSERT_TRUE(
      Report("b", {}, /*incarnation=*/2).ok());  // b's agent restarted: its workers are gone
  ASSERT_TRUE(ended.has_value());
  EXPECT_EQ(ended->node, "b");
  EXPECT_EQ(Job().generation, 5u);
}

TEST_F(JobRecoveryTest, ConflictingReports_EndTheGenerationSayingWhy) {
  ASSERT_TRUE(Report("a", {Train(0)}).ok());
  std::optional<GenerationEnd> ended;
  ASSERT_TRUE(coord_.WatchJob("train", 4, [&](const GenerationEnd& e) { ended = e; }).ok());
  ASSERT_TRUE(Report("b", {Train(0)}).ok());  // the same rank
  ASSERT_TRUE(ended.has_value());
  EXPECT_THAT(ended->message, HasSubstr("nodes 'a' and 'b' both report node rank 0"));

  // One node claiming two ranks.
  RunningJob again = Train(2);
  again.job = "dup";
  RunningJob twice = again;
  twice.node_rank = 1;
  std::optional<GenerationEnd> dup_ended;
  ASSERT_TRUE(Report("c", {again}).ok());
  ASSERT_TRUE(coord_.WatchJob("dup", 4, [&](const GenerationEnd& e) { dup_ended = e; }).ok());
  ASSERT_TRUE(Report("c", {twice}).ok());
  ASSERT_TRUE(dup_ended.has_value());
  EXPECT_THAT(dup_ended->message, HasSubstr("node 'c' reports node ranks 2 and 1"));

  RunningJob other = Train(1);
  other.job = "eval";
  ASSERT_TRUE(Report("a", {other}).ok());
  RunningJob bigger = other;
  bigger.node_rank = 2;
  bigger.num_nodes = 4;
  bigger.nodes = NodeCount{4, 4};
  std::optional<GenerationEnd> eval_ended;
  ASSERT_TRUE(coord_.WatchJob("eval", 4, [&](const GenerationEnd& e) { eval_ended = e; }).ok());
  ASSERT_TRUE(Report("b", {bigger}).ok());
  ASSERT_TRUE(eval_ended.has_value());
  EXPECT_THAT(eval_ended->message, HasSubstr("with 4 nodes of 2 workers; other nodes reported 3"));
}

TEST_F(JobRecoveryTest, ReportOfAKnownJob_Ignored) {
  ASSERT_TRUE(Report("a", {}).ok());
  ASSERT_TRUE(Report("b", {}).ok());
  std::optional<absl::StatusOr<Assignment>> joined;
  coord_.JoinJob(JoinRequest{"train", "a", 1, 2, NodeCount{2, 2}}, clock_.Now() + absl::Seconds(5),
                 [&](absl::StatusOr<Assignment> a) { joined = std::move(a); });
  coord_.JoinJob(JoinRequest{"train", "b", 1, 2, NodeCount{2, 2}}, clock_.Now() + absl::Seconds(5),
                 [](absl::StatusOr<Assignment>) {});
  ASSERT_TRUE(joined.has_value() && joined->ok());
  // A (same-incarnation) re-registration reporting another generation changes nothing.
  ASSERT_TRUE(Report("a", {RunningJob{"train", 9, 0, 2, 2, NodeCount{2, 2}}}).ok());
  EXPECT_EQ(Job().phase, JobPhase::kRunning);
  EXPECT_EQ(Job().generation, 1u);
}

TEST_F(JobRecoveryTest, MalformedReport_InvalidArgumentAndNothingRecorded) {
  for (RunningJob bad :
       {Train(3), Train(0, 0), Train(0, 3, 0), RunningJob{"bad name", 1, 0, 1, 2, NodeCount{1, 1}},
        RunningJob{"train", 1, 0, 5, 2, NodeCount{1, 2}}}) {
    const absl::Status s = Report("a", {bad});
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  }
  EXPECT_TRUE(coord_.Jobs().empty());
  EXPECT_TRUE(coord_.Nodes().empty());
}

}  // namespace
}  // namespace meshd::coordinator

// ---- With a membership key: only the places the coordinator gave count ----------------------

namespace meshd::coordinator {
namespace {

class SignedRecoveryTest : public ::testing::Test {
 protected:
  static CoordinatorOptions Options() {
    CoordinatorOptions o;
    o.recovery_window = absl::Seconds(10);
    o.sign_membership = security::MembershipSigner(std::string(32, 'k'));
    return o;
  }
  static NodeInventory Node(const std::string& name) {
    NodeInventory inv{name, "host-" + name, "unix:/run/" + name, 1, {}};
    inv.gpus.push_back(Gpu{0, "GPU-" + name, "", "sim", 0, "", true});
    return inv;
  }
  // Runs generation 1 of a 2-node "train" on a and b in `c`; returns their assignments.
  static std::vector<Assignment> RunTrain(Coordinator& c) {
    std::vector<Assignment> got(2);
    for (int i = 0; i < 2; ++i) {
      const std::string node = i == 0 ? "a" : "b";
      EXPECT_TRUE(c.RegisterNode(Node(node)).ok());
    }
    for (int i = 0; i < 2; ++i) {
      const std::string node = i == 0 ? "a" : "b";
      c.JoinJob(JoinRequest{"train", node, 1, 2, NodeCount{2, 2}}, absl::InfiniteFuture(),
                [&got, i](absl::StatusOr<Assignment> a) {
                  ASSERT_TRUE(a.ok()) << a.status();
                  got[i] = *a;
                });
    }
    return got;
  }
  static RunningJob Report(const Assignment& a) {
    return RunningJob{a.job,        a.generation, a.node_rank, a.num_nodes,
                      a.local_world, NodeCount{2, 2}, a.membership_token};
  }

  FakeClock clock_;
  std::vector<Event> events_;
};

TEST_F(SignedRecoveryTest, TokensOfTheFirstCoordinator_RecoverTheJob_ForgedReportsIgnored) {
  std::vector<Assignment> given;
  {
    Coordinator first(&clock_, Options());
    given = RunTrain(first);
  }
  ASSERT_EQ(given[0].membership_token.size(), 32u);
  EXPECT_NE(given[0].membership_token, given[1].membership_token);

  Coordinator restarted(&clock_, Options(), [this](const Event& e) { events_.push_back(e); });
  // A node that was never in the job claims b's place first (with a token of its own place in
  // another job, or none): ignored — the job is not even created by it.
  RunningJob forged = Report(given[0]);
  forged.node_rank = 1;
  ASSERT_TRUE(restarted.RegisterNode(Node("mallory"), {forged, Report(given[1])}).ok());
  EXPECT_FALSE(restarted.Job("train").ok());
  ASSERT_FALSE(events_.empty());
  EXPECT_EQ(events_.back().kind, EventKind::kRecoveryRefused);
  EXPECT_THAT(events_.back().what, HasSubstr("without a valid membership token"));

  // The real members' reports recover it, same generation and places.
  ASSERT_TRUE(restarted.RegisterNode(Node("a"), {Report(given[0])}).ok());
  ASSERT_TRUE(restarted.RegisterNode(Node("b"), {Report(given[1])}).ok());
  absl::StatusOr<JobView> j = restarted.Job("train");
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ(j->phase, JobPhase::kRunning);
  EXPECT_EQ(j->generation, 1u);
  EXPECT_EQ(j->members[1].node, "b");
}

TEST_F(SignedRecoveryTest, AnotherKey_ReportsIgnored) {
  std::vector<Assignment> given;
  {
    Coordinator first(&clock_, Options());
    given = RunTrain(first);
  }
  CoordinatorOptions other = Options();
  other.sign_membership = security::MembershipSigner(std::string(32, 'x'));
  Coordinator restarted(&clock_, other);
  ASSERT_TRUE(restarted.RegisterNode(Node("a"), {Report(given[0])}).ok());
  EXPECT_FALSE(restarted.Job("train").ok());
}

}  // namespace
}  // namespace meshd::coordinator
