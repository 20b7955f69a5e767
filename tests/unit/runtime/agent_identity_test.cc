// ResolveAgentIdentity: the names an agent reports, and the warning for a pod without them.
#include "daemon/runtime/agent_identity.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meshd::runtime {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

TEST(AgentIdentityTest, NoFlags_BothAreTheHostname_NoWarningOutsideAPod) {
  auto id = ResolveAgentIdentity("", "", "gpu-17", false);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->node_name, "gpu-17");
  EXPECT_EQ(id->hostname, "gpu-17");
  EXPECT_THAT(id->warning, IsEmpty());
}

TEST(AgentIdentityTest, Flags_WinOverTheHostname) {
  auto id = ResolveAgentIdentity("node-a", "host-a", "meshd-agent-x7k2q", true);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->node_name, "node-a");
  EXPECT_EQ(id->hostname, "host-a");
  EXPECT_THAT(id->warning, IsEmpty());
}

TEST(AgentIdentityTest, PodWithoutNames_WarnsNamingBothAndTheFix) {
  auto id = ResolveAgentIdentity("", "", "meshd-agent-x7k2q", true);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->hostname, "meshd-agent-x7k2q");
  EXPECT_THAT(id->warning, HasSubstr("without MESHD_NODE_NAME (--node-name) or MESHD_HOSTNAME "
                                     "(--hostname): 'meshd-agent-x7k2q' is the pod's name"));
  EXPECT_THAT(id->warning, HasSubstr("fieldPath: spec.nodeName"));
}

TEST(AgentIdentityTest, PodWithNodeNameOnly_WarnsAboutTheHostname) {
  auto id = ResolveAgentIdentity("gpu-17", "", "meshd-agent-x7k2q", true);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_THAT(id->warning, HasSubstr("without MESHD_HOSTNAME (--hostname):"));
}

TEST(AgentIdentityTest, BadNames_InvalidArgumentNamingTheFlag) {
  auto host = ResolveAgentIdentity("a", "bad host", "h", false);
  EXPECT_EQ(host.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(host.status().message(), HasSubstr("--hostname: host name 'bad host'"));
  auto node = ResolveAgentIdentity("bad/node", "", "h", false);
  EXPECT_EQ(node.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(node.status().message(), HasSubstr("--node-name: node name 'bad/node'"));
  auto system = ResolveAgentIdentity("", "", "bad host", false);
  EXPECT_EQ(system.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(system.status().message(), HasSubstr("(the hostname: set --node-name)"));
}

}  // namespace
}  // namespace meshd::runtime
