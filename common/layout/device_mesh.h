// DeviceMesh: PyTorch's DeviceMesh as a value — a root rank map, a MeshLayout and optional dim
// names — with the per-rank queries (coordinate, local rank, group, view) and the whole-world group
// tables. Deriving meshes (slice, flatten, unflatten, concatenate) lives in mesh_ops.h.
//
// Semantics follow shared/docs/device_mesh_semantics.md (PyTorch 2.13 main); the differences are
// listed in docs/mesh-semantics.md. In short, for init_device_mesh((2,4), ("dp","tp")) over 8
// ranks:
//   groups("dp") = [0,4],[1,5],[2,6],[3,7]     groups("tp") = [0,1,2,3],[4,5,6,7]
//   coordinate(6) = (1,2)                      view(6) = [[0,1,2,3],[4,5,6,7]]
// and for its slice mesh["tp"]: view(6) = [4,5,6,7], coordinate(6) = (2,).
//
// Cost: construction is O(ndim^2) (no rank is enumerated) except FromRankTable, which indexes its
// table once. coordinate() is O(ndim); GroupOf() is O(group size); View() is O(mesh size); only
// Groups() walks the whole world.
//
// Thread-safety: DeviceMesh is an immutable value; every const method is safe from any thread. The
// only shared mutable state is the root's flatten registry (see MeshRoot), which is internally
// locked.
#ifndef MESHD_COMMON_LAYOUT_DEVICE_MESH_H_
#define MESHD_COMMON_LAYOUT_DEVICE_MESH_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/hash/hash.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "common/layout/flat_layout.h"
#include "common/layout/mesh_layout.h"
#include "common/layout/rank_map.h"

namespace meshd::layout {

using DimNames = std::optional<std::vector<std::string>>;

// The most dims a mesh may have: far more than a world needs (2^20 ranks have at most 20 dims
// larger than 1), and checked before any layout is built, so that a hostile shape, name list or
// unflatten cannot make the O(ndim^2) maths slow. PyTorch sets no such limit.
inline constexpr int kMaxMeshDims = 64;

// A dense row-major tensor of ranks (a mesh's view, or the table a mesh is built from).
struct RankTensor {
  std::vector<int64_t> shape;
  std::vector<int64_t> values;
  friend bool operator==(const RankTensor&, const RankTensor&) = default;
};

// Every group of one mesh dim, in PyTorch's order: row i is the i-th group.
struct GroupTable {
  int64_t group_size = 1;
  std::vector<int64_t> ranks;  // num_groups() rows of group_size ranks
  int64_t num_groups() const { return group_size == 0 ? 0 : ranks.size() / group_size; }
  absl::Span<const int64_t> row(int64_t i) const {
    return absl::MakeConstSpan(ranks).subspan(i * group_size, group_size);
  }
};

// The group of one mesh dim that a rank belongs to.
struct RankGroup {
  int64_t index = 0;           // row of GroupTable (PyTorch order)
  std::vector<int64_t> ranks;  // in mesh order along the dim
  int64_t local_rank = 0;      // the rank's index among the SORTED members (c10d group rank)
};

// State shared by a root mesh and every mesh derived from it: its rank map, its own layout and
// names, and the registry of flattened dims (name -> layout), which _flatten writes and slicing
// reads.
class MeshRoot {
 public:
  MeshRoot(RankMap rank_map, MeshLayout layout, DimNames names)
      : rank_map_(std::move(rank_map)), layout_(std::move(layout)), names_(std::move(names)) {}

  const RankMap& rank_map() const { return rank_map_; }
  const MeshLayout& layout() const { return layout_; }
  const DimNames& names() const { return names_; }

  std::optional<FlatLayout> FindFlattened(absl::string_view name) const ABSL_LOCKS_EXCLUDED(mu_);
  // Registers `layout` under `name` unless the name is taken; returns the layout now registered
  // under `name` (the existing one when it was taken). Atomic.
  // Const because roots are shared as `const MeshRoot`: the registry is their only mutable part.
  FlatLayout RegisterFlattened(const std::string& name, const FlatLayout& layout) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // Flattened names in registration order.
  std::vector<std::string> FlattenedNames() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // Constant after construction.
  const RankMap rank_map_;
  const MeshLayout layout_;
  const DimNames names_;

  mutable absl::Mutex mu_;
  mutable std::vector<std::pair<std::string, FlatLayout>> flattened_ ABSL_GUARDED_BY(mu_);
};

class DeviceMesh {
 public:
  // init_device_mesh(shape, names) over a world of `world_size` ranks: identity rank map of
  // prod(shape) ranks. Ranks >= prod(shape) are in the world but not in the mesh.
  // Errors (INVALID_ARGUMENT): empty shape, more than kMaxMeshDims dims, a size < 1,
  // prod(shape) > world_size, names whose count differs from the shape's, duplicate or empty
  // names, world_size < 1.
  static absl::StatusOr<DeviceMesh> Create(absl::Span<const int64_t> shape, DimNames names,
                                           int64_t world_size);
  // DeviceMesh(mesh=table, names): any rank order, any subset of the world.
  // Errors (INVALID_ARGUMENT): as Create, plus a rank outside [0, world_size) or a repeated rank.
  static absl::StatusOr<DeviceMesh> FromRankTable(const RankTensor& table, DimNames names,
                                                  int64_t world_size);
  // DeviceMesh.from_group(groups, mesh, mesh_dim_names): a root mesh over process groups that
  // exist already (no group is made; a c10d group lists its ranks sorted). One group and no
  // `table`: the 1-D mesh over the group's ranks, in the order given. Otherwise `table` is the
  // mesh, with one dim per group; a 1-D table must be the group's ranks, and several groups need
  // names.
  // PyTorch trusts the groups; given `rank` (the caller), meshd checks them: group i must hold
  // exactly the ranks of `rank`'s group along dim i (in any order), and `rank` must be in the mesh.
  // Errors (INVALID_ARGUMENT): no group, an empty group or one larger than the world, a table or
  // names missing, a table whose ndim is not the number of groups, a 1-D table that is not the
  // group, a group that is not the rank's; and those of FromRankTable.
  static absl::StatusOr<DeviceMesh> FromGroups(absl::Span<const std::vector<int64_t>> groups,
                                               const std::optional<RankTensor>& table,
                                               DimNames names, int64_t world_size,
                                               std::optional<int64_t> rank = std::nullopt);
  // A mesh over `root`'s rank map with another layout (what mesh_ops derive).
  // Errors (INVALID_ARGUMENT): more than kMaxMeshDims dims, the layout overlaps itself or does not
  // fit the rank map.
  static absl::StatusOr<DeviceMesh> Derive(std::shared_ptr<const MeshRoot> root, MeshLayout layout,
                                           DimNames names);

  int ndim() const { return layout_.ndim(); }
  std::vector<int64_t> shape() const { return layout_.sizes(); }
  int64_t size() const { return layout_.numel(); }
  int64_t size(int dim) const { return layout_.axes()[dim].numel(); }
  const DimNames& names() const { return names_; }
  const MeshLayout& layout() const { return layout_; }
  const std::shared_ptr<const MeshRoot>& root() const { return root_; }
  const RankMap& rank_map() const { return root_->rank_map(); }
  // True when this mesh equals its root by value (only then are flattened names sliceable).
  bool IsRoot() const;
  // The root mesh (PyTorch's _get_root_mesh()): the mesh this one was derived from by slicing,
  // flattening, unflattening or concatenating (the first input's), or itself. It shares the
  // flatten registry. O(ndim^2) for a derived mesh.
  DeviceMesh RootMesh() const;

  // The index of dim `name`. Errors: FAILED_PRECONDITION without names; INVALID_ARGUMENT for an
  // unknown name (the message lists the valid ones).
  absl::StatusOr<int> DimIndex(absl::string_view name) const;
  // "dp" or "dim 0" when the mesh has no names; for messages.
  std::string DimLabel(int dim) const;

  // How many groups dim `dim` has (world ranks in the rank map / size(dim)).
  int64_t num_groups(int dim) const { return dim_frames_[dim].copies(); }
  // The rank's coordinate in its view, or nullopt when the rank is not in the root's rank map.
  std::optional<std::vector<int64_t>> coordinate(int64_t rank) const;
  // The rank's group along `dim`. Errors: FAILED_PRECONDITION when the rank is not in the mesh.
  absl::StatusOr<RankGroup> GroupOf(int64_t rank, int dim) const;
  // The index of the rank's group along `dim` (GroupOf(rank, dim)->index), or nullopt when the
  // rank is not in the mesh. O(ndim), unlike GroupOf.
  std::optional<int64_t> GroupIndex(int64_t rank, int dim) const;
  // Member `member` of group `group` along `dim`: GroupOf(...)->ranks[member] of that group.
  // O(ndim). @pre 0 <= group < num_groups(dim), 0 <= member < size(dim).
  int64_t GroupMember(int dim, int64_t group, int64_t member) const;
  // `.mesh` as seen by `rank`: the copy of this mesh that contains the rank (or the only copy).
  // Errors: FAILED_PRECONDITION when the mesh has several copies and the rank is in none of them.
  absl::StatusOr<RankTensor> View(int64_t rank) const;
  // Every group of `dim`, PyTorch's order. O(world).
  GroupTable Groups(int dim) const;

  // PyTorch's repr: "DeviceMesh((dp=2, tp=4), stride=(4, 1))"; a multi-mode stride prints as a
  // tuple.
  std::string ToString() const;

  // By value: root rank map content, layout and names.
  friend bool operator==(const DeviceMesh& a, const DeviceMesh& b);
  // Consistent with ==, and O(ndim) (the rank map's content is hashed once, when it is built);
  // PyTorch hashes the same three things (and the device type).
  template <typename H>
  friend H AbslHashValue(H h, const DeviceMesh& m) {
    h = H::combine(std::move(h), m.layout_, m.names_.has_value(), m.root_->rank_map());
    return m.names_ ? H::combine(std::move(h), *m.names_) : std::move(h);
  }
  size_t Hash() const;

 private:
  DeviceMesh() = default;

  std::shared_ptr<const MeshRoot> root_;
  MeshLayout layout_;
  DimNames names_;
  AxisFrame mesh_frame_;               // all axes together: copies of the whole mesh
  std::vector<AxisFrame> dim_frames_;  // one per dim: that dim's groups
};

// Errors: INVALID_ARGUMENT naming the problem: empty or duplicate names, or a count != ndim.
absl::Status ValidateDimNames(const DimNames& names, size_t ndim);

}  // namespace meshd::layout

#endif  // MESHD_COMMON_LAYOUT_DEVICE_MESH_H_
