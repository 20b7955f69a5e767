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
#include <set>

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
  coordinator->Signal(SIGKILL);
  ASSERT_TRUE(coordinator->Wait(absl::Seconds(10)).ok());
  std::string again;
  auto restarted = StartCoordinator(address, &again);
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  coordinator = *std::move(restarted);

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

}  // namespace
}  // namespace meshd
