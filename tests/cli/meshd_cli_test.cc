// meshd and meshctl as an operator runs them: `meshd standalone` as a process with workers
// attached, then meshctl status/nodes/jobs/job (tables and JSON, coordinator and agent); meshd's
// flags from the environment and a config file; bad flags.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <functional>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tests/support/subprocess.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/support/files.h"
#include "tests/support/run_command.h"
#include "tests/support/scrape.h"
#include "tests/support/wait_for.h"

namespace meshd {
namespace {

using ::meshd::testing::WaitFor;
using ::meshd::testing::RunCommand;
using ::meshd::process::Subprocess;
using ::testing::HasSubstr;

class StandaloneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    socket_ = absl::StrCat(::testing::TempDir(), "meshd_cli_", getpid(), "/agent.sock");
    auto p = Subprocess::Start({MESHD_PATH, "standalone", "--listen", "127.0.0.1:0", "--socket",
                                socket_, "--simulate-gpus", "2", "--node-name", "solo"});
    ASSERT_TRUE(p.ok());
    daemon_ = *std::move(p);
    auto line = daemon_->WaitForLine("meshd standalone listening on ", absl::Seconds(20));
    ASSERT_TRUE(line.ok()) << line.status();
    address_ = line->substr(0, line->find(' '));
    for (int r = 0; r < 2; ++r) {
      auto w = Subprocess::Start({WORKER_PATH, socket_, "train", std::to_string(r), "2", "1"});
      ASSERT_TRUE(w.ok());
      workers_.push_back(*std::move(w));
    }
    for (auto& w : workers_) {
      ASSERT_TRUE(w->ReadLine(absl::Seconds(20)).ok());  // placement
      ASSERT_TRUE(w->WaitForLine("{\"watching\"", absl::Seconds(20)).ok());
    }
  }

  testing::CommandResult Meshctl(const std::string& args) {
    return RunCommand(absl::StrCat(MESHCTL_PATH, " --coordinator ", address_, " ", args), true);
  }

  std::string socket_, address_;
  std::unique_ptr<Subprocess> daemon_;
  std::vector<std::unique_ptr<Subprocess>> workers_;
};

TEST_F(StandaloneTest, MeshctlTables) {
  auto r = Meshctl("status");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("1 alive, 0 dead"));
  EXPECT_THAT(r.out, HasSubstr("1 running, 0 joining"));
  r = Meshctl("nodes");
  EXPECT_THAT(r.out, HasSubstr("solo"));
  EXPECT_THAT(r.out, HasSubstr("2 (simulated)"));
  r = Meshctl("jobs");
  EXPECT_THAT(r.out, HasSubstr("train"));
  EXPECT_THAT(r.out, HasSubstr("running"));
  r = Meshctl("job train");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("2 ranks"));
  EXPECT_THAT(r.out, HasSubstr("0..1"));
}

TEST_F(StandaloneTest, MeshctlJson) {
  auto r = Meshctl("job train --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["phase"], "JOB_PHASE_RUNNING");
  EXPECT_EQ(j["world_size"], 2);
  EXPECT_EQ(j["members"][0]["node"], "solo");
  r = Meshctl("nodes --json");
  const auto n = nlohmann::json::parse(r.out);
  EXPECT_EQ(n["nodes"][0]["inventory"]["gpus"][1]["simulated"], true);
}

TEST_F(StandaloneTest, MeshctlAgentStatus) {
  const auto r = RunCommand(absl::StrCat(MESHCTL_PATH, " --agent ", socket_, " status"), true);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("(connected)"));
  EXPECT_THAT(r.out, HasSubstr("2 (simulated)"));
  EXPECT_THAT(r.out, HasSubstr("train"));
  const auto bad = RunCommand(absl::StrCat(MESHCTL_PATH, " --agent ", socket_, " jobs"), true);
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.out, HasSubstr("use --coordinator"));
}

TEST_F(StandaloneTest, MeshctlErrors) {
  auto r = Meshctl("job nope");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("NOT_FOUND"));
  r = RunCommand(absl::StrCat(MESHCTL_PATH, " --coordinator 127.0.0.1:1 --timeout 1s status"),
                 true);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("UNAVAILABLE"));
}

// The operators' verbs without TLS: a caller on the coordinator's host is an operator. Drain
// ends the job's generation with the operator's reason; the drained node joins no new round until
// uncordoned; a live node cannot be forgotten.
TEST_F(StandaloneTest, OperatorVerbs_PlaintextFromThisHost) {
  auto r = Meshctl("node drain solo --reason 'swap GPU 3'");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("generations ended: train 1"));
  for (auto& w : workers_) {
    auto line = w->ReadLine(absl::Seconds(10));
    ASSERT_TRUE(line.ok()) << line.status();
    EXPECT_THAT(*line, HasSubstr("REASON_NODE_DRAINED"));
  }
  r = Meshctl("status");
  EXPECT_THAT(r.out, HasSubstr("1 alive, 0 dead, 1 cordoned"));
  r = Meshctl("nodes --json");
  const auto n = nlohmann::json::parse(r.out);
  EXPECT_EQ(n["nodes"][0]["cordoned"], true);
  EXPECT_EQ(n["nodes"][0]["cordon_reason"], "swap GPU 3");

  // A worker attaching now is refused, and told how the node comes back.
  auto w = Subprocess::Start({WORKER_PATH, socket_, "eval", "0", "1", "1"});
  ASSERT_TRUE(w.ok());
  auto refused = (*w)->ReadLine(absl::Seconds(20));
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_THAT(*refused, HasSubstr("cordoned"));
  EXPECT_THAT(*refused, HasSubstr("meshctl node uncordon solo"));

  r = Meshctl("node forget solo");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("FAILED_PRECONDITION"));
  r = Meshctl("job end nope");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("NOT_FOUND"));
  r = Meshctl("node uncordon solo");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("uncordoned"));
}

TEST_F(StandaloneTest, Sigterm_WorkersToldShutdown_ExitZero) {
  daemon_->Signal(SIGTERM);
  for (auto& w : workers_) {
    auto line = w->ReadLine(absl::Seconds(10));
    ASSERT_TRUE(line.ok()) << line.status();
    EXPECT_THAT(*line, HasSubstr("REASON_SHUTDOWN"));
  }
  EXPECT_EQ(*daemon_->Wait(absl::Seconds(10)), 0);
}

// --metrics-listen: the endpoint the daemon prints, scraped over HTTP while workers run, then after
// one of them is killed.
TEST(MeshdMetrics, StandaloneServesCoordinatorAndAgentSeries) {
  const std::string socket =
      absl::StrCat(::testing::TempDir(), "meshd_metrics_cli_", getpid(), "/agent.sock");
  auto daemon = Subprocess::Start({MESHD_PATH, "standalone", "--listen", "127.0.0.1:0", "--socket",
                                   socket, "--simulate-gpus", "2", "--node-name", "solo",
                                   "--metrics-listen", "127.0.0.1:0"});
  ASSERT_TRUE(daemon.ok());
  auto url = (*daemon)->WaitForLine("meshd metrics on ", absl::Seconds(20));
  ASSERT_TRUE(url.ok()) << url.status();
  ASSERT_TRUE((*daemon)->WaitForLine("meshd standalone listening on ", absl::Seconds(20)).ok());
  std::vector<std::unique_ptr<Subprocess>> workers;
  for (int r = 0; r < 2; ++r) {
    workers.push_back(
        *Subprocess::Start({WORKER_PATH, socket, "train", std::to_string(r), "2", "1"}));
  }
  for (auto& w : workers) ASSERT_TRUE(w->WaitForLine("{\"watching\"", absl::Seconds(20)).ok());
  auto s = testing::Scrape(*url);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)["meshd_coordinator_jobs{phase=\"running\"}"], 1);
  EXPECT_EQ((*s)["meshd_agent_workers{state=\"attached\"}"], 2);
  EXPECT_EQ((*s)["meshd_agent_gpus{simulated=\"true\"}"], 2);
  EXPECT_EQ((*s)["grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Attach\",grpc_service="
                 "\"meshd.v1.Agent\",grpc_type=\"unary\",server=\"agent\"}"],
            2);
  EXPECT_EQ((*s)["meshd_coordinator_rendezvous_duration_seconds_count"], 1);

  // A worker dies: the agent leaves the generation for its node, which ends it.
  workers[0]->Signal(SIGKILL);
  const std::string ended = "meshd_coordinator_generation_ends_total{reason=\"node_left\"}";
  double value = 0;
  WaitFor(
      [&] {
        s = testing::Scrape(*url);
        EXPECT_TRUE(s.ok()) << s.status();
        value = s.ok() ? (*s)[ended] : 0;
        return value == 1 || !s.ok();
      },
      absl::Seconds(10));
  EXPECT_EQ(value, 1);
  (*daemon)->Signal(SIGTERM);
  EXPECT_EQ(*(*daemon)->Wait(absl::Seconds(10)), 0);
}

TEST(MeshdMetrics, BadAddress_ExitOneWithMessage) {
  auto r = RunCommand(
      absl::StrCat(MESHD_PATH, " coordinator --listen 127.0.0.1:0 --metrics-listen 9464"), true);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("must be HOST:PORT"));
}

TEST(MeshdFlags, FromEnvironmentAndConfigFile) {
  auto env = Subprocess::Start({"/usr/bin/env", "MESHD_LISTEN=127.0.0.1:0", "MESHD_LOG_FORMAT=json",
                                MESHD_PATH, "coordinator"});
  ASSERT_TRUE(env.ok());
  EXPECT_TRUE(
      (*env)->WaitForLine("meshd coordinator listening on 127.0.0.1:", absl::Seconds(20)).ok());

  const std::string config = absl::StrCat(::testing::TempDir(), "meshd_", getpid(), ".toml");
  std::ofstream(config) << "[coordinator]\nlisten = \"127.0.0.1:0\"\nheartbeat-timeout = \"3s\"\n";
  auto file = Subprocess::Start({MESHD_PATH, "coordinator", "--config", config});
  ASSERT_TRUE(file.ok());
  EXPECT_TRUE(
      (*file)->WaitForLine("meshd coordinator listening on 127.0.0.1:", absl::Seconds(20)).ok());

  // A key outside its section is refused, not silently ignored.
  std::ofstream(config) << "listen = \"127.0.0.1:0\"\n";
  const auto r = RunCommand(absl::StrCat(MESHD_PATH, " coordinator --config ", config), true);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.out, HasSubstr("listen"));
}

TEST(MeshdFlags, BadValues_ExitTwoWithMessage) {
  auto r = RunCommand(absl::StrCat(MESHD_PATH, " coordinator --heartbeat-timeout soon"), true);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.out, HasSubstr("positive duration"));
  r = RunCommand(absl::StrCat(MESHD_PATH,
                              " coordinator --heartbeat-interval 5s --heartbeat-timeout 1s "
                              "--listen 127.0.0.1:0"),
                 true);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("must be longer than the heartbeat interval"));
  r = RunCommand(absl::StrCat(MESHD_PATH, " coordinator --listen nonsense"), true);
  EXPECT_EQ(r.exit_code, 1);
  r = RunCommand(
      absl::StrCat(MESHD_PATH, " agent --socket /tmp/x.sock --nvml-library /nonexistent.so"), true);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("--simulate-gpus N"));
  r = RunCommand(absl::StrCat(MESHD_PATH, " --help"), true);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("standalone"));
  // The limits: positive sizes, a duration.
  r = RunCommand(absl::StrCat(MESHD_PATH, " coordinator --kv-max-keys 0"), true);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.out, HasSubstr("--kv-max-keys"));
  r = RunCommand(absl::StrCat(MESHD_PATH, " coordinator --round-timeout soon"), true);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.out, HasSubstr("round-timeout"));
  // The coordinator tells agents their heartbeat timing: an agent refuses the flags.
  r = RunCommand(absl::StrCat(MESHD_PATH, " agent --heartbeat-timeout 5s --simulate-gpus 1"), true);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.out, HasSubstr("--heartbeat-timeout"));
}

// --version: version, git revision and build type, on both binaries.
TEST(Release, VersionLines) {
  for (const auto& [path, name] : {std::pair<std::string, std::string>{MESHD_PATH, "meshd"},
                                   {MESHCTL_PATH, "meshctl"}}) {
    const auto r = RunCommand(path + " --version", true);
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_THAT(r.out, ::testing::MatchesRegex(name +
                                               " [0-9]+\\.[0-9]+\\.[0-9]+ \\(git "
                                               "([0-9a-f]{12}(-dirty)?|unknown), [A-Za-z]+\\)\n"))
        << r.out;
  }
}

// gRPC's own lines go through meshd's logger: with --log-format json, a TLS handshake gRPC
// complains about is a JSON line too (every stderr line parses).
TEST(Release, EveryLogLineIsJson) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "meshd_json_", getpid());
  const std::string log = dir + ".log";
  std::remove(log.c_str());
  // gRPC at its chattiest, so that it has lines to write.
  auto p = Subprocess::Start(
      {"/bin/sh", "-c",
       absl::StrCat("GRPC_VERBOSITY=debug exec ", MESHD_PATH,
                    " coordinator --listen 127.0.0.1:0 --log-format json --log-level debug")},
      log);
  ASSERT_TRUE(p.ok());
  auto line = (*p)->WaitForLine("meshd coordinator listening on ", absl::Seconds(20));
  ASSERT_TRUE(line.ok()) << line.status();
  // A TLS client on a plaintext port: gRPC logs the bad handshake.
  RunCommand(absl::StrCat("openssl s_client -connect ", *line, " </dev/null"), true);
  (*p)->Signal(SIGTERM);
  ASSERT_TRUE((*p)->Wait(absl::Seconds(10)).ok());
  std::ifstream in(log);
  int lines = 0;
  for (std::string l; std::getline(in, l); ++lines) {
    EXPECT_TRUE(nlohmann::json::accept(l)) << "not JSON: " << l;
  }
  EXPECT_GT(lines, 2);
  EXPECT_NE(testing::ReadFile(log).find("\"source\":\"grpc\""), std::string::npos) << testing::ReadFile(log);
}

// meshctl's bash completion: commands, the operators' verbs, flags, and node and job names from
// the coordinator; and nothing meshctl has is missing from it.
TEST_F(StandaloneTest, BashCompletion) {
  const std::string completion = std::string(SOURCE_DIR) + "/deploy/completion/meshctl.bash";
  const std::string bin = std::string(MESHCTL_PATH).substr(0, std::string(MESHCTL_PATH).rfind('/'));
  auto complete = [&](const std::string& words, int cword) {
    return RunCommand(absl::StrCat("PATH=", bin, ":$PATH bash -c 'source ", completion,
                                   "; COMP_WORDS=(", words, "); COMP_CWORD=", cword,
                                   "; _meshctl; echo \"${COMPREPLY[*]}\"'"),
                      true)
        .out;
  };
  EXPECT_EQ(complete("meshctl \"\"", 1), "status nodes jobs job node leave plan\n");
  EXPECT_EQ(complete("meshctl node \"\"", 2), "cordon uncordon drain forget\n");
  EXPECT_EQ(complete("meshctl node dr", 2), "drain\n");
  EXPECT_EQ(complete(absl::StrCat("meshctl --coordinator ", address_, " node drain \"\""), 5),
            "solo\n");
  EXPECT_EQ(complete(absl::StrCat("meshctl --coordinator ", address_, " job end \"\""), 5),
            "train\n");
  EXPECT_THAT(complete("meshctl node drain solo --r", 4), HasSubstr("--reason"));
  // Every command meshctl's help lists is completed.
  for (const char* command : {"status", "nodes", "jobs", "job", "node", "plan"}) {
    EXPECT_THAT(RunCommand(absl::StrCat(MESHCTL_PATH, " --help"), true).out, HasSubstr(command));
  }
  const std::string help = RunCommand(absl::StrCat(MESHCTL_PATH, " node --help"), true).out;
  for (const char* verb : {"cordon", "uncordon", "drain", "forget"}) {
    EXPECT_THAT(help, HasSubstr(verb));
  }
}

// `meshctl status` asks the agent at $MESHD_SOCKET (the variable the agent and the clients read)
// unless a coordinator is named; the old MESHD_AGENT_SOCKET still works, with a line saying so.
TEST_F(StandaloneTest, MeshctlStatus_AgentFromMeshdSocket) {
  auto r = RunCommand(absl::StrCat("MESHD_SOCKET=", socket_, " ", MESHCTL_PATH, " status"), true);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("agent"));
  EXPECT_THAT(r.out, HasSubstr("(connected)"));
  r = RunCommand(absl::StrCat("MESHD_AGENT_SOCKET=", socket_, " ", MESHCTL_PATH, " status"), true);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("MESHD_AGENT_SOCKET is deprecated"));
  EXPECT_THAT(r.out, HasSubstr("(connected)"));
  // A coordinator named, or a coordinator's command: the coordinator.
  r = RunCommand(absl::StrCat("MESHD_SOCKET=", socket_, " ", MESHCTL_PATH, " --coordinator ",
                              address_, " status"),
                 true);
  EXPECT_THAT(r.out, HasSubstr("heartbeat timeout"));
  r = RunCommand(absl::StrCat("MESHD_SOCKET=", socket_, " ", MESHCTL_PATH, " --coordinator ",
                              address_, " nodes"),
                 true);
  EXPECT_THAT(r.out, HasSubstr("solo"));
}

// An idle daemon gives freed memory back: meshd sets jemalloc's background thread on
// (daemon/main/malloc_conf.cc), without which a coordinator that went quiet after removing 10,000
// node incarnations kept 1.31x its start RSS (bench/soak_bench.cc). Skipped without jemalloc.
TEST(Release, Jemalloc_BackgroundThreadOn) {
  testing::CommandResult r =
      RunCommand(absl::StrCat("MALLOC_CONF=stats_print:true ", MESHD_PATH, " --version"), true);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  if (r.out.find("Begin jemalloc statistics") == std::string::npos) {
    GTEST_SKIP() << "meshd is not linked with jemalloc (MESHD_JEMALLOC)";
  }
  EXPECT_THAT(r.out, HasSubstr("opt.background_thread: true"));
}

}  // namespace
}  // namespace meshd
