// Property tests over every mesh shape of up to 64 ranks (every ordered factorisation of 1..64,
// plus shapes with size-1 dims inserted), each with the identity rank map and a reversed one.
// The reference is brute force over coordinates, written without the layout algebra.
#include <algorithm>
#include <functional>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/layout/device_mesh.h"
#include "common/layout/mesh_ops.h"
#include "tests/unit/layout/mesh_test_util.h"

namespace meshd::layout {
namespace {

using ::meshd::layout::testing::GroupRows;
using ::meshd::layout::testing::Must;
using ::meshd::layout::testing::Rows;
using Shape = std::vector<int64_t>;

void Factorisations(int64_t n, Shape& prefix, std::vector<Shape>& out) {
  if (n == 1) {
    if (!prefix.empty()) out.push_back(prefix);
    return;
  }
  for (int64_t f = 2; f <= n; ++f) {
    if (n % f != 0) continue;
    prefix.push_back(f);
    Factorisations(n / f, prefix, out);
    prefix.pop_back();
  }
}

std::vector<Shape> AllShapes() {
  std::vector<Shape> out = {{1}};
  for (int64_t n = 2; n <= 64; ++n) {
    Shape prefix;
    std::vector<Shape> shapes;
    Factorisations(n, prefix, shapes);
    for (const Shape& s : shapes) {
      out.push_back(s);
      if (s.size() <= 2) {  // size-1 dims anywhere
        for (size_t i = 0; i <= s.size(); ++i) {
          Shape with_one = s;
          with_one.insert(with_one.begin() + i, 1);
          out.push_back(with_one);
        }
      }
    }
  }
  return out;
}

std::vector<std::string> NamesFor(size_t ndim) {
  std::vector<std::string> names;
  for (size_t i = 0; i < ndim; ++i) names.push_back(absl::StrCat("d", i));
  return names;
}

// Row-major strides of a shape.
Shape Strides(const Shape& shape) {
  Shape strides(shape.size(), 1);
  for (size_t i = shape.size(); i-- > 1;) strides[i - 1] = strides[i] * shape[i];
  return strides;
}

// Calls f(coords) for every coordinate of `sizes` in row-major order.
void ForEachCoord(const Shape& sizes, const std::function<void(const Shape&)>& f) {
  Shape c(sizes.size(), 0);
  while (true) {
    f(c);
    size_t i = sizes.size();
    while (i > 0) {
      --i;
      if (++c[i] < sizes[i]) break;
      c[i] = 0;
      if (i == 0) return;
    }
    if (sizes.empty()) return;
  }
}

// Groups of the dims in `dims` (ascending) taken together: rows ordered lexicographically by the
// other dims' coordinates, members row-major over `dims`' coordinates.
Rows ReferenceGroups(const Shape& shape, const std::vector<int>& dims, const Shape& table) {
  const Shape strides = Strides(shape);
  std::vector<int> others;
  for (int d = 0; d < static_cast<int>(shape.size()); ++d) {
    if (std::find(dims.begin(), dims.end(), d) == dims.end()) others.push_back(d);
  }
  Shape other_sizes, dim_sizes;
  for (int d : others) other_sizes.push_back(shape[d]);
  for (int d : dims) dim_sizes.push_back(shape[d]);
  Rows rows;
  ForEachCoord(other_sizes, [&](const Shape& oc) {
    int64_t base = 0;
    for (size_t k = 0; k < others.size(); ++k) base += oc[k] * strides[others[k]];
    std::vector<int64_t> row;
    ForEachCoord(dim_sizes, [&](const Shape& dc) {
      int64_t pos = base;
      for (size_t k = 0; k < dims.size(); ++k) pos += dc[k] * strides[dims[k]];
      row.push_back(table[pos]);
    });
    rows.push_back(row);
  });
  return rows;
}

class MeshProperty : public ::testing::TestWithParam<bool> {};  // param: reversed rank map

TEST_P(MeshProperty, GroupsCoordinatesFlattenUnflatten_AllShapesUpTo64Ranks) {
  const bool reversed = GetParam();
  int64_t checked = 0;
  for (const Shape& shape : AllShapes()) {
    const int64_t n = std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<>());
    Shape table(n);
    std::iota(table.begin(), table.end(), 0);
    if (reversed) std::reverse(table.begin(), table.end());
    const std::vector<std::string> names = NamesFor(shape.size());
    const DeviceMesh m = Must(DeviceMesh::FromRankTable(RankTensor{shape, table}, names, n));
    SCOPED_TRACE(absl::StrCat("shape (", absl::StrJoin(shape, ","), reversed ? ") reversed" : ")"));

    for (int d = 0; d < m.ndim(); ++d) {
      const Rows rows = GroupRows(m, d);
      // Matches the reference, which also proves PyTorch's order.
      ASSERT_EQ(rows, ReferenceGroups(shape, {d}, table)) << "dim " << d;
      // Partition: every rank exactly once.
      std::vector<int> seen(n, 0);
      for (const auto& row : rows) {
        for (int64_t r : row) ++seen[r];
      }
      ASSERT_TRUE(std::all_of(seen.begin(), seen.end(), [](int c) { return c == 1; }))
          << "dim " << d;
    }

    const Shape strides = Strides(shape);
    for (int64_t pos = 0; pos < n; ++pos) {
      const int64_t r = table[pos];
      const std::vector<int64_t> c = *m.coordinate(r);
      int64_t back = 0;
      for (size_t k = 0; k < c.size(); ++k) back += c[k] * strides[k];
      ASSERT_EQ(back, pos) << "rank " << r;
      ASSERT_EQ(Must(m.View(r)).values, table);
      for (int d = 0; d < m.ndim(); ++d) {
        const RankGroup g = Must(m.GroupOf(r, d));
        ASSERT_EQ(g.ranks, GroupRows(m, d)[g.index]);
        ASSERT_EQ(g.ranks[c[d]], r);
        ASSERT_EQ(g.local_rank,
                  std::count_if(g.ranks.begin(), g.ranks.end(), [r](int64_t x) { return x < r; }));
      }
    }

    // Flatten every subset of dims: its groups equal the groups of the combined dims.
    for (uint32_t mask = 1; mask < (1u << shape.size()); ++mask) {
      std::vector<int> dims;
      std::vector<std::string> sub_names;
      for (int d = 0; d < m.ndim(); ++d) {
        if (mask & (1u << d)) {
          dims.push_back(d);
          sub_names.push_back(names[d]);
        }
      }
      const DeviceMesh flat = Must(Flatten(Must(Slice(m, sub_names)), absl::StrCat("f", mask)));
      ASSERT_EQ(GroupRows(flat, 0), ReferenceGroups(shape, dims, table)) << "mask " << mask;
      ASSERT_EQ(Must(Slice(m, {absl::StrCat("f", mask)})), flat);
      ++checked;
    }

    // Unflatten then flatten round-trips, for every two-way split of every dim.
    for (int d = 0; d < m.ndim(); ++d) {
      for (int64_t a = 1; a <= shape[d]; ++a) {
        if (shape[d] % a != 0) continue;
        const DeviceMesh u = Must(Unflatten(m, d, {a, shape[d] / a}, {"x", "y"}));
        ASSERT_EQ(u.ndim(), m.ndim() + 1);
        const DeviceMesh back =
            Must(Flatten(Must(Slice(u, {"x", "y"})), absl::StrCat("xy", d, "_", a)));
        ASSERT_EQ(back.layout().axes()[0], m.layout().axes()[d]) << "dim " << d << " split " << a;
        ASSERT_EQ(GroupRows(back, 0), GroupRows(m, d));
      }
    }
    // The flattened world unflattened into the shape is the mesh again.
    const DeviceMesh world = Must(Flatten(m, "world"));
    const DeviceMesh again = Must(Unflatten(world, 0, shape, names));
    ASSERT_EQ(again, m);
  }
  EXPECT_GT(checked, 2000);  // the loop really covered the shapes
}

INSTANTIATE_TEST_SUITE_P(RankMaps, MeshProperty, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return p.param ? "Reversed" : "Identity";
                         });

}  // namespace
}  // namespace meshd::layout
