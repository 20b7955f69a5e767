// Placement lint: which dims' groups stay on one host.
#include "common/topology/placement_lint.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meshd::topology {
namespace {

using ::testing::HasSubstr;

layout::DeviceMesh Mesh(std::vector<int64_t> shape, std::vector<std::string> names) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return *layout::DeviceMesh::Create(shape, names, n);
}

TEST(LintPlacement, TpInnermostStaysOnHost) {
  const auto lint = LintPlacement(Mesh({2, 4, 8}, {"pp", "dp", "tp"}), 8);
  ASSERT_TRUE(lint.ok()) << lint.status();
  EXPECT_EQ((*lint)[2].placement, Placement::kIntraHost);
  EXPECT_EQ((*lint)[2].warning, "");
  EXPECT_EQ((*lint)[1].placement, Placement::kCrossHost);
  EXPECT_EQ((*lint)[1].max_hosts, 4);
  EXPECT_EQ((*lint)[0].placement, Placement::kCrossHost);
  EXPECT_EQ((*lint)[0].warning, "");  // pp across hosts is normal
}

TEST(LintPlacement, TpOutermost_Warns) {
  const auto lint = LintPlacement(Mesh({8, 8}, {"tp", "dp"}), 8);
  ASSERT_TRUE(lint.ok());
  EXPECT_EQ((*lint)[0].placement, Placement::kCrossHost);
  EXPECT_EQ((*lint)[0].max_hosts, 8);
  EXPECT_THAT((*lint)[0].warning, HasSubstr("tp groups span up to 8 hosts"));
  EXPECT_EQ((*lint)[1].placement, Placement::kIntraHost);
}

TEST(LintPlacement, TpLargerThanHost_Warns) {
  const auto lint = LintPlacement(Mesh({2, 16}, {"dp", "tp"}), 8);
  ASSERT_TRUE(lint.ok());
  EXPECT_EQ((*lint)[1].placement, Placement::kCrossHost);
  EXPECT_THAT((*lint)[1].warning, HasSubstr("at most 8"));
}

TEST(LintPlacement, MisalignedDim_Mixed) {
  // dp groups of [0..3],[4..7],... over hosts of 6 GPUs: some straddle a host boundary.
  const auto lint = LintPlacement(Mesh({6, 4}, {"pp", "dp"}), 6);
  ASSERT_TRUE(lint.ok());
  EXPECT_EQ((*lint)[1].placement, Placement::kMixed);
  EXPECT_EQ((*lint)[1].min_hosts, 1);
  EXPECT_EQ((*lint)[1].max_hosts, 2);
  EXPECT_THAT((*lint)[1].warning, HasSubstr("straddle"));
}

TEST(LintPlacement, BadGpusPerNode_InvalidArgument) {
  EXPECT_EQ(LintPlacement(Mesh({2}, {"a"}), 0).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace meshd::topology
