// Helpers shared by the mesh-maths tests: build meshes that must succeed, turn results into nested
// vectors that gtest prints readably, and assert specific status codes.
#ifndef MESHD_TESTS_UNIT_LAYOUT_MESH_TEST_UTIL_H_
#define MESHD_TESTS_UNIT_LAYOUT_MESH_TEST_UTIL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/layout/device_mesh.h"
#include "common/layout/mesh_ops.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meshd::layout::testing {

using Rows = std::vector<std::vector<int64_t>>;
using Names = std::vector<std::string>;

// Unwraps a StatusOr, failing the test (and returning a default) when it holds an error.
template <typename T>
T Must(absl::StatusOr<T> v) {
  EXPECT_TRUE(v.ok()) << v.status();
  return v.ok() ? *std::move(v) : T{};
}
inline DeviceMesh Must(absl::StatusOr<DeviceMesh> v) {
  if (!v.ok()) {
    ADD_FAILURE() << v.status();
    return *DeviceMesh::Create({1}, std::nullopt, 1);
  }
  return *std::move(v);
}

inline DeviceMesh Init(std::vector<int64_t> shape, Names names, int64_t world = 0) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return Must(DeviceMesh::Create(shape, names.empty() ? DimNames() : DimNames(names),
                                 world == 0 ? n : world));
}

inline DeviceMesh FromTable(std::vector<int64_t> shape, std::vector<int64_t> values, Names names,
                            int64_t world) {
  return Must(DeviceMesh::FromRankTable(RankTensor{shape, values},
                                        names.empty() ? DimNames() : DimNames(names), world));
}

inline Rows GroupRows(const DeviceMesh& mesh, int dim) {
  const GroupTable t = mesh.Groups(dim);
  Rows out;
  for (int64_t g = 0; g < t.num_groups(); ++g) out.emplace_back(t.row(g).begin(), t.row(g).end());
  return out;
}

inline std::vector<int64_t> ViewValues(const DeviceMesh& mesh, int64_t rank) {
  return Must(mesh.View(rank)).values;
}

#define MESHD_EXPECT_CODE(expr, code_, substring)                                                \
  do {                                                                                           \
    const auto& meshd_result_ = (expr);                                                          \
    EXPECT_EQ(meshd_result_.status().code(), absl::StatusCode::code_) << meshd_result_.status(); \
    EXPECT_THAT(std::string(meshd_result_.status().message()), ::testing::HasSubstr(substring)); \
  } while (0)

}  // namespace meshd::layout::testing

#endif  // MESHD_TESTS_UNIT_LAYOUT_MESH_TEST_UTIL_H_
