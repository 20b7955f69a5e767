// Real NCCL communicators over relayed ids. Labelled `gpu`: each test skips, saying why, where
// this host has no CUDA device (the check is the same one the client makes) or fewer GPUs than it
// needs. scripts/gpu-check.sh runs these on a GPU host from a packed build: MESHD_TEST_MESHD
// overrides the meshd binary this build knows.
#include <dlfcn.h>
#include <signal.h>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "meshd/client.h"
#include "tests/support/standalone.h"

namespace meshd {
namespace {

using ::testing::HasSubstr;

// cudaMalloc / cudaMemcpy / cudaFree through dlopen, like the client.
struct Cuda {
  int (*malloc_)(void**, size_t) = nullptr;
  int (*memcpy_)(void*, const void*, size_t, int) = nullptr;
  int (*free_)(void*) = nullptr;
  int (*count_)(int*) = nullptr;
  int (*set_device_)(int) = nullptr;
  int devices = 0;
  bool Load() {
    for (const char* lib : {"libcudart.so.13", "libcudart.so.12", "libcudart.so"}) {
      if (void* h = dlopen(lib, RTLD_NOW | RTLD_GLOBAL)) {
        malloc_ = reinterpret_cast<decltype(malloc_)>(dlsym(h, "cudaMalloc"));
        memcpy_ = reinterpret_cast<decltype(memcpy_)>(dlsym(h, "cudaMemcpy"));
        free_ = reinterpret_cast<decltype(free_)>(dlsym(h, "cudaFree"));
        count_ = reinterpret_cast<decltype(count_)>(dlsym(h, "cudaGetDeviceCount"));
        set_device_ = reinterpret_cast<decltype(set_device_)>(dlsym(h, "cudaSetDevice"));
        return malloc_ && memcpy_ && free_ && count_ && set_device_ && count_(&devices) == 0 &&
               devices > 0;
      }
    }
    return false;
  }
};

std::string MeshdPath() {
  const char* packed = std::getenv("MESHD_TEST_MESHD");
  return packed != nullptr && *packed != '\0' ? packed : MESHD_PATH;
}

// The loaded NCCL is too old for a mode (it says so, naming the versions): that mode is not
// checked here (its refusal is, in tests/unit/client).
bool TooOldFor(const absl::Status& s) {
  if (s.code() != absl::StatusCode::kFailedPrecondition ||
      std::string(s.message()).find("(NCCL >= ") == std::string::npos) {
    return false;
  }
  std::cerr << "[  SKIPPED ] one mode: " << s.message() << "\n";
  return true;
}

#define MESHD_NEED_GPUS(cuda, n)                                                           \
  if (!(cuda).Load()) GTEST_SKIP() << "no CUDA device on this host";                       \
  if ((cuda).devices < (n))                                                                \
  GTEST_SKIP() << "needs " << (n) << " GPUs (NCCL refuses two ranks on one device); this " \
               << "host has " << (cuda).devices

class GpuTest : public ::testing::Test {
 protected:
  void StartDaemon(int gpus) { ASSERT_NO_FATAL_FAILURE(daemon_.Start(MeshdPath(), gpus)); }
  ClientOptions Options(int local_rank, int local_world) {
    ClientOptions o;
    o.socket = daemon_.socket;
    o.job = "gpu";
    o.local_rank = local_rank;
    o.local_world = local_world;
    o.timeout = absl::Seconds(60);
    return o;
  }
  std::vector<std::unique_ptr<Client>> AttachAll(int n, std::optional<bool> abort = std::nullopt) {
    std::vector<absl::StatusOr<std::unique_ptr<Client>>> got(n);
    std::vector<std::thread> threads;
    for (int i = 0; i < n; ++i) {
      threads.emplace_back([&, i] {
        ClientOptions o = Options(i, n);
        o.abort_communicators_on_generation_end = abort;
        got[i] = Client::Attach(o);
      });
    }
    for (auto& t : threads) t.join();
    std::vector<std::unique_ptr<Client>> out;
    for (auto& c : got) {
      EXPECT_TRUE(c.ok()) << c.status();
      if (c.ok()) out.push_back(*std::move(c));
    }
    return out;
  }
  // Sums (rank + 1) over the communicator's group; checks every element.
  void CheckAllReduce(Communicator& comm, const std::vector<int64_t>& ranks, int rank) {
    float* buf = nullptr;
    ASSERT_EQ(cuda_.malloc_(reinterpret_cast<void**>(&buf), 256 * sizeof(float)), 0);
    std::vector<float> host(256, static_cast<float>(rank + 1));
    ASSERT_EQ(cuda_.memcpy_(buf, host.data(), 256 * sizeof(float), 1), 0);
    const absl::Status s = comm.AllReduceSum(buf, 256);
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_EQ(cuda_.memcpy_(host.data(), buf, 256 * sizeof(float), 2), 0);
    cuda_.free_(buf);
    float expected = 0;
    for (int64_t r : ranks) expected += static_cast<float>(r + 1);
    for (float v : host) ASSERT_EQ(v, expected);
  }
  Cuda cuda_;
  testing::Standalone daemon_;
};

TEST_F(GpuTest, EveryMode_AllReduce_CachedAndNamed) {
  MESHD_NEED_GPUS(cuda_, 1);
  StartDaemon(1);
  auto c = AttachAll(1);
  ASSERT_EQ(c.size(), 1u);
  auto mesh = c[0]->InitDeviceMesh({1, 1}, {"dp", "tp"});
  ASSERT_TRUE(mesh.ok()) << mesh.status();
  for (CommInit mode : {CommInit::kInitRank, CommInit::kScalable, CommInit::kSplit}) {
    auto group = c[0]->GroupOf(*mesh, 1);
    ASSERT_TRUE(group.ok()) << group.status();
    auto comm = c[0]->MakeCommunicator(*group, mode);
    if (TooOldFor(comm.status())) continue;
    ASSERT_TRUE(comm.ok()) << comm.status();
    ASSERT_NE((*comm)->nccl_comm(), nullptr);
    EXPECT_TRUE((*comm)->status().ok());
    EXPECT_EQ((*comm)->name(),
              absl::StrCat("gpu/", group->key, "/tp/g", c[0]->placement().generation));
    ASSERT_NO_FATAL_FAILURE(CheckAllReduce(**comm, group->ranks, 0));
    // The same group and mode again: the same communicator, not a second one.
    auto again = c[0]->MakeCommunicator(*group, mode);
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(again->get(), comm->get());
    CommOptions other(mode);
    other.max_ctas = 2;
    EXPECT_EQ(c[0]->MakeCommunicator(*group, other).status().code(),
              absl::StatusCode::kFailedPrecondition);
  }
}

TEST_F(GpuTest, GenerationEnd_AbortsLiveCommunicators_BeforeTheCallbacks) {
  MESHD_NEED_GPUS(cuda_, 1);
  StartDaemon(1);
  auto c = AttachAll(1);
  ASSERT_EQ(c.size(), 1u);
  auto mesh = c[0]->InitDeviceMesh({1}, {"w"});
  ASSERT_TRUE(mesh.ok()) << mesh.status();
  auto comm = c[0]->MakeCommunicator(*mesh, 0);
  ASSERT_TRUE(comm.ok()) << comm.status();
  auto split = c[0]->MakeCommunicator(*mesh, 0, CommInit::kSplit);
  ASSERT_TRUE(split.ok()) << split.status();
  std::shared_ptr<Communicator> held = *comm;
  absl::Notification ended;
  bool aborted_in_callback = false;
  c[0]->OnGenerationEnd([&](const absl::Status&) {
    aborted_in_callback = held->aborted();
    ended.Notify();
  });
  daemon_.process->Signal(SIGTERM);  // the generation ends (shutdown)
  ASSERT_TRUE(ended.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_TRUE(aborted_in_callback);
  for (const auto& x : {*comm, *split}) {
    EXPECT_TRUE(x->aborted());
    EXPECT_EQ(x->nccl_comm(), nullptr);
    EXPECT_EQ(x->status().code(), absl::StatusCode::kAborted);
    EXPECT_THAT(std::string(x->status().message()), HasSubstr("REASON_SHUTDOWN"));
    float* buf = nullptr;
    ASSERT_EQ(cuda_.malloc_(reinterpret_cast<void**>(&buf), sizeof(float)), 0);
    EXPECT_EQ(x->AllReduceSum(buf, 1).code(), absl::StatusCode::kAborted);
    cuda_.free_(buf);
  }
}

TEST_F(GpuTest, GenerationEnd_LeftToTheCaller_WhenOptionsSaySo) {
  MESHD_NEED_GPUS(cuda_, 1);
  StartDaemon(1);
  auto c = AttachAll(1, /*abort=*/false);
  ASSERT_EQ(c.size(), 1u);
  auto mesh = c[0]->InitDeviceMesh({1}, {"w"});
  ASSERT_TRUE(mesh.ok()) << mesh.status();
  auto comm = c[0]->MakeCommunicator(*mesh, 0);
  ASSERT_TRUE(comm.ok()) << comm.status();
  absl::Notification ended;
  c[0]->OnGenerationEnd([&](const absl::Status&) { ended.Notify(); });
  daemon_.process->Signal(SIGTERM);
  ASSERT_TRUE(ended.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_FALSE((*comm)->aborted());
  (*comm)->Abort();
  (*comm)->Abort();  // idempotent
  EXPECT_TRUE((*comm)->aborted());
  EXPECT_THAT(std::string((*comm)->status().message()), HasSubstr("Communicator::Abort()"));
}

// One GPU is enough: the rank that never arrives never touches it.
TEST_F(GpuTest, AMemberNeverArrives_DeadlineExceededNamingIt) {
  MESHD_NEED_GPUS(cuda_, 1);
  StartDaemon(2);
  auto c = AttachAll(2);
  ASSERT_EQ(c.size(), 2u);
  std::vector<absl::StatusOr<DeviceMesh>> meshes(2);
  std::thread t([&] { meshes[1] = c[1]->InitDeviceMesh({2}, {"dp"}); });
  meshes[0] = c[0]->InitDeviceMesh({2}, {"dp"});
  t.join();
  ASSERT_TRUE(meshes[0].ok() && meshes[1].ok());
  auto group = c[0]->GroupOf(*meshes[0], 0);
  ASSERT_TRUE(group.ok());
  for (CommInit mode : {CommInit::kInitRank, CommInit::kSplit}) {
    CommOptions o(mode);
    o.timeout = absl::Seconds(5);
    const absl::Time start = absl::Now();
    auto comm = c[0]->MakeCommunicator(*group, o);  // rank 1 never asks
    EXPECT_LT(absl::Now() - start, absl::Seconds(30));
    EXPECT_EQ(comm.status().code(), absl::StatusCode::kDeadlineExceeded) << comm.status();
    EXPECT_THAT(std::string(comm.status().message()), HasSubstr("rank 1 (1 of 2) never arrived"));
  }
}

TEST_F(GpuTest, TwoRanks_EveryMode_AllReduceSums) {
  MESHD_NEED_GPUS(cuda_, 2);
  StartDaemon(2);
  auto c = AttachAll(2);
  ASSERT_EQ(c.size(), 2u);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      auto mesh = c[r]->InitDeviceMesh({2}, {"dp"});
      ASSERT_TRUE(mesh.ok()) << mesh.status();
      for (CommInit mode : {CommInit::kInitRank, CommInit::kScalable, CommInit::kSplit}) {
        auto comm = c[r]->MakeCommunicator(*mesh, 0, mode);
        if (TooOldFor(comm.status())) continue;
        ASSERT_TRUE(comm.ok()) << comm.status();
        ASSERT_NE(*comm, nullptr);
        EXPECT_EQ((*comm)->size(), 2);
        ASSERT_EQ(cuda_.set_device_(r), 0);
        ASSERT_NO_FATAL_FAILURE(CheckAllReduce(**comm, {0, 1}, r));
      }
    });
  }
  for (auto& t : threads) t.join();
}

TEST_F(GpuTest, Split_MeshSmallerThanTheWorld_TheRankOutsideTakesPartWithoutAColor) {
  MESHD_NEED_GPUS(cuda_, 2);
  StartDaemon(2);
  auto c = AttachAll(2);
  ASSERT_EQ(c.size(), 2u);
  std::vector<absl::StatusOr<std::shared_ptr<Communicator>>> got(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      auto mesh = c[r]->InitDeviceMesh({1}, {"solo"});  // rank 1 is outside
      if (!mesh.ok()) {
        got[r] = mesh.status();
        return;
      }
      got[r] = c[r]->MakeCommunicator(*mesh, 0, CommInit::kSplit);
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(got[0].ok()) << got[0].status();
  ASSERT_TRUE(got[1].ok()) << got[1].status();
  ASSERT_NE(*got[0], nullptr);
  EXPECT_EQ(*got[1], nullptr);
  ASSERT_EQ(cuda_.set_device_(0), 0);
  ASSERT_NO_FATAL_FAILURE(CheckAllReduce(**got[0], {0}, 0));
}

TEST_F(GpuTest, AbortEndsAnAllReduceWaitingForAPeer) {
  MESHD_NEED_GPUS(cuda_, 2);
  StartDaemon(2);
  auto c = AttachAll(2);
  ASSERT_EQ(c.size(), 2u);
  std::vector<std::shared_ptr<Communicator>> comms(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      auto mesh = c[r]->InitDeviceMesh({2}, {"dp"});
      ASSERT_TRUE(mesh.ok()) << mesh.status();
      auto comm = c[r]->MakeCommunicator(*mesh, 0);
      ASSERT_TRUE(comm.ok()) << comm.status();
      comms[r] = *comm;
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(comms[0] && comms[1]);
  ASSERT_EQ(cuda_.set_device_(0), 0);
  float* buf = nullptr;
  ASSERT_EQ(cuda_.malloc_(reinterpret_cast<void**>(&buf), 1024 * sizeof(float)), 0);
  absl::Notification done;
  absl::Status result;
  std::thread waiter([&] {
    result = comms[0]->AllReduceSum(buf, 1024);  // rank 1 never joins: it waits
    done.Notify();
  });
  comms[0]->Abort();  // whether it came before or during the wait, the answer is ABORTED
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(60)));
  waiter.join();
  EXPECT_EQ(result.code(), absl::StatusCode::kAborted);
  comms[1]->Abort();
  cuda_.free_(buf);
}

}  // namespace
}  // namespace meshd
