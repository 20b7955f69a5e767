// MeshLayout: a mesh's layout, one canonical FlatLayout per mesh dim (PyTorch's `_MeshLayout`), and
// AxisFrame, which splits the positions of a root rank map between some axes and their complement.
//
// Examples:
//   MeshLayout::Contiguous({2,4}) == [(2):(4), (4):(1)]; Collapse() == (8):(1)
//   [(2):(4), (2):(1)] over 8 positions: Collapse() == (2,2):(4,1), complement (2):(2)
//
// AxisFrame is what keeps per-rank work independent of the world size: every mode of the axes and
// of their complement together tile [0, n) as a mixed-radix number system, so a position decomposes
// into (copy index, coordinate per axis) with one division per mode, and composes back the same
// way.
//
// Thread-safety: value types; const methods are safe from any thread.
#ifndef MESHD_COMMON_LAYOUT_MESH_LAYOUT_H_
#define MESHD_COMMON_LAYOUT_MESH_LAYOUT_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/layout/flat_layout.h"

namespace meshd::layout {

class MeshLayout {
 public:
  MeshLayout() = default;
  explicit MeshLayout(std::vector<FlatLayout> axes) : axes_(std::move(axes)) {}
  // One contiguous axis per size, row-major. Errors: INVALID_ARGUMENT for a size < 1.
  static absl::StatusOr<MeshLayout> Contiguous(absl::Span<const int64_t> sizes);

  const std::vector<FlatLayout>& axes() const { return axes_; }
  int ndim() const { return static_cast<int>(axes_.size()); }
  // numel of each axis: the mesh's shape.
  std::vector<int64_t> sizes() const;
  int64_t numel() const;
  // All axes merged into one coalesced layout (forgets the dim structure).
  FlatLayout Collapse() const;
  // axes[0, begin) + inserted + axes[end, ndim). @pre 0 <= begin <= end <= ndim.
  MeshLayout Splice(int begin, int end, absl::Span<const FlatLayout> inserted) const;
  // "[(2):(4), (4):(1)]"
  std::string ToString() const;

  friend bool operator==(const MeshLayout&, const MeshLayout&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const MeshLayout& l) {
    return H::combine(std::move(h), l.axes_);
  }

 private:
  std::vector<FlatLayout> axes_;
};

// A position in [0, n) split into the copy it lies in (row-major index over the complement of the
// axes) and its row-major coordinate along each axis.
struct FramePoint {
  int64_t copy = 0;
  absl::InlinedVector<int64_t, 6> coords;
};

class AxisFrame {
 public:
  AxisFrame() = default;
  // Errors: INVALID_ARGUMENT when the axes overlap or do not tile [0, n) together with their
  // complement (then no mesh over a rank map of n entries can use them).
  static absl::StatusOr<AxisFrame> Build(absl::Span<const FlatLayout> axes, int64_t n);

  // Number of copies: how many disjoint groups the axes cut [0, n) into.
  int64_t copies() const { return complement_.numel(); }
  const FlatLayout& complement() const { return complement_; }
  // O(number of modes). @pre 0 <= position < n.
  FramePoint Decompose(int64_t position) const;
  // The inverse of Decompose. @pre copy < copies(), coords[i] < numel of axis i.
  int64_t Compose(int64_t copy, absl::Span<const int64_t> coords) const;

 private:
  struct Digit {
    int64_t size;
    int64_t stride;  // in positions
    int64_t weight;  // row-major weight inside its owner
    int owner;       // axis index, or -1 for the complement
  };
  std::vector<Digit> digits_;
  FlatLayout complement_;
  int naxes_ = 0;
};

}  // namespace meshd::layout

#endif  // MESHD_COMMON_LAYOUT_MESH_LAYOUT_H_
