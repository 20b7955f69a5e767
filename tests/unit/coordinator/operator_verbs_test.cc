// The operators' verbs of the coordinator core (coordinator_admin.cc) on a fake clock: cordon,
// uncordon, drain, forget, end a job — and that only an operator may use them.
#include <optional>

#include "daemon/coordinator/coordinator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/fake_clock.h"

namespace meshd::coordinator {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

template <typename T>
struct Got {
  std::optional<T> value;
  auto Callback() {
    return [this](T v) { value = std::move(v); };
  }
};

Caller Operator() {
  Caller c;
  c.admin = true;
  c.identity = "cn=alice";
  return c;
}

class OperatorVerbsTest : public ::testing::Test {
 protected:
  OperatorVerbsTest()
      : coord_(&clock_, CoordinatorOptions{absl::Seconds(1), absl::Seconds(5), 64, 100000},
               [this](const Event& e) { events_.push_back(e); }) {}

  void Register(const std::string& name) {
    NodeInventory inv{name, "host-" + name, "unix:/run/" + name, 1, {}};
    inv.gpus.push_back(Gpu{0, "GPU-" + name, "", "sim", 0, "", true});
    ASSERT_TRUE(coord_.RegisterNode(inv).ok());
  }
  JoinRequest Join(const std::string& job, const std::string& node, uint32_t min,
                   uint32_t max = 0) {
    return JoinRequest{job, node, 1, 1, NodeCount{min, max == 0 ? min : max, absl::Seconds(1)}};
  }
  absl::Time Deadline() { return clock_.Now() + absl::Seconds(30); }
  // Starts generation 1 of `job` with `nodes` (min = max = their number).
  void Run(const std::string& job, const std::vector<std::string>& nodes) {
    std::vector<Got<absl::StatusOr<Assignment>>> got(nodes.size());
    for (size_t i = 0; i < nodes.size(); ++i) {
      coord_.JoinJob(Join(job, nodes[i], static_cast<uint32_t>(nodes.size())), Deadline(),
                     got[i].Callback());
    }
    for (auto& g : got) ASSERT_TRUE(g.value && g.value->ok());
  }
  const NodeView& ViewOf(const std::string& node) {
    nodes_ = coord_.Nodes();
    for (const NodeView& n : nodes_) {
      if (n.inventory.node == node) return n;
    }
    ADD_FAILURE() << "no node " << node;
    return nodes_.front();
  }
  bool HasEvent(EventKind kind) const {
    for (const Event& e : events_) {
      if (e.kind == kind) return e.by == "cn=alice";
    }
    return false;
  }

  FakeClock clock_;
  std::vector<Event> events_;
  std::vector<NodeView> nodes_;
  Coordinator coord_;
};

TEST_F(OperatorVerbsTest, NotAnOperator_PermissionDenied_NothingChanged) {
  Register("a");
  Run("train", {"a"});
  Caller node;  // a node's certificate, not an operator's
  node.certified_nodes = {"a"};
  node.identity = "dns=[a]";
  for (const absl::Status& s :
       {coord_.CordonNode(node, "a", true, "").status(), coord_.DrainNode(node, "a", "").status(),
        coord_.ForgetNode(node, "a").status(), coord_.EndJob(node, "train", "").status()}) {
    EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
    EXPECT_THAT(s.message(), HasSubstr("--admin-identity"));
  }
  EXPECT_FALSE(ViewOf("a").cordoned);
  EXPECT_EQ(coord_.Job("train")->phase, JobPhase::kRunning);
  EXPECT_EQ(coord_.Job("train")->generation, 1u);
}

TEST_F(OperatorVerbsTest, Cordon_NoNewRounds_RunningJobCarriesOn_UncordonReturnsIt) {
  Register("a");
  Run("train", {"a"});
  absl::StatusOr<AdminResult> r = coord_.CordonNode(Operator(), "a", true, "bad DIMM");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->changed);
  EXPECT_THAT(r->summary, HasSubstr("cordoned (bad DIMM)"));
  EXPECT_TRUE(ViewOf("a").cordoned);
  EXPECT_EQ(ViewOf("a").cordon_reason, "bad DIMM");
  EXPECT_EQ(coord_.Status().nodes_cordoned, 1u);
  EXPECT_TRUE(HasEvent(EventKind::kNodeCordoned));

  // The running job carries on: a member asking again gets its assignment.
  Got<absl::StatusOr<Assignment>> again;
  coord_.JoinJob(Join("train", "a", 1), Deadline(), again.Callback());
  ASSERT_TRUE(again.value && again.value->ok()) << again.value->status();
  EXPECT_EQ((*again.value)->generation, 1u);
  // A new job is refused, saying how to undo it.
  Got<absl::StatusOr<Assignment>> other;
  coord_.JoinJob(Join("eval", "a", 1), Deadline(), other.Callback());
  ASSERT_TRUE(other.value);
  EXPECT_EQ(other.value->status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(other.value->status().message(), HasSubstr("meshctl node uncordon a"));
  EXPECT_FALSE(coord_.Job("eval").ok());  // refused before the job was created

  EXPECT_FALSE(coord_.CordonNode(Operator(), "a", true, "")->changed);  // already
  ASSERT_TRUE(coord_.CordonNode(Operator(), "a", false, "")->changed);
  EXPECT_FALSE(ViewOf("a").cordoned);
  Got<absl::StatusOr<Assignment>> back;
  coord_.JoinJob(Join("eval", "a", 1), Deadline(), back.Callback());
  ASSERT_TRUE(back.value && back.value->ok()) << back.value->status();
}

TEST_F(OperatorVerbsTest, Drain_EndsItsJobsGenerations_ElasticJobReformsWithoutIt) {
  Register("a");
  Register("b");
  // An elastic job 1:2 running on both.
  Got<absl::StatusOr<Assignment>> ja, jb;
  coord_.JoinJob(Join("train", "a", 1, 2), Deadline(), ja.Callback());
  coord_.JoinJob(Join("train", "b", 1, 2), Deadline(), jb.Callback());
  ASSERT_TRUE(ja.value && ja.value->ok() && jb.value && jb.value->ok());
  Got<GenerationEnd> end;
  ASSERT_TRUE(coord_.WatchJob("train", 1, end.Callback()).ok());

  absl::StatusOr<AdminResult> r = coord_.DrainNode(Operator(), "a", "kernel upgrade");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->ended, ElementsAre(Pair("train", 1u)));
  ASSERT_TRUE(end.value);
  EXPECT_EQ(end.value->reason, EndReason::kNodeDrained);
  EXPECT_EQ(end.value->node, "a");
  EXPECT_THAT(end.value->message, HasSubstr("kernel upgrade"));
  EXPECT_TRUE(ViewOf("a").cordoned);
  EXPECT_TRUE(HasEvent(EventKind::kNodeDrained));

  // b re-joins and the next generation forms without a, which is refused.
  Got<absl::StatusOr<Assignment>> a2, b2;
  coord_.JoinJob(Join("train", "a", 1, 2), Deadline(), a2.Callback());
  ASSERT_TRUE(a2.value);
  EXPECT_EQ(a2.value->status().code(), absl::StatusCode::kFailedPrecondition);
  coord_.JoinJob(Join("train", "b", 1, 2), Deadline(), b2.Callback());
  clock_.Advance(absl::Seconds(2));  // the last call passes
  ASSERT_TRUE(coord_.Heartbeat("b", 1).ok());
  coord_.CheckDeadlines();
  ASSERT_TRUE(b2.value && b2.value->ok()) << b2.value->status();
  EXPECT_EQ((*b2.value)->generation, 2u);
  EXPECT_EQ((*b2.value)->num_nodes, 1u);
}

TEST_F(OperatorVerbsTest, Forget_OnlyADeadNode_ThenItsRecordAndGpusAreGone) {
  Register("a");
  Register("b");
  absl::Status live = coord_.ForgetNode(Operator(), "a").status();
  EXPECT_EQ(live.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(live.message(), HasSubstr("Drain it"));
  EXPECT_EQ(coord_.ForgetNode(Operator(), "nobody").status().code(), absl::StatusCode::kNotFound);

  clock_.Advance(absl::Seconds(6));
  ASSERT_TRUE(coord_.Heartbeat("b", 1).ok());
  coord_.CheckDeadlines();  // a is declared dead
  ASSERT_FALSE(ViewOf("a").alive);
  ASSERT_TRUE(coord_.ForgetNode(Operator(), "a").ok());
  EXPECT_EQ(coord_.Nodes().size(), 1u);
  EXPECT_EQ(coord_.Status().nodes_dead, 0u);
  EXPECT_TRUE(HasEvent(EventKind::kNodeForgotten));
  // Its GPU is free for another node, and its name for a new registration.
  NodeInventory c{"c", "host-c", "unix:/run/c", 1, {Gpu{0, "GPU-a", "", "sim", 0, "", true}}};
  EXPECT_TRUE(coord_.RegisterNode(c).ok());
  NodeInventory a{"a", "host-a", "unix:/run/a", 7, {Gpu{0, "GPU-a-new", "", "sim", 0, "", true}}};
  ASSERT_TRUE(coord_.RegisterNode(a).ok());
  EXPECT_EQ(ViewOf("a").restarts, 0u);  // a new record, not a restart of the old one
}

TEST_F(OperatorVerbsTest, EndJob_EveryWatcherToldWithTheReason_WaitingJoinsRefused) {
  Register("a");
  Register("b");
  Register("c");
  // Elastic at its max with a and b; c stands by.
  Got<absl::StatusOr<Assignment>> ja, jb, jc;
  coord_.JoinJob(Join("train", "a", 1, 2), Deadline(), ja.Callback());
  coord_.JoinJob(Join("train", "b", 1, 2), Deadline(), jb.Callback());
  ASSERT_TRUE(ja.value && ja.value->ok() && jb.value && jb.value->ok());
  coord_.JoinJob(Join("train", "c", 1, 2), Deadline(), jc.Callback());
  ASSERT_FALSE(jc.value);  // standing by
  Got<GenerationEnd> end;
  ASSERT_TRUE(coord_.WatchJob("train", 1, end.Callback()).ok());

  absl::StatusOr<AdminResult> r = coord_.EndJob(Operator(), "train", "bad hyperparameters");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->ended, ElementsAre(Pair("train", 1u)));
  ASSERT_TRUE(end.value);
  EXPECT_EQ(end.value->reason, EndReason::kJobEnded);
  EXPECT_THAT(end.value->message, HasSubstr("bad hyperparameters"));
  ASSERT_TRUE(jc.value);
  EXPECT_EQ(jc.value->status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(jc.value->status().message(), HasSubstr("ended by an operator"));
  EXPECT_EQ(coord_.Job("train")->phase, JobPhase::kJoining);
  EXPECT_TRUE(coord_.Job("train")->members.empty());
  EXPECT_TRUE(HasEvent(EventKind::kJobEnded));
  EXPECT_EQ(coord_.EndJob(Operator(), "nope", "").status().code(), absl::StatusCode::kNotFound);
  // Joining again starts the next generation.
  Got<absl::StatusOr<Assignment>> again;
  coord_.JoinJob(Join("train", "a", 1, 2), Deadline(), again.Callback());
  clock_.Advance(absl::Seconds(2));  // the last call passes
  ASSERT_TRUE(coord_.Heartbeat("a", 1).ok());
  coord_.CheckDeadlines();
  ASSERT_TRUE(again.value && again.value->ok()) << again.value->status();
  EXPECT_EQ((*again.value)->generation, 2u);
}

TEST_F(OperatorVerbsTest, BadInput_InvalidArgument) {
  Register("a");
  EXPECT_EQ(coord_.CordonNode(Operator(), "", true, "").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(coord_.CordonNode(Operator(), "a", true, std::string(300, 'x')).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(ViewOf("a").cordoned);
}

}  // namespace
}  // namespace meshd::coordinator
