// deploy/systemd: every unit passes `systemd-analyze verify` without a single complaint (verify exits 0
// on unknown keys, so its output must be empty), and a real meshd speaks the notify protocol the
// Type=notify units rely on: READY=1 once its port answers, WATCHDOG=1 when asked, STOPPING=1 on
// SIGTERM. The coordinator unit's own settings (its Environment= lines, with the test PKI in
// /etc/meshd/tls and a temporary StateDirectory) start a real coordinator: the membership key is
// made in the state directory, metrics speak https, and the operator certificate as
// docs/security.md issues it (OU=admin) may use the admin calls while a node's may not.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/run_command.h"
#include "tests/support/subprocess.h"

namespace meshd {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

// Copies a unit with ExecStart pointing at the built binary (verify checks that it exists).
std::string Staged(const fs::path& unit, const std::string& dir, const std::string& replace = "",
                   const std::string& with = "") {
  std::stringstream text;
  text << std::ifstream(unit).rdbuf();
  std::string body = absl::StrReplaceAll(text.str(), {{"/usr/local/bin/meshd", MESHD_PATH}});
  if (!replace.empty()) body = absl::StrReplaceAll(body, {{replace, with}});
  const std::string out = absl::StrCat(dir, "/", unit.filename().string());
  std::ofstream(out) << body;
  return out;
}

testing::CommandResult Verify(const std::string& unit) {
  return testing::RunCommand(absl::StrCat("systemd-analyze verify --man=no '", unit, "'"), true);
}

TEST(Systemd, EveryUnitVerifiesCleanly) {
  if (system("command -v systemd-analyze >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "systemd-analyze is not installed (scripts/install-deps.sh installs it)";
  }
  const std::string dir = absl::StrCat(::testing::TempDir(), "meshd_units_", getpid());
  fs::create_directories(dir);
  int units = 0;
  for (const auto& entry : fs::directory_iterator(fs::path(MESHD_SOURCE_DIR) / "deploy/systemd")) {
    if (entry.path().extension() != ".service") continue;
    ++units;
    const auto r = Verify(Staged(entry.path(), dir));
    EXPECT_EQ(r.exit_code, 0) << entry.path();
    EXPECT_EQ(r.out, "") << entry.path();
  }
  EXPECT_EQ(units, 2);
  // The check can fail: a typo in a key is reported.
  const auto bad = Verify(Staged(fs::path(MESHD_SOURCE_DIR) / "deploy/systemd/meshd-coordinator.service",
                                 dir, "ProtectSystem=", "ProtectSystm="));
  EXPECT_THAT(bad.out, HasSubstr("ProtectSystm"));
}

class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    unlink(path.c_str());
    bound_ = bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~NotifySocket() {
    close(fd_);
    unlink(path_.c_str());
  }
  bool bound() const { return bound_; }
  // Reads datagrams until one contains `want`; returns it, or "" after `timeout`.
  std::string WaitFor(const std::string& want, absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now())) + 1) <= 0) {
        continue;
      }
      char buf[1024];
      const ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) continue;
      std::string msg(buf, static_cast<size_t>(n));
      if (msg.find(want) != std::string::npos) return msg;
    }
    return "";
  }

 private:
  std::string path_;
  int fd_ = -1;
  bool bound_ = false;
};

bool PortAnswers(const std::string& address) {
  const int port = std::stoi(address.substr(address.rfind(':') + 1));
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
  close(fd);
  return ok;
}

TEST(Systemd, NotifyReadyWatchdogStopping) {
  const std::string path = absl::StrCat("/tmp/meshd_notify_", getpid(), ".sock");
  NotifySocket notify(path);
  ASSERT_TRUE(notify.bound());
  auto daemon = process::Subprocess::Start(
      {"/usr/bin/env", "NOTIFY_SOCKET=" + path, "WATCHDOG_USEC=200000", MESHD_PATH, "coordinator",
       "--listen", "127.0.0.1:0"});
  ASSERT_TRUE(daemon.ok());
  const std::string ready = notify.WaitFor("READY=1", absl::Seconds(20));
  ASSERT_THAT(ready, HasSubstr("READY=1"));
  EXPECT_THAT(ready, HasSubstr("STATUS=coordinator serving on 127.0.0.1:"));
  auto address = (*daemon)->WaitForLine("meshd coordinator listening on ", absl::Seconds(5));
  ASSERT_TRUE(address.ok());
  EXPECT_TRUE(PortAnswers(*address));  // READY only once the port answers
  EXPECT_THAT(notify.WaitFor("WATCHDOG=1", absl::Seconds(2)), HasSubstr("WATCHDOG=1"));
  (*daemon)->Signal(SIGTERM);
  EXPECT_THAT(notify.WaitFor("STOPPING=1", absl::Seconds(10)), HasSubstr("STOPPING=1"));
  EXPECT_EQ(*(*daemon)->Wait(absl::Seconds(10)), 0);
}

// A unit's `Key=value` settings, in order (comments and sections skipped).
std::vector<std::pair<std::string, std::string>> UnitSettings(const fs::path& unit) {
  std::vector<std::pair<std::string, std::string>> out;
  std::ifstream in(unit);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#' || line[0] == '[') continue;
    std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits('=', 1));
    out.push_back(std::move(kv));
  }
  return out;
}

TEST(Systemd, CoordinatorUnitSettingsServe) {
  if (system("command -v openssl >/dev/null 2>&1") != 0) GTEST_SKIP() << "no openssl";
  const fs::path unit = fs::path(MESHD_SOURCE_DIR) / "deploy/systemd/meshd-coordinator.service";
  const std::string meshctl = (fs::path(MESHD_PATH).parent_path() / "meshctl").string();
  ASSERT_TRUE(fs::exists(meshctl)) << meshctl << " (build the meshctl target)";
  const std::string dir = absl::StrCat(::testing::TempDir(), "meshd_unit_env_", getpid());
  fs::remove_all(dir);
  const std::string tls = dir + "/tls";
  ASSERT_EQ(testing::RunCommand(absl::StrCat("sh '", MESHD_SOURCE_DIR,
                                             "/tests/security/make_certs.sh' '", tls, "'"))
                .exit_code,
            0);
  // The coordinator's files under the unit's names (the test PKI's server certificate names
  // 127.0.0.1 and is good for clientAuth and serverAuth).
  fs::copy_file(tls + "/server.pem", tls + "/coordinator.pem");
  fs::copy_file(tls + "/server.key", tls + "/coordinator.key");

  std::vector<std::string> argv = {"/usr/bin/env", "-i"};
  std::string state_directory, key_path;
  for (const auto& [key, value] : UnitSettings(unit)) {
    if (key == "StateDirectory") state_directory = value;
    if (key != "Environment") continue;
    const std::string setting = absl::StrReplaceAll(
        value, {{"/etc/meshd/tls", tls}, {"/var/lib/meshd", dir + "/state"}});
    if (absl::StartsWith(value, "MESHD_MEMBERSHIP_KEY=")) key_path = value.substr(21);
    argv.push_back(setting);
  }
  // ProtectSystem=strict leaves only the StateDirectory writable: the key must be in it.
  ASSERT_EQ(state_directory, "meshd");
  ASSERT_TRUE(absl::StartsWith(key_path, "/var/lib/meshd/")) << key_path;
  ASSERT_EQ(mkdir((dir + "/state").c_str(), 0700), 0);  // what StateDirectoryMode=0700 makes
  // As meshd.env.example would set them, on loopback with free ports.
  argv.insert(argv.end(), {"MESHD_LISTEN=127.0.0.1:0", "MESHD_METRICS_LISTEN=127.0.0.1:0", MESHD_PATH,
                           "coordinator"});
  auto daemon = process::Subprocess::Start(argv);
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  auto metrics = (*daemon)->WaitForLine("meshd metrics on ", absl::Seconds(20));
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_THAT(*metrics, ::testing::StartsWith("https://127.0.0.1:"));
  auto address = (*daemon)->WaitForLine("meshd coordinator listening on ", absl::Seconds(20));
  ASSERT_TRUE(address.ok()) << address.status();

  const std::string key_file = dir + "/state/" + key_path.substr(15);
  struct stat st {};
  ASSERT_EQ(stat(key_file.c_str(), &st), 0) << key_file;
  EXPECT_EQ(st.st_mode & 0777, 0600);
  EXPECT_EQ(st.st_size, 32);

  auto as = [&](const std::string& who) {
    return testing::RunCommand(
        absl::StrCat(meshctl, " --coordinator ", *address, " --timeout 5s --tls-cert '", tls, "/",
                     who, ".pem' --tls-key '", tls, "/", who, ".key' --tls-ca '", tls,
                     "/ca.pem' node cordon no-such-node"),
        true);
  };
  // The operator gets past the admin check (the node does not exist); a node is refused.
  EXPECT_THAT(as("operator").out, HasSubstr("NOT_FOUND"));
  const auto node = as("node-a");
  EXPECT_THAT(node.out, HasSubstr("PERMISSION_DENIED"));
  EXPECT_EQ(node.exit_code, 1);

  (*daemon)->Signal(SIGTERM);
  EXPECT_EQ(*(*daemon)->Wait(absl::Seconds(10)), 0);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace meshd
