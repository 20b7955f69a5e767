// Slice, Flatten, Unflatten, Concatenate (see mesh_ops.h).
#include "common/layout/mesh_ops.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace meshd::layout {
namespace {

std::string Quoted(absl::Span<const std::string> names) {
  return absl::StrCat(
      "(",
      absl::StrJoin(names, ", ",
                    [](std::string* s, const std::string& n) { absl::StrAppend(s, "'", n, "'"); }),
      ")");
}

absl::Status NeedNames(const DeviceMesh& mesh, absl::string_view what) {
  if (mesh.names()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("cannot ", what, " ", mesh.ToString(), ": it has no dim names"));
}

// "(valid: -3..2, a name of (pp, dp, tp), or a flattened dim of its root: (dp_tp))".
std::string ValidDims(const DeviceMesh& mesh) {
  std::string out = absl::StrCat("(valid: ", -mesh.ndim(), "..", mesh.ndim() - 1);
  if (mesh.names()) absl::StrAppend(&out, ", a name of ", Quoted(*mesh.names()));
  const std::vector<std::string> flat = mesh.root()->FlattenedNames();
  if (!flat.empty()) absl::StrAppend(&out, ", or a flattened dim of its root: ", Quoted(flat));
  return absl::StrCat(out, ")");
}

}  // namespace

absl::StatusOr<ResolvedDim> ResolveDim(const DeviceMesh& mesh, const DimRef& dim) {
  if (const int* i = std::get_if<int>(&dim)) {
    const int n = mesh.ndim();
    if (*i < -n || *i >= n) {
      return absl::InvalidArgumentError(absl::StrCat("dim ", *i, " is out of range for ",
                                                     mesh.ToString(), ", which has ", n, " dims ",
                                                     ValidDims(mesh)));
    }
    return ResolvedDim{mesh, *i < 0 ? *i + n : *i, false};
  }
  const std::string& name = std::get<std::string>(dim);
  if (std::optional<FlatLayout> flat = mesh.root()->FindFlattened(name)) {
    absl::StatusOr<DeviceMesh> m = DeviceMesh::Derive(mesh.root(), MeshLayout({*std::move(flat)}),
                                                      std::vector<std::string>{name});
    if (!m.ok()) return m.status();
    return ResolvedDim{*std::move(m), 0, true};
  }
  if (mesh.names()) {
    for (int i = 0; i < mesh.ndim(); ++i) {
      if ((*mesh.names())[i] == name) return ResolvedDim{mesh, i, false};
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("dim '", name, "' is not a dim of ", mesh.ToString(),
                   mesh.names() ? " " : ", which has no dim names ", ValidDims(mesh)));
}

absl::StatusOr<DeviceMesh> Slice(const DeviceMesh& mesh, absl::Span<const std::string> names) {
  if (absl::Status s = NeedNames(mesh, "slice"); !s.ok()) return s;
  if (names.empty()) return absl::InvalidArgumentError("slicing needs at least one dim name");
  if (names.size() > static_cast<size_t>(kMaxMeshDims)) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot slice ", names.size(), " dims: a mesh has at most ", kMaxMeshDims));
  }
  const std::vector<std::string>& own = *mesh.names();
  if (std::vector<std::string>(names.begin(), names.end()) == own) return mesh;

  const bool is_root = mesh.IsRoot();
  std::vector<FlatLayout> axes;
  for (const std::string& name : names) {
    bool found = false;
    for (int i = 0; i < mesh.ndim(); ++i) {
      if (own[i] == name) {
        axes.push_back(mesh.layout().axes()[i]);
        found = true;
        break;
      }
    }
    if (found) continue;
    if (is_root) {
      if (std::optional<FlatLayout> flat = mesh.root()->FindFlattened(name)) {
        axes.push_back(*flat);
        continue;
      }
    }
    std::vector<std::string> valid = own;
    if (is_root) {
      for (std::string& f : mesh.root()->FlattenedNames()) valid.push_back(std::move(f));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot slice dim '", name, "' from ", mesh.ToString(), "; valid dim names are ",
        Quoted(valid), is_root ? "" : " (flattened dims can only be sliced from the root mesh)"));
  }
  MeshLayout sliced(std::move(axes));
  const FlatLayout collapsed = sliced.Collapse();
  if (!IsSorted(collapsed)) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot slice ", Quoted(names), " from ", mesh.ToString(),
                     ": dims must be listed in the root mesh's order (outermost first)"));
  }
  if (!IsOrthogonal(collapsed)) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot slice ", Quoted(names), " from ", mesh.ToString(),
                     ": the dims overlap (a dim named twice, or a "
                     "flattened dim together with one of its parts)"));
  }
  return DeviceMesh::Derive(mesh.root(), std::move(sliced),
                            std::vector<std::string>(names.begin(), names.end()));
}

absl::StatusOr<DeviceMesh> Flatten(const DeviceMesh& mesh, std::optional<std::string> name) {
  if (absl::Status s = NeedNames(mesh, "flatten"); !s.ok()) return s;
  const std::string flat_name = name ? *name : absl::StrJoin(*mesh.names(), "_");
  if (flat_name.empty()) return absl::InvalidArgumentError("the flattened dim's name is empty");
  if (mesh.ndim() == 1 && (*mesh.names())[0] == flat_name) return mesh;
  if (const DimNames& root_names = mesh.root()->names()) {
    for (const std::string& n : *root_names) {
      if (n == flat_name) {
        return absl::InvalidArgumentError(absl::StrCat(
            "cannot flatten ", mesh.ToString(), " into '", flat_name, "': the root mesh ",
            Quoted(*root_names), " already has a dim of that name; pick another name"));
      }
    }
  }
  const FlatLayout layout = mesh.layout().Collapse();
  const FlatLayout registered = mesh.root()->RegisterFlattened(flat_name, layout);
  if (!(registered == layout)) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot flatten ", mesh.ToString(), " into '", flat_name,
                     "': that name was already used to "
                     "flatten other dims (layout ",
                     registered.ToString(), ", not ", layout.ToString(), "); pick another name"));
  }
  return DeviceMesh::Derive(mesh.root(), MeshLayout({layout}), std::vector<std::string>{flat_name});
}

absl::StatusOr<DeviceMesh> Unflatten(const DeviceMesh& mesh, const DimRef& dim,
                                     absl::Span<const int64_t> sizes,
                                     absl::Span<const std::string> names) {
  if (absl::Status s = NeedNames(mesh, "unflatten"); !s.ok()) return s;
  int index = 0;
  if (const int* i = std::get_if<int>(&dim)) {
    if (*i < 0 || *i >= mesh.ndim()) {
      return absl::InvalidArgumentError(absl::StrCat("dim ", *i, " is out of range for ",
                                                     mesh.ToString(), "; use 0..", mesh.ndim() - 1,
                                                     " or a dim name"));
    }
    index = *i;
  } else {
    absl::StatusOr<int> found = mesh.DimIndex(std::get<std::string>(dim));
    if (!found.ok()) return found.status();
    index = *found;
  }
  if (sizes.size() != names.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unflatten got ", sizes.size(), " sizes (", absl::StrJoin(sizes, ", "),
                     ") but ", names.size(), " names ", Quoted(names), "; give one name per size"));
  }
  if (sizes.empty()) return absl::InvalidArgumentError("unflatten needs at least one size");
  if (static_cast<size_t>(mesh.ndim()) - 1 + sizes.size() > static_cast<size_t>(kMaxMeshDims)) {
    return absl::InvalidArgumentError(absl::StrCat("unflatten into ", sizes.size(),
                                                   " dims would make a mesh of more than ",
                                                   kMaxMeshDims, " dims"));
  }
  absl::StatusOr<std::vector<FlatLayout>> axes = Composition(mesh.layout().axes()[index], sizes);
  if (!axes.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot unflatten dim ", mesh.DimLabel(index),
                                                   " of size ", mesh.size(index), " of ",
                                                   mesh.ToString(), ": ", axes.status().message()));
  }
  std::vector<std::string> new_names(mesh.names()->begin(), mesh.names()->begin() + index);
  new_names.insert(new_names.end(), names.begin(), names.end());
  new_names.insert(new_names.end(), mesh.names()->begin() + index + 1, mesh.names()->end());
  if (absl::Status s = ValidateDimNames(new_names, new_names.size()); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot unflatten dim ", mesh.DimLabel(index),
                                                   " into ", Quoted(names), ": ", s.message()));
  }
  return DeviceMesh::Derive(mesh.root(), mesh.layout().Splice(index, index + 1, *axes),
                            std::move(new_names));
}

absl::StatusOr<DeviceMesh> Concatenate(absl::Span<const DeviceMesh> meshes) {
  if (meshes.empty()) return absl::InvalidArgumentError("concatenate needs at least one mesh");
  size_t total = 0;
  for (const DeviceMesh& m : meshes) total += m.ndim();
  if (total > static_cast<size_t>(kMaxMeshDims)) {
    return absl::InvalidArgumentError(absl::StrCat("concatenating ", meshes.size(),
                                                   " meshes would make a mesh of ", total,
                                                   " dims, more than ", kMaxMeshDims));
  }
  std::vector<FlatLayout> axes;
  std::vector<std::string> names;
  for (size_t i = 0; i < meshes.size(); ++i) {
    const DeviceMesh& m = meshes[i];
    if (!m.names()) {
      return absl::InvalidArgumentError(absl::StrCat("mesh ", i, " (", m.ToString(),
                                                     ") has no dim names; concatenate needs them"));
    }
    if (!(m.rank_map() == meshes[0].rank_map())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "mesh ", i, " (", m.ToString(), ") is derived from a different root mesh than mesh 0 (",
          meshes[0].ToString(), "); only meshes over the same ranks can be concatenated"));
    }
    axes.insert(axes.end(), m.layout().axes().begin(), m.layout().axes().end());
    names.insert(names.end(), m.names()->begin(), m.names()->end());
  }
  MeshLayout layout(std::move(axes));
  if (!IsOrthogonal(layout.Collapse())) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot concatenate overlapping meshes: ", layout.ToString(),
                     " uses some ranks twice ", Quoted(names)));
  }
  if (absl::Status s = ValidateDimNames(names, names.size()); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot concatenate: ", s.message()));
  }
  return DeviceMesh::Derive(meshes[0].root(), std::move(layout), std::move(names));
}

}  // namespace meshd::layout
