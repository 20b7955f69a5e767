// The agent in a Kubernetes pod, as real processes: the hostname it reports (--hostname /
// MESHD_HOSTNAME, what the DaemonSet fills from spec.nodeName), the warning when a pod passes
// neither name, and `meshctl --agent SOCK leave` (the DaemonSet's preStop hook): the node leaves,
// the job's other node's worker is told NODE_LEFT at once, the agent keeps answering but sends no
// heartbeat, SIGTERM then stops it cleanly; a worker's uid may not make the node leave.
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/support/run_command.h"
#include "tests/support/subprocess.h"
#include "tests/support/wait_for.h"

namespace meshd {
namespace {

using ::meshd::process::Subprocess;
using ::meshd::testing::RunCommand;
using ::meshd::testing::WaitFor;
using ::testing::HasSubstr;
using ::testing::Not;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class AgentLeaveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "agent_leave_", getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }

  // `meshd coordinator` on a free port; address_ is set once it serves.
  void StartCoordinator() {
    auto c = Subprocess::Start({MESHD_PATH, "coordinator", "--listen", "127.0.0.1:0",
                                "--heartbeat-interval", "200ms", "--heartbeat-timeout", "20s"},
                               dir_ + "/coordinator.log");
    ASSERT_TRUE(c.ok()) << c.status();
    coordinator_ = *std::move(c);
    auto line = coordinator_->WaitForLine("meshd coordinator listening on ", absl::Seconds(20));
    ASSERT_TRUE(line.ok()) << line.status();
    address_ = *line;
  }

  // `meshd agent` NAME with one simulated GPU, its environment `env` ("VAR=value" words).
  std::unique_ptr<Subprocess> StartAgent(const std::string& name,
                                         const std::vector<std::string>& env = {},
                                         const std::vector<std::string>& flags = {}) {
    std::vector<std::string> argv = {"/usr/bin/env"};
    argv.insert(argv.end(), env.begin(), env.end());
    for (const std::string& a : {std::string(MESHD_PATH), std::string("agent"),
                                 std::string("--coordinator"), address_, std::string("--socket"),
                                 Socket(name), std::string("--simulate-gpus"), std::string("1")}) {
      argv.push_back(a);
    }
    argv.insert(argv.end(), flags.begin(), flags.end());
    auto a = Subprocess::Start(argv, Log(name));
    EXPECT_TRUE(a.ok()) << a.status();
    if (!a.ok()) return nullptr;
    EXPECT_TRUE((*a)->WaitForLine("meshd agent listening on ", absl::Seconds(20)).ok());
    return *std::move(a);
  }

  std::string Socket(const std::string& name) const { return absl::StrCat(dir_, "/", name, ".sock"); }
  std::string Log(const std::string& name) const { return absl::StrCat(dir_, "/", name, ".log"); }

  // The coordinator's record of `node` (meshctl nodes --json), or null.
  nlohmann::json Node(const std::string& node) {
    const auto r = RunCommand(absl::StrCat(MESHCTL_PATH, " --coordinator ", address_, " nodes --json"));
    if (r.exit_code != 0) return nullptr;
    const nlohmann::json all = nlohmann::json::parse(r.out, nullptr, false);
    if (!all.is_object() || !all.contains("nodes")) return nullptr;
    for (const auto& n : all["nodes"]) {
      if (n["inventory"]["node"] == node) return n;
    }
    return nullptr;
  }

  std::string dir_, address_;
  std::unique_ptr<Subprocess> coordinator_;
};

// The hostname the coordinator orders nodes by comes from MESHD_HOSTNAME (the DaemonSet's
// spec.nodeName), not gethostname() (a pod's name).
TEST_F(AgentLeaveTest, HostnameFromEnvironment_ReportedToCoordinator) {
  StartCoordinator();
  auto agent = StartAgent("n1", {"MESHD_HOSTNAME=gpu-host-17", "MESHD_NODE_NAME=gpu-host-17"});
  ASSERT_NE(agent, nullptr);
  ASSERT_TRUE(WaitFor([&] { return !Node("gpu-host-17").is_null(); }));
  EXPECT_EQ(Node("gpu-host-17")["inventory"]["hostname"], "gpu-host-17");
  EXPECT_THAT(ReadFile(Log("n1")), Not(HasSubstr("running in a Kubernetes pod")));
}

// In a pod (KUBERNETES_SERVICE_HOST set) without the names, the agent warns and says how to fix it;
// with both it does not.
TEST_F(AgentLeaveTest, InPodWithoutNames_WarnsNamingTheDownwardApi) {
  StartCoordinator();
  auto bare = StartAgent("bare", {"KUBERNETES_SERVICE_HOST=10.96.0.1", "MESHD_NODE_NAME=bare"});
  ASSERT_NE(bare, nullptr);
  const std::string log = ReadFile(Log("bare"));
  EXPECT_THAT(log, HasSubstr("running in a Kubernetes pod (KUBERNETES_SERVICE_HOST is set) without "
                             "MESHD_HOSTNAME (--hostname)"));
  EXPECT_THAT(log, HasSubstr("fieldPath: spec.nodeName"));
  EXPECT_THAT(log, Not(HasSubstr("without MESHD_NODE_NAME")));
  auto named = StartAgent("named", {"KUBERNETES_SERVICE_HOST=10.96.0.1", "MESHD_NODE_NAME=named",
                                    "MESHD_HOSTNAME=named"});
  ASSERT_NE(named, nullptr);
  EXPECT_THAT(ReadFile(Log("named")), Not(HasSubstr("running in a Kubernetes pod")));
}

TEST_F(AgentLeaveTest, BadHostname_ExitTwoOrOneNamingTheFlag) {
  const auto r = RunCommand(absl::StrCat(MESHD_PATH, " agent --socket ", Socket("x"),
                                         " --simulate-gpus 1 --hostname 'bad name'"),
                            true);
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("--hostname: host name 'bad name' may only hold letters"));
}

// The preStop hook's call: the node leaves before its agent stops. The job's worker on the other
// node is told NODE_LEFT naming it, the local worker SHUTDOWN; the agent answers status but sends
// no heartbeat (the coordinator keeps it `left`); SIGTERM then exits 0 without a second leave.
TEST_F(AgentLeaveTest, Leave_OtherNodeToldAtOnce_NoHeartbeatAfter_SigtermClean) {
  StartCoordinator();
  auto a = StartAgent("a", {}, {"--node-name", "a"});
  auto b = StartAgent("b", {}, {"--node-name", "b"});
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  auto wa = Subprocess::Start({WORKER_PATH, Socket("a"), "train", "0", "1", "2"});
  auto wb = Subprocess::Start({WORKER_PATH, Socket("b"), "train", "0", "1", "2"});
  ASSERT_TRUE(wa.ok() && wb.ok());
  for (auto* w : {wa->get(), wb->get()}) {
    ASSERT_TRUE(w->ReadLine(absl::Seconds(20)).ok());  // placement
    ASSERT_TRUE(w->WaitForLine("{\"watching\"", absl::Seconds(20)).ok());
  }
  const absl::Time asked = absl::Now();
  const auto left = RunCommand(absl::StrCat("MESHD_SOCKET=", Socket("a"), " ", MESHCTL_PATH,
                                            " leave --reason 'DaemonSet update'"),
                               true);
  ASSERT_EQ(left.exit_code, 0) << left.out;
  EXPECT_THAT(left.out, HasSubstr("node 'a' left the cluster; 1 job (train) ended their "
                                  "generations (node left); 1 local worker told"));
  auto told = (*wb)->ReadLine(absl::Seconds(5));
  ASSERT_TRUE(told.ok()) << told.status();
  EXPECT_THAT(*told, HasSubstr("\"event\":\"REASON_NODE_LEFT\",\"node\":\"a\""));
  EXPECT_LT(absl::Now() - asked, absl::Seconds(3));
  auto own = (*wa)->ReadLine(absl::Seconds(5));
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_THAT(*own, HasSubstr("REASON_SHUTDOWN"));
  // Left, and silent: its last heartbeat grows older than several intervals (200 ms) while the
  // agent still answers on its socket.
  ASSERT_TRUE(WaitFor(
      [&] {
        const nlohmann::json n = Node("a");
        return !n.is_null() && n.value("state", "") == "NODE_STATE_LEFT" &&
               std::stoll(n.value("last_heard_ms_ago", "0")) >= 1500;
      },
      absl::Seconds(10), absl::Milliseconds(100)))
      << Node("a").dump();
  const auto status = RunCommand(absl::StrCat(MESHCTL_PATH, " --agent ", Socket("a"), " status"));
  EXPECT_EQ(status.exit_code, 0) << status.out;
  // A second leave is answered (the hook may run twice), and SIGTERM exits cleanly at once.
  const auto again = RunCommand(absl::StrCat(MESHCTL_PATH, " --agent ", Socket("a"), " leave"));
  EXPECT_EQ(again.exit_code, 0) << again.out;
  EXPECT_THAT(again.out, HasSubstr("has already left"));
  a->Signal(SIGTERM);
  auto code = a->Wait(absl::Seconds(10));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
  EXPECT_THAT(ReadFile(Log("a")), Not(HasSubstr("could not tell the coordinator")));
}

// Workers share the socket (its group); none may take the node out of the cluster.
TEST_F(AgentLeaveTest, Leave_FromAnotherUid_PermissionDenied_NodeStays) {
  if (getuid() != 0) GTEST_SKIP() << "needs root to call as another user";
  std::filesystem::permissions(dir_, std::filesystem::perms::all);
  StartCoordinator();
  auto a = StartAgent("a", {}, {"--node-name", "a", "--socket-group", "nogroup"});
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(WaitFor([&] { return !Node("a").is_null(); }));
  const auto r = RunCommand(absl::StrCat("setpriv --reuid=65534 --regid=65534 --clear-groups ",
                                         MESHCTL_PATH, " --agent ", Socket("a"), " leave"),
                            true);
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("PERMISSION_DENIED"));
  EXPECT_THAT(r.out, HasSubstr("only the agent's own user (uid 0) or root may make this node "
                               "leave the cluster; this call came from uid 65534"));
  EXPECT_EQ(Node("a").value("state", ""), "NODE_STATE_ALIVE");
}

TEST_F(AgentLeaveTest, LeaveWithoutAgentSocket_SaysWhereToAsk) {
  const auto r = RunCommand(absl::StrCat("env -u MESHD_SOCKET -u MESHD_AGENT_SOCKET ", MESHCTL_PATH,
                                         " leave"),
                            true);
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("leave asks this host's agent: meshctl --agent"));
}

}  // namespace
}  // namespace meshd
