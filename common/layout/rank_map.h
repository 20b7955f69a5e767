// RankMap: the root mesh's ranks in row-major order of the root mesh, shared (immutable) by every
// mesh derived from that root. The identity map of init_device_mesh is stored implicitly (O(1)
// memory); an explicit rank table keeps its values and an inverse index built once, so finding a
// rank's position is O(1) either way and never re-walks the world.
//
// Thread-safety: immutable after construction; safe from any thread.
#ifndef MESHD_COMMON_LAYOUT_RANK_MAP_H_
#define MESHD_COMMON_LAYOUT_RANK_MAP_H_

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/status/statusor.h"

namespace meshd::layout {

class RankMap {
 public:
  // ranks 0..n-1 in order.
  static RankMap Identity(int64_t n);
  // An explicit order. Errors: INVALID_ARGUMENT when empty, when a rank is outside [0, world_size),
  // or when a rank appears twice (the message names the rank and both positions).
  static absl::StatusOr<RankMap> Explicit(std::vector<int64_t> ranks, int64_t world_size);

  int64_t size() const { return size_; }
  bool is_identity() const { return ranks_.empty(); }
  // @pre 0 <= position < size().
  int64_t at(int64_t position) const { return ranks_.empty() ? position : ranks_[position]; }
  // The position of `rank`, or nullopt when the map does not hold it.
  std::optional<int64_t> position_of(int64_t rank) const;

  // Equal content (PyTorch compares rank maps by value, not by object).
  friend bool operator==(const RankMap& a, const RankMap& b);
  // Consistent with ==, in O(1): an explicit map's content is hashed once, when it is built (an
  // explicit table equal to the identity is stored as the identity, so equal maps are stored
  // alike).
  template <typename H>
  friend H AbslHashValue(H h, const RankMap& m) {
    return H::combine(std::move(h), m.size_, m.content_hash_);
  }

 private:
  int64_t size_ = 0;
  std::vector<int64_t> ranks_;                      // empty for the identity
  uint64_t content_hash_ = 0;                       // of ranks_; 0 for the identity
  absl::flat_hash_map<int64_t, int64_t> position_;  // rank -> position, explicit maps only
};

}  // namespace meshd::layout

#endif  // MESHD_COMMON_LAYOUT_RANK_MAP_H_
