// Deriving meshes from meshes, as PyTorch's DeviceMesh does: slicing by dim names, _flatten,
// _unflatten and _concatenate. Every derived mesh shares its root's rank map (and flatten
// registry).
//
// Examples on init_device_mesh((2,2,2), ("dp","cp","tp")) over 8 ranks:
//   Slice(m, {"dp","tp"})          -> per-rank views [[0,1],[4,5]] / [[2,3],[6,7]]
//   Slice(m, {"tp","dp"})          -> INVALID_ARGUMENT (dims must follow the root's order)
//   Flatten(Slice(m,{"dp","cp"}))  -> "dp_cp", layout (4):(2), groups [0,2,4,6],[1,3,5,7]
//   Flatten(Slice(m,{"dp","tp"}))  -> "dp_tp", layout (2,2):(4,1), groups [0,1,4,5],[2,3,6,7]
//   Unflatten(Create((8,)), 0, {2,4}, {"dp","tp"}) has the groups of Create((2,4))
//   Concatenate({Slice(m,{"tp"}), Slice(m,{"dp"})}) -> a transposed mesh, view of rank 0
//   [[0,4],[1,5]]
//
// Error codes: INVALID_ARGUMENT for a bad request (unknown or misordered names, overlaps, sizes
// that do not multiply out, name clashes, a result of more than kMaxMeshDims dims — refused before
// it is built); FAILED_PRECONDITION when the mesh itself cannot do it (no dim names).
//
// Thread-safety: pure functions over immutable values, except that Flatten registers the new name
// on the root (atomically), exactly as PyTorch records it in the root's flatten mapping.
#ifndef MESHD_COMMON_LAYOUT_MESH_OPS_H_
#define MESHD_COMMON_LAYOUT_MESH_OPS_H_

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/layout/device_mesh.h"

namespace meshd::layout {

// mesh[names]: the named dims in the requested order. Names may be the mesh's own, or — on a mesh
// equal to its root — names registered by Flatten. Asking for exactly the mesh's own names returns
// the mesh itself.
// Errors: FAILED_PRECONDITION without dim names; INVALID_ARGUMENT for no names, an unknown name,
// dims out of the root's order, or overlapping dims (a name twice, a flattened name with one of its
// dims).
absl::StatusOr<DeviceMesh> Slice(const DeviceMesh& mesh, absl::Span<const std::string> names);

// mesh._flatten(name): one dim covering all of the mesh's dims; the default name joins the dim
// names with "_". Registers the name on the root; flattening again to the same layout returns the
// same mesh. Errors: FAILED_PRECONDITION without dim names; INVALID_ARGUMENT for an empty name, a
// name that is a dim of the root, or a name already registered for another layout.
absl::StatusOr<DeviceMesh> Flatten(const DeviceMesh& mesh,
                                   std::optional<std::string> name = std::nullopt);

// A dim given by index or by name.
using DimRef = std::variant<int, std::string>;

// A dim as PyTorch's per-dim calls take it (get_group and so get_local_rank): a name the root's
// flatten registry holds — from any mesh of that root, and looked up first, as PyTorch does — a
// dim name of the mesh, or an index (negative counts from the end, as Python indexing does).
struct ResolvedDim {
  DeviceMesh mesh;  // `mesh` itself, or the flattened mesh a flattened name stands for
  int dim = 0;      // the dim's index in `mesh`
  bool flattened = false;
};
// Errors (INVALID_ARGUMENT, the message listing the valid indices and names): an index outside
// [-ndim, ndim), a name that is neither a dim nor a flattened dim of the root.
absl::StatusOr<ResolvedDim> ResolveDim(const DeviceMesh& mesh, const DimRef& dim);

// mesh._unflatten(dim, sizes, names): dim split into len(sizes) dims.
// Errors: FAILED_PRECONDITION without dim names; INVALID_ARGUMENT for a dim out of range (negative
// included: PyTorch mishandles those), an unknown dim name, sizes and names of different lengths, a
// size < 1, sizes whose product differs from the dim's size, a non-contiguous dim that does not
// factor that way, or new names that clash with the remaining dims.
absl::StatusOr<DeviceMesh> Unflatten(const DeviceMesh& mesh, const DimRef& dim,
                                     absl::Span<const int64_t> sizes,
                                     absl::Span<const std::string> names);

// DeviceMesh._concatenate(meshes): all their dims, in order, over the first mesh's root.
// Errors: INVALID_ARGUMENT for an empty list, a mesh without names, different rank maps,
// overlapping dims, or repeated dim names.
absl::StatusOr<DeviceMesh> Concatenate(absl::Span<const DeviceMesh> meshes);

}  // namespace meshd::layout

#endif  // MESHD_COMMON_LAYOUT_MESH_OPS_H_
