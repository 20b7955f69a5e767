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

// "(2,4):(4,1)" -> one axis whose sizes multiply to at most `n` (counted into `numel`), each size and
// stride at most `n` (so that the layout maths cannot overflow).
bool ParseAxis(absl::string_view axis, int64_t n, int64_t* numel, FlatLayout* out) {
  std::pair<absl::string_view, absl::string_view> parts = absl::StrSplit(axis, ':');
  std::vector<int64_t> sizes, strides;
  if (!ParseTuple(parts.first, &sizes) || !ParseTuple(parts.second, &strides)) return false;
  for (int64_t v : sizes) {
    if (v < 1 || v > n || (*numel *= v) > n) return false;
  }
  for (int64_t v : strides) {
    if (v > n) return false;
  }
  absl::StatusOr<FlatLayout> flat = FlatLayout::FromSizes(sizes, strides);
  if (!flat.ok()) return false;
  *out = *std::move(flat);
  return true;
}

// "[(2):(4), (4):(1)]" -> the layout's axes, of at most `n` positions in all.
absl::StatusOr<MeshLayout> ParseLayout(absl::string_view text, int64_t n) {
  const absl::Status bad = absl::InvalidArgumentError(
      absl::StrCat("'", text.substr(0, 200), "' is not a mesh layout of at most ", n,
                   " ranks such as [(2):(4), (4):(1)]"));
  if (!absl::ConsumePrefix(&text, "[") || !absl::ConsumeSuffix(&text, "]")) return bad;
  std::vector<FlatLayout> axes;
  int64_t numel = 1;
  for (absl::string_view axis : absl::StrSplit(text, ", ")) {
    FlatLayout flat;
    if (!ParseAxis(axis, n, &numel, &flat)) return bad;
    axes.push_back(std::move(flat));
  }
  return MeshLayout(std::move(axes));
}

// "identity(8)" or "ranks(3,1,0,2)" -> the rank map, its ranks below `world_size`.
absl::StatusOr<RankMap> ParseRankMap(absl::string_view text, int64_t world_size) {
  int64_t n = 0;
  if (absl::ConsumePrefix(&text, "identity(") && absl::ConsumeSuffix(&text, ")") &&
      absl::SimpleAtoi(text, &n) && n >= 1 && n <= world_size) {
    return RankMap::Identity(n);
  }
  if (absl::ConsumePrefix(&text, "ranks(") && absl::ConsumeSuffix(&text, ")")) {
    // Count before parsing: the text is bounded by the request, the table by the limit.
    const size_t count = static_cast<size_t>(std::count(text.begin(), text.end(), ',')) + 1;
    if (count > static_cast<size_t>(std::min(world_size, kMaxExchangedTableRanks))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "a mesh spec lists ", count, " ranks; at most ", std::min(world_size, kMaxExchangedTableRanks),
          " (the world, and no more than ", kMaxExchangedTableRanks,
          " for an explicit rank table)"));
    }
    std::vector<int64_t> ranks;
    ranks.reserve(count);
    for (absl::string_view part : absl::StrSplit(text, ',')) {
      int64_t r = 0;
      if (part.empty() || part.size() > 10 || (part.size() > 1 && part[0] == '0') ||
          !absl::SimpleAtoi(part, &r) || r < 0) {
        return absl::InvalidArgumentError("a mesh spec's rank table is not ranks(r0,r1,...)");
      }
      ranks.push_back(r);
    }
    return RankMap::Explicit(std::move(ranks), world_size);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "mesh spec's rank map '", text.substr(0, 64), "' is not identity(N) with 1 <= N <= ",
      world_size, " or ranks(r0,r1,...)"));
}

}  // namespace

std::string MeshFingerprint(const DeviceMesh& mesh) {
  const RankMap& map = mesh.rank_map();
  std::string ranks;
  if (map.is_identity()) {
    ranks = absl::StrCat("identity(", map.size(), ")");
  } else {
    ranks.reserve(static_cast<size_t>(map.size()) * 7 + 8);
    ranks = "ranks(";
    for (int64_t i = 0; i < map.size(); ++i) absl::StrAppend(&ranks, i ? "," : "", map.at(i));
    ranks += ")";
  }
  return absl::StrCat(ranks, "|", mesh.layout().ToString(), "|",
                      mesh.names() ? absl::StrJoin(*mesh.names(), ",") : "-");
}

absl::StatusOr<DeviceMesh> MeshFromFingerprint(absl::string_view fingerprint,
                                               int64_t world_size) {
  const std::string shown(fingerprint.substr(0, 200));
  std::vector<absl::string_view> parts = absl::StrSplit(fingerprint, absl::MaxSplits('|', 2));
  if (parts.size() != 3) {
    return absl::InvalidArgumentError(absl::StrCat(
        "mesh spec '", shown, "' is not the fingerprint of a mesh (rank map|layout|names)"));
  }
  absl::StatusOr<RankMap> map = ParseRankMap(parts[0], world_size);
  if (!map.ok()) return map.status();
  const int64_t n = map->size();
  absl::StatusOr<MeshLayout> layout = ParseLayout(parts[1], n);
  if (!layout.ok()) return layout.status();
  DimNames names;
  if (parts[2] != "-") names = std::vector<std::string>(absl::StrSplit(parts[2], ','));
  if (absl::Status s = ValidateDimNames(names, layout->axes().size()); !s.ok()) return s;
  auto root = std::make_shared<MeshRoot>(*std::move(map), *layout, names);
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

std::string GroupKey(absl::string_view root_key, const FlatLayout& axis, int64_t index) {
  return absl::StrCat(root_key, "/", axis.ToString(), "/", index);
}

absl::StatusOr<GroupKeyTail> ParseGroupKeyTail(absl::string_view tail, int64_t n) {
  const auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", tail.substr(0, 64), "' is not '<dim layout>/<group index>' such as '(4):(1)/3'"));
  };
  const size_t slash = tail.rfind('/');
  if (slash == absl::string_view::npos) return bad();
  const absl::string_view index = tail.substr(slash + 1);
  GroupKeyTail out;
  if (index.empty() || index.size() > 18 || (index.size() > 1 && index[0] == '0') ||
      !std::all_of(index.begin(), index.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      !absl::SimpleAtoi(index, &out.index)) {
    return bad();
  }
  int64_t numel = 1;
  if (!ParseAxis(tail.substr(0, slash), n, &numel, &out.axis)) return bad();
  // Only the canonical text: "(2,2):(2,1)" is another group's "(4):(1)".
  if (out.axis.ToString() != tail.substr(0, slash)) return bad();
  return out;
}

int64_t ChunkCount(int64_t members, int64_t ranks_per_id) {
  const int64_t per_id = ranks_per_id > 0 ? ranks_per_id : members;
  return (members + per_id - 1) / per_id;
}

int64_t ChunkLeader(int64_t members, int64_t num_ids, int64_t chunk) {
  return chunk * (members / num_ids) + std::min(chunk, members % num_ids);
}

}  // namespace meshd::layout
