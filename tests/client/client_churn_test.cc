// Workers come and go all day: 200 real worker processes on libmeshd_client (churn_worker), 8 at a
// time, against one `meshd standalone`, each leaving another way — destroying its client,
// std::exit with its client alive, the client destroyed by the static destructors, or waiting
// for its generation to end (a peer left) and then returning, exiting, or destroying the client in
// the end's own callback. Every process must exit 0 (no signal, no abort); afterwards the agent
// lists no worker and holds no more descriptors than before (no leaked socket).
#include <dirent.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "meshd/v1/agent.grpc.pb.h"
#include "tests/support/standalone.h"
#include "tests/support/subprocess.h"
#include "tests/support/wait_for.h"

namespace meshd {
namespace {

using process::Subprocess;

constexpr int kProcesses = 200;  // two per job
constexpr int kJobsAtOnce = 4;   // 8 worker processes at a time

// The open descriptors of process `pid` (-1 if it cannot be read).
int OpenDescriptors(pid_t pid) {
  DIR* dir = opendir(absl::StrCat("/proc/", pid, "/fd").c_str());
  if (dir == nullptr) return -1;
  int n = 0;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(dir);
  return n;
}

class ClientChurnTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(daemon_.Start(MESHD_PATH, 2));
    agent_ = v1::Agent::NewStub(
        grpc::CreateChannel("unix:" + daemon_.socket, grpc::InsecureChannelCredentials()));
  }

  // The workers the agent lists (-1 if it does not answer).
  int AttachedWorkers() {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    v1::AgentStatus status;
    if (!agent_->GetStatus(&ctx, v1::GetAgentStatusRequest(), &status).ok()) return -1;
    return status.workers_size();
  }

  // How job `job`'s local rank `rank` leaves. Even jobs: both leave at once, each its own way
  // (one exiting without detaching ends the generation while the other is on its way out). Odd
  // jobs: local rank 0 exits without detaching, which ends the generation; local rank 1 waits for
  // that end, then leaves.
  static std::string ExitMode(int job, int rank) {
    static const char* const kAtOnce[] = {"clean", "exit", "static"};
    static const char* const kAfterTheEnd[] = {"wait", "wait-callback", "wait-exit"};
    if (job % 2 == 0) return kAtOnce[(job / 2 + rank) % 3];
    return rank == 0 ? "exit" : kAfterTheEnd[(job / 2) % 3];
  }

  // Job `job`'s two workers.
  std::vector<std::unique_ptr<Subprocess>> StartJob(int job) {
    std::vector<std::unique_ptr<Subprocess>> workers;
    for (int rank = 0; rank < 2; ++rank) {
      auto p = Subprocess::Start({CHURN_WORKER_PATH, "--socket", daemon_.socket, "--job",
                                  absl::StrCat("churn-", job), "--local-rank",
                                  std::to_string(rank), "--local-world", "2", "--exit",
                                  ExitMode(job, rank)});
      EXPECT_TRUE(p.ok()) << p.status();
      if (p.ok()) workers.push_back(*std::move(p));
    }
    return workers;
  }

  testing::Standalone daemon_;
  std::unique_ptr<v1::Agent::Stub> agent_;
};

TEST_F(ClientChurnTest, TwoHundredWorkerProcesses_AllExitZero_NoWorkerOrSocketLeft) {
  const pid_t agent_pid = daemon_.process->pid();
  int jobs = 0;
  int exited = 0;
  int descriptors_before = -1;
  const absl::Time start = absl::Now();
  while (jobs < kProcesses / 2) {
    std::vector<std::unique_ptr<Subprocess>> running;
    // The first job alone: what the agent opens once (its coordinator link, ...) is then open
    // when the descriptors are first counted.
    const int batch = jobs == 0 ? 1 : kJobsAtOnce;
    for (int j = 0; j < batch && jobs < kProcesses / 2; ++j, ++jobs) {
      for (auto& w : StartJob(jobs)) {
        running.push_back(std::move(w));
      }
    }
    for (size_t i = 0; i < running.size(); ++i) {
      const int job = jobs - static_cast<int>(running.size() / 2) + static_cast<int>(i / 2);
      absl::StatusOr<int> code = running[i]->Wait(absl::Seconds(60));
      ASSERT_TRUE(code.ok()) << "job " << job << " local rank " << i % 2 << ": "
                             << code.status();
      // 128 + N: killed by signal N (SIGSEGV 139, SIGABRT 134, SIGBUS 135).
      EXPECT_EQ(*code, 0) << "job churn-" << job << " local rank " << i % 2 << " (--exit "
                          << ExitMode(job, static_cast<int>(i % 2)) << ")";
      ++exited;
    }
    if (descriptors_before < 0) {
      ASSERT_TRUE(meshd::testing::WaitFor([&] { return AttachedWorkers() == 0; },
                                          absl::Seconds(20)));
      descriptors_before = OpenDescriptors(agent_pid);
      ASSERT_GT(descriptors_before, 0);
    }
  }
  EXPECT_EQ(exited, kProcesses);

  // Nothing left behind: no worker listed, no socket or other descriptor kept (a little slack
  // for what gRPC opens and closes on its own).
  EXPECT_TRUE(meshd::testing::WaitFor([&] { return AttachedWorkers() == 0; }, absl::Seconds(20)))
      << AttachedWorkers() << " workers still listed";
  constexpr int kSlack = 4;
  EXPECT_TRUE(meshd::testing::WaitFor(
      [&] { return OpenDescriptors(agent_pid) <= descriptors_before + kSlack; },
      absl::Seconds(20)))
      << OpenDescriptors(agent_pid) << " descriptors open in the agent, " << descriptors_before
      << " before the churn";
  EXPECT_FALSE(daemon_.process->Wait(absl::ZeroDuration()).ok()) << "the daemon exited";
  std::cerr << "client_churn_test: " << exited << " worker processes in "
            << absl::FormatDuration(absl::Now() - start) << ", agent descriptors "
            << descriptors_before << " -> " << OpenDescriptors(agent_pid) << "\n";
}

}  // namespace
}  // namespace meshd
