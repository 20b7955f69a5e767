// DeviceMesh and MeshRoot (see device_mesh.h).
#include "common/layout/device_mesh.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace meshd::layout {
namespace {

// Rank counts beyond this are rejected up front so that no product or index can overflow.
constexpr int64_t kMaxRanks = int64_t{1} << 40;

std::string NamesString(const std::vector<std::string>& names) {
  return absl::StrCat("(", absl::StrJoin(names, ", "), ")");
}

absl::StatusOr<int64_t> CheckedProduct(absl::Span<const int64_t> shape) {
  if (shape.empty()) {
    return absl::InvalidArgumentError("a mesh needs at least one dim; the shape is empty");
  }
  if (shape.size() > static_cast<size_t>(kMaxMeshDims)) {
    return absl::InvalidArgumentError(
        absl::StrCat("a mesh of ", shape.size(), " dims has more than ", kMaxMeshDims));
  }
  int64_t n = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 1) {
      return absl::InvalidArgumentError(absl::StrCat("mesh shape (", absl::StrJoin(shape, ", "),
                                                     ") has size ", shape[i], " at dim ", i,
                                                     "; every size must be at least 1"));
    }
    if (shape[i] > kMaxRanks / n) {
      return absl::InvalidArgumentError(
          absl::StrCat("mesh shape (", absl::StrJoin(shape, ", "), ") holds more than 2^40 ranks"));
    }
    n *= shape[i];
  }
  return n;
}

absl::Status CheckWorld(int64_t mesh_size, int64_t world_size) {
  if (world_size < 1 || world_size > kMaxRanks) {
    return absl::InvalidArgumentError(
        absl::StrCat("world size ", world_size, " must be between 1 and 2^40"));
  }
  if (mesh_size > world_size) {
    return absl::InvalidArgumentError(absl::StrCat("a mesh of ", mesh_size,
                                                   " ranks does not fit in a world of ", world_size,
                                                   " ranks; shrink the mesh or grow the world"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateDimNames(const DimNames& names, size_t ndim) {
  if (!names) return absl::OkStatus();
  if (names->size() != ndim) {
    return absl::InvalidArgumentError(absl::StrCat("dim names ", NamesString(*names), " name ",
                                                   names->size(), " dims, but the mesh has ", ndim,
                                                   "; give one name per dim"));
  }
  absl::flat_hash_set<absl::string_view> seen;
  for (const std::string& n : *names) {
    if (n.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("dim names ", NamesString(*names), " contain an empty name"));
    }
    if (!seen.insert(n).second) {
      return absl::InvalidArgumentError(absl::StrCat("dim names ", NamesString(*names), " repeat '",
                                                     n, "'; each dim name must be unique"));
    }
  }
  return absl::OkStatus();
}

std::optional<FlatLayout> MeshRoot::FindFlattened(absl::string_view name) const {
  absl::MutexLock lock(&mu_);
  for (const auto& [n, layout] : flattened_) {
    if (n == name) return layout;
  }
  return std::nullopt;
}

FlatLayout MeshRoot::RegisterFlattened(const std::string& name, const FlatLayout& layout) const {
  absl::MutexLock lock(&mu_);
  for (const auto& [n, existing] : flattened_) {
    if (n == name) return existing;
  }
  flattened_.emplace_back(name, layout);
  return layout;
}

std::vector<std::string> MeshRoot::FlattenedNames() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  for (const auto& entry : flattened_) out.push_back(entry.first);
  return out;
}

absl::StatusOr<DeviceMesh> DeviceMesh::Create(absl::Span<const int64_t> shape, DimNames names,
                                              int64_t world_size) {
  absl::StatusOr<int64_t> n = CheckedProduct(shape);
  if (!n.ok()) return n.status();
  if (absl::Status s = ValidateDimNames(names, shape.size()); !s.ok()) return s;
  if (absl::Status s = CheckWorld(*n, world_size); !s.ok()) return s;
  absl::StatusOr<MeshLayout> layout = MeshLayout::Contiguous(shape);
  if (!layout.ok()) return layout.status();
  auto root = std::make_shared<MeshRoot>(RankMap::Identity(*n), *layout, names);
  return Derive(std::move(root), *std::move(layout), std::move(names));
}

absl::StatusOr<DeviceMesh> DeviceMesh::FromRankTable(const RankTensor& table, DimNames names,
                                                     int64_t world_size) {
  absl::StatusOr<int64_t> n = CheckedProduct(table.shape);
  if (!n.ok()) return n.status();
  if (*n != static_cast<int64_t>(table.values.size())) {
    return absl::InvalidArgumentError(absl::StrCat("rank table of shape (",
                                                   absl::StrJoin(table.shape, ", "), ") holds ",
                                                   table.values.size(), " ranks, not ", *n));
  }
  if (absl::Status s = ValidateDimNames(names, table.shape.size()); !s.ok()) return s;
  if (absl::Status s = CheckWorld(*n, world_size); !s.ok()) return s;
  absl::StatusOr<RankMap> ranks = RankMap::Explicit(table.values, world_size);
  if (!ranks.ok()) return ranks.status();
  absl::StatusOr<MeshLayout> layout = MeshLayout::Contiguous(table.shape);
  if (!layout.ok()) return layout.status();
  auto root = std::make_shared<MeshRoot>(*std::move(ranks), *layout, names);
  return Derive(std::move(root), *std::move(layout), std::move(names));
}

namespace {

// "[0,2,4]", at most 16 ranks shown.
std::string RanksText(absl::Span<const int64_t> ranks) {
  constexpr size_t kShown = 16;
  if (ranks.size() <= kShown) return absl::StrCat("[", absl::StrJoin(ranks, ","), "]");
  return absl::StrCat("[", absl::StrJoin(ranks.subspan(0, kShown), ","), ",… (",
                      ranks.size() - kShown, " more)]");
}

}  // namespace

absl::StatusOr<DeviceMesh> DeviceMesh::FromGroups(absl::Span<const std::vector<int64_t>> groups,
                                                  const std::optional<RankTensor>& table,
                                                  DimNames names, int64_t world_size,
                                                  std::optional<int64_t> rank) {
  if (groups.empty()) {
    return absl::InvalidArgumentError("a mesh from process groups needs at least one group");
  }
  if (groups.size() > static_cast<size_t>(kMaxMeshDims)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a mesh from ", groups.size(), " process groups has more than ", kMaxMeshDims, " dims"));
  }
  if (absl::Status s = CheckWorld(1, world_size); !s.ok()) return s;
  for (size_t i = 0; i < groups.size(); ++i) {
    if (groups[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("group ", i, " has no ranks"));
    }
    if (static_cast<int64_t>(groups[i].size()) > world_size) {
      return absl::InvalidArgumentError(absl::StrCat("group ", i, " has ", groups[i].size(),
                                                     " ranks, more than the world's ", world_size));
    }
  }
  RankTensor one_group;
  const RankTensor* mesh = nullptr;
  if (!table) {
    if (groups.size() != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("a mesh from ", groups.size(),
                       " process groups needs the mesh: a rank table with one dim per group"));
    }
    one_group.shape = {static_cast<int64_t>(groups[0].size())};
    one_group.values = groups[0];
    mesh = &one_group;
  } else {
    mesh = &*table;
    if (table->shape.size() != groups.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the mesh has ", table->shape.size(), " dims (shape (", absl::StrJoin(table->shape, ", "),
          ")) but ", groups.size(), " process groups were given; give one group per dim"));
    }
    if (groups.size() == 1 && table->values != groups[0]) {
      return absl::InvalidArgumentError(absl::StrCat("mesh ", RanksText(table->values),
                                                     " is not the process group's ranks ",
                                                     RanksText(groups[0])));
    }
  }
  if (groups.size() > 1 && !names) {
    return absl::InvalidArgumentError(
        absl::StrCat("a mesh from ", groups.size(), " process groups needs dim names"));
  }
  absl::StatusOr<DeviceMesh> m = FromRankTable(*mesh, std::move(names), world_size);
  if (!m.ok() || !rank) return m;
  for (int d = 0; d < m->ndim(); ++d) {
    absl::StatusOr<RankGroup> g = m->GroupOf(*rank, d);
    if (!g.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("rank ", *rank, " is not in the mesh ",
                                                     RanksText(mesh->values),
                                                     " it makes from its process groups"));
    }
    std::vector<int64_t> want = g->ranks, got = groups[d];
    std::sort(want.begin(), want.end());
    std::sort(got.begin(), got.end());
    if (want != got) {
      return absl::InvalidArgumentError(
          absl::StrCat("process group ", d, " ", RanksText(groups[d]), " is not rank ", *rank,
                       "'s group along ", m->DimLabel(d), " of the mesh, ", RanksText(g->ranks)));
    }
  }
  return m;
}

absl::StatusOr<DeviceMesh> DeviceMesh::Derive(std::shared_ptr<const MeshRoot> root,
                                              MeshLayout layout, DimNames names) {
  if (layout.ndim() > kMaxMeshDims) {
    return absl::InvalidArgumentError(
        absl::StrCat("a mesh of ", layout.ndim(), " dims has more than ", kMaxMeshDims));
  }
  const int64_t n = root->rank_map().size();
  DeviceMesh mesh;
  absl::StatusOr<AxisFrame> frame = AxisFrame::Build(layout.axes(), n);
  if (!frame.ok()) return frame.status();
  mesh.mesh_frame_ = *std::move(frame);
  for (const FlatLayout& axis : layout.axes()) {
    absl::StatusOr<AxisFrame> dim_frame = AxisFrame::Build({axis}, n);
    if (!dim_frame.ok()) return dim_frame.status();
    mesh.dim_frames_.push_back(*std::move(dim_frame));
  }
  mesh.root_ = std::move(root);
  mesh.layout_ = std::move(layout);
  mesh.names_ = std::move(names);
  return mesh;
}

bool DeviceMesh::IsRoot() const { return layout_ == root_->layout() && names_ == root_->names(); }

DeviceMesh DeviceMesh::RootMesh() const {
  if (IsRoot()) return *this;
  // The root's own layout always fits its rank map: this cannot fail.
  return *Derive(root_, root_->layout(), root_->names());
}

size_t DeviceMesh::Hash() const { return absl::HashOf(*this); }

absl::StatusOr<int> DeviceMesh::DimIndex(absl::string_view name) const {
  if (!names_) {
    return absl::FailedPreconditionError(absl::StrCat("the mesh has no dim names, so dim '", name,
                                                      "' cannot be found; use an index"));
  }
  for (int i = 0; i < ndim(); ++i) {
    if ((*names_)[i] == name) return i;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("dim '", name, "' is not in the mesh; its dims are ", NamesString(*names_)));
}

std::string DeviceMesh::DimLabel(int dim) const {
  return names_ ? (*names_)[dim] : absl::StrCat("dim ", dim);
}

std::optional<std::vector<int64_t>> DeviceMesh::coordinate(int64_t rank) const {
  const std::optional<int64_t> pos = rank_map().position_of(rank);
  if (!pos) return std::nullopt;
  const FramePoint p = mesh_frame_.Decompose(*pos);
  return std::vector<int64_t>(p.coords.begin(), p.coords.end());
}

absl::StatusOr<RankGroup> DeviceMesh::GroupOf(int64_t rank, int dim) const {
  const std::optional<int64_t> pos = rank_map().position_of(rank);
  if (!pos) {
    return absl::FailedPreconditionError(
        absl::StrCat("rank ", rank, " is not in the mesh (its ", rank_map().size(),
                     " ranks), so it has no group along ", DimLabel(dim)));
  }
  const AxisFrame& frame = dim_frames_[dim];
  const FlatLayout& axis = layout_.axes()[dim];
  const int64_t copy = frame.Decompose(*pos).copy;
  const int64_t base = frame.Compose(copy, {int64_t{0}});
  RankGroup g;
  g.index = copy;
  g.ranks.reserve(axis.numel());
  for (int64_t offset : axis.Offsets()) {
    const int64_t r = rank_map().at(base + offset);
    g.ranks.push_back(r);
    if (r < rank) ++g.local_rank;
  }
  return g;
}

std::optional<int64_t> DeviceMesh::GroupIndex(int64_t rank, int dim) const {
  const std::optional<int64_t> pos = rank_map().position_of(rank);
  if (!pos) return std::nullopt;
  return dim_frames_[dim].Decompose(*pos).copy;
}

int64_t DeviceMesh::GroupMember(int dim, int64_t group, int64_t member) const {
  return rank_map().at(dim_frames_[dim].Compose(group, {member}));
}

absl::StatusOr<RankTensor> DeviceMesh::View(int64_t rank) const {
  int64_t copy = 0;
  if (const std::optional<int64_t> pos = rank_map().position_of(rank)) {
    copy = mesh_frame_.Decompose(*pos).copy;
  } else if (mesh_frame_.copies() > 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "rank ", rank, " is not in the mesh ", ToString(), ", which has ", mesh_frame_.copies(),
        " copies over its root's ", rank_map().size(), " ranks; only member ranks have a view"));
  }
  RankTensor view;
  view.shape = shape();
  view.values.reserve(size());
  const int64_t base = mesh_frame_.Compose(copy, std::vector<int64_t>(ndim(), 0));
  for (int64_t offset : layout_.Collapse().Offsets()) {
    view.values.push_back(rank_map().at(base + offset));
  }
  return view;
}

GroupTable DeviceMesh::Groups(int dim) const {
  const AxisFrame& frame = dim_frames_[dim];
  const std::vector<int64_t> inner = layout_.axes()[dim].Offsets();
  const std::vector<int64_t> bases = frame.complement().Offsets();
  GroupTable t;
  t.group_size = static_cast<int64_t>(inner.size());
  t.ranks.reserve(inner.size() * bases.size());
  for (int64_t base : bases) {
    for (int64_t offset : inner) t.ranks.push_back(rank_map().at(base + offset));
  }
  return t;
}

std::string DeviceMesh::ToString() const {
  std::vector<std::string> dims, strides;
  for (int i = 0; i < ndim(); ++i) {
    dims.push_back(names_ ? absl::StrCat((*names_)[i], "=", size(i)) : absl::StrCat(size(i)));
    const std::vector<Mode>& modes = layout_.axes()[i].modes();
    if (modes.size() == 1) {
      strides.push_back(absl::StrCat(modes[0].stride));
    } else {
      strides.push_back(absl::StrCat(
          "(",
          absl::StrJoin(modes, ", ",
                        [](std::string* s, const Mode& m) { absl::StrAppend(s, m.stride); }),
          ")"));
    }
  }
  const std::string comma = ndim() == 1 ? "," : "";
  return absl::StrCat("DeviceMesh((", absl::StrJoin(dims, ", "), comma, "), stride=(",
                      absl::StrJoin(strides, ", "), comma, "))");
}

bool operator==(const DeviceMesh& a, const DeviceMesh& b) {
  return a.layout_ == b.layout_ && a.names_ == b.names_ &&
         (a.root_ == b.root_ || a.root_->rank_map() == b.root_->rank_map());
}

}  // namespace meshd::layout
