// MeshLayout and AxisFrame (see mesh_layout.h).
#include "common/layout/mesh_layout.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace meshd::layout {

absl::StatusOr<MeshLayout> MeshLayout::Contiguous(absl::Span<const int64_t> sizes) {
  std::vector<FlatLayout> axes;
  int64_t stride = 1;
  for (int64_t s : sizes) {
    if (s < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("mesh sizes (", absl::StrJoin(sizes, ","), ") must all be at least 1"));
    }
    stride *= s;
  }
  for (int64_t s : sizes) {
    stride /= s;
    axes.emplace_back(std::vector<Mode>{Mode{s, stride}});
  }
  return MeshLayout(std::move(axes));
}

std::vector<int64_t> MeshLayout::sizes() const {
  std::vector<int64_t> out;
  out.reserve(axes_.size());
  for (const FlatLayout& a : axes_) out.push_back(a.numel());
  return out;
}

int64_t MeshLayout::numel() const {
  int64_t n = 1;
  for (const FlatLayout& a : axes_) n *= a.numel();
  return n;
}

FlatLayout MeshLayout::Collapse() const {
  std::vector<Mode> all;
  for (const FlatLayout& a : axes_) all.insert(all.end(), a.modes().begin(), a.modes().end());
  return FlatLayout(all);
}

MeshLayout MeshLayout::Splice(int begin, int end, absl::Span<const FlatLayout> inserted) const {
  std::vector<FlatLayout> out(axes_.begin(), axes_.begin() + begin);
  out.insert(out.end(), inserted.begin(), inserted.end());
  out.insert(out.end(), axes_.begin() + end, axes_.end());
  return MeshLayout(std::move(out));
}

std::string MeshLayout::ToString() const {
  return absl::StrCat(
      "[",
      absl::StrJoin(axes_, ", ",
                    [](std::string* s, const FlatLayout& a) { absl::StrAppend(s, a.ToString()); }),
      "]");
}

absl::StatusOr<AxisFrame> AxisFrame::Build(absl::Span<const FlatLayout> axes, int64_t n) {
  MeshLayout together{std::vector<FlatLayout>(axes.begin(), axes.end())};
  const FlatLayout collapsed = together.Collapse();
  if (!IsOrthogonal(collapsed)) {
    return absl::InvalidArgumentError(absl::StrCat("layout ", together.ToString(),
                                                   " overlaps itself (", collapsed.ToString(),
                                                   " is not orthogonal)"));
  }
  absl::StatusOr<FlatLayout> complement = Complement(collapsed, n);
  if (!complement.ok()) return complement.status();

  AxisFrame frame;
  frame.complement_ = *std::move(complement);
  frame.naxes_ = static_cast<int>(axes.size());
  auto add_owner = [&frame](const FlatLayout& layout, int owner) {
    int64_t weight = 1;
    for (auto it = layout.modes().rbegin(); it != layout.modes().rend(); ++it) {
      frame.digits_.push_back(Digit{it->size, it->stride, weight, owner});
      weight *= it->size;
    }
  };
  for (size_t i = 0; i < axes.size(); ++i) add_owner(axes[i], static_cast<int>(i));
  add_owner(frame.complement_, -1);

  // The digits must tile [0, n) exactly: sorted by stride, each starts where the previous ends.
  std::vector<Digit> sorted = frame.digits_;
  std::sort(sorted.begin(), sorted.end(),
            [](const Digit& a, const Digit& b) { return a.stride < b.stride; });
  int64_t span = 1;
  for (const Digit& d : sorted) {
    if (d.stride != span) {
      return absl::InvalidArgumentError(
          absl::StrCat("layout ", together.ToString(), " does not tile a rank map of ", n,
                       " entries: the mode at stride ", d.stride, " should start at ", span));
    }
    span *= d.size;
  }
  if (span != n) {
    return absl::InvalidArgumentError(absl::StrCat("layout ", together.ToString(), " covers ", span,
                                                   " positions, not the rank map's ", n));
  }
  return frame;
}

FramePoint AxisFrame::Decompose(int64_t position) const {
  FramePoint p;
  p.coords.assign(naxes_, 0);
  for (const Digit& d : digits_) {
    const int64_t digit = (position / d.stride) % d.size;
    (d.owner < 0 ? p.copy : p.coords[d.owner]) += digit * d.weight;
  }
  return p;
}

int64_t AxisFrame::Compose(int64_t copy, absl::Span<const int64_t> coords) const {
  int64_t position = 0;
  for (const Digit& d : digits_) {
    const int64_t value = d.owner < 0 ? copy : coords[d.owner];
    position += ((value / d.weight) % d.size) * d.stride;
  }
  return position;
}

}  // namespace meshd::layout
