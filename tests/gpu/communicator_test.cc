// Real NCCL communicators over relayed ids, and an all-reduce. Labelled `gpu`: skipped only when
// this host has no CUDA device (the check is the same one the client makes).
#include <dlfcn.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "meshd/client.h"
#include "tests/support/standalone.h"

namespace meshd {
namespace {

// cudaMalloc / cudaMemcpy / cudaFree through dlopen, like the client.
struct Cuda {
  int (*malloc_)(void**, size_t) = nullptr;
  int (*memcpy_)(void*, const void*, size_t, int) = nullptr;
  int (*free_)(void*) = nullptr;
  int (*count_)(int*) = nullptr;
  bool Load() {
    for (const char* lib : {"libcudart.so.13", "libcudart.so.12", "libcudart.so"}) {
      if (void* h = dlopen(lib, RTLD_NOW | RTLD_GLOBAL)) {
        malloc_ = reinterpret_cast<decltype(malloc_)>(dlsym(h, "cudaMalloc"));
        memcpy_ = reinterpret_cast<decltype(memcpy_)>(dlsym(h, "cudaMemcpy"));
        free_ = reinterpret_cast<decltype(free_)>(dlsym(h, "cudaFree"));
        count_ = reinterpret_cast<decltype(count_)>(dlsym(h, "cudaGetDeviceCount"));
        int n = 0;
        return malloc_ && memcpy_ && free_ && count_ && count_(&n) == 0 && n > 0;
      }
    }
    return false;
  }
};

TEST(Gpu, CommunicatorsFromRelayedIds_AllReduce) {
  Cuda cuda;
  if (!cuda.Load()) GTEST_SKIP() << "no CUDA device on this host";
  testing::Standalone daemon;
  ASSERT_NO_FATAL_FAILURE(daemon.Start(MESHD_PATH, 1));
  ClientOptions o;
  o.socket = daemon.socket;
  o.job = "gpu";
  o.local_rank = 0;
  o.local_world = 1;
  auto client = Client::Attach(o);
  ASSERT_TRUE(client.ok()) << client.status();
  auto mesh = (*client)->InitDeviceMesh({1, 1}, {"dp", "tp"});
  ASSERT_TRUE(mesh.ok()) << mesh.status();
  for (CommInit mode : {CommInit::kInitRank, CommInit::kScalable, CommInit::kSplit}) {
    auto group = (*client)->GroupOf(*mesh, 1);
    ASSERT_TRUE(group.ok()) << group.status();
    auto comm = (*client)->MakeCommunicator(*group, mode);
    ASSERT_TRUE(comm.ok()) << comm.status();
    float* buf = nullptr;
    ASSERT_EQ(cuda.malloc_(reinterpret_cast<void**>(&buf), 4 * sizeof(float)), 0);
    const float in[4] = {1, 2, 3, 4};
    ASSERT_EQ(cuda.memcpy_(buf, in, sizeof in, 1), 0);
    ASSERT_TRUE((*comm)->AllReduceSum(buf, 4).ok());
    float out[4] = {};
    ASSERT_EQ(cuda.memcpy_(out, buf, sizeof out, 2), 0);
    EXPECT_EQ(out[3], 4.0f * (*comm)->size());
    cuda.free_(buf);
  }
}

}  // namespace
}  // namespace meshd
