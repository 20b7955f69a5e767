// The metrics port over mutual TLS, in process: a MetricsServer given the daemon's files serves
// HTTPS only — a client certificate of the CA gets the metrics text; plaintext HTTP, no
// certificate and another CA's are refused — and serves replaced certificate, key and CA files to
// new connections without a restart. The client is OpenSSL itself (tests/support/tls_scrape.h).
#include <unistd.h>

#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "daemon/metrics/metrics_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/files.h"
#include "tests/support/run_command.h"
#include "tests/support/scrape.h"
#include "tests/support/tls_scrape.h"
#include "tests/support/wait_for.h"

namespace meshd::metrics {
namespace {

using ::meshd::testing::HttpsGet;
using ::meshd::testing::ReadFile;
using ::meshd::testing::ReplaceFile;
using ::meshd::testing::TlsClient;
using ::meshd::testing::WaitFor;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// The test PKI (make_certs.sh), made once for the whole binary.
const std::string& Pki() {
  static const std::string* dir = [] {
    auto* d =
        new std::string(absl::StrCat(::testing::TempDir(), "meshd_metrics_tls_test_", getpid()));
    const auto r = testing::RunCommand(absl::StrCat(MAKE_CERTS, " ", *d), true);
    EXPECT_EQ(r.exit_code, 0) << r.out;
    return d;
  }();
  return *dir;
}

TlsClient Client(const std::string& name) {
  return {Pki() + "/" + name + ".pem", Pki() + "/" + name + ".key", Pki() + "/ca.pem"};
}

class MetricsTlsTest : public ::testing::Test {
 protected:
  // A server on the files under dir_ (copies of `cert`'s, and `ca`), re-read every second.
  void Serve(const std::string& cert = "server", const std::string& ca = "ca") {
    dir_ = absl::StrCat(Pki(), "/", ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    ReplaceFile(dir_ + "/metrics.key", ReadFile(Pki() + "/" + cert + ".key"));
    ReplaceFile(dir_ + "/metrics.pem", ReadFile(Pki() + "/" + cert + ".pem"));
    ReplaceFile(dir_ + "/ca.pem", ReadFile(Pki() + "/" + ca + ".pem"));
    auto started = MetricsServer::Start(
        "127.0.0.1:0", {dir_ + "/metrics.pem", dir_ + "/metrics.key", dir_ + "/ca.pem"},
        absl::Seconds(1));
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = *std::move(started);
  }

  // The serial of the certificate a new connection is served ("" when the handshake failed).
  std::string Served(const TlsClient& client) {
    std::string serial;
    auto r = HttpsGet(server_->address(), "/metrics", client, absl::Seconds(5), &serial);
    return r.ok() && r->status == 200 ? serial : "";
  }

  std::string dir_;
  std::unique_ptr<MetricsServer> server_;
};

TEST_F(MetricsTlsTest, ClientOfTheCa_GetsTheMetricsText) {
  Serve();
  EXPECT_TRUE(server_->tls());
  EXPECT_THAT(server_->url(), StartsWith("https://127.0.0.1:"));
  auto s = testing::ScrapeTls(server_->url(), Client("operator"));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)["meshd_insecure"], 0);
  bool build_info = false;
  for (const auto& [series, value] : *s) build_info |= absl::StartsWith(series, "meshd_build_info");
  EXPECT_TRUE(build_info);
  EXPECT_EQ(Served(Client("operator")), "1001");
  EXPECT_EQ(Served(Client("node-a")), "1001");  // any certificate of the CA
}

TEST_F(MetricsTlsTest, PlaintextHttp_Refused) {
  Serve();
  auto r = testing::HttpGet(server_->address(), "/metrics", absl::Seconds(5));
  EXPECT_FALSE(r.ok()) << "HTTP " << r->status << ": " << r->body.substr(0, 200);
}

TEST_F(MetricsTlsTest, ClientWithoutCertificate_Refused) {
  Serve();
  TlsClient anonymous = Client("operator");
  anonymous.cert = anonymous.key = "";
  auto r = HttpsGet(server_->address(), "/metrics", anonymous, absl::Seconds(5));
  ASSERT_FALSE(r.ok()) << "HTTP " << r->status;
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
}

// The client trusts the server's CA, so the failure is the server's refusal (its alert "unknown
// ca" may or may not reach the client before the connection is reset).
TEST_F(MetricsTlsTest, ClientOfAnotherCa_Refused) {
  Serve();
  auto r = HttpsGet(server_->address(), "/metrics", Client("stranger"), absl::Seconds(5));
  ASSERT_FALSE(r.ok()) << "HTTP " << r->status;
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
}

// Replaced like an operator should (rename into place, key first): new connections get the new
// certificate; then a new CA file decides which clients are let in.
TEST_F(MetricsTlsTest, FilesReplaced_NewConnectionsServedTheNewOnes) {
  Serve();
  ASSERT_EQ(Served(Client("operator")), "1001");
  ReplaceFile(dir_ + "/metrics.key", ReadFile(Pki() + "/server2.key"));
  ReplaceFile(dir_ + "/metrics.pem", ReadFile(Pki() + "/server2.pem"));
  std::string served;
  EXPECT_TRUE(WaitFor([&] { return (served = Served(Client("operator"))) == "1002"; },
                      absl::Seconds(20), absl::Milliseconds(100)))
      << "still served " << served;

  // Trust the other CA only: its client gets in, the first CA's no longer does.
  TlsClient stranger = Client("stranger");  // still checks the server against the first CA
  ASSERT_EQ(Served(stranger), "");
  ReplaceFile(dir_ + "/ca.pem", ReadFile(Pki() + "/other-ca.pem"));
  EXPECT_TRUE(WaitFor([&] { return Served(stranger) == "1002"; }, absl::Seconds(20),
                      absl::Milliseconds(100)));
  EXPECT_EQ(Served(Client("operator")), "");
}

TEST(MetricsTlsStart, KeyNotTheCertificates_InvalidArgumentNamingIt) {
  auto s = MetricsServer::Start(
      "127.0.0.1:0", {Pki() + "/server.pem", Pki() + "/node-a.key", Pki() + "/ca.pem"});
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(),
              HasSubstr("--tls-key " + Pki() + "/node-a.key is not the private key of --tls-cert"));
}

TEST(MetricsTlsStart, AddressInUse_Unavailable) {
  const security::TlsFiles files{Pki() + "/server.pem", Pki() + "/server.key", Pki() + "/ca.pem"};
  auto first = MetricsServer::Start("127.0.0.1:0", files);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = MetricsServer::Start((*first)->address(), files);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(), HasSubstr("cannot serve metrics on"));
}

TEST(MetricsTlsStart, WithoutTls_PlainHttpAsBefore) {
  auto s = MetricsServer::Start("127.0.0.1:0");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_FALSE((*s)->tls());
  EXPECT_THAT((*s)->url(), StartsWith("http://127.0.0.1:"));
  EXPECT_TRUE(testing::Scrape((*s)->url()).ok());
}

}  // namespace
}  // namespace meshd::metrics
