// The layout algebra: every worked example of flat_layout.h and of the semantics doc, section 2.
#include "common/layout/flat_layout.h"

#include "common/layout/mesh_layout.h"
#include "tests/unit/layout/mesh_test_util.h"

namespace meshd::layout {
namespace {

using ::meshd::layout::testing::Must;

FlatLayout L(std::vector<int64_t> sizes, std::vector<int64_t> strides) {
  return Must(FlatLayout::FromSizes(sizes, strides));
}

TEST(Coalesce, MergesContiguousModes) {
  EXPECT_EQ(L({2, 2}, {2, 1}), L({4}, {1}));
  EXPECT_EQ(L({2, 2}, {2, 1}).ToString(), "(4):(1)");
}

TEST(Coalesce, DropsSizeOneModes) {
  EXPECT_EQ(L({2, 1, 3}, {3, 7, 1}).ToString(), "(6):(1)");
  EXPECT_EQ(L({1}, {5}), FlatLayout());
  EXPECT_EQ(FlatLayout().ToString(), "():()");
  EXPECT_EQ(FlatLayout().numel(), 1);
}

TEST(Coalesce, KeepsNonContiguousModes) {
  EXPECT_EQ(L({2, 2}, {4, 1}).ToString(), "(2,2):(4,1)");
  EXPECT_EQ(L({2, 2}, {4, 1}).numel(), 4);
  EXPECT_EQ(L({2, 2}, {4, 1}).cosize(), 6);
}

TEST(FlatLayout, DefaultStridesAreRowMajor) {
  EXPECT_EQ(Must(FlatLayout::FromSizes({2, 3, 4})), L({24}, {1}));
}

TEST(FlatLayout, FromSizes_BadInput_InvalidArgument) {
  MESHD_EXPECT_CODE(FlatLayout::FromSizes({2, 0}), kInvalidArgument, "at least 1");
  MESHD_EXPECT_CODE(FlatLayout::FromSizes({2, 2}, {1}), kInvalidArgument, "differ in length");
  MESHD_EXPECT_CODE(FlatLayout::FromSizes({2}, {-1}), kInvalidArgument, ">= 0");
}

TEST(FlatLayout, MapsCoordinatesRowMajor) {
  const FlatLayout l = L({2, 2}, {4, 1});
  EXPECT_EQ(l(0), 0);
  EXPECT_EQ(l(1), 1);
  EXPECT_EQ(l(2), 4);
  EXPECT_EQ(l(3), 5);
  EXPECT_EQ(l.Offsets(), (std::vector<int64_t>{0, 1, 4, 5}));
  EXPECT_EQ(FlatLayout().Offsets(), (std::vector<int64_t>{0}));
}

TEST(Complement, WorkedExamples) {
  EXPECT_EQ(Must(Complement(L({4}, {1}), 8)), L({2}, {4}));
  EXPECT_EQ(Must(Complement(L({2}, {4}), 8)), L({4}, {1}));
  EXPECT_EQ(Must(Complement(L({2, 2}, {4, 1}), 8)), L({2}, {2}));
  EXPECT_EQ(Must(Complement(L({8}, {1}), 8)), FlatLayout());
  EXPECT_EQ(Must(Complement(FlatLayout(), 8)), L({8}, {1}));
}

TEST(Complement, OverlappingLayout_InvalidArgument) {
  MESHD_EXPECT_CODE(Complement(L({2, 3}, {4, 1}), 12), kInvalidArgument, "overlaps itself");
}

TEST(Composition, WorkedExamples) {
  EXPECT_EQ(Must(Composition(L({8}, {1}), {2, 4})),
            (std::vector<FlatLayout>{L({2}, {4}), L({4}, {1})}));
  EXPECT_EQ(Must(Composition(L({2, 2}, {4, 1}), {2, 2})),
            (std::vector<FlatLayout>{L({2}, {4}), L({2}, {1})}));
}

TEST(Composition, SizeOneAxisIsTrivial) {
  EXPECT_EQ(Must(Composition(L({4}, {2}), {1, 4})),
            (std::vector<FlatLayout>{FlatLayout(), L({4}, {2})}));
}

TEST(Composition, NonFactorableSplit_InvalidArgument) {
  MESHD_EXPECT_CODE(Composition(L({2, 3}, {6, 1}), {3, 2}), kInvalidArgument, "not contiguous");
}

TEST(Composition, ProductMismatch_InvalidArgument) {
  MESHD_EXPECT_CODE(Composition(L({8}, {1}), {2, 3}), kInvalidArgument,
                    "product of sizes (2,3) is 6");
  MESHD_EXPECT_CODE(Composition(L({8}, {1}), {0, 8}), kInvalidArgument, "at least 1");
}

TEST(IsSorted, NonIncreasingStrides) {
  EXPECT_TRUE(IsSorted(L({2, 2}, {4, 1})));
  EXPECT_FALSE(IsSorted(L({2, 2}, {1, 4})));
  EXPECT_TRUE(IsSorted(FlatLayout()));
}

TEST(IsOrthogonal, StricterThanInjective) {
  EXPECT_TRUE(IsOrthogonal(L({2, 2}, {4, 1})));
  EXPECT_TRUE(IsOrthogonal(L({2, 4}, {1, 2})));   // order does not matter
  EXPECT_FALSE(IsOrthogonal(L({2, 3}, {4, 1})));  // injective, but 4 % 3 != 0
  EXPECT_FALSE(IsOrthogonal(FlatLayout(std::vector<Mode>{{4, 1}, {4, 1}})));  // a dim twice
  EXPECT_FALSE(IsOrthogonal(L({2}, {0})));
}

TEST(MeshLayout, ContiguousAndCollapse) {
  const MeshLayout m = Must(MeshLayout::Contiguous({2, 4}));
  EXPECT_EQ(m.ToString(), "[(2):(4), (4):(1)]");
  EXPECT_EQ(m.Collapse(), L({8}, {1}));
  EXPECT_EQ(m.sizes(), (std::vector<int64_t>{2, 4}));
  const MeshLayout noncontiguous({L({2}, {4}), L({2}, {1})});
  EXPECT_EQ(noncontiguous.Collapse().ToString(), "(2,2):(4,1)");
}

TEST(MeshLayout, Splice) {
  const MeshLayout m = Must(MeshLayout::Contiguous({2, 2, 2}));
  EXPECT_EQ(m.Splice(1, 2, {L({1}, {1}), L({2}, {2})}).ToString(),
            "[(2):(4), ():(), (2):(2), (2):(1)]");
}

TEST(AxisFrame, DecomposeComposeRoundTrip) {
  const AxisFrame f = Must(AxisFrame::Build({L({2}, {4}), L({2}, {1})}, 8));
  EXPECT_EQ(f.copies(), 2);
  EXPECT_EQ(f.complement(), L({2}, {2}));
  for (int64_t p = 0; p < 8; ++p) {
    const FramePoint fp = f.Decompose(p);
    EXPECT_EQ(f.Compose(fp.copy, fp.coords), p);
  }
  EXPECT_EQ(f.Decompose(6).copy, 1);
  EXPECT_EQ(f.Decompose(6).coords, (absl::InlinedVector<int64_t, 6>{1, 0}));
}

TEST(AxisFrame, LayoutLargerThanRankMap_InvalidArgument) {
  MESHD_EXPECT_CODE(AxisFrame::Build({L({8}, {1})}, 4), kInvalidArgument, "covers 8 positions");
}

}  // namespace
}  // namespace meshd::layout
