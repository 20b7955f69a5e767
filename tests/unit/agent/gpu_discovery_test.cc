// GPU discovery through the real dlopen path, against a fake NVML shared library built by the
// tests.
#include "daemon/agent/gpu/gpu_discovery.h"

#include <cstdlib>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meshd::agent {
namespace {

using ::testing::HasSubstr;

class NvmlDiscoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    unsetenv("FAKE_NVML_GPUS");
    unsetenv("FAKE_NVML_FAIL_INIT");
    unsetenv("FAKE_NVML_FABRIC");
  }
};

TEST_F(NvmlDiscoveryTest, ReadsEveryGpu) {
  setenv("FAKE_NVML_GPUS", "4", 1);
  auto gpus = NvmlDiscovery(FAKE_NVML_PATH)->Discover();
  ASSERT_TRUE(gpus.ok()) << gpus.status();
  ASSERT_EQ(gpus->size(), 4u);
  EXPECT_EQ((*gpus)[3].index, 3u);
  EXPECT_EQ((*gpus)[3].uuid, "GPU-fake-3");
  EXPECT_EQ((*gpus)[3].pci_bus_id, "00000000:1A:00.0");
  EXPECT_EQ((*gpus)[3].name, "Fake H200");
  EXPECT_EQ((*gpus)[3].memory_bytes, 143771336704ull);
  EXPECT_FALSE((*gpus)[3].simulated);
  EXPECT_EQ((*gpus)[3].nvlink_clique, "");  // the driver reports no fabric
}

TEST_F(NvmlDiscoveryTest, FabricCliqueWhenReported) {
  setenv("FAKE_NVML_FABRIC", "1", 1);
  auto gpus = NvmlDiscovery(FAKE_NVML_PATH)->Discover();
  ASSERT_TRUE(gpus.ok());
  EXPECT_EQ((*gpus)[0].nvlink_clique, "11111111111111111111111111111111.7");
}

TEST_F(NvmlDiscoveryTest, InitFails_FailedPrecondition) {
  setenv("FAKE_NVML_FAIL_INIT", "1", 1);
  EXPECT_EQ(NvmlDiscovery(FAKE_NVML_PATH)->Discover().status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(NvmlDiscoveryTest, NoGpus_NotFound) {
  setenv("FAKE_NVML_GPUS", "0", 1);
  EXPECT_EQ(NvmlDiscovery(FAKE_NVML_PATH)->Discover().status().code(), absl::StatusCode::kNotFound);
}

TEST_F(NvmlDiscoveryTest, MissingLibrary_Unavailable) {
  const auto r = NvmlDiscovery("/nonexistent/libnvidia-ml.so.1")->Discover();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("NVIDIA driver"));
}

TEST(SimulatedDiscovery, MarkedSimulatedWithStableUuids) {
  auto gpus = SimulatedDiscovery(3, "n1")->Discover();
  ASSERT_TRUE(gpus.ok());
  ASSERT_EQ(gpus->size(), 3u);
  EXPECT_EQ((*gpus)[2].uuid, "SIM-n1-2");
  EXPECT_TRUE((*gpus)[2].simulated);
  EXPECT_EQ(SimulatedDiscovery(0, "n1")->Discover().status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SimulatedDiscovery(65, "n1")->Discover().status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace meshd::agent
