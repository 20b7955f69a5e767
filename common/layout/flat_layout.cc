// Layout algebra: coalesce, complement, composition and the order checks (see flat_layout.h).
#include "common/layout/flat_layout.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace meshd::layout {
namespace {

std::string SizesString(absl::Span<const int64_t> sizes) {
  return absl::StrCat("(", absl::StrJoin(sizes, ","), ")");
}

}  // namespace

std::vector<Mode> Coalesce(absl::Span<const Mode> modes) {
  // Built innermost-first, reversed at the end.
  std::vector<Mode> out;
  for (auto it = modes.rbegin(); it != modes.rend(); ++it) {
    if (it->size == 1) continue;
    if (!out.empty() && it->stride == out.back().size * out.back().stride) {
      out.back().size *= it->size;
      continue;
    }
    out.push_back(*it);
  }
  std::reverse(out.begin(), out.end());
  return out;
}

absl::StatusOr<FlatLayout> FlatLayout::FromSizes(absl::Span<const int64_t> sizes,
                                                 absl::Span<const int64_t> strides) {
  if (!strides.empty() && strides.size() != sizes.size()) {
    return absl::InvalidArgumentError(absl::StrCat("sizes ", SizesString(sizes), " and strides ",
                                                   SizesString(strides), " differ in length"));
  }
  std::vector<Mode> modes(sizes.size());
  int64_t running = 1;
  for (size_t i = sizes.size(); i-- > 0;) {
    if (sizes[i] < 1) {
      return absl::InvalidArgumentError(absl::StrCat("size ", sizes[i], " at position ", i, " of ",
                                                     SizesString(sizes), " must be at least 1"));
    }
    const int64_t stride = strides.empty() ? running : strides[i];
    if (stride < 0) {
      return absl::InvalidArgumentError(absl::StrCat("stride ", stride, " at position ", i, " of ",
                                                     SizesString(strides), " must be >= 0"));
    }
    modes[i] = Mode{sizes[i], stride};
    running *= sizes[i];
  }
  return FlatLayout(modes);
}

int64_t FlatLayout::numel() const {
  int64_t n = 1;
  for (const Mode& m : modes_) n *= m.size;
  return n;
}

int64_t FlatLayout::cosize() const {
  int64_t last = 0;
  for (const Mode& m : modes_) last += (m.size - 1) * m.stride;
  return last + 1;
}

int64_t FlatLayout::operator()(int64_t coordinate) const {
  int64_t index = 0;
  for (auto it = modes_.rbegin(); it != modes_.rend(); ++it) {
    index += (coordinate % it->size) * it->stride;
    coordinate /= it->size;
  }
  return index;
}

std::vector<int64_t> FlatLayout::Offsets() const {
  std::vector<int64_t> out = {0};
  out.reserve(numel());
  // Row-major: expand the innermost mode first, then repeat the block once per step of each outer
  // mode, so the innermost mode varies fastest.
  for (auto it = modes_.rbegin(); it != modes_.rend(); ++it) {
    const size_t block = out.size();
    for (int64_t k = 1; k < it->size; ++k) {
      for (size_t j = 0; j < block; ++j) out.push_back(out[j] + k * it->stride);
    }
  }
  return out;
}

std::string FlatLayout::ToString() const {
  std::vector<int64_t> sizes, strides;
  for (const Mode& m : modes_) {
    sizes.push_back(m.size);
    strides.push_back(m.stride);
  }
  return absl::StrCat(SizesString(sizes), ":", SizesString(strides));
}

absl::StatusOr<FlatLayout> Complement(const FlatLayout& layout, int64_t n) {
  std::vector<Mode> sorted = layout.modes();
  std::sort(sorted.begin(), sorted.end(), [](const Mode& a, const Mode& b) {
    return a.stride != b.stride ? a.stride < b.stride : a.size < b.size;
  });
  std::vector<Mode> gaps;  // innermost first
  int64_t current = 1;
  for (const Mode& m : sorted) {
    if (m.stride == 0 || m.stride % current != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "layout ", layout.ToString(), " overlaps itself: mode ", m.size, ":", m.stride,
          " does not start at a multiple of ", current, ", so it has no complement"));
    }
    gaps.push_back(Mode{m.stride / current, current});
    current = m.size * m.stride;
  }
  gaps.push_back(Mode{(n + current - 1) / current, current});
  std::reverse(gaps.begin(), gaps.end());
  return FlatLayout(gaps);
}

absl::StatusOr<std::vector<FlatLayout>> Composition(const FlatLayout& layout,
                                                    absl::Span<const int64_t> sizes) {
  int64_t product = 1;
  for (int64_t s : sizes) {
    if (s < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("sizes ", SizesString(sizes), " must all be at least 1, got ", s));
    }
    product *= s;
  }
  if (product != layout.numel()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the product of sizes ", SizesString(sizes), " is ", product, ", but the dimension ",
        layout.ToString(), " has ", layout.numel(), " elements"));
  }
  // The layout's modes innermost first; a trivial layout behaves as (1):(0).
  std::vector<Mode> a(layout.modes().rbegin(), layout.modes().rend());
  if (a.empty()) a.push_back(Mode{1, 0});

  std::vector<FlatLayout> axes;
  int64_t b_stride = product;  // row-major strides of `sizes`
  for (int64_t b_size : sizes) {
    b_stride /= b_size;
    // "Skip the first b_stride elements of the layout, keep b_size of them."
    int64_t rest_stride = b_stride;
    int64_t rest_size = b_size;
    std::vector<Mode> out;  // innermost first
    for (size_t k = 0; k + 1 < a.size(); ++k) {
      const Mode& m = a[k];
      if (m.size % rest_stride != 0 && rest_stride % m.size != 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "dimension ", layout.ToString(), " is not contiguous and cannot be split into sizes ",
            SizesString(sizes), ": its mode of size ", m.size,
            " would have to be cut at a step of ", rest_stride,
            "; choose sizes whose trailing products line up with the dimension's modes"));
      }
      const int64_t take = std::min(std::max<int64_t>(1, m.size / rest_stride), rest_size);
      if (take != 1) out.push_back(Mode{take, rest_stride * m.stride});
      rest_size /= take;
      rest_stride = (rest_stride + m.size - 1) / m.size;
    }
    if (rest_size != 1 || out.empty()) {
      out.push_back(Mode{rest_size, rest_stride * a.back().stride});
    }
    std::reverse(out.begin(), out.end());
    axes.emplace_back(out);
  }
  return axes;
}

bool IsSorted(const FlatLayout& layout) {
  const auto& m = layout.modes();
  for (size_t i = 1; i < m.size(); ++i) {
    if (m[i - 1].stride < m[i].stride) return false;
  }
  return true;
}

bool IsOrthogonal(const FlatLayout& layout) {
  std::vector<Mode> sorted = layout.modes();
  std::sort(sorted.begin(), sorted.end(), [](const Mode& a, const Mode& b) {
    return a.stride != b.stride ? a.stride > b.stride : a.size > b.size;
  });
  for (size_t i = 0; i < sorted.size(); ++i) {
    if (sorted[i].stride == 0) return false;  // a non-trivial mode that repeats one index
    if (i > 0 && sorted[i - 1].stride % (sorted[i].stride * sorted[i].size) != 0) return false;
  }
  return true;
}

}  // namespace meshd::layout
