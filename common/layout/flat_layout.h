// FlatLayout: one mesh dimension as a row-major (lexicographic) CuTe-style layout, always stored in
// canonical (coalesced) form, plus the layout algebra the mesh maths is built on.
//
// Notation is `shape:stride` with the right-most mode innermost, as in PyTorch's `_MeshLayout`
// (NVIDIA CuTe uses the colexicographic order instead). A layout maps a coordinate c to
// sum(c_i * stride_i) — an index into a root mesh's rank map.
//
// Worked examples (each is also a test case in tests/unit/layout/flat_layout_test.cc):
//   Coalesce((2,2):(2,1))            == (4):(1)
//   Coalesce((2,1,3):(3,7,1))        == (6):(1)          size-1 modes vanish
//   Coalesce((1):(5))                == ():()            trivial
//   Complement((4):(1), 8)           == (2):(4)
//   Complement((2):(4), 8)           == (4):(1)
//   Complement((2,2):(4,1), 8)       == (2):(2)
//   Composition((8):(1), (2,4))      == [(2):(4), (4):(1)]
//   Composition((2,2):(4,1), (2,2))  == [(2):(4), (2):(1)]
//   Composition((2,3):(6,1), (3,2))  -> INVALID_ARGUMENT (a non-contiguous dim that does not
//   factor) IsOrthogonal((2,3):(4,1))        == false            injective, but 4 % 3 != 0
//
// Thread-safety: value types and pure functions; safe to use from any thread.
#ifndef MESHD_COMMON_LAYOUT_FLAT_LAYOUT_H_
#define MESHD_COMMON_LAYOUT_FLAT_LAYOUT_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/hash/hash.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace meshd::layout {

// One mode of a layout: `size` coordinates, `stride` apart.
struct Mode {
  int64_t size = 1;
  int64_t stride = 0;
  friend bool operator==(const Mode&, const Mode&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const Mode& m) {
    return H::combine(std::move(h), m.size, m.stride);
  }
};

// The coalesced form of a list of modes:
// walk right to left, drop size-1 modes, merge a mode (s,d) into the current innermost result (S,D)
// when d == S*D. A layout that is entirely trivial becomes the empty list (numel 1).
// @pre every size >= 1 and every stride >= 0.
std::vector<Mode> Coalesce(absl::Span<const Mode> modes);

// One mesh dimension. Always canonical: equal functions compare equal, so (2,2):(2,1) == (4):(1)
// and a size-1 dimension is ():() whatever its stride.
class FlatLayout {
 public:
  FlatLayout() = default;  // the trivial layout ():()
  explicit FlatLayout(absl::Span<const Mode> modes) : modes_(Coalesce(modes)) {}
  // A contiguous (row-major) layout of `sizes`, or `sizes:strides` when strides are given.
  // Errors: INVALID_ARGUMENT when lengths differ, a size is < 1 or a stride is < 0.
  static absl::StatusOr<FlatLayout> FromSizes(absl::Span<const int64_t> sizes,
                                              absl::Span<const int64_t> strides = {});

  // Modes outermost first. Empty for the trivial layout.
  const std::vector<Mode>& modes() const { return modes_; }
  int64_t numel() const;
  // 1 + the largest index the layout reaches.
  int64_t cosize() const;
  // Maps a linear row-major coordinate in [0, numel()) to an index.
  int64_t operator()(int64_t coordinate) const;
  // The indices of every coordinate, in row-major order (numel() entries).
  std::vector<int64_t> Offsets() const;
  // "(2,2):(4,1)", "(8):(1)" or "():()".
  std::string ToString() const;

  friend bool operator==(const FlatLayout&, const FlatLayout&) = default;
  // Consistent with == (the form is canonical).
  template <typename H>
  friend H AbslHashValue(H h, const FlatLayout& l) {
    return H::combine(std::move(h), l.modes_);
  }

 private:
  std::vector<Mode> modes_;
};

// The layout of "everything else" inside [0, n): the modes that fill the gaps between `layout`'s
// modes, largest stride first, coalesced. For the meshes DeviceMesh builds this is all the other
// dims in their original order. Errors: INVALID_ARGUMENT when `layout` overlaps itself (a mode's
// stride is smaller than the span of the modes below it), so no complement exists.
absl::StatusOr<FlatLayout> Complement(const FlatLayout& layout, int64_t n);

// Splits `layout` (one dimension) into one axis per entry of `sizes`: axis i takes the coordinates
// of the i-th mode of the contiguous layout of `sizes`. The product of `sizes` must equal
// layout.numel(). Errors: INVALID_ARGUMENT when the product differs, a size is < 1, or a multi-mode
// (non-contiguous) layout cannot be split that way (e.g. (2,3):(6,1) into (3,2)).
absl::StatusOr<std::vector<FlatLayout>> Composition(const FlatLayout& layout,
                                                    absl::Span<const int64_t> sizes);

// True when the modes' strides are non-increasing: the "ascending order" rule of slicing.
bool IsSorted(const FlatLayout& layout);

// True when, sorted by stride (descending), every larger stride is divisible by the next mode's
// stride * size. Stricter than injectivity; this is PyTorch's non-overlap test.
bool IsOrthogonal(const FlatLayout& layout);

}  // namespace meshd::layout

#endif  // MESHD_COMMON_LAYOUT_FLAT_LAYOUT_H_
