// JobRounds on its own, beside a NodeRegistry, on a fake clock: the steps of a join (open round,
// member retry, standby, a new round), watches of a generation's end, the running generation's
// errors, deadlines and a recovery. Completions are run by the test, as the Coordinator does.
#include "daemon/coordinator/job_rounds.h"

#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/fake_clock.h"

namespace meshd::coordinator {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class JobRoundsTest : public ::testing::Test {
 protected:
  JobRoundsTest()
      : nodes_(&clock_, NodeRegistry::Options{absl::Seconds(1), absl::Seconds(5), 0}),
        events_([this](const Event& e) { kinds_.push_back(EventKindName(e.kind)); }),
        jobs_(&clock_, JobRounds::Options{absl::Seconds(10)}, &nodes_, &events_) {
    for (const char* n : {"a", "b", "c"}) {
      nodes_.Register(NodeInventory{n, std::string("host-") + n, "unix:/x", 1, {}});
    }
  }

  static JoinRequest Req(const std::string& node, uint32_t min, uint32_t max = 0) {
    return JoinRequest{"job", node, 1, 2, NodeCount{min, max == 0 ? min : max, absl::Seconds(1)}};
  }
  // Joins and runs the completions; the answer, once there is one, in `*got`.
  void Join(const JoinRequest& req, std::optional<absl::StatusOr<Assignment>>* got,
            absl::Duration timeout = absl::Seconds(30)) {
    jobs_.Join(
        req, clock_.Now() + timeout, [got](absl::StatusOr<Assignment> a) { *got = std::move(a); },
        out_);
    RunAll(out_);
  }
  void Tick() {
    jobs_.CheckDeadlines(clock_.Now(), out_);
    RunAll(out_);
  }

  FakeClock clock_;
  NodeRegistry nodes_;
  std::vector<std::string> kinds_;
  const EventSink events_;
  JobRounds jobs_;
  Completions out_;
};

TEST_F(JobRoundsTest, FixedRound_ClosesWhenFull_RanksInTopologyOrder) {
  std::optional<absl::StatusOr<Assignment>> b, a;
  Join(Req("b", 2), &b);
  EXPECT_FALSE(b.has_value());
  EXPECT_EQ(jobs_.View("job")->phase, JobPhase::kJoining);
  Join(Req("a", 2), &a);
  ASSERT_TRUE(a.has_value() && b.has_value());
  EXPECT_EQ((*a)->node_rank, 0u);  // host-a sorts first
  EXPECT_EQ((*b)->node_rank, 1u);
  EXPECT_EQ((*a)->world_size, 4u);
  EXPECT_EQ(jobs_.View("job")->phase, JobPhase::kRunning);
  EXPECT_THAT(kinds_,
              ElementsAre("job_created", "node_joined", "node_joined", "generation_started"));
  EXPECT_THAT(jobs_.JobsOf("a"), ElementsAre("job"));
}

TEST_F(JobRoundsTest, Running_MemberRetrySameAnswer_OutsiderOfAFixedJobRefused) {
  std::optional<absl::StatusOr<Assignment>> first, retry, outsider;
  Join(Req("a", 1), &first);
  Join(Req("a", 1), &retry);
  ASSERT_TRUE(retry.has_value() && retry->ok());
  EXPECT_EQ((*retry)->generation, (*first)->generation);
  Join(Req("b", 1), &outsider);
  ASSERT_TRUE(outsider.has_value());
  EXPECT_EQ(outsider->status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(outsider->status().message()), HasSubstr("admits no new nodes"));
}

TEST_F(JobRoundsTest, Join_OtherSpec_FailedPrecondition) {
  std::optional<absl::StatusOr<Assignment>> a, b;
  Join(Req("a", 2), &a);
  Join(Req("b", 3), &b);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(a.has_value());
}

TEST_F(JobRoundsTest, Elastic_AtMaxStandsBy_ThenFirstOfTheNextRound) {
  std::optional<absl::StatusOr<Assignment>> a, b, c, a_again;
  Join(Req("a", 1, 2), &a);
  Join(Req("b", 1, 2), &b);
  ASSERT_TRUE(b.has_value() && b->ok());
  Join(Req("c", 1, 2), &c);
  EXPECT_FALSE(c.has_value());
  EXPECT_EQ(kinds_.back(), "node_standby");
  EXPECT_THAT(jobs_.JobsOf("c"), ElementsAre("job"));
  // b leaves: c is the next round's first joiner; a's join fills it (max 2).
  ASSERT_TRUE(jobs_.Leave("job", 1, "b", "", out_).ok());
  RunAll(out_);
  Join(Req("a", 1, 2), &a_again);
  ASSERT_TRUE(c.has_value() && c->ok());
  EXPECT_EQ((*c)->generation, 2u);
  EXPECT_EQ((*c)->num_nodes, 2u);
}

TEST_F(JobRoundsTest, Elastic_BelowMax_NewNodeEndsTheGeneration) {
  std::optional<absl::StatusOr<Assignment>> a, c;
  Join(Req("a", 1, 3), &a);
  Tick();
  clock_.Advance(absl::Seconds(1));
  Tick();  // last call over: a runs alone
  ASSERT_TRUE(a.has_value() && a->ok());
  std::optional<GenerationEnd> end;
  ASSERT_TRUE(jobs_
                  .Watch(
                      "job", 1, false, [&](const GenerationEnd& e) { end = e; }, out_)
                  .ok());
  Join(Req("c", 1, 3), &c);
  ASSERT_TRUE(end.has_value());
  EXPECT_EQ(end->reason, EndReason::kNodeJoining);
  EXPECT_EQ(jobs_.View("job")->generation, 2u);
  EXPECT_EQ(jobs_.View("job")->missing, (std::vector<std::string>{"a"}));
}

TEST_F(JobRoundsTest, Watch_EndedAnsweredAtOnce_ShutDownAnsweredAtOnce_FutureRefused) {
  std::optional<absl::StatusOr<Assignment>> a;
  Join(Req("a", 1), &a);
  std::vector<GenerationEnd> ends;
  auto record = [&](const GenerationEnd& e) { ends.push_back(e); };
  EXPECT_EQ(jobs_.Watch("job", 2, false, record, out_).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(jobs_.Watch("nope", 1, false, record, out_).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(*jobs_.Watch("job", 1, /*shut_down=*/true, record, out_), 0u);
  const uint64_t id = *jobs_.Watch("job", 1, false, record, out_);
  EXPECT_NE(id, 0u);
  RunAll(out_);
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_EQ(ends[0].reason, EndReason::kShutdown);
  jobs_.DropNode("a", EndReason::kNodeLost, "node 'a' lost", out_);
  RunAll(out_);
  ASSERT_EQ(ends.size(), 2u);
  EXPECT_EQ(ends[1].reason, EndReason::kNodeLost);
  EXPECT_EQ(*jobs_.Watch("job", 1, false, record, out_), 0u);  // ended: at once
  RunAll(out_);
  ASSERT_EQ(ends.size(), 3u);
  EXPECT_EQ(ends[2].message, "node 'a' lost");
}

TEST_F(JobRoundsTest, Store_ErrorsByGeneration) {
  EXPECT_EQ(jobs_.Store("job", 1).status().code(), absl::StatusCode::kNotFound);
  std::optional<absl::StatusOr<Assignment>> a, b;
  Join(Req("a", 2), &a);
  EXPECT_EQ(jobs_.Store("job", 1).status().code(), absl::StatusCode::kFailedPrecondition);
  Join(Req("b", 2), &b);
  ASSERT_TRUE(jobs_.Store("job", 1).ok());
  EXPECT_EQ(jobs_.Store("job", 2).status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(jobs_.Exchange("job", 1, "mesh", "a", {}).ok());
  EXPECT_EQ(jobs_.Exchange("job", 1, "mesh", "a", {})->mesh,
            jobs_.Exchange("job", 1, "mesh", "b", {})->mesh);
  // Only members, and only about their own ranks.
  EXPECT_EQ(jobs_.Exchange("job", 1, "mesh", "c", {}).status().code(),
            absl::StatusCode::kPermissionDenied);
  jobs_.DropNode("b", EndReason::kNodeRestarted, "node 'b' restarted", out_);
  RunAll(out_);
  EXPECT_EQ(jobs_.Store("job", 1).status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(jobs_.Leave("job", 2, "a", "", out_).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(JobRoundsTest, CheckDeadlines_JoinWaitExpires_NodeLeavesTheRound) {
  std::optional<absl::StatusOr<Assignment>> a;
  Join(Req("a", 2), &a, absl::Seconds(2));
  clock_.Advance(absl::Seconds(2) - absl::Milliseconds(1));
  Tick();
  EXPECT_FALSE(a.has_value());
  clock_.Advance(absl::Milliseconds(1));
  Tick();
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(a->status().message()), HasSubstr("1 of 2 nodes joined (a)"));
  EXPECT_TRUE(jobs_.View("job")->members.empty());
}

TEST_F(JobRoundsTest, Recover_EveryRankReported_RunsAgainWithTheSameGeneration) {
  const NodeCount two{2, 2, absl::Seconds(1)};
  jobs_.Recover("b", {RunningJob{"job", 7, 1, 2, 2, two}}, out_);
  RunAll(out_);
  EXPECT_EQ(jobs_.View("job")->phase, JobPhase::kRecovering);
  std::optional<absl::StatusOr<Assignment>> c;
  Join(Req("c", 2), &c);  // the job is being recovered: retry
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->status().code(), absl::StatusCode::kUnavailable);
  jobs_.Recover("a", {RunningJob{"job", 7, 0, 2, 2, two}}, out_);
  RunAll(out_);
  const JobView v = *jobs_.View("job");
  EXPECT_EQ(v.phase, JobPhase::kRunning);
  EXPECT_EQ(v.generation, 7u);
  ASSERT_EQ(v.members.size(), 2u);
  EXPECT_EQ(v.members[0].node, "a");
  EXPECT_EQ(kinds_.back(), "generation_recovered");
}

TEST_F(JobRoundsTest, Tally_CountsJobsWaitersAndCounters) {
  std::optional<absl::StatusOr<Assignment>> a;
  Join(Req("a", 2), &a);
  StatusView s;
  jobs_.Tally(s);
  EXPECT_EQ(s.jobs_joining, 1u);
  EXPECT_EQ(s.waiting.join, 1u);
  EXPECT_EQ(s.counters.generations_started, 0u);
  jobs_.Shutdown(absl::CancelledError("shutting down"), out_);
  RunAll(out_);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->status().code(), absl::StatusCode::kCancelled);
}

}  // namespace
}  // namespace meshd::coordinator
