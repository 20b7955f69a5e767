// Hangs and partitions, with real processes: one coordinator (heartbeat timeout 1 s), three agents
// of one simulated GPU, and on each a worker in an elastic job of 2 to 3 nodes that attaches again
// after every end of its generation, as an elastic training loop does. One agent is cut off —
// stopped with SIGSTOP, or its network namespace's link taken down — past the timeout:
//   - it is declared dead and the other workers are told REASON_NODE_LOST naming it;
//   - the job re-forms without it (2 nodes);
//   - when it comes back (SIGCONT, or the link up) its worker is told that its generation ended,
//     calls for that generation are refused with ABORTED (one of them sent while it was away), and
//     the job re-forms with it (3 nodes).
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "meshd/v1/agent.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/support/agent_fleet.h"
#include "tests/support/network_namespace.h"
#include "tests/support/run_command.h"
#include "tests/support/subprocess.h"
#include "tests/support/wait_for.h"

namespace meshd {
namespace {

using process::Subprocess;
using testing::RunCommand;

constexpr int kAgents = 3;
constexpr int kVictim = 2;
constexpr char kJob[] = "elastic";

// Reads `worker`'s lines until a placement in a world of `world` ranks and its armed watch; returns
// that generation.
absl::StatusOr<uint64_t> AwaitPlacement(Subprocess& worker, int world, absl::Time deadline) {
  while (true) {
    absl::StatusOr<std::string> line = worker.ReadLine(deadline - absl::Now());
    if (!line.ok()) return line.status();
    const auto j = nlohmann::json::parse(*line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) continue;
    if (j.contains("error")) return absl::InternalError(*line);
    if (j.contains("world_size") && j["world_size"] == world) {
      const uint64_t generation = j["generation"].get<uint64_t>();
      absl::StatusOr<std::string> armed = worker.WaitForLine("{\"watching\"", deadline - absl::Now());
      if (!armed.ok()) return armed.status();
      return generation;
    }
  }
}

// Reads `worker`'s lines until it prints how its generation ended.
absl::StatusOr<nlohmann::json> AwaitEnd(Subprocess& worker, absl::Time deadline) {
  while (true) {
    absl::StatusOr<std::string> line = worker.ReadLine(deadline - absl::Now());
    if (!line.ok()) return line.status();
    auto j = nlohmann::json::parse(*line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_discarded() && j.contains("event")) return j;
  }
}

// A KeySet for `generation` through the agent at `socket`, as a worker of it would send.
grpc::Status StaleKeySet(const std::string& socket, uint64_t generation) {
  auto stub = v1::Agent::NewStub(
      grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials()));
  v1::KeySetRequest req;
  req.set_job(kJob);
  req.set_generation(generation);
  req.set_key("stale");
  req.set_value("v");
  v1::KeySetResponse resp;
  grpc::ClientContext ctx;
  ctx.set_wait_for_ready(true);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  return stub->KeySet(&ctx, req, &resp);
}

// How the victim is cut off and brought back.
struct Outage {
  std::function<absl::Status()> cut;
  std::function<absl::Status()> heal;
  bool stopped = false;  // the agent itself is frozen (its calls queue until it is back)
};

class HangTest : public ::testing::Test {
 protected:
  // Starts the coordinator on `listen` and the agents, agent i run under `prefix[i]` (empty: as
  // is), then one looping worker per agent.
  void StartCluster(const std::string& listen, bool insecure,
                    const std::vector<std::vector<std::string>>& prefix) {
    dir_ = ::testing::TempDir() + "meshd_hang_" + std::to_string(getpid());
    coordinator_log_ = dir_ + "_coordinator.log";
    std::remove(coordinator_log_.c_str());
    // 2 s: short for a quick test, long enough that a live agent on a loaded machine (sanitizer
    // builds, tests two at a time) is not declared dead beside the one the test cuts off.
    std::vector<std::string> argv = {MESHD_PATH,           "coordinator", "--listen", listen,
                                     "--heartbeat-interval", "200ms",   "--heartbeat-timeout",
                                     "2s"};
    if (insecure) argv.push_back("--insecure");
    auto started = testing::StartCoordinator(argv, &address_, coordinator_log_);
    ASSERT_TRUE(started.ok()) << started.status();
    coordinator_ = *std::move(started);
    for (int i = 0; i < kAgents; ++i) {
      sockets_.push_back(absl::StrCat(dir_, "/agent", i, ".sock"));
      std::vector<std::string> agent = prefix[i];
      for (const std::string& a :
           {std::string(MESHD_PATH), std::string("agent"), std::string("--coordinator"), address_,
            std::string("--socket"), sockets_.back(), std::string("--simulate-gpus"),
            std::string("1"), std::string("--node-name"), absl::StrCat("node", i)}) {
        agent.push_back(a);
      }
      auto a = Subprocess::Start(agent, absl::StrCat(dir_, "_agent", i, ".log"));
      ASSERT_TRUE(a.ok()) << a.status();
      agents_.push_back(*std::move(a));
      ASSERT_TRUE(agents_.back()->WaitForLine("meshd agent listening on ", absl::Seconds(20)).ok())
          << "agent " << i << " did not start; its log: " << dir_ << "_agent" << i << ".log";
    }
    for (int i = 0; i < kAgents; ++i) {
      auto w = Subprocess::Start({WORKER_PATH, sockets_[i], kJob, "0", "1", "2:3", "50"});
      ASSERT_TRUE(w.ok()) << w.status();
      workers_.push_back(*std::move(w));
    }
  }

  std::string Meshctl(const std::string& verb) {
    return RunCommand(absl::StrCat(MESHCTL_PATH, " --coordinator ", address_, " ", verb)).out;
  }

  // Every listed worker placed in one generation of `world` ranks; returns it.
  uint64_t AllPlaced(const std::vector<int>& which, int world, absl::Duration within) {
    const absl::Time deadline = absl::Now() + within;
    std::vector<uint64_t> generations;
    for (int i : which) {
      absl::StatusOr<uint64_t> g = AwaitPlacement(*workers_[i], world, deadline);
      EXPECT_TRUE(g.ok()) << "worker of node" << i << " in a world of " << world << ": "
                          << g.status();
      if (!g.ok()) return 0;
      generations.push_back(*g);
    }
    for (uint64_t g : generations) {
      EXPECT_EQ(g, generations[0]) << "workers placed in generations "
                                   << absl::StrJoin(generations, ",");
    }
    return generations[0];
  }

  void Scenario(const Outage& outage) {
    const uint64_t all = AllPlaced({0, 1, 2}, 3, absl::Seconds(60));
    ASSERT_NE(all, 0u);

    const absl::Time cut = absl::Now();
    ASSERT_TRUE(outage.cut().ok());
    // A call the victim's worker makes while its node is away: answered once it is back.
    std::thread stale;
    grpc::Status stale_while_away;
    if (outage.stopped) {
      stale = std::thread([&] { stale_while_away = StaleKeySet(sockets_[kVictim], all); });
    }
    for (int i = 0; i < kAgents; ++i) {
      if (i == kVictim) continue;
      absl::StatusOr<nlohmann::json> end = AwaitEnd(*workers_[i], cut + absl::Seconds(10));
      ASSERT_TRUE(end.ok()) << "worker of node" << i << ": " << end.status();
      EXPECT_EQ((*end)["event"], "REASON_NODE_LOST") << *end;
      EXPECT_EQ((*end)["node"], absl::StrCat("node", kVictim)) << *end;
    }
    std::fprintf(stderr, "the other workers were told after %s (heartbeat timeout 1 s)\n",
                 absl::FormatDuration(absl::Now() - cut).c_str());
    const uint64_t without = AllPlaced({0, 1}, 2, absl::Seconds(30));
    EXPECT_GT(without, all);
    std::string nodes;
    EXPECT_TRUE(testing::WaitFor(
        [&] {
          nodes = Meshctl("nodes");
          return nodes.find("DEAD") != std::string::npos;
        },
        absl::Seconds(10), absl::Milliseconds(100)))
        << nodes;

    const absl::Time healed = absl::Now();
    ASSERT_TRUE(outage.heal().ok());
    absl::StatusOr<nlohmann::json> end = AwaitEnd(*workers_[kVictim], healed + absl::Seconds(30));
    ASSERT_TRUE(end.ok()) << "the victim's worker: " << end.status();
    EXPECT_EQ((*end)["generation"], all) << *end;
    EXPECT_NE((*end)["event"], "STREAM_ENDED") << *end;
    std::fprintf(stderr, "the victim's worker was told after %s: %s\n",
                 absl::FormatDuration(absl::Now() - healed).c_str(), end->dump().c_str());
    if (stale.joinable()) stale.join();
    if (outage.stopped) {
      EXPECT_EQ(stale_while_away.error_code(), grpc::StatusCode::ABORTED)
          << stale_while_away.error_message();
    }
    const grpc::Status stale_after = StaleKeySet(sockets_[kVictim], all);
    EXPECT_EQ(stale_after.error_code(), grpc::StatusCode::ABORTED) << stale_after.error_message();

    const uint64_t again = AllPlaced({0, 1, 2}, 3, absl::Seconds(60));
    EXPECT_GT(again, without);
    std::fprintf(stderr, "the job re-formed with the victim after %s\n",
                 absl::FormatDuration(absl::Now() - healed).c_str());
    const std::string status = Meshctl("status");
    EXPECT_THAT(status, ::testing::HasSubstr("3 alive, 0 dead")) << status;

    for (auto& a : agents_) a->Signal(SIGTERM);
    for (auto& a : agents_) EXPECT_EQ(*a->Wait(absl::Seconds(15)), 0);
    coordinator_->Signal(SIGTERM);
    EXPECT_EQ(*coordinator_->Wait(absl::Seconds(10)), 0);
    std::stringstream log;
    log << std::ifstream(coordinator_log_).rdbuf();
    EXPECT_THAT(log.str(), ::testing::HasSubstr("event=node_lost"));
    EXPECT_THAT(log.str(), ::testing::HasSubstr("event=node_back"));
  }

  std::string dir_, coordinator_log_, address_;
  std::unique_ptr<Subprocess> coordinator_;
  std::vector<std::string> sockets_;
  std::vector<std::unique_ptr<Subprocess>> agents_, workers_;
};

TEST_F(HangTest, AgentStoppedPastTimeout_DeclaredDead_FencedWhenContinued_ElasticJobReforms) {
  StartCluster("127.0.0.1:0", false, {{}, {}, {}});
  Subprocess& victim = *agents_[kVictim];
  Scenario(Outage{[&] {
                    victim.Signal(SIGSTOP);
                    return absl::OkStatus();
                  },
                  [&] {
                    victim.Signal(SIGCONT);
                    return absl::OkStatus();
                  },
                  /*stopped=*/true});
}

TEST_F(HangTest, NodePartitioned_DeclaredDead_FencedWhenHealed_ElasticJobReforms) {
  absl::StatusOr<std::unique_ptr<testing::NetworkNamespace>> ns =
      testing::NetworkNamespace::Create();
  if (!ns.ok()) {
    GTEST_SKIP() << "cannot build a network namespace here (root and CAP_NET_ADMIN needed): "
                 << ns.status();
  }
  testing::NetworkNamespace& net = **ns;
  StartCluster(net.host_ip() + ":0", /*insecure=*/true, {{}, {}, net.Exec()});
  Scenario(Outage{[&] { return net.Cut(); }, [&] { return net.Heal(); }, /*stopped=*/false});
}

}  // namespace
}  // namespace meshd
