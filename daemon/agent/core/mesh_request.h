// The node's side of a mesh's group-id exchange, on the protocol's own messages (forwarded, never
// decoded): the local workers' RankGroupsRequests merged into the node's one ResolveGroupsRequest,
// and each worker's answer cut from the coordinator's.
//
// Thread-safety: pure functions.
#ifndef MESHD_DAEMON_AGENT_CORE_MESH_REQUEST_H_
#define MESHD_DAEMON_AGENT_CORE_MESH_REQUEST_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "meshd/v1/agent.pb.h"
#include "meshd/v1/coordinator.pb.h"

namespace meshd::agent {

// Every local rank's spec (global rank = first_rank + local rank) and the union of their groups by
// key, with every id they minted and any mint error.
v1::ResolveGroupsRequest MergeRankGroups(const std::string& node, uint32_t first_rank,
                                         const std::map<uint32_t, const v1::RankGroupsRequest*>&
                                             asks);

// Groups answered with their ids, by key.
using GroupIndex = absl::flat_hash_map<std::string, const v1::GroupIds*>;

// One worker's answer: the groups it asked for, in its order (a group the coordinator left out is
// answered with no ids).
v1::ResolveGroupsResponse AnswerFor(const v1::RankGroupsRequest& ask, const GroupIndex& groups);

}  // namespace meshd::agent

#endif  // MESHD_DAEMON_AGENT_CORE_MESH_REQUEST_H_
