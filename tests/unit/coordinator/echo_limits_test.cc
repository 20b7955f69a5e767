// No answer echoes what a request carried: names, keys and groups of any size are quoted in errors
// by a short prefix (domain::Quote), and what a node reports about itself is bounded. Before: a
// 6 MB group key echoed back broke an agent's connection, NOT_FOUND for a 7 MB job name cost
// 0.43 s of CPU, and a 5 MB agent address broke `meshctl nodes` for good (its reply passed 4 MB).
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "daemon/coordinator/coordinator.h"
#include "daemon/coordinator/mesh_exchange.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/fake_clock.h"

namespace meshd::coordinator {
namespace {

using ::testing::HasSubstr;
using ::testing::Le;

constexpr size_t kShortMessage = 400;  // every refusal below fits, whatever it was sent

class EchoTest : public ::testing::Test {
 protected:
  EchoTest() : coord_(&clock_, CoordinatorOptions{}, [](const Event&) {}) {}
  static NodeInventory Inventory(const std::string& name) {
    NodeInventory inv{name, "host-" + name, "unix:/run/" + name, 1, {}};
    inv.gpus.push_back(Gpu{0, "GPU-" + name, "", "sim", 0, "", true});
    return inv;
  }

  const std::string huge_ = std::string(7 << 20, 'x');
  FakeClock clock_;
  Coordinator coord_;
};

TEST_F(EchoTest, UnknownHugeNames_NotFound_QuotedShort) {
  const absl::Status job = coord_.Job(huge_).status();
  EXPECT_EQ(job.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(job.message().size(), Le(kShortMessage));
  EXPECT_THAT(job.message(), HasSubstr("(7340032 bytes)"));
  const absl::Status count = coord_.KeyCount(huge_, 1).status();
  EXPECT_EQ(count.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(count.message().size(), Le(kShortMessage));
  const absl::Status beat = coord_.Heartbeat(huge_, 1).status();
  EXPECT_EQ(beat.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(beat.message().size(), Le(kShortMessage));
}

TEST_F(EchoTest, OversizedSelfReport_InvalidArgument_NodeNotRegistered) {
  NodeInventory address = Inventory("a");
  address.agent_address = std::string(5 << 20, 'a');
  const absl::Status s = coord_.RegisterNode(address).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("agent address"));
  EXPECT_THAT(s.message().size(), Le(kShortMessage));
  for (auto field : {&Gpu::pci_bus_id, &Gpu::name, &Gpu::nvlink_clique}) {
    NodeInventory gpu = Inventory("a");
    gpu.gpus[0].*field = std::string(1 << 20, 'g');
    const absl::Status g = coord_.RegisterNode(gpu).status();
    EXPECT_EQ(g.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(g.message().size(), Le(kShortMessage));
  }
  EXPECT_TRUE(coord_.Nodes().empty());
  EXPECT_TRUE(coord_.RegisterNode(Inventory("a")).ok());
}

TEST(GroupExchangeEcho, HugeGroupKey_InvalidArgument_QuotedShort) {
  Counters counters;
  GroupExchange exchange("job", &counters);
  const absl::Status got =
      exchange.Validate({GroupRequest{std::string(6 << 20, 'k'), 1, {}, ""}});
  EXPECT_EQ(got.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(got.message().size(), Le(kShortMessage));
}

}  // namespace
}  // namespace meshd::coordinator
