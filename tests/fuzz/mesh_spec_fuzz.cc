// Fuzzer for mesh fingerprints, which ranks send the coordinator and it rebuilds meshes from
// (MeshFromFingerprint). The first two bytes choose the world size (1-65536); the rest is the
// fingerprint. A fingerprint that parses must describe a mesh that fits the world, whose own
// fingerprint parses again to the same fingerprint (the canonical form is a fixed point), and
// whose groups are all inside the world.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/string_view.h"
#include "common/layout/mesh_spec.h"

namespace {

[[noreturn]] void Fail(const char* what, absl::string_view input) {
  std::fprintf(stderr, "mesh_spec_fuzz: %s\ninput: %s\n", what,
               absl::CHexEscape(input.substr(0, 512)).c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const int64_t world = 1 + (data[0] << 8 | data[1]);
  const absl::string_view text(reinterpret_cast<const char*>(data + 2), size - 2);
  absl::StatusOr<meshd::layout::DeviceMesh> mesh = meshd::layout::MeshFromFingerprint(text, world);
  if (!mesh.ok()) {
    if (mesh.status().code() != absl::StatusCode::kInvalidArgument) {
      Fail("refused with another code than INVALID_ARGUMENT", text);
    }
    return 0;
  }
  const std::string canonical = meshd::layout::MeshFingerprint(*mesh);
  absl::StatusOr<meshd::layout::DeviceMesh> again =
      meshd::layout::MeshFromFingerprint(canonical, world);
  if (!again.ok()) Fail("the fingerprint of a parsed mesh does not parse", text);
  if (meshd::layout::MeshFingerprint(*again) != canonical) {
    Fail("the canonical fingerprint is not a fixed point", text);
  }
  // Every group of every dim lies inside the world (bounded: a few groups per dim).
  for (int dim = 0; dim < mesh->ndim(); ++dim) {
    for (int64_t rank : {int64_t{0}, world - 1}) {
      absl::StatusOr<meshd::layout::RankGroup> group = mesh->GroupOf(rank, dim);
      if (!group.ok()) continue;  // a rank the mesh does not hold
      for (int64_t r : group->ranks) {
        if (r < 0 || r >= world) Fail("a group holds a rank outside the world", text);
      }
    }
  }
  return 0;
}
