// MintRules (see mint_rules.h).
#include "daemon/coordinator/mint_rules.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/layout/mesh_spec.h"
#include "daemon/coordinator/mesh_exchange.h"
#include "daemon/domain/quote.h"

namespace meshd::coordinator {

namespace {

// "12" but not "012", "+12" or "": the index as GroupKey writes it.
bool ParseIndex(absl::string_view text, int64_t* index) {
  if (text.empty() || (text.size() > 1 && text[0] == '0')) return false;
  for (char c : text) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return absl::SimpleAtoi(text, index);
}

}  // namespace

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
      where_(std::move(where)) {
  for (int d = 0; d < mesh_.ndim(); ++d) labels_.push_back(mesh_.DimLabel(d));
}

absl::StatusOr<MintRules::Target> MintRules::Find(const std::string& key) const {
  absl::string_view rest = key;
  const size_t slash = rest.rfind('/');
  int64_t index = 0;
  if (absl::ConsumePrefix(&rest, prefix_) && slash != absl::string_view::npos &&
      slash >= prefix_.size() && ParseIndex(absl::string_view(key).substr(slash + 1), &index)) {
    const absl::string_view label = rest.substr(0, slash - prefix_.size());
    for (int d = 0; d < mesh_.ndim(); ++d) {
      if (labels_[d] == label && index < mesh_.num_groups(d)) {
        return Target{d, index, mesh_.size(d)};
      }
    }
    if (label == layout::kWorldGroupLabel && index == 0) return Target{-1, 0, world_size_};
  }
  return absl::InvalidArgumentError(absl::StrCat(
      where_, ": group key ", domain::Quote(key), " names no group of ", mesh_.ToString(), " (keys are '",
      prefix_, "<dim>/<group index>' with dims ", absl::StrJoin(labels_, ", "), ", or '", prefix_,
      layout::kWorldGroupLabel, "/0')"));
}

int64_t MintRules::Member(const Target& t, int64_t member) const {
  return t.dim < 0 ? member : mesh_.GroupMember(t.dim, t.index, member);
}

absl::Status MintRules::Check(const std::string& node, const std::vector<RankSpec>& ranks,
                              const std::vector<GroupRequest>& groups) const {
  std::vector<uint32_t> held;  // sorted
  held.reserve(ranks.size());
  for (const RankSpec& r : ranks) held.push_back(r.rank);
  std::sort(held.begin(), held.end());
  held.erase(std::unique(held.begin(), held.end()), held.end());
  const auto holds = [&](int64_t rank) {
    return std::binary_search(held.begin(), held.end(), static_cast<uint32_t>(rank));
  };
  std::vector<std::vector<int64_t>> in_groups(mesh_.ndim());  // by dim: the ranks' groups, sorted
  for (int d = 0; d < mesh_.ndim(); ++d) {
    for (uint32_t r : held) {
      if (std::optional<int64_t> g = mesh_.GroupIndex(r, d)) in_groups[d].push_back(*g);
    }
    std::sort(in_groups[d].begin(), in_groups[d].end());
  }

  for (const GroupRequest& g : groups) {
    absl::StatusOr<Target> t = Find(g.key);
    if (!t.ok()) return t.status();
    if (g.num_ids > t->members) {
      return absl::InvalidArgumentError(
          absl::StrCat(where_, ": group '", g.key, "' has ", t->members, " members but asked for ",
                       g.num_ids, " ids; at most one per member"));
    }
    const bool member =
        t->dim < 0 ? !held.empty()
                   : std::binary_search(in_groups[t->dim].begin(), in_groups[t->dim].end(),
                                        t->index);
    if (!member) {
      return absl::PermissionDeniedError(
          absl::StrCat(where_, ": node '", node, "' asked for the ids of group '", g.key,
                       "', of which none of its ranks ", RankRanges(held), " is a member"));
    }
    for (const auto& [chunk, id] : g.minted) {
      const int64_t leader = Member(*t, layout::ChunkLeader(t->members, g.num_ids, chunk));
      if (!holds(leader)) {
        return absl::PermissionDeniedError(absl::StrCat(
            where_, ": node '", node, "' minted the id of chunk ", chunk, " of group '", g.key,
            "', which rank ", leader, " leads; only rank ", leader, "'s node may mint it"));
      }
    }
    if (!g.mint_error.empty()) {
      bool leads = false;
      for (uint32_t c = 0; c < g.num_ids && !leads; ++c) {
        leads = holds(Member(*t, layout::ChunkLeader(t->members, g.num_ids, c)));
      }
      if (!leads) {
        const int64_t first = Member(*t, 0);
        return absl::PermissionDeniedError(absl::StrCat(
            where_, ": node '", node, "' says group '", g.key,
            "' could not be minted, but it holds none of its chunks' leaders (chunk 0: rank ",
            first, "); only a leader's node may report that it could not mint"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace meshd::coordinator
