// RankMap (see rank_map.h).
#include "common/layout/rank_map.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"

namespace meshd::layout {

RankMap RankMap::Identity(int64_t n) {
  RankMap m;
  m.size_ = n;
  return m;
}

absl::StatusOr<RankMap> RankMap::Explicit(std::vector<int64_t> ranks, int64_t world_size) {
  if (ranks.empty()) return absl::InvalidArgumentError("a mesh needs at least one rank");
  RankMap m;
  m.size_ = static_cast<int64_t>(ranks.size());
  m.position_.reserve(ranks.size());
  bool identity = true;
  for (int64_t pos = 0; pos < m.size_; ++pos) {
    const int64_t r = ranks[pos];
    if (r < 0 || r >= world_size) {
      return absl::InvalidArgumentError(absl::StrCat("rank ", r, " at position ", pos,
                                                     " of the mesh is outside the world [0, ",
                                                     world_size, ")"));
    }
    auto [it, inserted] = m.position_.emplace(r, pos);
    if (!inserted) {
      return absl::InvalidArgumentError(
          absl::StrCat("rank ", r, " appears twice in the mesh, at positions ", it->second, " and ",
                       pos, "; every rank may appear once"));
    }
    identity = identity && r == pos;
  }
  if (identity) return Identity(m.size_);  // same meaning, O(1) memory
  m.content_hash_ = absl::HashOf(absl::MakeConstSpan(ranks));
  m.ranks_ = std::move(ranks);
  return m;
}

std::optional<int64_t> RankMap::position_of(int64_t rank) const {
  if (ranks_.empty()) {
    if (rank < 0 || rank >= size_) return std::nullopt;
    return rank;
  }
  auto it = position_.find(rank);
  if (it == position_.end()) return std::nullopt;
  return it->second;
}

bool operator==(const RankMap& a, const RankMap& b) {
  if (a.size_ != b.size_) return false;
  if (a.is_identity() && b.is_identity()) return true;
  if (a.content_hash_ != b.content_hash_) return false;
  for (int64_t i = 0; i < a.size_; ++i) {
    if (a.at(i) != b.at(i)) return false;
  }
  return true;
}

}  // namespace meshd::layout
