// The coordinator restarted under a running job, as real processes: three agents with two
// workers each run a job; the coordinator is killed with SIGKILL and a new one started on the same
// address. The agents register again reporting their running generation, the new coordinator
// takes the job back (same generation and ranks) and no worker hears of the restart; then an agent
// is killed and every remaining worker is told, through the new coordinator. Both coordinators
// share a --membership-key: a node that was never in the job and reports a place in it to the new
// coordinator (before or after the real members) is ignored, and the job is not disturbed.
#include <signal.h>
#include <unistd.h>

#include <functional>
#include <map>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tests/support/subprocess.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "meshd/v1/coordinator.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/support/agent_fleet.h"
#include "tests/support/files.h"
#include "tests/support/nccl.h"
#include "tests/support/wait_for.h"

namespace meshd {
namespace {

using ::meshd::testing::WaitFor;
using process::Subprocess;

constexpr int kAgents = 3;
constexpr int kGpus = 2;

absl::StatusOr<std::unique_ptr<Subprocess>> StartCoordinator(const std::string& listen,
                                                             std::string* address) {
  static const std::string key =
      ::testing::TempDir() + "meshd_restart_membership_" + std::to_string(getpid()) + ".key";
  // The default recovery window (10 s): an agent that retried its registration while the
  // coordinator was away waits up to 1.5 × its 5 s backoff cap before the next try; a 5 s window
  // closed before one did when the outage lasted (under TSan, tests two at a time).
  return testing::StartCoordinator(
      {MESHD_PATH, "coordinator", "--listen", listen, "--heartbeat-interval", "200ms",
       "--heartbeat-timeout", "2s", "--recovery-window", "10s", "--membership-key", key},
      address);
}

// Kills `coordinator` with its state (SIGKILL) and starts a new one on its `address`.
void Restart(std::unique_ptr<Subprocess>& coordinator, const std::string& address) {
  coordinator->Signal(SIGKILL);
  ASSERT_TRUE(coordinator->Wait(absl::Seconds(10)).ok());
  std::string again;
  auto restarted = StartCoordinator(address, &again);
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  coordinator = *std::move(restarted);
}

// Registers node "mallory" on `stub` (retrying until the coordinator answers), reporting node
// rank 0 of `generation` of "train" with a token it made up.
void ForgeReport(v1::Coordinator::Stub& stub, uint64_t generation) {
  v1::RegisterNodeRequest req;
  req.mutable_inventory()->set_node("mallory");
  req.mutable_inventory()->set_hostname("mallory");
  req.mutable_inventory()->set_incarnation(1);
  v1::RunningJob* r = req.add_running_jobs();
  r->set_job("train");
  r->set_generation(generation);
  r->set_node_rank(0);
  r->set_num_nodes(kAgents);
  r->set_local_world(kGpus);
  r->mutable_nodes()->set_min_nodes(kAgents);
  r->mutable_nodes()->set_max_nodes(kAgents);
  r->set_membership_token(std::string(32, 'x'));
  grpc::Status s;
  EXPECT_TRUE(WaitFor([&] {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
    v1::RegisterNodeResponse resp;
    s = stub.RegisterNode(&ctx, req, &resp);
    return s.error_code() != grpc::StatusCode::UNAVAILABLE;
  }));
  EXPECT_TRUE(s.ok()) << s.error_message();
}

TEST(CoordinatorRestart, RunningJobRecoveredFromTheAgents_WorkersCarryOn_ThenALostNodeIsTold) {
  const std::string dir = ::testing::TempDir() + "meshd_restart_" + std::to_string(getpid());
  std::string address;
  auto started = StartCoordinator("127.0.0.1:0", &address);
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<Subprocess> coordinator = *std::move(started);

  testing::AgentFleet fleet;
  ASSERT_TRUE(fleet.Start(MESHD_PATH, WORKER_PATH, address, dir, kAgents, kGpus, "train").ok());
  auto& agents = fleet.agents;
  auto& workers = fleet.workers;  // agent i's workers at 2i, 2i+1
  std::set<int> ranks;
  uint64_t generation = 0;
  for (auto& w : workers) {
    auto line = w->ReadLine(absl::Seconds(30));
    ASSERT_TRUE(line.ok()) << line.status();
    const auto j = nlohmann::json::parse(*line);
    ASSERT_TRUE(j.contains("rank")) << *line;
    ranks.insert(j["rank"].get<int>());
    generation = j["generation"].get<uint64_t>();
  }
  ASSERT_EQ(ranks.size(), static_cast<size_t>(kAgents * kGpus));
  for (auto& w : workers) ASSERT_TRUE(w->WaitForLine("{\"watching\"", absl::Seconds(20)).ok());

  // The coordinator dies with its state; a new one takes its address.
  ASSERT_NO_FATAL_FAILURE(Restart(coordinator, address));

  auto stub =
      v1::Coordinator::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  ForgeReport(*stub, generation);
  v1::JobStatus job;
  WaitFor(
      [&] {
        grpc::ClientContext ctx;
        ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
        v1::GetJobRequest req;
        req.set_job("train");
        return stub->GetJob(&ctx, req, &job).ok() && job.phase() == v1::JOB_PHASE_RUNNING;
      },
      absl::Seconds(20));
  ASSERT_EQ(job.phase(), v1::JOB_PHASE_RUNNING) << job.ShortDebugString();
  EXPECT_EQ(job.generation(), generation);
  ASSERT_EQ(job.members_size(), kAgents);
  for (int i = 0; i < kAgents; ++i) EXPECT_EQ(job.members(i).node_rank(), static_cast<uint32_t>(i));
  // No worker was told anything.
  for (auto& w : workers) {
    auto line = w->ReadLine(absl::Milliseconds(10));
    EXPECT_FALSE(line.ok()) << "a worker heard of the restart: " << *line;
  }

  // Its watches are armed on the new coordinator: a lost node reaches every other worker.
  const int victim = 1;
  const absl::Time killed = absl::Now();
  agents[victim]->Signal(SIGKILL);
  for (int i = 0; i < kAgents; ++i) {
    if (i == victim) continue;
    for (int r = 0; r < kGpus; ++r) {
      auto line = workers[i * kGpus + r]->ReadLine(killed + absl::Seconds(5) - absl::Now());
      ASSERT_TRUE(line.ok()) << "worker " << r << " of agent " << i << ": " << line.status();
      const auto j = nlohmann::json::parse(*line);
      EXPECT_EQ(j["event"], "REASON_NODE_LOST") << *line;
      EXPECT_EQ(j["node"], absl::StrCat("node", victim)) << *line;
    }
  }
  for (int i = 0; i < kAgents; ++i) {
    if (i != victim) agents[i]->Signal(SIGTERM);
  }
  coordinator->Signal(SIGTERM);
  EXPECT_EQ(*coordinator->Wait(absl::Seconds(10)), 0);
}

// A worker lost while the coordinator is away: its agent's LeaveJob fails and is sent again until
// the coordinator has it — after it restarted, the agents registered again and the job recovered —
// and then the generation ends and every surviving worker is told.
TEST(CoordinatorRestart, WorkerLostWhileTheCoordinatorIsAway_EveryOtherWorkerToldOnceItIsBack) {
  const std::string dir = ::testing::TempDir() + "meshd_outage_" + std::to_string(getpid());
  std::string address;
  auto started = StartCoordinator("127.0.0.1:0", &address);
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<Subprocess> coordinator = *std::move(started);
  testing::AgentFleet fleet;
  ASSERT_TRUE(fleet.Start(MESHD_PATH, WORKER_PATH, address, dir, kAgents, kGpus, "train").ok());
  auto& workers = fleet.workers;
  for (auto& w : workers) {
    ASSERT_TRUE(w->ReadLine(absl::Seconds(30)).ok());
    ASSERT_TRUE(w->WaitForLine("{\"watching\"", absl::Seconds(20)).ok());
  }

  coordinator->Signal(SIGKILL);
  ASSERT_TRUE(coordinator->Wait(absl::Seconds(10)).ok());
  // Worker 0 of node0 dies while nobody answers on the coordinator's address; its agent tries to
  // tell the coordinator and fails.
  workers[0]->Signal(SIGKILL);
  ASSERT_TRUE(workers[0]->Wait(absl::Seconds(10)).ok());
  ASSERT_TRUE(WaitFor([&] {
    const std::string log = testing::ReadFile(dir + "/agent0.log");
    return log.find("LeaveJob failed on the way to (or in) the coordinator") != std::string::npos;
  })) << testing::ReadFile(dir + "/agent0.log");

  std::string again;
  auto restarted = StartCoordinator(address, &again);
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  coordinator = *std::move(restarted);
  for (size_t i = 1; i < workers.size(); ++i) {
    auto line = workers[i]->ReadLine(absl::Seconds(30));
    ASSERT_TRUE(line.ok()) << "worker " << i << ": " << line.status();
    const auto j = nlohmann::json::parse(*line);
    EXPECT_EQ(j["event"], "REASON_NODE_LEFT") << *line;
    EXPECT_EQ(j["node"], "node0") << *line;
  }
  for (auto& a : fleet.agents) a->Signal(SIGTERM);
  coordinator->Signal(SIGTERM);
  EXPECT_EQ(*coordinator->Wait(absl::Seconds(10)), 0);
}

// NCCL ids minted before the restart reach the ranks that ask after it: node0's two ranks get
// every id of their groups of a 2x2 (dp, tp) mesh (they lead them all), the coordinator restarts,
// and node1's ranks then ask for the same mesh — whose dp groups node0's ranks lead. The new
// coordinator never saw node0's ids; node0's agent reports them again once registered, and node1's
// ranks get them, the same bytes.
TEST(CoordinatorRestart, IdsMintedBeforeTheRestart_ReachRanksAskingAfterIt) {
  MESHD_SKIP_WITHOUT_NCCL();  // the leaders mint with the real ncclGetUniqueId
  signal(SIGPIPE, SIG_IGN);
  const std::string dir = ::testing::TempDir() + "meshd_restart_ids_" + std::to_string(getpid());
  std::string address;
  auto started = StartCoordinator("127.0.0.1:0", &address);
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<Subprocess> coordinator = *std::move(started);
  constexpr int kNodes = 2;
  std::vector<std::unique_ptr<Subprocess>> agents, workers;
  for (int a = 0; a < kNodes; ++a) {
    const std::string socket = absl::StrCat(dir, "/agent", a, ".sock");
    auto agent = Subprocess::Start({MESHD_PATH, "agent", "--coordinator", address, "--socket",
                                    socket, "--simulate-gpus", std::to_string(kGpus),
                                    "--node-name", absl::StrCat("node", a)});
    ASSERT_TRUE(agent.ok()) << agent.status();
    agents.push_back(*std::move(agent));
    ASSERT_TRUE(agents.back()->WaitForLine("meshd agent listening on ", absl::Seconds(20)).ok());
    for (int l = 0; l < kGpus; ++l) {
      auto w = Subprocess::Start(
          {"/usr/bin/env", absl::StrCat("MESHD_SOCKET=", socket), "MESHD_JOB=ids",
           absl::StrCat("LOCAL_RANK=", l), absl::StrCat("LOCAL_WORLD_SIZE=", kGpus),
           absl::StrCat("MESHD_NNODES=", kNodes), VIEWS_WORKER_PATH},
          "", /*pipe_stdin=*/true);
      ASSERT_TRUE(w.ok()) << w.status();
      workers.push_back(*std::move(w));
    }
  }
  auto read = [&](int rank) {
    auto line = workers[rank]->ReadLine(absl::Seconds(30));
    return line.ok() ? nlohmann::json::parse(*line)
                     : nlohmann::json{{"ok", false}, {"read", line.status().ToString()}};
  };
  for (int r = 0; r < kNodes * kGpus; ++r) {
    const auto j = read(r);
    ASSERT_TRUE(j["ok"]) << j;
    ASSERT_EQ(j["rank"], r) << j;
  }
  // key -> id of every group in the answers of `ranks`.
  auto init = [&](std::vector<int> ranks) {
    std::map<std::string, std::string> ids;
    for (int r : ranks) EXPECT_TRUE(workers[r]->WriteLine("init 2,2 dp,tp").ok());
    for (int r : ranks) {
      const auto j = read(r);
      EXPECT_TRUE(j["ok"]) << "rank " << r << ": " << j;
      if (!j["ok"]) continue;
      for (const auto& g : j["groups"]) ids[g["key"]] = g["id"];
    }
    return ids;
  };
  const std::map<std::string, std::string> before = init({0, 1});
  ASSERT_FALSE(before.empty());

  ASSERT_NO_FATAL_FAILURE(Restart(coordinator, address));

  const std::map<std::string, std::string> after = init({2, 3});
  size_t shared = 0;
  for (const auto& [key, id] : after) {
    auto it = before.find(key);
    if (it == before.end()) continue;
    ++shared;
    EXPECT_EQ(it->second, id) << key << ": node1 got another id than node0 minted";
  }
  EXPECT_EQ(shared, 2u) << "the dp groups, led by node0's ranks";
  for (auto& a : agents) a->Signal(SIGTERM);
  coordinator->Signal(SIGTERM);
  EXPECT_EQ(*coordinator->Wait(absl::Seconds(10)), 0);
}

}  // namespace
}  // namespace meshd
