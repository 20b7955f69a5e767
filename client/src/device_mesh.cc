// meshd::DeviceMesh over common/layout (see <meshd/client.h>).
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/src/device_mesh_impl.h"
#include "common/layout/mesh_ops.h"

namespace meshd {

namespace {

DeviceMesh Wrap(const DeviceMesh::Impl& parent, layout::DeviceMesh derived) {
  // A derived mesh's groups are registered under the root's key plus its own description, which is
  // the same on every rank that derived it the same way.
  std::string key = absl::StrCat(parent.root_key, "|", derived.ToString());
  return DeviceMesh(std::make_shared<const DeviceMesh::Impl>(
      DeviceMesh::Impl{std::move(derived), parent.rank, std::move(key), parent.root_key}));
}

// The key of a mesh made with no client: its canonical form, so that every rank that builds the
// same mesh gets the same key.
std::string LocalKey(const layout::DeviceMesh& mesh) {
  const layout::RankMap& map = mesh.rank_map();
  std::string ranks;
  if (map.is_identity()) {
    ranks = absl::StrCat("identity(", map.size(), ")");
  } else {
    uint64_t h = 1469598103934665603ull;  // FNV-1a: the same on every process
    for (int64_t i = 0; i < map.size(); ++i) {
      h = (h ^ static_cast<uint64_t>(map.at(i))) * 1099511628211ull;
    }
    ranks = absl::StrCat("table(", map.size(), ",", absl::Hex(h), ")");
  }
  return absl::StrCat("local:", ranks, "|", mesh.layout().ToString(), "|",
                      mesh.names() ? absl::StrJoin(*mesh.names(), ",") : "-");
}

absl::Status CheckRank(int64_t rank, int64_t world_size) {
  if (rank >= 0 && rank < world_size) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("rank ", rank, " is outside the world [0, ", world_size, ")"));
}

DeviceMesh Local(layout::DeviceMesh mesh, int64_t rank) {
  std::string key = LocalKey(mesh);
  return DeviceMesh(
      std::make_shared<const DeviceMesh::Impl>(DeviceMesh::Impl{std::move(mesh), rank, key, key}));
}

layout::DimNames NamesOrNone(const std::vector<std::string>& names) {
  return names.empty() ? layout::DimNames() : layout::DimNames(names);
}

}  // namespace

absl::StatusOr<DeviceMesh> DeviceMesh::Create(const std::vector<int64_t>& shape,
                                              const std::vector<std::string>& names, int64_t rank,
                                              int64_t world_size) {
  absl::StatusOr<layout::DeviceMesh> m =
      layout::DeviceMesh::Create(shape, NamesOrNone(names), world_size);
  if (!m.ok()) return m.status();
  if (absl::Status s = CheckRank(rank, world_size); !s.ok()) return s;
  return Local(*std::move(m), rank);
}

absl::StatusOr<DeviceMesh> DeviceMesh::FromRankTable(const std::vector<int64_t>& shape,
                                                     const std::vector<int64_t>& ranks,
                                                     const std::vector<std::string>& names,
                                                     int64_t rank, int64_t world_size) {
  layout::RankTensor table{shape, ranks};
  absl::StatusOr<layout::DeviceMesh> m =
      layout::DeviceMesh::FromRankTable(table, NamesOrNone(names), world_size);
  if (!m.ok()) return m.status();
  if (absl::Status s = CheckRank(rank, world_size); !s.ok()) return s;
  return Local(*std::move(m), rank);
}

int DeviceMesh::ndim() const { return impl_->mesh.ndim(); }
std::vector<int64_t> DeviceMesh::shape() const { return impl_->mesh.shape(); }
int64_t DeviceMesh::size() const { return impl_->mesh.size(); }
absl::StatusOr<int64_t> DeviceMesh::size(const MeshDim& dim) const {
  absl::StatusOr<layout::ResolvedDim> r = layout::ResolveDim(impl_->mesh, dim);
  if (!r.ok()) return r.status();
  return r->mesh.size(r->dim);
}
std::optional<std::vector<std::string>> DeviceMesh::names() const { return impl_->mesh.names(); }
int64_t DeviceMesh::rank() const { return impl_->rank; }
std::optional<std::vector<int64_t>> DeviceMesh::coordinate() const {
  return impl_->mesh.coordinate(impl_->rank);
}
absl::StatusOr<int64_t> DeviceMesh::local_rank(const MeshDim& dim) const {
  absl::StatusOr<layout::ResolvedDim> r = layout::ResolveDim(impl_->mesh, dim);
  if (!r.ok()) return r.status();
  absl::StatusOr<layout::RankGroup> g = r->mesh.GroupOf(impl_->rank, r->dim);
  if (!g.ok()) return g.status();
  return g->local_rank;
}
absl::StatusOr<std::vector<int64_t>> DeviceMesh::group_ranks(const MeshDim& dim) const {
  absl::StatusOr<layout::ResolvedDim> r = layout::ResolveDim(impl_->mesh, dim);
  if (!r.ok()) return r.status();
  absl::StatusOr<layout::RankGroup> g = r->mesh.GroupOf(impl_->rank, r->dim);
  if (!g.ok()) return g.status();
  return std::move(g->ranks);
}
absl::StatusOr<std::vector<int64_t>> DeviceMesh::view() const {
  absl::StatusOr<layout::RankTensor> v = impl_->mesh.View(impl_->rank);
  if (!v.ok()) return v.status();
  return v->values;
}
absl::StatusOr<std::vector<std::vector<int64_t>>> DeviceMesh::all_group_ranks(
    const MeshDim& dim) const {
  absl::StatusOr<layout::ResolvedDim> r = layout::ResolveDim(impl_->mesh, dim);
  if (!r.ok()) return r.status();
  const layout::GroupTable table = r->mesh.Groups(r->dim);
  std::vector<std::vector<int64_t>> out;
  out.reserve(table.num_groups());
  for (int64_t g = 0; g < table.num_groups(); ++g) {
    out.emplace_back(table.row(g).begin(), table.row(g).end());
  }
  return out;
}
absl::StatusOr<std::pair<DeviceMesh, int>> DeviceMesh::ResolveDim(const MeshDim& dim) const {
  absl::StatusOr<layout::ResolvedDim> r = layout::ResolveDim(impl_->mesh, dim);
  if (!r.ok()) return r.status();
  if (!r->flattened) return std::pair<DeviceMesh, int>(*this, r->dim);
  return std::pair<DeviceMesh, int>(Wrap(*impl_, std::move(r->mesh)), 0);
}
DeviceMesh DeviceMesh::root() const {
  if (impl_->mesh.IsRoot()) return *this;
  return DeviceMesh(std::make_shared<const Impl>(
      Impl{impl_->mesh.RootMesh(), impl_->rank, impl_->root_key, impl_->root_key}));
}
size_t DeviceMesh::Hash() const { return impl_->mesh.Hash(); }
absl::StatusOr<int> DeviceMesh::DimIndex(const std::variant<int, std::string>& dim) const {
  if (const std::string* name = std::get_if<std::string>(&dim)) {
    return impl_->mesh.DimIndex(*name);
  }
  const int n = ndim();
  const int d = std::get<int>(dim);
  if (d < -n || d >= n) {
    return absl::InvalidArgumentError(absl::StrCat("dim ", d, " is out of range for ", ToString(),
                                                   ", which has ", n, " dims (valid: ", -n, "..",
                                                   n - 1, ")"));
  }
  return d < 0 ? d + n : d;
}
bool operator==(const DeviceMesh& a, const DeviceMesh& b) {
  return a.impl_ == b.impl_ || a.impl_->mesh == b.impl_->mesh;
}
std::string DeviceMesh::ToString() const { return impl_->mesh.ToString(); }
const std::string& DeviceMesh::key() const { return impl_->key; }

absl::StatusOr<DeviceMesh> DeviceMesh::Slice(const std::vector<std::string>& names) const {
  absl::StatusOr<layout::DeviceMesh> m = layout::Slice(impl_->mesh, names);
  if (!m.ok()) return m.status();
  return Wrap(*impl_, *std::move(m));
}
absl::StatusOr<DeviceMesh> DeviceMesh::Flatten(const std::optional<std::string>& name) const {
  absl::StatusOr<layout::DeviceMesh> m = layout::Flatten(impl_->mesh, name);
  if (!m.ok()) return m.status();
  return Wrap(*impl_, *std::move(m));
}
absl::StatusOr<DeviceMesh> DeviceMesh::Unflatten(const std::variant<int, std::string>& dim,
                                                 const std::vector<int64_t>& sizes,
                                                 const std::vector<std::string>& names) const {
  layout::DimRef ref;
  if (const int* i = std::get_if<int>(&dim)) {
    ref = *i;
  } else {
    ref = std::get<std::string>(dim);
  }
  absl::StatusOr<layout::DeviceMesh> m = layout::Unflatten(impl_->mesh, ref, sizes, names);
  if (!m.ok()) return m.status();
  return Wrap(*impl_, *std::move(m));
}
absl::StatusOr<DeviceMesh> DeviceMesh::Concatenate(const std::vector<DeviceMesh>& meshes) {
  if (meshes.empty()) return absl::InvalidArgumentError("concatenate needs at least one mesh");
  std::vector<layout::DeviceMesh> inner;
  for (const auto& m : meshes) inner.push_back(m.impl_->mesh);
  absl::StatusOr<layout::DeviceMesh> m = layout::Concatenate(inner);
  if (!m.ok()) return m.status();
  return Wrap(*meshes[0].impl_, *std::move(m));
}

}  // namespace meshd
