// Mesh fingerprints, group keys and chunk leaders (see mesh_spec.h).
#include "common/layout/mesh_spec.h"

#include <algorithm>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace meshd::layout {

namespace {

// "(2,4)" -> {2, 4}; "()" -> {}.
bool ParseTuple(absl::string_view text, std::vector<int64_t>* out) {
  if (!absl::ConsumePrefix(&text, "(") || !absl::ConsumeSuffix(&text, ")")) return false;
  if (text.empty()) return true;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(part, &v) || v < 0) return false;
    out->push_back(v);
  }
  return true;
}

// "[(2):(4), (4):(1)]" -> the layout's axes, of at most `n` positions in all, each mode's size and
// stride at most `n` (so that the layout maths cannot overflow).
absl::StatusOr<MeshLayout> ParseLayout(absl::string_view text, int64_t n) {
  const absl::Status bad = absl::InvalidArgumentError(
      absl::StrCat("'", text.substr(0, 200), "' is not a mesh layout of at most ", n,
                   " ranks such as [(2):(4), (4):(1)]"));
  if (!absl::ConsumePrefix(&text, "[") || !absl::ConsumeSuffix(&text, "]")) return bad;
  std::vector<FlatLayout> axes;
  int64_t numel = 1;
  for (absl::string_view axis : absl::StrSplit(text, ", ")) {
    std::pair<absl::string_view, absl::string_view> parts = absl::StrSplit(axis, ':');
    std::vector<int64_t> sizes, strides;
    if (!ParseTuple(parts.first, &sizes) || !ParseTuple(parts.second, &strides)) return bad;
    for (int64_t v : sizes) {
      if (v < 1 || v > n || (numel *= v) > n) return bad;
    }
    for (int64_t v : strides) {
      if (v > n) return bad;
    }
    absl::StatusOr<FlatLayout> flat = FlatLayout::FromSizes(sizes, strides);
    if (!flat.ok()) return flat.status();
    axes.push_back(*std::move(flat));
  }
  return MeshLayout(std::move(axes));
}

}  // namespace

std::string MeshFingerprint(const DeviceMesh& mesh) {
  const RankMap& map = mesh.rank_map();
  std::string ranks;
  if (map.is_identity()) {
    ranks = absl::StrCat("identity(", map.size(), ")");
  } else {
    uint64_t h = 1469598103934665603ull;  // FNV-1a over the explicit table
    for (int64_t i = 0; i < map.size(); ++i)
      h = (h ^ static_cast<uint64_t>(map.at(i))) * 1099511628211ull;
    ranks = absl::StrCat("table(", map.size(), ",", absl::Hex(h), ")");
  }
  return absl::StrCat(ranks, "|", mesh.layout().ToString(), "|",
                      mesh.names() ? absl::StrJoin(*mesh.names(), ",") : "-");
}

absl::StatusOr<DeviceMesh> MeshFromFingerprint(absl::string_view fingerprint,
                                               int64_t world_size) {
  const std::string shown(fingerprint.substr(0, 200));
  std::vector<absl::string_view> parts = absl::StrSplit(fingerprint, absl::MaxSplits('|', 2));
  absl::string_view ranks = parts[0];
  int64_t n = 0;
  if (parts.size() != 3 || !absl::ConsumePrefix(&ranks, "identity(") ||
      !absl::ConsumeSuffix(&ranks, ")") || !absl::SimpleAtoi(ranks, &n) || n < 1 ||
      n > world_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "mesh spec '", shown, "' is not the fingerprint of a mesh over ranks 0..N-1 of a world of ",
        world_size, " (identity(N)|layout|names)"));
  }
  absl::StatusOr<MeshLayout> layout = ParseLayout(parts[1], n);
  if (!layout.ok()) return layout.status();
  DimNames names;
  if (parts[2] != "-") names = std::vector<std::string>(absl::StrSplit(parts[2], ','));
  if (absl::Status s = ValidateDimNames(names, layout->axes().size()); !s.ok()) return s;
  auto root = std::make_shared<MeshRoot>(RankMap::Identity(n), *layout, names);
  absl::StatusOr<DeviceMesh> mesh = DeviceMesh::Derive(std::move(root), *layout, names);
  if (!mesh.ok()) return mesh.status();
  // Only the canonical text: "(2,2):(2,1)" would coalesce to another mesh's "(4):(1)".
  if (MeshFingerprint(*mesh) != fingerprint) {
    return absl::InvalidArgumentError(
        absl::StrCat("mesh spec '", shown, "' is not in canonical form (", MeshFingerprint(*mesh),
                     ")"));
  }
  return mesh;
}

std::string GroupKey(absl::string_view mesh_key, absl::string_view dim_label, int64_t index) {
  return absl::StrCat(mesh_key, "/", dim_label, "/", index);
}

int64_t ChunkCount(int64_t members, int64_t ranks_per_id) {
  const int64_t per_id = ranks_per_id > 0 ? ranks_per_id : members;
  return (members + per_id - 1) / per_id;
}

int64_t ChunkLeader(int64_t members, int64_t num_ids, int64_t chunk) {
  return chunk * (members / num_ids) + std::min(chunk, members % num_ids);
}

}  // namespace meshd::layout
