// The control plane as real processes: one coordinator, four agents with simulated GPUs, two
// workers on each. The job closes and every worker gets a distinct rank of the same world; then one
// agent is killed with SIGKILL and every remaining worker is told, within the heartbeat timeout + 1
// s. The coordinator's log says so at the levels an operator filters on.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/support/subprocess.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/support/agent_fleet.h"
#include "tests/support/run_command.h"
#include "tests/support/wait_for.h"

namespace meshd {
namespace {

using process::Subprocess;
using testing::RunCommand;

constexpr int kAgents = 4;
constexpr int kGpus = 2;
// Short, so the test is quick, but not so short that a live agent stalled by a loaded machine (a
// sanitizer build, tests in parallel) misses it: with 1 s, under ThreadSanitizer, a second node
// was now and then declared lost.
constexpr absl::Duration kHeartbeatTimeout = absl::Seconds(2);

TEST(Cluster, FourAgentsJobClosesThenKilledAgentIsReportedToEveryWorker) {
  const std::string dir = ::testing::TempDir() + "meshd_cluster_" + std::to_string(getpid());
  const std::string coordinator_log =
      ::testing::TempDir() + "meshd_cluster_coordinator_" + std::to_string(getpid()) + ".log";
  std::remove(coordinator_log.c_str());
  std::string address;
  auto started =
      testing::StartCoordinator({MESHD_PATH, "coordinator", "--listen", "127.0.0.1:0",
                                 "--heartbeat-interval", "200ms", "--heartbeat-timeout",
                                 absl::FormatDuration(kHeartbeatTimeout)},
                                &address, coordinator_log);
  ASSERT_TRUE(started.ok()) << started.status();
  auto& coordinator = *started;

  testing::AgentFleet fleet;
  ASSERT_TRUE(fleet.Start(MESHD_PATH, WORKER_PATH, address, dir, kAgents, kGpus, "train").ok());
  auto& agents = fleet.agents;
  auto& workers = fleet.workers;  // agent i's workers at 2i, 2i+1
  std::set<int> ranks;
  std::set<uint64_t> generations;
  for (auto& w : workers) {
    auto line = w->ReadLine(absl::Seconds(30));
    ASSERT_TRUE(line.ok()) << line.status();
    const auto j = nlohmann::json::parse(*line);
    ASSERT_TRUE(j.contains("rank")) << *line;
    EXPECT_EQ(j["world_size"], kAgents * kGpus);
    ranks.insert(j["rank"].get<int>());
    generations.insert(j["generation"].get<uint64_t>());
    EXPECT_THAT(j["gpu"].get<std::string>(), ::testing::StartsWith("SIM-node"));
  }
  EXPECT_EQ(ranks.size(), static_cast<size_t>(kAgents * kGpus));
  EXPECT_EQ(*ranks.begin(), 0);
  EXPECT_EQ(*ranks.rbegin(), kAgents * kGpus - 1);
  EXPECT_EQ(generations.size(), 1u);
  for (auto& w : workers) ASSERT_TRUE(w->WaitForLine("{\"watching\"", absl::Seconds(20)).ok());

  const int victim = 2;
  const absl::Time killed = absl::Now();
  agents[victim]->Signal(SIGKILL);
  for (int i = 0; i < kAgents; ++i) {
    if (i == victim) continue;
    for (int r = 0; r < kGpus; ++r) {
      auto& w = workers[i * kGpus + r];
      // Heartbeat timeout + 1 s, measured from the kill.
      auto line = w->ReadLine(killed + kHeartbeatTimeout + absl::Seconds(1) - absl::Now());
      ASSERT_TRUE(line.ok()) << "worker " << r << " of agent " << i << ": " << line.status();
      const auto j = nlohmann::json::parse(*line);
      EXPECT_EQ(j["event"], "REASON_NODE_LOST") << *line;
      EXPECT_EQ(j["node"], absl::StrCat("node", victim)) << *line;
    }
  }
  const absl::Duration told = absl::Now() - killed;
  std::fprintf(stderr, "every surviving worker was told after %s\n",
               absl::FormatDuration(told).c_str());

  for (auto& a : agents) a->Signal(SIGTERM);
  coordinator->Signal(SIGTERM);
  EXPECT_EQ(*coordinator->Wait(absl::Seconds(10)), 0);
  for (int i = 0; i < kAgents; ++i) {
    if (i != victim) {
      EXPECT_EQ(*agents[i]->Wait(absl::Seconds(10)), 0);
    }
  }

  // Text log lines read "<time> <I|W|D|E> <message> key=value ...". One line per node joining a
  // round would be 16,384 lines a job on a large cluster: those are debug, and the round's close is
  // one info line; a lost node, and the generation it ended, are warnings.
  std::stringstream log;
  log << std::ifstream(coordinator_log).rdbuf();
  int lost_warnings = 0, ended_warnings = 0, started_infos = 0, joined_lines = 0;
  for (absl::string_view line : absl::StrSplit(log.str(), '\n')) {
    const std::vector<absl::string_view> f = absl::StrSplit(line, absl::MaxSplits(' ', 2));
    if (f.size() < 3) continue;
    if (absl::StrContains(line, "event=node_joined")) ++joined_lines;
    if (f[1] == "W" && absl::StrContains(line, "event=node_lost")) ++lost_warnings;
    if (f[1] == "W" && absl::StrContains(line, "event=generation_ended")) ++ended_warnings;
    if (f[1] == "I" && absl::StrContains(line, "event=generation_started")) ++started_infos;
  }
  EXPECT_EQ(joined_lines, 0) << log.str();
  EXPECT_EQ(started_infos, 1) << log.str();
  EXPECT_EQ(lost_warnings, 1) << log.str();
  EXPECT_EQ(ended_warnings, 1) << log.str();
  std::remove(coordinator_log.c_str());
}

// An agent stopped cleanly (SIGTERM) tells the coordinator it leaves: the job's other workers are
// told at once that the node left — not after the heartbeat timeout, 60 s here — its own workers
// that it shuts down, and the node is shown LEFT, not dead. After the retention (8 s here) the
// departed node, and the job nobody joined again, are gone from the coordinator.
TEST(Cluster, AgentStoppedCleanly_OtherWorkersToldAtOnce_NodeShownLeft) {
  const std::string dir = ::testing::TempDir() + "meshd_leave_" + std::to_string(getpid());
  std::string address;
  auto started =
      testing::StartCoordinator({MESHD_PATH, "coordinator", "--listen", "127.0.0.1:0",
                                 "--heartbeat-interval", "1s", "--heartbeat-timeout", "60s",
                                 "--node-retention", "8s", "--job-retention", "8s"},
                                &address);
  ASSERT_TRUE(started.ok()) << started.status();
  auto& coordinator = *started;
  testing::AgentFleet fleet;
  ASSERT_TRUE(fleet.Start(MESHD_PATH, WORKER_PATH, address, dir, 2, kGpus, "train").ok());
  for (auto& w : fleet.workers) {
    ASSERT_TRUE(w->ReadLine(absl::Seconds(30)).ok());  // placement
    ASSERT_TRUE(w->WaitForLine("{\"watching\"", absl::Seconds(20)).ok());
  }

  const absl::Time stopped = absl::Now();
  fleet.agents[1]->Signal(SIGTERM);
  for (int r = 0; r < kGpus; ++r) {
    auto line = fleet.workers[r]->ReadLine(absl::Seconds(10));
    ASSERT_TRUE(line.ok()) << "worker " << r << " of node0: " << line.status();
    const auto j = nlohmann::json::parse(*line);
    EXPECT_EQ(j["event"], "REASON_NODE_LEFT") << *line;
    EXPECT_EQ(j["node"], "node1") << *line;
  }
  std::fprintf(stderr, "node0's workers were told after %s\n",
               absl::FormatDuration(absl::Now() - stopped).c_str());
  for (int r = 0; r < kGpus; ++r) {
    auto line = fleet.workers[kGpus + r]->ReadLine(absl::Seconds(10));
    ASSERT_TRUE(line.ok()) << line.status();
    EXPECT_EQ(nlohmann::json::parse(*line)["event"], "REASON_SHUTDOWN") << *line;
  }
  EXPECT_EQ(*fleet.agents[1]->Wait(absl::Seconds(10)), 0);
  const auto nodes = RunCommand(absl::StrCat(MESHCTL_PATH, " --coordinator ", address, " nodes"));
  EXPECT_THAT(nodes.out, ::testing::HasSubstr("left")) << nodes.out;
  const auto status = RunCommand(absl::StrCat(MESHCTL_PATH, " --coordinator ", address, " status"));
  EXPECT_THAT(status.out, ::testing::HasSubstr("1 alive, 0 dead, 1 left")) << status.out;

  std::string listed;
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        listed = RunCommand(absl::StrCat(MESHCTL_PATH, " --coordinator ", address, " nodes")).out +
                 RunCommand(absl::StrCat(MESHCTL_PATH, " --coordinator ", address, " jobs")).out;
        return listed.find("node1") == std::string::npos &&
               listed.find("train") == std::string::npos;
      },
      absl::Seconds(30), absl::Milliseconds(250)))
      << listed;

  fleet.agents[0]->Signal(SIGTERM);
  coordinator->Signal(SIGTERM);
  EXPECT_EQ(*coordinator->Wait(absl::Seconds(10)), 0);
}

}  // namespace
}  // namespace meshd
