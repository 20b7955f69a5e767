// Merging and splitting a node's group-id exchange (see mesh_request.h).
#include "daemon/agent/core/mesh_request.h"

namespace meshd::agent {

v1::ResolveGroupsRequest MergeRankGroups(
    const std::string& node, uint32_t first_rank,
    const std::map<uint32_t, const v1::RankGroupsRequest*>& asks) {
  v1::ResolveGroupsRequest req;
  if (asks.empty()) return req;
  const v1::RankGroupsRequest& first = *asks.begin()->second;
  req.set_job(first.job());
  req.set_generation(first.generation());
  req.set_node(node);
  req.set_mesh_key(first.root_key().empty() ? first.mesh_key() : first.root_key());
  absl::flat_hash_map<std::string, v1::GroupRequest*> merged;
  for (const auto& [local_rank, ask] : asks) {
    auto* rank = req.add_ranks();
    rank->set_rank(first_rank + local_rank);
    *rank->mutable_spec() = ask->spec();
    for (const v1::GroupRequest& g : ask->groups()) {
      v1::GroupRequest*& m = merged[g.key()];
      if (m == nullptr) {
        m = req.add_groups();
        m->set_key(g.key());
        m->set_num_ids(g.num_ids());
      }
      if (!g.mint_error().empty()) m->set_mint_error(g.mint_error());
      for (const v1::MintedId& id : g.minted()) *m->add_minted() = id;
    }
  }
  return req;
}

v1::ResolveGroupsResponse AnswerFor(const v1::RankGroupsRequest& ask, const GroupIndex& groups) {
  v1::ResolveGroupsResponse out;
  for (const v1::GroupRequest& g : ask.groups()) {
    v1::GroupIds* mine = out.add_groups();
    if (auto it = groups.find(g.key()); it != groups.end()) {
      *mine = *it->second;
    } else {
      mine->set_key(g.key());
    }
  }
  return out;
}

}  // namespace meshd::agent
