// Security as an operator meets it, with real processes: a job over mutual TLS (`meshd
// coordinator` and `meshd agent` with certificates, workers attached, meshctl with an operator's
// certificate), rotation of every certificate under the running job, the safe defaults
// (plaintext refused off loopback, --insecure with meshd_insecure 1), the TLS flags' errors, and
// the precedence of flags: command line > environment > config file > default.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "meshd/v1/coordinator.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/support/files.h"
#include "tests/support/run_command.h"
#include "tests/support/scrape.h"
#include "tests/support/subprocess.h"
#include "tests/support/tls_scrape.h"
#include "tests/support/wait_for.h"

namespace meshd {
namespace {

using ::meshd::process::Subprocess;
using ::meshd::testing::RunCommand;
using ::meshd::testing::WaitFor;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

using ::meshd::testing::ReadFile;

// Copies `from` over `to` atomically (a rename), as an operator's rotation should.
void Install(const std::string& from, const std::string& to) {
  testing::ReplaceFile(to, testing::ReadFile(from));
}

std::string Flags(const std::string& cert, const std::string& key, const std::string& ca) {
  return absl::StrCat(" --tls-cert ", cert, " --tls-key ", key, " --tls-ca ", ca);
}

// The serial of the certificate served on `address` to a client presenting `client` (openssl
// s_client, a TLS client that is not gRPC), e.g. "1002"; "" when none was served.
std::string ServedSerial(const std::string& address, const std::string& pki,
                         const std::string& client) {
  const auto r = RunCommand(absl::StrCat(
      "openssl s_client -connect ", address, " -cert ", pki, "/", client, ".pem -key ", pki, "/",
      client, ".key -CAfile ", pki, "/ca.pem </dev/null 2>/dev/null | openssl x509 -noout -serial",
      " 2>/dev/null"));
  absl::string_view out = r.out;
  absl::ConsumePrefix(&out, "serial=");
  return std::string(absl::StripTrailingAsciiWhitespace(out));
}

class TlsClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "meshd_security_", getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    pki_ = dir_ + "/pki";
    const auto made = RunCommand(absl::StrCat(MAKE_CERTS, " ", pki_), true);
    ASSERT_EQ(made.exit_code, 0) << made.out;
    // The daemons read these paths; rotation replaces what is there.
    Install(pki_ + "/server.pem", dir_ + "/coordinator.pem");
    Install(pki_ + "/server.key", dir_ + "/coordinator.key");
    Install(pki_ + "/node-a.pem", dir_ + "/agent.pem");
    Install(pki_ + "/node-a.key", dir_ + "/agent.key");
    const std::string ca = pki_ + "/ca.pem";

    auto c = Subprocess::Start(
        {MESHD_PATH, "coordinator", "--listen", "127.0.0.1:0", "--tls-cert",
         dir_ + "/coordinator.pem", "--tls-key", dir_ + "/coordinator.key", "--tls-ca", ca,
         "--tls-refresh", "1s", "--metrics-listen", "127.0.0.1:0", "--admin-identity",
         "OU=admin"},
        dir_ + "/coordinator.log");
    ASSERT_TRUE(c.ok()) << c.status();
    coordinator_ = *std::move(c);
    auto url = coordinator_->WaitForLine("meshd metrics on ", absl::Seconds(20));
    ASSERT_TRUE(url.ok()) << url.status();
    metrics_ = *url;
    auto line = coordinator_->WaitForLine("meshd coordinator listening on ", absl::Seconds(20));
    ASSERT_TRUE(line.ok()) << line.status();
    address_ = *line;

    socket_ = dir_ + "/agent.sock";
    auto a = Subprocess::Start(
        {MESHD_PATH, "agent", "--coordinator", address_, "--socket", socket_, "--simulate-gpus",
         "2", "--node-name", "node-a", "--health-listen", "127.0.0.1:0", "--tls-cert",
         dir_ + "/agent.pem", "--tls-key", dir_ + "/agent.key", "--tls-ca", ca, "--tls-refresh",
         "1s"});
    ASSERT_TRUE(a.ok()) << a.status();
    agent_ = *std::move(a);
    auto health = agent_->WaitForLine("meshd agent health on ", absl::Seconds(20));
    ASSERT_TRUE(health.ok()) << health.status();
    health_ = *health;
    ASSERT_TRUE(agent_->WaitForLine("meshd agent listening on ", absl::Seconds(20)).ok());
  }

  // Two workers of job "train" on node-a; their placement lines.
  std::vector<nlohmann::json> AttachWorkers() {
    std::vector<nlohmann::json> placements;
    for (int r = 0; r < 2; ++r) {
      auto w = Subprocess::Start({WORKER_PATH, socket_, "train", std::to_string(r), "2", "1"});
      EXPECT_TRUE(w.ok());
      workers_.push_back(*std::move(w));
    }
    for (auto& w : workers_) {
      auto placement = w->ReadLine(absl::Seconds(30));
      EXPECT_TRUE(placement.ok()) << placement.status();
      placements.push_back(nlohmann::json::parse(placement.ok() ? *placement : "{}"));
      EXPECT_TRUE(w->WaitForLine("{\"watching\"", absl::Seconds(20)).ok());
    }
    return placements;
  }

  testing::CommandResult Meshctl(const std::string& args, const std::string& client = "operator") {
    return RunCommand(absl::StrCat(MESHCTL_PATH, " --coordinator ", address_,
                                   client.empty() ? ""
                                                  : Flags(pki_ + "/" + client + ".pem",
                                                          pki_ + "/" + client + ".key",
                                                          pki_ + "/ca.pem"),
                                   " --timeout 5s ", args),
                      true);
  }

  testing::TlsClient Client(const std::string& name) {
    return {pki_ + "/" + name + ".pem", pki_ + "/" + name + ".key", pki_ + "/ca.pem"};
  }
  // "127.0.0.1:PORT" of metrics_ ("https://127.0.0.1:PORT/metrics").
  std::string MetricsAddress() {
    absl::string_view rest = metrics_;
    absl::ConsumePrefix(&rest, "https://");
    return std::string(rest.substr(0, rest.find('/')));
  }

  std::string dir_, pki_, address_, metrics_, socket_, health_;
  std::unique_ptr<Subprocess> coordinator_, agent_;
  std::vector<std::unique_ptr<Subprocess>> workers_;
};

TEST_F(TlsClusterTest, JobOverMutualTls_WorkersGetRanks_MeshctlWithCertificate) {
  const auto placements = AttachWorkers();
  ASSERT_EQ(placements.size(), 2u);
  std::set<int> ranks;
  for (const auto& p : placements) ranks.insert(p.value("rank", -1));
  EXPECT_EQ(ranks, (std::set<int>{0, 1}));

  auto r = Meshctl("job train --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto job = nlohmann::json::parse(r.out);
  EXPECT_EQ(job["phase"], "JOB_PHASE_RUNNING");
  EXPECT_EQ(job["members"][0]["node"], "node-a");

  // Without a certificate meshctl is refused, and told what to pass.
  r = Meshctl("status", "");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("UNAVAILABLE"));
  EXPECT_THAT(r.out, HasSubstr("--tls-cert"));
  // A certificate of another CA is refused too.
  r = RunCommand(absl::StrCat(MESHCTL_PATH, " --coordinator ", address_,
                              Flags(pki_ + "/stranger.pem", pki_ + "/stranger.key",
                                    pki_ + "/ca.pem"),
                              " --timeout 5s status"),
                 true);
  EXPECT_EQ(r.exit_code, 1) << r.out;

  // The metrics port speaks mutual TLS too: Prometheus with a certificate of the CA scrapes it;
  // plaintext and a client without a certificate get nothing.
  EXPECT_THAT(metrics_, ::testing::StartsWith("https://127.0.0.1:"));
  auto s = testing::ScrapeTls(metrics_, Client("operator"));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)["meshd_insecure"], 0);
  EXPECT_EQ((*s)["meshd_coordinator_nodes{state=\"alive\"}"], 1);
  EXPECT_FALSE(testing::Scrape("http://" + MetricsAddress()).ok());
  EXPECT_FALSE(testing::ScrapeTls(metrics_, {"", "", pki_ + "/ca.pem"}).ok());
  EXPECT_EQ(ServedSerial(address_, pki_, "operator"), "1001");
  EXPECT_EQ(ServedSerial(health_, pki_, "operator"), "2001");
  EXPECT_EQ(ServedSerial(MetricsAddress(), pki_, "operator"), "1001");
}

// A node is who its certificate says: an agent holding node-b's certificate that claims to be
// node-a (running a job) is refused (its registration names a node its certificate does not),
// and node-a's job runs on undisturbed — same generation, no worker told anything.
TEST_F(TlsClusterTest, AgentClaimingAnotherNodesName_Refused_ThatNodesJobRunsOn) {
  ASSERT_EQ(AttachWorkers().size(), 2u);
  const std::string rogue_log = dir_ + "/rogue.log";
  const std::string rogue_socket = dir_ + "/rogue.sock";
  auto rogue = Subprocess::Start(
      {MESHD_PATH, "agent", "--coordinator", address_, "--socket", rogue_socket,
       "--simulate-gpus", "2", "--node-name", "node-a", "--tls-cert", pki_ + "/node-b.pem",
       "--tls-key", pki_ + "/node-b.key", "--tls-ca", pki_ + "/ca.pem"},
      rogue_log);
  ASSERT_TRUE(rogue.ok()) << rogue.status();
  // It is refused, and says why in its log.
  ASSERT_TRUE(testing::WaitFor([&] {
    const std::string log = ReadFile(rogue_log);
    return log.find("PERMISSION_DENIED") != std::string::npos &&
           log.find("does not name node 'node-a'") != std::string::npos;
  }));
  auto status = RunCommand(absl::StrCat(MESHCTL_PATH, " --agent ", rogue_socket,
                                        " --timeout 5s status"),
                           true);
  EXPECT_THAT(status.out, HasSubstr("NOT connected"));
  auto r = Meshctl("job train --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto job = nlohmann::json::parse(r.out);
  EXPECT_EQ(job["phase"], "JOB_PHASE_RUNNING");
  EXPECT_EQ(job.value("generation", std::string("1")), "1") << r.out;
  for (auto& w : workers_) {
    EXPECT_EQ(w->ReadLine(absl::Milliseconds(300)).status().code(),
              absl::StatusCode::kDeadlineExceeded);
  }
}

// Every certificate replaced under a running job: new connections (meshctl, openssl s_client) see
// the new ones on the coordinator and on the agent's health port; the job keeps its generation
// and no worker is told anything.
TEST_F(TlsClusterTest, Rotation_NewCertificatesServed_JobUndisturbed) {
  AttachWorkers();
  auto r = Meshctl("job train --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto generation = nlohmann::json::parse(r.out)["generation"];

  Install(pki_ + "/server2.key", dir_ + "/coordinator.key");
  Install(pki_ + "/server2.pem", dir_ + "/coordinator.pem");
  Install(pki_ + "/node-a2.key", dir_ + "/agent.key");
  Install(pki_ + "/node-a2.pem", dir_ + "/agent.pem");
  std::string served;
  EXPECT_TRUE(WaitFor([&] { return (served = ServedSerial(address_, pki_, "operator")) == "1002"; },
                      absl::Seconds(20), absl::Milliseconds(200)))
      << "coordinator still serves " << served;
  EXPECT_TRUE(WaitFor([&] { return (served = ServedSerial(health_, pki_, "operator")) == "2002"; },
                      absl::Seconds(20), absl::Milliseconds(200)))
      << "agent's health port still serves " << served;
  // The coordinator's metrics port too, and its scrapes go on.
  EXPECT_TRUE(WaitFor([&] {
    return (served = ServedSerial(MetricsAddress(), pki_, "operator")) == "1002";
  }, absl::Seconds(20), absl::Milliseconds(200))) << "metrics port still serves " << served;
  EXPECT_TRUE(testing::ScrapeTls(metrics_, Client("operator")).ok());

  r = Meshctl("job train --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto job = nlohmann::json::parse(r.out);
  EXPECT_EQ(job["phase"], "JOB_PHASE_RUNNING");
  EXPECT_EQ(job["generation"], generation);
  r = RunCommand(absl::StrCat(MESHCTL_PATH, " --agent ", socket_, " status"), true);
  EXPECT_THAT(r.out, HasSubstr("(connected)"));
  for (auto& w : workers_) {
    const auto line = w->ReadLine(absl::Milliseconds(300));
    EXPECT_EQ(line.status().code(), absl::StatusCode::kDeadlineExceeded)
        << "a worker was told: " << (line.ok() ? *line : "");
  }
}

// A job's key names are its own: `meshctl job` shows every peer of the CA the store's counts, and
// only an operator the keys its ranks wait for. node-a (a member) waits for a key nobody sets.
TEST_F(TlsClusterTest, JobStore_CountsForEveryPeer_WaitedKeysForOperatorsOnly) {
  const std::vector<nlohmann::json> placed = AttachWorkers();
  ASSERT_EQ(placed.size(), 2u);
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = ReadFile(pki_ + "/ca.pem");
  tls.pem_private_key = ReadFile(pki_ + "/node-a.key");
  tls.pem_cert_chain = ReadFile(pki_ + "/node-a.pem");
  auto stub = v1::Coordinator::NewStub(grpc::CreateChannel(address_, grpc::SslCredentials(tls)));
  grpc::ClientContext wait_ctx;
  wait_ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  std::thread waiter([&] {
    v1::KeyGetRequest req;
    req.set_job("train");
    req.set_generation(placed[0]["generation"].get<uint64_t>());
    req.set_key("nobody-sets-this");
    req.set_wait(true);
    v1::KeyGetResponse resp;
    (void)stub->KeyGet(&wait_ctx, req, &resp);  // cancelled below
  });
  auto store = [&](const std::string& client) {
    auto r = Meshctl("job train --json", client);
    EXPECT_EQ(r.exit_code, 0) << r.out;
    return r.exit_code == 0 ? nlohmann::json::parse(r.out)["store"] : nlohmann::json();
  };
  EXPECT_TRUE(WaitFor([&] {
    const nlohmann::json s = store("operator");
    return s.contains("most_waited") && !s["most_waited"].empty() &&
           s["most_waited"][0]["key"] == "nobody-sets-this";
  })) << store("operator");
  const nlohmann::json node = store("node-b");  // a peer of the CA, not an operator
  EXPECT_EQ(node["waiting"], "1") << node;
  EXPECT_TRUE(node["most_waited"].empty()) << node;
  wait_ctx.TryCancel();
  waiter.join();
}

// Roles: an operator's certificate (OU=admin, the coordinator's --admin-identity) may use the
// admin calls; a node's certificate may not, and changes nothing. Ending the job by hand tells
// every worker why.
TEST_F(TlsClusterTest, AdminCalls_OperatorCertificateCan_NodeCertificateCannot) {
  ASSERT_EQ(AttachWorkers().size(), 2u);
  auto r = Meshctl("node cordon node-a --reason maintenance", "node-a");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("PERMISSION_DENIED"));
  EXPECT_THAT(r.out, HasSubstr("--admin-identity"));
  r = Meshctl("job end train", "node-b");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  r = Meshctl("nodes --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out)["nodes"][0]["cordoned"], false) << r.out;
  for (auto& w : workers_) {
    EXPECT_EQ(w->ReadLine(absl::Milliseconds(300)).status().code(),
              absl::StatusCode::kDeadlineExceeded);
  }

  r = Meshctl("node cordon node-a --reason maintenance");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("node 'node-a' cordoned (maintenance)"));
  r = Meshctl("nodes");
  EXPECT_THAT(r.out, HasSubstr("alive,cordoned"));
  r = Meshctl("node uncordon node-a --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out)["changed"], true);

  r = Meshctl("job end train --reason 'bad learning rate'");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("generation 1 ended"));
  for (auto& w : workers_) {
    auto line = w->ReadLine(absl::Seconds(10));
    ASSERT_TRUE(line.ok()) << line.status();
    EXPECT_THAT(*line, HasSubstr("REASON_JOB_ENDED"));
  }
  // The event names who did it.
  EXPECT_TRUE(WaitFor([&] {
    const std::string log = ReadFile(dir_ + "/coordinator.log");
    return log.find("job_ended") != std::string::npos && log.find("cn=operator") != std::string::npos;
  }));
}

TEST(SafeDefaults, PlaintextOffLoopback_RefusedSayingWhatToPass) {
  const auto standalone = RunCommand(
      absl::StrCat(MESHD_PATH, " standalone --listen 0.0.0.0:0 --simulate-gpus 1 --socket ",
                   ::testing::TempDir(), "safe_", getpid(), ".sock"),
      true);
  EXPECT_EQ(standalone.exit_code, 2) << standalone.out;
  EXPECT_THAT(standalone.out, HasSubstr("refusing to serve plaintext on --listen 0.0.0.0:0"));
  auto r = RunCommand(absl::StrCat(MESHD_PATH, " coordinator --listen 0.0.0.0:0"), true);
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("--tls-cert, --tls-key and --tls-ca"));
  EXPECT_THAT(r.out, HasSubstr("--insecure"));
  r = RunCommand(absl::StrCat(MESHD_PATH,
                              " agent --health-listen 0.0.0.0:0 --simulate-gpus 1 --socket ",
                              ::testing::TempDir(), "safe_agent_", getpid(), ".sock"),
                 true);
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("--health-listen 0.0.0.0:0"));
}

TEST(SafeDefaults, Insecure_ServesWithWarningAndGauge) {
  const std::string log = absl::StrCat(::testing::TempDir(), "insecure_", getpid(), ".log");
  auto c = Subprocess::Start({MESHD_PATH, "coordinator", "--listen", "0.0.0.0:0", "--insecure",
                              "--metrics-listen", "127.0.0.1:0"},
                             log);
  ASSERT_TRUE(c.ok());
  auto url = (*c)->WaitForLine("meshd metrics on ", absl::Seconds(20));
  ASSERT_TRUE(url.ok()) << url.status();
  ASSERT_TRUE((*c)->WaitForLine("meshd coordinator listening on 0.0.0.0:", absl::Seconds(20)).ok());
  auto s = testing::Scrape(*url);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)["meshd_insecure"], 1);
  EXPECT_THAT(ReadFile(log), HasSubstr("PLAINTEXT"));

  // On loopback plaintext needs no --insecure, and the gauge stays 0.
  auto local = Subprocess::Start(
      {MESHD_PATH, "coordinator", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"});
  ASSERT_TRUE(local.ok());
  url = (*local)->WaitForLine("meshd metrics on ", absl::Seconds(20));
  ASSERT_TRUE(url.ok()) << url.status();
  ASSERT_TRUE((*local)->WaitForLine("meshd coordinator listening on ", absl::Seconds(20)).ok());
  s = testing::Scrape(*url);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)["meshd_insecure"], 0);
}

TEST(TlsFlags, SomeButNotAll_OrBadFile_UsageErrorNamingIt) {
  auto r = RunCommand(absl::StrCat(MESHD_PATH, " coordinator --listen 127.0.0.1:0 --tls-cert /x"),
                      true);
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("missing: --tls-key, --tls-ca"));
  r = RunCommand(absl::StrCat("/usr/bin/env MESHD_TLS_CERT=/nope.pem MESHD_TLS_KEY=/nope.key "
                              "MESHD_TLS_CA=/nope-ca.pem ",
                              MESHD_PATH, " coordinator --listen 127.0.0.1:0"),
                 true);
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("--tls-cert /nope.pem: cannot read it"));
  r = RunCommand(absl::StrCat(MESHCTL_PATH, " --tls-cert /nope.pem status"), true);
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("missing: --tls-key, --tls-ca"));
}

// The coordinator's heartbeat timeout as meshctl reports it, for a coordinator started with
// `env` (VAR=value ...), `config` (the [coordinator] section) and `args`.
std::string HeartbeatTimeout(const std::string& env, const std::string& config,
                             const std::string& args) {
  static int n = 0;
  const std::string file =
      absl::StrCat(::testing::TempDir(), "precedence_", getpid(), "_", n++, ".toml");
  std::ofstream(file) << "[coordinator]\n" << config;
  std::vector<std::string> argv = {"/usr/bin/env"};
  for (const auto& part : absl::StrSplit(env, ' ', absl::SkipEmpty())) argv.emplace_back(part);
  for (const std::string& a :
       {std::string(MESHD_PATH), std::string("coordinator"), std::string("--config"), file}) {
    argv.push_back(a);
  }
  for (const auto& part : absl::StrSplit(args, ' ', absl::SkipEmpty())) argv.emplace_back(part);
  auto c = Subprocess::Start(argv);
  if (!c.ok()) return c.status().ToString();
  auto line = (*c)->WaitForLine("meshd coordinator listening on ", absl::Seconds(20));
  if (!line.ok()) return line.status().ToString();
  const auto r = RunCommand(absl::StrCat(MESHCTL_PATH, " --coordinator ", *line, " status --json"));
  const auto status = nlohmann::json::parse(r.out, nullptr, false);
  if (status.is_discarded() || !status.contains("heartbeat_timeout_ms")) return r.out;
  return absl::StrCat(status["heartbeat_timeout_ms"].get<int64_t>());
}

TEST(FlagPrecedence, CommandLineOverEnvironmentOverConfigFileOverDefault) {
  // --listen shared by coordinator and standalone: the environment used to win over the command
  // line (each mode's variables were applied to the storage they shared).
  const std::string base = "listen = \"127.0.0.1:0\"\n";
  EXPECT_EQ(HeartbeatTimeout("", base, ""), "5000");  // the default
  EXPECT_EQ(HeartbeatTimeout("", base + "heartbeat-timeout = \"3s\"\n", ""), "3000");
  EXPECT_EQ(HeartbeatTimeout("MESHD_HEARTBEAT_TIMEOUT=4s", base + "heartbeat-timeout = \"3s\"\n", ""),
            "4000");
  EXPECT_EQ(HeartbeatTimeout("MESHD_HEARTBEAT_TIMEOUT=4s", base + "heartbeat-timeout = \"3s\"\n",
                             "--heartbeat-timeout 6s"),
            "6000");
  // The environment's address would not serve; the command line's does.
  EXPECT_EQ(HeartbeatTimeout("MESHD_LISTEN=not-an-address", "", "--listen 127.0.0.1:0"), "5000");
  EXPECT_EQ(HeartbeatTimeout("MESHD_LISTEN=127.0.0.1:0", "listen = \"not-an-address\"\n", ""),
            "5000");
}

}  // namespace
}  // namespace meshd
