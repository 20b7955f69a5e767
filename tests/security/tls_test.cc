// Mutual TLS in process: the files checked before gRPC sees them; a GrpcServer whose TCP port
// requires a client certificate of the CA (plaintext, no certificate and another CA's refused)
// while its unix socket stays plaintext; PeerIdentity read from a real handshake; rotation of the
// server's certificate by replacing its files.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "daemon/security/admin_policy.h"
#include "daemon/security/listen_policy.h"
#include "daemon/security/membership_key.h"
#include "daemon/security/peer_identity.h"
#include "daemon/security/tls_credentials.h"
#include "daemon/service/grpc_server.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "gtest/gtest.h"
#include "tests/support/files.h"
#include "tests/support/run_command.h"
#include "tests/support/wait_for.h"

namespace meshd::security {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

using ::meshd::testing::ReadFile;
using ::meshd::testing::ReplaceFile;

// The test PKI (make_certs.sh), made once for the whole binary.
const std::string& Pki() {
  static const std::string* dir = [] {
    auto* d = new std::string(absl::StrCat(::testing::TempDir(), "meshd_tls_test_", getpid()));
    const auto r = testing::RunCommand(absl::StrCat(MAKE_CERTS, " ", *d), true);
    EXPECT_EQ(r.exit_code, 0) << r.out;
    return d;
  }();
  return *dir;
}

TlsFiles Files(const std::string& name, const std::string& ca = "ca") {
  return {absl::StrCat(Pki(), "/", name, ".pem"), absl::StrCat(Pki(), "/", name, ".key"),
          absl::StrCat(Pki(), "/", ca, ".pem")};
}

// A channel of its own connection (no subchannel shared with earlier channels of the process).
std::shared_ptr<grpc::Channel> Channel(const std::string& address,
                                       std::shared_ptr<grpc::ChannelCredentials> credentials) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, credentials, args);
}

// Health/Check of "meshd.v1.Coordinator" over `channel`; `server_pem` gets the certificate the
// server presented, if any.
grpc::Status Check(const std::shared_ptr<grpc::Channel>& channel, std::string* server_pem = nullptr) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckRequest req;
  req.set_service("meshd.v1.Coordinator");
  grpc::health::v1::HealthCheckResponse resp;
  grpc::Status s = grpc::health::v1::Health::NewStub(channel)->Check(&ctx, req, &resp);
  if (s.ok() && server_pem != nullptr) {
    auto pem = ctx.auth_context()->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
    *server_pem = pem.empty() ? "" : std::string(pem[0].data(), pem[0].size());
  }
  return s;
}

std::shared_ptr<grpc::ChannelCredentials> ClientTls(const TlsFiles& files) {
  auto c = MutualTlsChannelCredentials(files, absl::Seconds(1));
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : nullptr;
}

// Trusts the CA but presents no certificate.
std::shared_ptr<grpc::ChannelCredentials> ClientWithoutCertificate() {
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(
      std::make_shared<grpc::experimental::StaticDataCertificateProvider>(
          ReadFile(Pki() + "/ca.pem")));
  options.watch_root_certs();
  return grpc::experimental::TlsCredentials(options);
}

TEST(ValidateTlsFiles, NoneOrAll) {
  EXPECT_TRUE(ValidateTlsFiles({}).ok());
  EXPECT_TRUE(ValidateTlsFiles(Files("server")).ok());
  const absl::Status s = ValidateTlsFiles({Pki() + "/server.pem", "", ""});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("missing: --tls-key, --tls-ca"));
}

TEST(ValidateTlsFiles, BadFile_InvalidArgumentNamingIt) {
  TlsFiles f = Files("server");
  f.cert = Pki() + "/nope.pem";
  absl::Status s = ValidateTlsFiles(f);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("--tls-cert " + f.cert + ": cannot read it"));

  const std::string junk = Pki() + "/junk.pem";
  std::ofstream(junk) << "not a certificate\n";
  f = Files("server");
  f.ca = junk;
  s = ValidateTlsFiles(f);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("--tls-ca " + junk + ": not a PEM file"));

  f = Files("server");
  std::swap(f.cert, f.key);  // a key where the certificate belongs, and back
  s = ValidateTlsFiles(f);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("holds no certificate"));
  f = Files("server");
  f.key = f.cert;
  s = ValidateTlsFiles(f);
  EXPECT_THAT(s.message(), HasSubstr("--tls-key " + f.cert + ": holds no private key"));
  EXPECT_EQ(MutualTlsServerCredentials(f).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ListenPolicy, PlaintextOnlyOnLoopbackUnlessInsecure) {
  for (const char* local : {"127.0.0.1:7070", "127.3.4.5:0", "localhost:1", "[::1]:7070",
                            "unix:/run/meshd/agent.sock"}) {
    EXPECT_TRUE(IsLocalOnly(local)) << local;
    EXPECT_TRUE(CheckPlaintextListen("--listen", local, false, false).ok()) << local;
  }
  for (const char* exposed : {"0.0.0.0:7070", "[::]:7070", "10.0.0.1:7070", "coord.example:7070"}) {
    EXPECT_FALSE(IsLocalOnly(exposed)) << exposed;
    const absl::Status s = CheckPlaintextListen("--listen", exposed, false, false);
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << exposed;
    EXPECT_THAT(s.message(), HasSubstr("--insecure"));
    EXPECT_THAT(s.message(), HasSubstr("--tls-cert"));
    EXPECT_TRUE(CheckPlaintextListen("--listen", exposed, true, false).ok());
    EXPECT_TRUE(CheckPlaintextListen("--listen", exposed, false, true).ok());
  }
}

class TlsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    socket_ = absl::StrCat(::testing::TempDir(), "meshd_tls_", getpid(), ".sock");
    service::ServerOptions options;
    options.listen = {"127.0.0.1:0", "unix:" + socket_};
    auto credentials = MutualTlsServerCredentials(Files("server"));
    ASSERT_TRUE(credentials.ok()) << credentials.status();
    options.tcp_credentials = *credentials;
    auto server = service::GrpcServer::Start(options, {}, {"meshd.v1.Coordinator"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    address_ = server_->addresses()[0];
  }

  std::string socket_, address_;
  std::unique_ptr<service::GrpcServer> server_;
};

TEST_F(TlsServerTest, ClientOfTheCa_Served) {
  std::string pem;
  EXPECT_TRUE(Check(Channel(address_, ClientTls(Files("node-a"))), &pem).ok());
  EXPECT_EQ(pem, ReadFile(Pki() + "/server.pem"));
}

TEST_F(TlsServerTest, PlaintextClient_Refused) {
  EXPECT_EQ(Check(Channel(address_, grpc::InsecureChannelCredentials())).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsServerTest, ClientWithoutCertificate_Refused) {
  EXPECT_EQ(Check(Channel(address_, ClientWithoutCertificate())).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsServerTest, ClientOfAnotherCa_Refused) {
  // Its certificate is signed by the other CA; it trusts ours, so only the server refuses it.
  TlsFiles stranger = Files("stranger");
  stranger.ca = Pki() + "/ca.pem";
  EXPECT_EQ(Check(Channel(address_, ClientTls(stranger))).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsServerTest, ServerOfAnotherCa_RefusedByClient) {
  EXPECT_EQ(Check(Channel(address_, ClientTls(Files("node-a", "other-ca")))).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsServerTest, UnixSocket_StaysPlaintext) {
  EXPECT_TRUE(Check(Channel("unix:" + socket_, grpc::InsecureChannelCredentials())).ok());
}

// Rotation: the server's files are replaced (a new key and certificate of the same CA); new
// connections get the new certificate, the connection made before keeps working.
TEST(TlsRotation, ServerFilesReplaced_NewConnectionsGetNewCertificate) {
  const std::string dir = absl::StrCat(Pki(), "/live_", ::testing::UnitTest::GetInstance()->random_seed());
  fs::create_directories(dir);
  const TlsFiles live{dir + "/cert.pem", dir + "/key.pem", Pki() + "/ca.pem"};
  ReplaceFile(live.cert, ReadFile(Pki() + "/server.pem"));
  ReplaceFile(live.key, ReadFile(Pki() + "/server.key"));
  service::ServerOptions options;
  options.listen = {"127.0.0.1:0"};
  options.tcp_credentials = *MutualTlsServerCredentials(live, absl::Seconds(1));
  auto server = service::GrpcServer::Start(options, {}, {"meshd.v1.Coordinator"});
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string address = (*server)->addresses()[0];
  auto before = Channel(address, ClientTls(Files("node-a")));
  std::string pem;
  ASSERT_TRUE(Check(before, &pem).ok());
  EXPECT_EQ(pem, ReadFile(Pki() + "/server.pem"));

  ReplaceFile(live.key, ReadFile(Pki() + "/server2.key"));
  ReplaceFile(live.cert, ReadFile(Pki() + "/server2.pem"));
  const std::string rotated = ReadFile(Pki() + "/server2.pem");
  EXPECT_TRUE(meshd::testing::WaitFor(
      [&] { return Check(Channel(address, ClientTls(Files("node-a"))), &pem).ok() && pem == rotated; },
      absl::Seconds(15), absl::Milliseconds(100)))
      << "still served: " << pem.substr(0, 80);
  EXPECT_TRUE(Check(before).ok());
}

// A server whose every call answers with the caller's PeerIdentity (kept for the test to read).
class IdentityServer {
 public:
  explicit IdentityServer(std::shared_ptr<grpc::ServerCredentials> credentials) {
    // No health service (GrpcServer turns gRPC's default one on): Check reaches this service.
    grpc::EnableDefaultHealthCheckService(false);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", credentials, &port_);
    builder.RegisterCallbackGenericService(&service_);
    server_ = builder.BuildAndStart();
  }
  ~IdentityServer() { server_->Shutdown(); }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  PeerIdentity last() {
    absl::MutexLock lock(&service_.mu);
    return service_.last;
  }

 private:
  struct Service : grpc::CallbackGenericService {
    grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override {
      {
        absl::MutexLock lock(&mu);
        last = FromAuthContext(*ctx->auth_context());
      }
      struct Reactor : grpc::ServerGenericBidiReactor {
        Reactor() { Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "identity noted")); }
        void OnDone() override { delete this; }
      };
      return new Reactor();
    }
    absl::Mutex mu;
    PeerIdentity last ABSL_GUARDED_BY(mu);
  };
  int port_ = 0;
  Service service_;
  std::unique_ptr<grpc::Server> server_;
};

TEST(PeerIdentity, NodeCertificate_ItsSansAndCn) {
  IdentityServer server(*MutualTlsServerCredentials(Files("server")));
  EXPECT_EQ(Check(Channel(server.address(), ClientTls(Files("node-a")))).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  const PeerIdentity id = server.last();
  EXPECT_TRUE(id.authenticated);
  EXPECT_THAT(id.dns_names, ElementsAre("node-a"));
  EXPECT_THAT(id.uris, ElementsAre("spiffe://meshd.test/node/node-a"));
  EXPECT_EQ(id.spiffe_id, "spiffe://meshd.test/node/node-a");
  EXPECT_EQ(id.common_name, "node-a");
  EXPECT_TRUE(id.Names("node-a"));
  EXPECT_FALSE(id.Names("node-b"));
  EXPECT_FALSE(id.Names(""));
}

TEST(PeerIdentity, OperatorCertificate_UriAndCnNoDns) {
  IdentityServer server(*MutualTlsServerCredentials(Files("server")));
  Check(Channel(server.address(), ClientTls(Files("operator"))));
  const PeerIdentity id = server.last();
  EXPECT_TRUE(id.authenticated);
  EXPECT_TRUE(id.dns_names.empty());
  EXPECT_EQ(id.spiffe_id, "spiffe://meshd.test/operator/alice");
  EXPECT_EQ(id.common_name, "operator");
  EXPECT_THAT(id.subject, HasSubstr("OU=admin"));
  EXPECT_TRUE(id.Names("operator"));  // no DNS SAN: the CN
  EXPECT_TRUE(id.Names("alice"));     // the SPIFFE id's last segment
}

TEST(PeerIdentity, Plaintext_Unauthenticated) {
  IdentityServer server(grpc::InsecureServerCredentials());
  EXPECT_EQ(Check(Channel(server.address(), grpc::InsecureChannelCredentials())).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  const PeerIdentity id = server.last();
  EXPECT_FALSE(id.authenticated);
  EXPECT_TRUE(id.dns_names.empty());
  EXPECT_EQ(id.common_name, "");
  EXPECT_FALSE(id.Names("node-a"));
  EXPECT_EQ(id.DebugString(), "unauthenticated");
}

// Roles: the operator's certificate (OU=admin, a spiffe://.../operator/ URI) matches the patterns
// an operator would configure; node-a's certificate (from the same CA) matches none of them.
TEST(AdminPolicy, OperatorCertificateMatches_NodeCertificateDoesNot) {
  IdentityServer server(*MutualTlsServerCredentials(Files("server")));
  Check(Channel(server.address(), ClientTls(Files("operator"))));
  const PeerIdentity op = server.last();
  Check(Channel(server.address(), ClientTls(Files("node-a"))));
  const PeerIdentity node = server.last();
  for (const char* pattern :
       {"OU=admin", "spiffe://meshd.test/operator/*", "spiffe://meshd.test/operator/alice",
        "cn:operator"}) {
    auto policy = AdminPolicy::Parse({pattern});
    ASSERT_TRUE(policy.ok()) << policy.status();
    EXPECT_TRUE(policy->IsOperator(op, "ipv4:10.0.0.5:4000")) << pattern;
    EXPECT_FALSE(policy->IsOperator(node, "ipv4:127.0.0.1:4000")) << pattern;
  }
  auto none = AdminPolicy::Parse({});
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->IsOperator(op, "ipv4:127.0.0.1:4000"));  // TLS without --admin-identity
  auto nodes = AdminPolicy::Parse({"dns:node-*"});
  ASSERT_TRUE(nodes.ok());
  EXPECT_TRUE(nodes->Matches(node));
  EXPECT_FALSE(nodes->Matches(op));
}

TEST(AdminPolicy, Plaintext_OnlyFromThisHost) {
  const AdminPolicy policy;
  const PeerIdentity plaintext;
  EXPECT_TRUE(policy.IsOperator(plaintext, "ipv4:127.0.0.1:5000"));
  EXPECT_TRUE(policy.IsOperator(plaintext, "ipv6:[::1]:5000"));
  EXPECT_TRUE(policy.IsOperator(plaintext, "unix:/run/meshd/agent.sock"));
  EXPECT_FALSE(policy.IsOperator(plaintext, "ipv4:10.1.2.3:5000"));
  EXPECT_FALSE(policy.IsOperator(plaintext, "ipv6:[fe80::1]:5000"));
  EXPECT_FALSE(policy.IsOperator(plaintext, "ipv4:128.0.0.1:5000"));
}

TEST(AdminPolicy, BadPattern_InvalidArgumentSayingWhatIsAccepted) {
  for (const char* bad : {"", "admin", "cn:", "OU=ad*min", "cn:ops*", "*"}) {
    auto policy = AdminPolicy::Parse({bad});
    ASSERT_FALSE(policy.ok()) << bad;
    EXPECT_EQ(policy.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(policy.status().message(), HasSubstr("OU=admin"));
  }
}

// The membership key: made once (32 bytes, 0600, its directory too), then read back the same;
// a key open to others, or of the wrong size, is refused with what to do.
TEST(MembershipKey, MadeOnceThenTheSame_BadFilesRefused) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "meshd_key_", getpid());
  fs::create_directories(dir);
  const std::string path = dir + "/state/membership.key";  // state/ is made
  auto made = LoadOrCreateMembershipKey(path);
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ(made->size(), kMembershipKeyBytes);
  EXPECT_EQ(fs::status(path).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  auto again = LoadOrCreateMembershipKey(path);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, *made);
  const auto sign = MembershipSigner(*made);
  EXPECT_EQ(sign("a").size(), 32u);
  EXPECT_EQ(sign("a"), MembershipSigner(*again)("a"));
  EXPECT_NE(sign("a"), sign("b"));

  fs::permissions(path, fs::perms::group_read, fs::perm_options::add);
  auto open = LoadOrCreateMembershipKey(path);
  EXPECT_EQ(open.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(open.status().message(), HasSubstr("chmod 600"));

  const std::string short_key = dir + "/short.key";
  ReplaceFile(short_key, "too short");
  fs::permissions(short_key, fs::perms::owner_read | fs::perms::owner_write);
  auto bad = LoadOrCreateMembershipKey(short_key);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("exactly 32 bytes"));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace meshd::security
