// Unix sockets of GrpcServer and of the agent, in process: who made a call (SO_PEERCRED per call,
// and the experiment showing why gRPC 1.51 needs our own accept for it), a live socket never taken
// over, a stale one replaced, any other file left alone, mode and group.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "daemon/runtime/agent_daemon.h"
#include "daemon/runtime/coordinator_daemon.h"
#include "daemon/service/grpc_server.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/security/server_credentials.h"
#include "gtest/gtest.h"
#include "meshd/v1/agent.grpc.pb.h"
#include "tests/support/run_command.h"

namespace meshd {
namespace {

using ::meshd::testing::RunCommand;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr gid_t kNogroup = 65534;  // Debian's `nogroup`

std::string TempPath(const std::string& name) {
  return absl::StrCat(::testing::TempDir(), "meshd_unix_", getpid(), "_", name);
}

// GetStatus answers what the server can tell of its caller, in `version`: "peer=<peer()>
// pid=P uid=U gid=G" when `peers` knows the connection, "peer=<peer()> unknown" otherwise, then
// the names of the call's auth context properties.
class WhoCallsService final : public v1::Agent::CallbackService {
 public:
  explicit WhoCallsService(const service::UnixPeers* peers) : peers_(peers) {}

  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* ctx,
                                      const v1::GetAgentStatusRequest*,
                                      v1::AgentStatus* resp) override {
    std::string text = "peer=" + ctx->peer();
    const auto c = peers_ != nullptr ? peers_->Find(ctx->peer()) : std::nullopt;
    if (c) {
      absl::StrAppend(&text, " pid=", c->pid, " uid=", c->uid, " gid=", c->gid);
    } else {
      absl::StrAppend(&text, " unknown");
    }
    for (const auto& [name, value] : *ctx->auth_context()) {
      absl::StrAppend(&text, " ", std::string(name.data(), name.size()), "=",
                      std::string(value.data(), value.size()));
    }
    resp->set_version(text);
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  const service::UnixPeers* const peers_;
};

std::string WhoAmI(const std::string& target, std::shared_ptr<grpc::ChannelCredentials> creds =
                                                  grpc::InsecureChannelCredentials()) {
  auto stub = v1::Agent::NewStub(grpc::CreateChannel(target, creds));
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  v1::AgentStatus status;
  const grpc::Status s = stub->GetStatus(&ctx, v1::GetAgentStatusRequest(), &status);
  return s.ok() ? status.version() : absl::StrCat("error ", s.error_code(), " ", s.error_message());
}

// The experiment behind GrpcServer's unix listeners: on a socket gRPC 1.51 accepts itself, a call
// carries nothing of its caller (peer() "unix:", the auth context only the security level, with
// local credentials too), so SO_PEERCRED cannot be read per call.
TEST(UnixPeersTest, Grpc151OwnUnixListener_CallTellsNothingOfTheCaller) {
  WhoCallsService svc(nullptr);
  const std::string insecure = TempPath("grpc_insecure.sock");
  const std::string local = TempPath("grpc_local.sock");
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + insecure, grpc::InsecureServerCredentials());
  builder.AddListeningPort("unix:" + local, grpc::experimental::LocalServerCredentials(UDS));
  builder.RegisterService(&svc);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(WhoAmI("unix:" + insecure),
            "peer=unix: unknown transport_security_type=insecure security_level=TSI_SECURITY_NONE");
  EXPECT_EQ(WhoAmI("unix:" + local, grpc::experimental::LocalCredentials(UDS)),
            "peer=unix: unknown transport_security_type=local "
            "security_level=TSI_PRIVACY_AND_INTEGRITY");
  server->Shutdown();
}

// GrpcServer accepts unix connections itself and hands them over with AddInsecureChannelFromFd:
// a call's peer() is then "fd:<N>", which UnixPeers maps to the connection's SO_PEERCRED.
TEST(UnixPeersTest, GrpcServerUnixCall_CallerPidUidGid_TcpCallUnknown) {
  service::UnixPeers peers;
  WhoCallsService svc(&peers);
  const std::string path = TempPath("peers.sock");
  service::ServerOptions o;
  o.listen = {"unix:" + path, "127.0.0.1:0"};
  o.unix_peers = &peers;
  auto server = service::GrpcServer::Start(o, {&svc}, {"meshd.v1.Agent"});
  ASSERT_TRUE(server.ok()) << server.status();

  const std::string unix_call = WhoAmI("unix:" + path);
  EXPECT_THAT(unix_call, StartsWith("peer=fd:"));
  EXPECT_THAT(unix_call,
              HasSubstr(absl::StrCat(" pid=", getpid(), " uid=", getuid(), " gid=", getgid())));
  // A second channel is a second connection: its own fd, the same process.
  const std::string again = WhoAmI("unix:" + path);
  EXPECT_THAT(again, HasSubstr(absl::StrCat(" pid=", getpid())));

  const std::string tcp_call = WhoAmI((*server)->addresses()[1]);
  EXPECT_THAT(tcp_call, StartsWith("peer=ipv4:127.0.0.1:"));
  EXPECT_THAT(tcp_call, HasSubstr(" unknown"));

  EXPECT_EQ(peers.Find("unix:"), std::nullopt);
  EXPECT_EQ(peers.Find("fd:x"), std::nullopt);
  (*server)->Shutdown(absl::Seconds(1));
  EXPECT_FALSE(std::filesystem::exists(path)) << "the server removes its socket when it stops";
}

// Another user's process, through the socket's group: its own uid and gid, as the kernel says,
// whatever it claims. A process outside the group cannot connect at all (mode 0660).
TEST(UnixPeersTest, CallerOfAnotherUid_ItsUidAndGid_OutsideTheGroupRefused) {
  if (getuid() != 0) GTEST_SKIP() << "needs root to run a process as another user";
  service::UnixPeers peers;
  WhoCallsService svc(&peers);
  const std::string path = TempPath("other_uid.sock");
  service::ServerOptions o;
  o.listen = {"unix:" + path};
  o.unix_peers = &peers;
  o.unix_socket_group = kNogroup;
  auto server = service::GrpcServer::Start(o, {&svc}, {"meshd.v1.Agent"});
  ASSERT_TRUE(server.ok()) << server.status();
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  EXPECT_EQ(st.st_gid, kNogroup);

  const auto in_group =
      RunCommand(absl::StrCat("setpriv --reuid=65534 --regid=65534 --clear-groups ", MESHCTL_PATH,
                              " --agent ", path, " status"),
                 true);
  EXPECT_EQ(in_group.exit_code, 0) << in_group.out;
  EXPECT_THAT(in_group.out, HasSubstr("uid=65534 gid=65534"));
  EXPECT_THAT(in_group.out, HasSubstr("peer=fd:"));

  const auto outside =
      RunCommand(absl::StrCat("setpriv --reuid=1 --regid=1 --clear-groups ", MESHCTL_PATH,
                              " --agent ", path, " --timeout 2s status"),
                 true);
  EXPECT_EQ(outside.exit_code, 1) << outside.out;
  EXPECT_THAT(outside.out, Not(HasSubstr("uid=1 ")));
  (*server)->Shutdown(absl::Seconds(1));
}

// A socket file nobody accepts on: what a crashed daemon leaves.
void MakeStaleSocket(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << strerror(errno);
  close(fd);  // the file stays
}

// Agents in process, behind one coordinator.
class AgentSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    runtime::CoordinatorDaemonOptions c;
    c.listen = "127.0.0.1:0";
    auto cd = runtime::CoordinatorDaemon::Start(c);
    ASSERT_TRUE(cd.ok()) << cd.status();
    coordinator_ = *std::move(cd);
    socket_ = TempPath("agent.sock");
    std::filesystem::remove(socket_);
  }
  void TearDown() override { std::filesystem::remove(socket_); }

  runtime::AgentDaemonOptions Options() {
    runtime::AgentDaemonOptions a;
    a.coordinator = coordinator_->address();
    a.socket = socket_;
    a.simulate_gpus = 1;
    a.node_name = "n0";
    return a;
  }

  std::unique_ptr<runtime::CoordinatorDaemon> coordinator_;
  std::string socket_;
};

TEST_F(AgentSocketTest, SecondAgentOnLiveSocket_FailedPrecondition_FirstStillServesItsWorker) {
  auto first = runtime::AgentDaemon::Start(Options());
  ASSERT_TRUE(first.ok()) << first.status();
  auto stub = v1::Agent::NewStub(
      grpc::CreateChannel((*first)->address(), grpc::InsecureChannelCredentials()));
  v1::AttachRequest req;
  req.set_job("train");
  req.set_local_world(1);
  req.mutable_nodes()->set_min_nodes(1);
  req.mutable_nodes()->set_max_nodes(1);
  grpc::ClientContext attach;
  attach.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
  attach.set_wait_for_ready(true);
  v1::AttachResponse placed;
  ASSERT_TRUE(stub->Attach(&attach, req, &placed).ok());

  auto second = runtime::AgentDaemon::Start(Options());
  ASSERT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition) << second.status();
  EXPECT_THAT(std::string(second.status().message()),
              HasSubstr(absl::StrCat("is serving on ", socket_, " (pid ", getpid())));
  EXPECT_THAT(std::string(second.status().message()),
              HasSubstr("stop it or pick another --socket"));

  // The first agent still has its socket and its worker, on the same channel and a new one.
  grpc::ClientContext ctx;
  v1::AgentStatus status;
  ASSERT_TRUE(stub->GetStatus(&ctx, v1::GetAgentStatusRequest(), &status).ok());
  ASSERT_EQ(status.workers_size(), 1);
  EXPECT_EQ(status.workers(0).job(), "train");
  EXPECT_EQ(status.workers(0).generation(), placed.generation());
  EXPECT_THAT(WhoAmI((*first)->address()), HasSubstr(MESHD_VERSION));
}

TEST_F(AgentSocketTest, StaleSocket_Replaced) {
  ASSERT_NO_FATAL_FAILURE(MakeStaleSocket(socket_));
  auto agent = runtime::AgentDaemon::Start(Options());
  ASSERT_TRUE(agent.ok()) << agent.status();
  EXPECT_THAT(WhoAmI((*agent)->address()), HasSubstr(MESHD_VERSION));
  (*agent)->Stop();
  EXPECT_FALSE(std::filesystem::exists(socket_)) << "the agent removes its socket when it stops";
}

TEST_F(AgentSocketTest, RegularFileAtSocketPath_Refused_FileUntouched) {
  std::ofstream(socket_) << "not mine";
  auto agent = runtime::AgentDaemon::Start(Options());
  EXPECT_EQ(agent.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(agent.status().message()), HasSubstr("exists and is not a socket"));
  std::ifstream in(socket_);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "not mine");
}

TEST_F(AgentSocketTest, SocketGroup_SocketGivenToIt) {
  if (getuid() != 0) GTEST_SKIP() << "only root may give a file to any group";
  runtime::AgentDaemonOptions o = Options();
  o.socket_group = "nogroup";
  auto agent = runtime::AgentDaemon::Start(o);
  ASSERT_TRUE(agent.ok()) << agent.status();
  struct stat st {};
  ASSERT_EQ(stat(socket_.c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, kNogroup);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
}

TEST_F(AgentSocketTest, SocketGroupDefault_DaemonsOwnGroup) {
  auto agent = runtime::AgentDaemon::Start(Options());
  ASSERT_TRUE(agent.ok()) << agent.status();
  struct stat st {};
  ASSERT_EQ(stat(socket_.c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, getegid());
  EXPECT_EQ(st.st_mode & 0777, 0660u);
}

TEST_F(AgentSocketTest, UnknownSocketGroup_InvalidArgument_NoSocket) {
  runtime::AgentDaemonOptions o = Options();
  o.socket_group = "meshd-no-such-group";
  auto agent = runtime::AgentDaemon::Start(o);
  EXPECT_EQ(agent.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(agent.status().message()),
              HasSubstr("--socket-group: no group named 'meshd-no-such-group'"));
  EXPECT_FALSE(std::filesystem::exists(socket_));
}

}  // namespace
}  // namespace meshd
