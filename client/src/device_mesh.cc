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

}  // namespace

int DeviceMesh::ndim() const { return impl_->mesh.ndim(); }
std::vector<int64_t> DeviceMesh::shape() const { return impl_->mesh.shape(); }
int64_t DeviceMesh::size() const { return impl_->mesh.size(); }
int64_t DeviceMesh::size(int dim) const { return impl_->mesh.size(dim); }
std::optional<std::vector<std::string>> DeviceMesh::names() const { return impl_->mesh.names(); }
std::optional<std::vector<int64_t>> DeviceMesh::coordinate() const {
  return impl_->mesh.coordinate(impl_->rank);
}
absl::StatusOr<int64_t> DeviceMesh::local_rank(int dim) const {
  if (dim < 0 || dim >= ndim())
    return absl::InvalidArgumentError(absl::StrCat("dim ", dim, " is out of range"));
  absl::StatusOr<layout::RankGroup> g = impl_->mesh.GroupOf(impl_->rank, dim);
  if (!g.ok()) return g.status();
  return g->local_rank;
}
absl::StatusOr<std::vector<int64_t>> DeviceMesh::group_ranks(int dim) const {
  if (dim < 0 || dim >= ndim())
    return absl::InvalidArgumentError(absl::StrCat("dim ", dim, " is out of range"));
  absl::StatusOr<layout::RankGroup> g = impl_->mesh.GroupOf(impl_->rank, dim);
  if (!g.ok()) return g.status();
  return g->ranks;
}
absl::StatusOr<std::vector<int64_t>> DeviceMesh::view() const {
  absl::StatusOr<layout::RankTensor> v = impl_->mesh.View(impl_->rank);
  if (!v.ok()) return v.status();
  return v->values;
}
absl::StatusOr<std::vector<std::vector<int64_t>>> DeviceMesh::all_group_ranks(int dim) const {
  if (dim < 0 || dim >= ndim())
    return absl::InvalidArgumentError(absl::StrCat("dim ", dim, " is out of range"));
  const layout::GroupTable table = impl_->mesh.Groups(dim);
  std::vector<std::vector<int64_t>> out;
  const size_t n = static_cast<size_t>(table.group_size);
  for (size_t i = 0; i + n <= table.ranks.size(); i += n) {
    out.emplace_back(table.ranks.begin() + i, table.ranks.begin() + i + n);
  }
  return out;
}
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
