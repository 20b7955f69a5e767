// Who may act for a node and for a job (issue 20): a node is who presents the secret its
// registration returned, or a certificate naming it; one process cannot register under a live
// node's name, act for it, or use another job's store. On the fake clock; nothing sleeps.
#include <string>
#include <vector>

#include "daemon/coordinator/coordinator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/fake_clock.h"

namespace meshd::coordinator {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class AuthorizationTest : public ::testing::Test {
 protected:
  AuthorizationTest()
      : coord_(&clock_, CoordinatorOptions{absl::Seconds(1), absl::Seconds(5), 64, 100000}) {}

  static NodeInventory Node(const std::string& name, uint64_t incarnation = 1) {
    NodeInventory inv{name, "host-" + name, "unix:/run/" + name, incarnation, {}};
    for (int i = 0; i < 2; ++i) {
      inv.gpus.push_back(Gpu{static_cast<uint32_t>(i), "GPU-" + name + "-" + std::to_string(i),
                             "", "sim", 0, "", true});
    }
    return inv;
  }
  // Registers `name` as its agent would: anonymous the first time; returns its caller.
  Caller Agent(const std::string& name) {
    absl::StatusOr<NodeRegistered> r = coord_.RegisterNodeAs(Caller{}, Node(name));
    EXPECT_TRUE(r.ok()) << r.status();
    return Caller{name, r.ok() ? r->secret : "", {}};
  }
  void RunJob(const std::vector<std::string>& nodes) {
    for (const std::string& n : nodes) {
      coord_.JoinJob(JoinRequest{"job", n, 1, 2,
                                 NodeCount{static_cast<uint32_t>(nodes.size()),
                                           static_cast<uint32_t>(nodes.size()), absl::Seconds(1)}},
                     clock_.Now() + absl::Seconds(30), [](auto) {});
    }
    ASSERT_EQ(coord_.Job("job")->phase, JobPhase::kRunning);
  }

  FakeClock clock_;
  Coordinator coord_;
};

TEST_F(AuthorizationTest, Registration_ReturnsASecretThatAuthenticatesTheNode) {
  const Caller a = Agent("a");
  ASSERT_EQ(a.secret.size(), 32u);
  EXPECT_TRUE(coord_.AuthorizeNode(a, "a").ok());
  EXPECT_EQ(coord_.AuthorizeNode(Caller{"a", "wrong", {}}, "a").code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(coord_.AuthorizeNode(Caller{}, "a").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(coord_.AuthorizeNode(a, "b").code(), absl::StatusCode::kNotFound);  // register first
  const Caller b = Agent("b");
  EXPECT_NE(a.secret, b.secret);
  // A's secret does not make its holder node b, even presented under b's name.
  EXPECT_EQ(coord_.AuthorizeNode(Caller{"b", a.secret, {}}, "b").code(),
            absl::StatusCode::kPermissionDenied);
  // A certificate naming the node authenticates it without a secret.
  EXPECT_TRUE(coord_.AuthorizeNode(Caller{"", "", {"b"}}, "b").ok());
  const absl::Status denied = coord_.AuthorizeNode(Caller{"a", "wrong", {}}, "a");
  EXPECT_THAT(denied.message(), Not(HasSubstr(a.secret)));
  EXPECT_THAT(denied.message(), HasSubstr("meshd-node-secret"));
}

TEST_F(AuthorizationTest, RegisteringUnderALiveNodesName_PermissionDenied_ItsJobRunsOn) {
  const Caller a = Agent("a");
  const Caller b = Agent("b");
  RunJob({"a", "b"});
  // Another process claims node a with a new incarnation (today's attack: it ended the job).
  absl::StatusOr<NodeRegistered> spoof = coord_.RegisterNodeAs(Caller{}, Node("a", 99));
  ASSERT_EQ(spoof.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(spoof.status().message(), HasSubstr("alive under another agent"));
  EXPECT_EQ(coord_.Job("job")->phase, JobPhase::kRunning);
  EXPECT_EQ(coord_.Job("job")->generation, 1u);
  EXPECT_TRUE(coord_.Heartbeat("a", 1).ok());  // the real agent's incarnation still stands
  // The real agent registering again (it presents its secret) is accepted and keeps its secret
  // (its calls in flight stay valid).
  absl::StatusOr<NodeRegistered> again = coord_.RegisterNodeAs(a, Node("a"));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->secret, a.secret);
  EXPECT_FALSE(again->restarted);
  EXPECT_TRUE(coord_.AuthorizeNode(a, "a").ok());
  // So is a certificate naming the node: a restarted agent with TLS is taken at once.
  absl::StatusOr<NodeRegistered> certified =
      coord_.RegisterNodeAs(Caller{"", "", {"b"}}, Node("b", 2));
  ASSERT_TRUE(certified.ok()) << certified.status();
  EXPECT_TRUE(certified->restarted);
  (void)b;
}

// With TLS a node is who its certificate says: a certificate naming node-b registers neither a
// new name nor a dead one, and a secret does not make its holder another node.
TEST_F(AuthorizationTest, ACertificateActsOnlyAsTheNodesItNames) {
  const Caller b_cert{"", "", {"node-b"}};
  absl::StatusOr<NodeRegistered> fresh = coord_.RegisterNodeAs(b_cert, Node("node-a"));
  EXPECT_EQ(fresh.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(fresh.status().message(), HasSubstr("does not name node 'node-a'"));
  const Caller a = Agent("node-a");  // node-a's own agent, without TLS
  EXPECT_EQ(coord_.AuthorizeNode(Caller{"node-a", a.secret, {"node-b"}}, "node-a").code(),
            absl::StatusCode::kPermissionDenied);
  ASSERT_TRUE(coord_.RegisterNodeAs(b_cert, Node("node-b")).ok());
}

// An agent chooses its secret and sends it with its registration: a retry whose answer was lost
// presents the same one and is still that agent's; its calls in flight stay valid.
TEST_F(AuthorizationTest, AnAgentsOwnSecretSurvivesARetriedRegistration) {
  const Caller mine{"a", std::string(32, 'k'), {}};
  absl::StatusOr<NodeRegistered> first = coord_.RegisterNodeAs(mine, Node("a"));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->secret, mine.secret);
  absl::StatusOr<NodeRegistered> retry = coord_.RegisterNodeAs(mine, Node("a"));  // answer lost
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_TRUE(coord_.AuthorizeNode(mine, "a").ok());
  // A short secret is not taken: the coordinator draws one.
  absl::StatusOr<NodeRegistered> weak = coord_.RegisterNodeAs(Caller{"w", "short", {}}, Node("w"));
  ASSERT_TRUE(weak.ok());
  EXPECT_NE(weak->secret, "short");
}

TEST_F(AuthorizationTest, ANodeDeclaredDeadIsAnyonesToRegister) {
  Agent("a");
  clock_.Advance(absl::Seconds(6));
  coord_.CheckDeadlines();
  absl::StatusOr<NodeRegistered> restarted = coord_.RegisterNodeAs(Caller{}, Node("a", 2));
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  EXPECT_TRUE(coord_.AuthorizeNode(Caller{"a", restarted->secret, {}}, "a").ok());
}

TEST_F(AuthorizationTest, AJobsStoreAndWatchServeOnlyItsMembers) {
  const Caller a = Agent("a");
  const Caller b = Agent("b");
  const Caller c = Agent("c");
  RunJob({"a", "b"});
  EXPECT_TRUE(coord_.AuthorizeMember(a, "job", 1).ok());
  EXPECT_TRUE(coord_.AuthorizeMember(Caller{"", "", {"b"}}, "job", 1).ok());
  const absl::Status outsider = coord_.AuthorizeMember(c, "job", 1);
  EXPECT_EQ(outsider.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(outsider.message(), Not(HasSubstr("'a'")));  // names no member
  EXPECT_EQ(coord_.AuthorizeMember(Caller{}, "job", 1).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(coord_.AuthorizeMember(Caller{"a", "wrong", {}}, "job", 1).code(),
            absl::StatusCode::kPermissionDenied);
  // A generation that does not run: the call itself answers (NOT_FOUND, ABORTED, ...).
  EXPECT_TRUE(coord_.AuthorizeMember(c, "job", 2).ok());
  EXPECT_TRUE(coord_.AuthorizeMember(c, "other", 1).ok());
  (void)b;
}

}  // namespace
}  // namespace meshd::coordinator
