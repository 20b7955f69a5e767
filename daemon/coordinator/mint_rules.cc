// MintRules (see mint_rules.h).
#include "daemon/coordinator/mint_rules.h"

#include <algorithm>
#include <functional>
#include <map>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/layout/mesh_spec.h"
#include "daemon/coordinator/mesh_exchange.h"
#include "daemon/domain/quote.h"

namespace meshd::coordinator {

absl::StatusOr<MintRules> MintRules::Create(const std::string& fingerprint,
                                            const std::string& mesh_key, uint32_t world_size,
                                            std::string where) {
  absl::StatusOr<layout::DeviceMesh> mesh = layout::MeshFromFingerprint(fingerprint, world_size);
  if (!mesh.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": its groups' leaders cannot be known: ", mesh.status().message()));
  }
  return MintRules(*std::move(mesh), absl::StrCat(mesh_key, "/"), world_size, std::move(where));
}

MintRules::MintRules(layout::DeviceMesh mesh, std::string prefix, uint32_t world_size,
                     std::string where)
    : mesh_(std::move(mesh)),
      prefix_(std::move(prefix)),
      world_size_(world_size),
      where_(std::move(where)) {}

absl::Status MintRules::Check(const std::string& node, const std::vector<RankSpec>& ranks,
                              const std::vector<GroupRequest>& groups,
                              std::vector<std::vector<uint32_t>>* leaders) const {
  std::vector<uint32_t> held;  // sorted
  held.reserve(ranks.size());
  for (const RankSpec& r : ranks) held.push_back(r.rank);
  std::sort(held.begin(), held.end());
  held.erase(std::unique(held.begin(), held.end()), held.end());
  const auto holds = [&](int64_t rank) {
    return std::binary_search(held.begin(), held.end(), static_cast<uint32_t>(rank));
  };
  // One dim layout of the root: its groups as a 1-dim mesh, and the groups the held ranks are in.
  struct Dim {
    layout::DeviceMesh mesh;
    std::vector<int64_t> held_groups;  // sorted
  };
  std::map<std::string, Dim, std::less<>> dims;  // by layout text
  const auto bad_key = [&](const std::string& key, absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        where_, ": group key ", domain::Quote(key), " names no group of ", mesh_.ToString(),
        " (keys are '", prefix_, "<dim layout>/<group index>', e.g. '", prefix_,
        layout::GroupKey("", mesh_.layout().axes()[0], 0).substr(1), "', or '",
        layout::kWorldGroupKey, "'): ", why));
  };
  leaders->clear();
  leaders->reserve(groups.size());
  for (const GroupRequest& g : groups) {
    int64_t members = 0;
    std::function<int64_t(int64_t)> member;
    bool is_member = false;
    if (g.key == layout::kWorldGroupKey) {
      members = world_size_;
      member = [](int64_t m) { return m; };
      is_member = !held.empty();
    } else {
      absl::string_view rest = g.key;
      if (!absl::ConsumePrefix(&rest, prefix_)) return bad_key(g.key, "another mesh's prefix");
      absl::StatusOr<layout::GroupKeyTail> tail =
          layout::ParseGroupKeyTail(rest, mesh_.rank_map().size());
      if (!tail.ok()) return bad_key(g.key, tail.status().message());
      const absl::string_view text = rest.substr(0, rest.rfind('/'));
      auto it = dims.find(text);
      if (it == dims.end()) {
        if (dims.size() >= kMaxLayoutsPerReport) {
          return absl::InvalidArgumentError(absl::StrCat(
              where_, ": node '", node, "' asked for groups of more than ", kMaxLayoutsPerReport,
              " dim layouts in one request"));
        }
        absl::StatusOr<layout::DeviceMesh> dim =
            layout::DeviceMesh::Derive(mesh_.root(), layout::MeshLayout({tail->axis}), std::nullopt);
        if (!dim.ok()) return bad_key(g.key, dim.status().message());
        std::vector<int64_t> in;
        for (uint32_t r : held) {
          if (std::optional<int64_t> gi = dim->GroupIndex(r, 0)) in.push_back(*gi);
        }
        std::sort(in.begin(), in.end());
        it = dims.emplace(std::string(text), Dim{*std::move(dim), std::move(in)}).first;
      }
      const Dim& d = it->second;
      if (tail->index >= d.mesh.num_groups(0)) {
        return bad_key(g.key, absl::StrCat("that dim has ", d.mesh.num_groups(0), " groups"));
      }
      members = d.mesh.size(0);
      member = [&d, index = tail->index](int64_t m) { return d.mesh.GroupMember(0, index, m); };
      is_member = std::binary_search(d.held_groups.begin(), d.held_groups.end(), tail->index);
    }
    if (g.num_ids > members) {
      return absl::InvalidArgumentError(
          absl::StrCat(where_, ": group '", g.key, "' has ", members, " members but asked for ",
                       g.num_ids, " ids; at most one per member"));
    }
    if (!is_member) {
      return absl::PermissionDeniedError(
          absl::StrCat(where_, ": node '", node, "' asked for the ids of group '", g.key,
                       "', of which none of its ranks ", RankRanges(held), " is a member"));
    }
    std::vector<uint32_t> chunk_leaders(g.num_ids);
    for (uint32_t c = 0; c < g.num_ids; ++c) {
      chunk_leaders[c] = static_cast<uint32_t>(member(layout::ChunkLeader(members, g.num_ids, c)));
    }
    for (const auto& [chunk, id] : g.minted) {
      const uint32_t leader = chunk_leaders[chunk];
      if (!holds(leader)) {
        return absl::PermissionDeniedError(absl::StrCat(
            where_, ": node '", node, "' minted the id of chunk ", chunk, " of group '", g.key,
            "', which rank ", leader, " leads; only rank ", leader, "'s node may mint it"));
      }
    }
    if (!g.mint_error.empty() &&
        std::none_of(chunk_leaders.begin(), chunk_leaders.end(), holds)) {
      return absl::PermissionDeniedError(absl::StrCat(
          where_, ": node '", node, "' says group '", g.key,
          "' could not be minted, but it holds none of its chunks' leaders (chunk 0: rank ",
          chunk_leaders[0], "); only a leader's node may report that it could not mint"));
    }
    leaders->push_back(std::move(chunk_leaders));
  }
  return absl::OkStatus();
}

}  // namespace meshd::coordinator
