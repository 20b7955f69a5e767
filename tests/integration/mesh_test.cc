// The client library as real processes: a coordinator, four agents with 8 simulated GPUs each and
// one mesh_worker per GPU (a 32-rank 2x4x4 mesh, plus a flattened dp_tp group). Every member of
// every group holds the identical 128 bytes from the real ncclGetUniqueId, different groups hold
// different ids, and the groups equal `meshctl plan`'s; then an agent is SIGKILLed and every other
// worker learns it as ABORTED. A second test: ranks that ask for different meshes all fail, naming
// both.
#include <signal.h>
#include <unistd.h>

#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/support/nccl.h"
#include "tests/support/run_command.h"
#include "tests/support/subprocess.h"
#include "tests/support/wait_for.h"

namespace meshd {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using process::Subprocess;
using json = nlohmann::json;

struct Cluster {
  std::unique_ptr<Subprocess> coordinator;
  std::vector<std::unique_ptr<Subprocess>> agents;
  std::vector<std::string> sockets;
  std::string address;

  void Start(int agents_count, int gpus) {
    const std::string dir = absl::StrCat(::testing::TempDir(), "meshd_mesh_", getpid());
    coordinator =
        *Subprocess::Start({MESHD_PATH, "coordinator", "--listen", "127.0.0.1:0",
                            "--heartbeat-interval", "200ms", "--heartbeat-timeout", "2s"});
    auto line = coordinator->WaitForLine("meshd coordinator listening on ", absl::Seconds(20));
    ASSERT_TRUE(line.ok()) << line.status();
    address = *line;
    for (int i = 0; i < agents_count; ++i) {
      sockets.push_back(absl::StrCat(dir, "/agent", i, ".sock"));
      agents.push_back(*Subprocess::Start(
          {MESHD_PATH, "agent", "--coordinator", address, "--socket", sockets.back(),
           "--simulate-gpus", std::to_string(gpus), "--node-name", absl::StrCat("node", i)}));
      ASSERT_TRUE(agents.back()->WaitForLine("meshd agent listening on ", absl::Seconds(20)).ok());
    }
  }
};

TEST(MeshIntegration, ThirtyTwoRanks_IdsRelayedExactly_ThenAgentLossAborts) {
  MESHD_SKIP_WITHOUT_NCCL();
  constexpr int kAgents = 4, kGpus = 8;
  Cluster c;
  ASSERT_NO_FATAL_FAILURE(c.Start(kAgents, kGpus));
  std::vector<std::unique_ptr<Subprocess>> workers;
  for (int a = 0; a < kAgents; ++a) {
    for (int r = 0; r < kGpus; ++r) {
      workers.push_back(*Subprocess::Start({WORKER_PATH, "--socket", c.sockets[a], "--job", "mesh",
                                            "--local-rank", std::to_string(r), "--nnodes",
                                            std::to_string(kAgents), "--shape", "2,4,4", "--names",
                                            "pp,dp,tp", "--flatten", "dp,tp", "--json", "--wait"}));
    }
  }
  std::map<int, json> by_rank;
  for (auto& w : workers) {
    auto line = w->ReadLine(absl::Seconds(120));
    ASSERT_TRUE(line.ok()) << line.status();
    const json j = json::parse(*line);
    ASSERT_TRUE(j.contains("rank")) << *line;
    by_rank[j["rank"].get<int>()] = j;
  }
  ASSERT_EQ(by_rank.size(), 32u);

  // Same group key -> identical 128-byte id on every member; different keys -> different ids.
  std::map<std::string, std::string> id_of;
  std::map<std::string, std::set<int>> reporters;
  std::map<std::string, std::vector<int>> members;
  for (const auto& [rank, j] : by_rank) {
    EXPECT_EQ(j["world_size"], 32);
    ASSERT_EQ(j["groups"].size(), 4u);  // pp, dp, tp, dp_tp
    for (const json& g : j["groups"]) {
      const std::string key = g["key"];
      const std::string id = g["id"];
      EXPECT_EQ(id.size(), 256u);  // hex of 128 bytes
      auto [it, inserted] = id_of.emplace(key, id);
      EXPECT_EQ(it->second, id) << "rank " << rank << " got another id for " << key;
      reporters[key].insert(rank);
      members[key] = g["ranks"].get<std::vector<int>>();
    }
  }
  std::set<std::string> distinct;
  for (const auto& [key, id] : id_of) distinct.insert(id);
  EXPECT_EQ(distinct.size(), id_of.size()) << "two groups share an id";
  for (const auto& [key, ranks] : members) {
    EXPECT_EQ(reporters[key], std::set<int>(ranks.begin(), ranks.end())) << key;
  }

  // The groups equal meshctl plan's for the same mesh.
  const auto plan = testing::RunCommand(absl::StrCat(
      MESHCTL_PATH, " plan --world 32 --shape 2,4,4 --names pp,dp,tp --json --ranks 0"));
  ASSERT_EQ(plan.exit_code, 0);
  const json planned = json::parse(plan.out)["steps"][0]["groups"];
  for (const auto& [rank, j] : by_rank) {
    for (int d = 0; d < 3; ++d) {
      const auto mine = j["groups"][d]["ranks"].get<std::vector<int>>();
      bool found = false;
      for (const json& row : planned[d]) found |= row.get<std::vector<int>>() == mine;
      EXPECT_TRUE(found) << "rank " << rank << " dim " << d;
    }
  }

  // Kill agent 1: every worker of the other agents learns the generation ended, as ABORTED.
  const absl::Time killed = absl::Now();
  c.agents[1]->Signal(SIGKILL);
  for (int a = 0; a < kAgents; ++a) {
    if (a == 1) continue;
    for (int r = 0; r < kGpus; ++r) {
      auto line = workers[a * kGpus + r]->ReadLine(killed + absl::Seconds(5) - absl::Now());
      ASSERT_TRUE(line.ok()) << "agent " << a << " worker " << r << ": " << line.status();
      const json j = json::parse(*line);
      EXPECT_EQ(j["ended"]["code"], "ABORTED") << *line;
      EXPECT_THAT(j["ended"]["message"].get<std::string>(), HasSubstr("node1"));
      EXPECT_EQ(j["ended"]["later_call"], "ABORTED");
    }
  }
  std::fprintf(stderr, "every worker told after %s\n",
               absl::FormatDuration(absl::Now() - killed).c_str());
}

// Ranks are answered as soon as their groups have ids, so the first node's ranks may go on before
// the second asks for another mesh under the same name: that one is refused FAILED_PRECONDITION at
// once, and the generation ends (reason mesh mismatch), so the ones that went on learn it as its
// end and the ones still waiting for ids are answered ABORTED — all naming both meshes and who
// asked for which.
TEST(MeshIntegration, DifferentMeshesUnderOneName_EveryRankToldNamingBoth) {
  Cluster c;
  ASSERT_NO_FATAL_FAILURE(c.Start(2, 2));
  std::vector<std::unique_ptr<Subprocess>> workers;
  for (int a = 0; a < 2; ++a) {
    for (int r = 0; r < 2; ++r) {
      const std::string shape = a == 0 ? "2,2" : "4,1";
      workers.push_back(*Subprocess::Start({WORKER_PATH, "--socket", c.sockets[a], "--job", "bad",
                                            "--local-rank", std::to_string(r), "--nnodes", "2",
                                            "--shape", shape, "--names", "dp,tp", "--json",
                                            "--wait"}));
    }
  }
  int refused = 0, ended = 0;
  for (auto& w : workers) {
    auto line = w->ReadLine(absl::Seconds(60));
    ASSERT_TRUE(line.ok()) << line.status();
    json j = json::parse(*line);
    std::string msg;
    if (j.contains("error")) {
      msg = j["error"]["message"];
      if (j["error"]["code"] == "FAILED_PRECONDITION") {
        ++refused;
      } else {
        EXPECT_EQ(j["error"]["code"], "ABORTED") << *line;
        ++ended;
      }
    } else {
      auto end = w->ReadLine(absl::Seconds(10));  // told within a second: the watch's deadline
      ASSERT_TRUE(end.ok()) << *line << "\n" << end.status();
      j = json::parse(*end);
      ASSERT_TRUE(j.contains("ended")) << *end;
      EXPECT_EQ(j["ended"]["code"], "ABORTED") << *end;
      msg = j["ended"]["message"];
      ++ended;
    }
    // Which ranks each side lists depends on how far the other had asked (a node's workers may
    // ask in two batches on a slow machine); both meshes are always named.
    EXPECT_THAT(msg, ContainsRegex("ranks [0-3,-]+ asked for DeviceMesh\\(\\(dp=2, tp=2\\)"));
    EXPECT_THAT(msg, ContainsRegex("ranks [0-3,-]+ asked for DeviceMesh\\(\\(dp=4, tp=1\\)"));
  }
  EXPECT_GE(refused, 1);  // the ranks that asked after the other mesh was recorded
  std::fprintf(stderr, "%d ranks refused, %d told by their generation's end\n", refused, ended);
}

TEST(MeshIntegration, KilledWorkerAbortsTheOthers_CleanExitDoesNot) {
  MESHD_SKIP_WITHOUT_NCCL();
  Cluster c;
  ASSERT_NO_FATAL_FAILURE(c.Start(2, 2));
  auto start = [&](const std::string& job, bool wait) {
    std::vector<std::unique_ptr<Subprocess>> workers;
    for (int a = 0; a < 2; ++a) {
      for (int r = 0; r < 2; ++r) {
        std::vector<std::string> argv = {
            WORKER_PATH,    "--socket",        c.sockets[a], "--job", job,
            "--local-rank", std::to_string(r), "--nnodes",   "2",     "--shape",
            "2,2",          "--names",         "dp,tp",      "--json"};
        if (wait) argv.push_back("--wait");
        workers.push_back(*Subprocess::Start(argv));
      }
    }
    for (auto& w : workers) EXPECT_TRUE(w->ReadLine(absl::Seconds(60)).ok());
    return workers;
  };
  // Workers that finish and exit detach cleanly: nobody is aborted, and once every node's workers
  // have, the job is finished (its generation ends with JOB_FINISHED; nobody is left to tell).
  for (auto& w : start("clean", false)) EXPECT_EQ(*w->Wait(absl::Seconds(10)), 0);
  std::string job;
  EXPECT_TRUE(testing::WaitFor([&] {
    job = testing::RunCommand(
              absl::StrCat(MESHCTL_PATH, " --coordinator ", c.address, " job clean --json"))
              .out;
    return job.find("REASON_JOB_FINISHED") != std::string::npos;
  })) << job;
  EXPECT_EQ(json::parse(job)["last_end"]["generation"], "1") << job;

  // A worker killed mid-job: every other worker is told, ABORTED, naming it.
  auto workers = start("crash", true);
  workers[3]->Signal(SIGKILL);  // node1's local rank 1, global rank 3
  for (int i = 0; i < 3; ++i) {
    auto line = workers[i]->ReadLine(absl::Seconds(10));
    ASSERT_TRUE(line.ok()) << "worker " << i << ": " << line.status();
    const json j = json::parse(*line);
    EXPECT_EQ(j["ended"]["code"], "ABORTED") << *line;
    EXPECT_THAT(j["ended"]["message"].get<std::string>(), HasSubstr("local rank 1 (rank 3)"));
  }
}

}  // namespace
}  // namespace meshd
