// `meshd agent` and its unix socket as an operator meets them: a second agent on a socket a live
// agent serves is refused (naming the first one's pid) while the first one's worker runs on; a
// stale socket is replaced; a regular file is left alone; --socket-group (flag, environment); a
// job is bound to its first worker's uid (--allow-uids).
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/run_command.h"
#include "tests/support/subprocess.h"
#include "tests/support/wait_for.h"

namespace meshd {
namespace {

using ::meshd::process::Subprocess;
using ::meshd::testing::RunCommand;
using ::testing::HasSubstr;

class AgentSocketCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "meshd_agent_socket_", getpid());
    std::filesystem::create_directories(dir_);
    socket_ = dir_ + "/agent.sock";
    std::filesystem::remove(socket_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // `meshd agent` on socket_ (its coordinator need not answer: the socket is served anyway).
  std::string Agent(const std::string& extra = "") {
    return absl::StrCat(MESHD_PATH, " agent --coordinator 127.0.0.1:1 --simulate-gpus 1 --socket ",
                        socket_, " ", extra);
  }
  testing::CommandResult AgentStatus() {
    return RunCommand(absl::StrCat(MESHCTL_PATH, " --agent ", socket_, " --timeout 5s status"),
                      true);
  }

  std::string dir_, socket_;
};

TEST_F(AgentSocketCliTest, SecondAgentOnLiveSocket_ExitOneNamingFirst_FirstWorkerUndisturbed) {
  auto first = Subprocess::Start({MESHD_PATH, "standalone", "--listen", "127.0.0.1:0", "--socket",
                                  socket_, "--simulate-gpus", "1", "--node-name", "solo"});
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE((*first)->WaitForLine("meshd standalone listening on ", absl::Seconds(20)).ok());
  auto worker = Subprocess::Start({WORKER_PATH, socket_, "train", "0", "1", "1"});
  ASSERT_TRUE(worker.ok());
  ASSERT_TRUE((*worker)->ReadLine(absl::Seconds(20)).ok());  // placement
  ASSERT_TRUE((*worker)->WaitForLine("{\"watching\"", absl::Seconds(20)).ok());

  const auto second = RunCommand(Agent(), true);
  EXPECT_EQ(second.exit_code, 1) << second.out;
  EXPECT_THAT(second.out, HasSubstr(absl::StrCat("another meshd agent is serving on ", socket_,
                                                 " (pid ", (*first)->pid(), ")")));
  EXPECT_THAT(second.out, HasSubstr("stop it or pick another --socket"));

  // The first agent kept its socket and its worker, which was told nothing.
  struct stat st {};
  ASSERT_EQ(lstat(socket_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  const auto status = AgentStatus();
  EXPECT_EQ(status.exit_code, 0) << status.out;
  EXPECT_THAT(status.out, HasSubstr("train"));
  EXPECT_EQ((*worker)->ReadLine(absl::Milliseconds(200)).status().code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST_F(AgentSocketCliTest, StaleSocket_Replaced) {
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  close(fd);  // as a crashed agent leaves it

  auto agent = Subprocess::Start({"/bin/sh", "-c", "exec " + Agent()});
  ASSERT_TRUE(agent.ok());
  ASSERT_TRUE((*agent)->WaitForLine("meshd agent listening on ", absl::Seconds(20)).ok());
  const auto status = AgentStatus();
  EXPECT_EQ(status.exit_code, 0) << status.out;
  EXPECT_THAT(status.out, HasSubstr("no workers attached"));
}

TEST_F(AgentSocketCliTest, RegularFileAtSocket_ExitOne_FileKept) {
  std::ofstream(socket_) << "user data";
  const auto r = RunCommand(Agent(), true);
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("exists and is not a socket"));
  std::ifstream in(socket_);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "user data");
}

TEST_F(AgentSocketCliTest, SocketGroupFlagAndEnvironment_Applied) {
  if (getuid() != 0) GTEST_SKIP() << "only root may give a file to any group";
  {
    auto agent = Subprocess::Start({"/bin/sh", "-c", "exec " + Agent("--socket-group nogroup")});
    ASSERT_TRUE(agent.ok());
    ASSERT_TRUE((*agent)->WaitForLine("meshd agent listening on ", absl::Seconds(20)).ok());
    struct stat st {};
    ASSERT_EQ(stat(socket_.c_str(), &st), 0);
    EXPECT_EQ(st.st_gid, 65534u);
    EXPECT_EQ(st.st_mode & 0777, 0660u);
  }  // SIGKILL: its socket stays, stale
  auto agent = Subprocess::Start({"/bin/sh", "-c", "MESHD_SOCKET_GROUP=daemon exec " + Agent()});
  ASSERT_TRUE(agent.ok());
  ASSERT_TRUE((*agent)->WaitForLine("meshd agent listening on ", absl::Seconds(20)).ok());
  struct stat st {};
  ASSERT_EQ(stat(socket_.c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, 1u);  // Debian's `daemon`
}

TEST_F(AgentSocketCliTest, UnknownSocketGroup_ExitOneWithMessage) {
  auto r = RunCommand(Agent("--socket-group meshd-no-such-group"), true);
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("--socket-group: no group named 'meshd-no-such-group'"));
  r = RunCommand("MESHD_SOCKET_GROUP=meshd-no-such-group " + Agent(), true);
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("no group named 'meshd-no-such-group'"));
  EXPECT_FALSE(std::filesystem::exists(socket_));
}

// A job belongs to the uid of its first local worker: a process of another uid that may reach
// the socket (through its group) is refused PERMISSION_DENIED, and the job goes on; --allow-uids
// lets that uid in.
TEST_F(AgentSocketCliTest, JobBoundToFirstWorkersUid_OtherUidRefused_AllowUidsLetsItIn) {
  if (getuid() != 0) GTEST_SKIP() << "needs root to run a worker as another user";
  std::filesystem::permissions(dir_, std::filesystem::perms::all);  // uid 65534 reaches the socket
  auto daemon = Subprocess::Start({MESHD_PATH, "standalone", "--listen", "127.0.0.1:0", "--socket",
                                   socket_, "--simulate-gpus", "2", "--node-name", "solo",
                                   "--socket-group", "nogroup", "--allow-uids", "4242"});
  ASSERT_TRUE(daemon.ok());
  ASSERT_TRUE((*daemon)->WaitForLine("meshd standalone listening on ", absl::Seconds(20)).ok());
  // Local rank 0 of 2, as root: the job is root's on this host; it waits for rank 1.
  auto owner = Subprocess::Start({WORKER_PATH, socket_, "bound", "0", "2", "1"});
  ASSERT_TRUE(owner.ok());
  // ... once the agent lists it waiting (the first worker binds the job).
  ASSERT_TRUE(testing::WaitFor([&] { return AgentStatus().out.find("bound") != std::string::npos; }));
  const auto intruder =
      RunCommand(absl::StrCat("setpriv --reuid=65534 --regid=65534 --clear-groups ", WORKER_PATH,
                              " ", socket_, " bound 1 2 1"),
                 true);
  EXPECT_NE(intruder.exit_code, 0) << intruder.out;
  EXPECT_THAT(intruder.out, HasSubstr("\"error\":7"));  // PERMISSION_DENIED
  EXPECT_THAT(intruder.out, HasSubstr("belongs to uid 0"));
  // An allowed uid completes the job's round.
  auto allowed = Subprocess::Start(
      {"/usr/bin/setpriv", "--reuid=4242", "--regid=65534", "--clear-groups", WORKER_PATH, socket_, "bound",
       "1", "2", "1"});
  ASSERT_TRUE(allowed.ok());
  absl::StatusOr<std::string> allowed_line = (*allowed)->ReadLine(absl::Seconds(20));
  ASSERT_TRUE(allowed_line.ok()) << allowed_line.status();
  EXPECT_THAT(*allowed_line, HasSubstr("\"rank\":1"));
  absl::StatusOr<std::string> owner_line = (*owner)->ReadLine(absl::Seconds(20));
  ASSERT_TRUE(owner_line.ok()) << owner_line.status();  // placement: the round closed
  EXPECT_THAT(*owner_line, HasSubstr("\"rank\":0"));
  // meshctl shows who attached each worker, as the kernel said.
  const auto status = AgentStatus();
  ASSERT_EQ(status.exit_code, 0) << status.out;
  EXPECT_THAT(status.out, HasSubstr("PID"));
  EXPECT_THAT(status.out, HasSubstr(absl::StrCat((*owner)->pid())));
  EXPECT_THAT(status.out, HasSubstr("4242"));
}

}  // namespace
}  // namespace meshd
