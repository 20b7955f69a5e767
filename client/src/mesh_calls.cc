// ClientImpl's mesh calls: InitDeviceMesh, Groups and GroupOf, and the exchange behind them — one
// ResolveGroups call to the agent that checks the root mesh's spec across the ranks and gets the
// NCCL ids of the groups this rank does not have yet (minted by the groups' leaders).
//
// A group is cached under what it is (layout::GroupKey: root mesh, dim layout, index), so every
// view of a root — a slice, a flatten, an unflatten, a concatenation — finds the groups it shares
// with views fetched before, and asks only for the others: a slice of a fetched mesh costs no call.
// Thread-safety: see client_impl.h; exchanges are serialized by exchange_mu_, and the groups they
// fetch are cached under mu_.
#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/src/client_impl.h"
#include "client/src/device_mesh_impl.h"
#include "client/src/interrupter.h"
#include "client/src/nccl_runtime.h"
#include "common/layout/mesh_spec.h"

namespace meshd::client_internal {

namespace {

// The root mesh a view was cut from, as a mesh (its fingerprint is what ranks compare).
absl::StatusOr<layout::DeviceMesh> RootOf(const layout::DeviceMesh& view) {
  const layout::MeshRoot& root = *view.root();
  return layout::DeviceMesh::Derive(view.root(), root.layout(), root.names());
}

}  // namespace

absl::StatusOr<DeviceMesh> ClientImpl::Register(layout::DeviceMesh mesh,
                                                const std::string& mesh_name, MeshIds ids) {
  if (absl::Status h = health(); !h.ok()) return h;
  if (!mesh.rank_map().is_identity() && mesh.size() > layout::kMaxExchangedTableRanks) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a mesh from an explicit rank table is exchanged up to ", layout::kMaxExchangedTableRanks,
        " ranks; this one has ", mesh.size(),
        " (a table that lists every rank in order is init_device_mesh's, at any size)"));
  }
  if (absl::StartsWith(mesh_name, "#") || absl::StartsWith(mesh_name, "group:")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "mesh name '", mesh_name.substr(0, 64),
        "' starts with '#' or 'group:', which meshd keeps for unnamed meshes and from_group"));
  }
  std::string key = mesh_name;
  const std::string fingerprint = layout::MeshFingerprint(mesh);
  {
    absl::MutexLock lock(&mu_);
    if (key.empty()) key = absl::StrCat("#", unnamed_meshes_++);
    // One key is one mesh: another mesh under a key this rank registered would find its groups'
    // keys cached and never meet the other ranks' check.
    auto [it, fresh] = roots_.emplace(key, fingerprint);
    if (!fresh && it->second != fingerprint) {
      return absl::FailedPreconditionError(absl::StrCat(
          "mesh '", key, "' was built before as another mesh; one name is one mesh (",
          mesh.ToString(), " now)"));
    }
  }
  DeviceMesh m(std::make_shared<const DeviceMesh::Impl>(
      DeviceMesh::Impl{std::move(mesh), placement_.rank, key, key}));
  absl::StatusOr<std::vector<Group>> groups =
      ids == MeshIds::kNone ? Exchange(m, /*with_world=*/false, /*ids=*/false)
                            : Exchange(m, /*with_world=*/true, /*ids=*/true);
  if (!groups.ok()) return groups.status();
  return m;
}

absl::StatusOr<DeviceMesh> ClientImpl::InitDeviceMesh(const std::vector<int64_t>& shape,
                                                      const std::vector<std::string>& names,
                                                      const std::string& mesh_name, MeshIds ids) {
  absl::StatusOr<layout::DeviceMesh> mesh = layout::DeviceMesh::Create(
      shape, names.empty() ? layout::DimNames() : layout::DimNames(names), placement_.world_size);
  if (!mesh.ok()) return mesh.status();
  return Register(*std::move(mesh), mesh_name, ids);
}

absl::StatusOr<DeviceMesh> ClientImpl::InitDeviceMeshFromRanks(
    const std::vector<int64_t>& shape, const std::vector<int64_t>& ranks,
    const std::vector<std::string>& names, const std::string& mesh_name, MeshIds ids) {
  absl::StatusOr<layout::DeviceMesh> mesh = layout::DeviceMesh::FromRankTable(
      layout::RankTensor{shape, ranks},
      names.empty() ? layout::DimNames() : layout::DimNames(names), placement_.world_size);
  if (!mesh.ok()) return mesh.status();
  return Register(*std::move(mesh), mesh_name, ids);
}

absl::StatusOr<DeviceMesh> ClientImpl::MeshFromGroup(const Group& group,
                                                     const std::string& dim_name) {
  if (absl::Status h = health(); !h.ok()) return h;
  if (group.ranks.empty() || group.key.empty()) {
    return absl::InvalidArgumentError("MeshFromGroup needs a group from Groups() or GroupOf()");
  }
  const std::vector<std::string> names =
      dim_name.empty() ? std::vector<std::string>{} : std::vector<std::string>{dim_name};
  absl::StatusOr<layout::DeviceMesh> mesh = layout::DeviceMesh::FromRankTable(
      layout::RankTensor{{static_cast<int64_t>(group.ranks.size())}, group.ranks},
      names.empty() ? layout::DimNames() : layout::DimNames(names), placement_.world_size);
  if (!mesh.ok()) return mesh.status();
  // Every member makes the same mesh from the same group: its one group IS that group, so it
  // takes the group's ids under its own key and nobody exchanges anything.
  const std::string key = absl::StrCat("group:", group.key);
  DeviceMesh m(std::make_shared<const DeviceMesh::Impl>(
      DeviceMesh::Impl{*std::move(mesh), placement_.rank, key, key}));
  if (!group.ids.empty() && m.impl()->mesh.coordinate(placement_.rank)) {
    Group same = group;
    same.key = layout::GroupKey(key, m.impl()->mesh.layout().axes()[0], 0);
    same.group_index = 0;
    absl::MutexLock lock(&mu_);
    groups_.emplace(same.key, std::move(same));
  }
  return m;
}

absl::StatusOr<std::vector<Group>> ClientImpl::Groups(const DeviceMesh& mesh) {
  return Exchange(mesh, /*with_world=*/false, /*ids=*/true);
}

absl::StatusOr<Group> ClientImpl::GroupOf(const DeviceMesh& mesh, const MeshDim& dim) {
  absl::StatusOr<std::pair<DeviceMesh, int>> resolved = mesh.ResolveDim(dim);
  if (!resolved.ok()) return resolved.status();
  const auto& [owner, index] = *resolved;
  absl::StatusOr<std::vector<Group>> groups = Groups(owner);
  if (!groups.ok()) return groups.status();
  if (groups->empty()) {
    return absl::FailedPreconditionError(absl::StrCat("rank ", placement_.rank, " is not in ",
                                                      owner.ToString(), ", so it has no groups"));
  }
  return (*groups)[index];
}

absl::StatusOr<std::vector<Group>> ClientImpl::Exchange(const DeviceMesh& mesh, bool with_world,
                                                        bool ids) {
  std::lock_guard<std::mutex> serial(exchange_mu_);
  const layout::DeviceMesh& lm = mesh.impl()->mesh;
  const std::string& root_key = mesh.impl()->root_key;
  const bool in_mesh = lm.coordinate(placement_.rank).has_value();

  // This rank's groups of the view, by identity; those cached already need no exchange.
  std::vector<Group> groups;
  if (ids && in_mesh) {
    for (int d = 0; d < lm.ndim(); ++d) {
      absl::StatusOr<layout::RankGroup> g = lm.GroupOf(placement_.rank, d);
      if (!g.ok()) return g.status();
      Group out;
      out.dims = {lm.DimLabel(d)};
      out.ranks = g->ranks;
      out.group_rank = g->local_rank;
      out.group_index = g->index;
      out.index = std::find(g->ranks.begin(), g->ranks.end(), placement_.rank) - g->ranks.begin();
      out.key = layout::GroupKey(root_key, lm.layout().axes()[d], g->index);
      groups.push_back(std::move(out));
    }
  }
  std::vector<Group*> missing;
  bool need_world = false;
  {
    absl::MutexLock lock(&mu_);
    for (Group& g : groups) {
      auto it = groups_.find(g.key);
      if (it != groups_.end()) {
        g.ids = it->second.ids;
      } else {
        missing.push_back(&g);
      }
    }
    need_world = with_world && !world_;
  }
  // A spec check always asks; ids only when some are missing. A rank outside the mesh takes no
  // part in its exchange (it may still need the world group, under a view of its own).
  const bool check_only = !ids;
  // What this client holds is answered without a call, as before the generation ended; a call
  // after the end is ABORTED.
  if (!check_only && missing.empty() && !need_world) return groups;
  if (absl::Status h = health(); !h.ok()) return h;
  std::vector<Group> asked;  // what this call asks for, in order, each group once (two size-1
                             // dims are one group)
  for (Group* g : missing) {
    if (std::none_of(asked.begin(), asked.end(), [&](const Group& a) { return a.key == g->key; })) {
      asked.push_back(*g);
    }
  }
  if (need_world) {
    Group world;
    world.dims = {std::string(layout::kWorldGroupLabel)};
    for (int r = 0; r < placement_.world_size; ++r) world.ranks.push_back(r);
    world.index = world.group_rank = placement_.rank;
    world.key = std::string(layout::kWorldGroupKey);
    asked.push_back(std::move(world));
  }

  absl::StatusOr<layout::DeviceMesh> root = RootOf(lm);
  if (!root.ok()) return root.status();
  // Which of this node's workers ask in this exchange (the agent merges their asks): for ids,
  // those in the mesh (or, for the world alone, those outside it); for a check, every one.
  const int64_t first = placement_.rank - placement_.local_rank;
  uint32_t local_asks = 0;
  if (!check_only) {
    for (int64_t r = first; r < first + placement_.local_world; ++r) {
      if (lm.coordinate(r).has_value() == in_mesh) ++local_asks;
    }
  }
  v1::RankGroupsRequest req;
  req.set_job(options_.job);
  req.set_generation(placement_.generation);
  req.set_local_rank(static_cast<uint32_t>(placement_.local_rank));
  req.set_root_key(root_key);
  req.set_mesh_key(check_only ? root_key
                   : in_mesh  ? (mesh.key() == root_key ? root_key
                                                        : absl::StrCat(root_key, "|", lm.ToString()))
                              : absl::StrCat(root_key, "|outside"));
  req.set_local_asks(local_asks);
  req.mutable_spec()->set_fingerprint(layout::MeshFingerprint(*root));
  req.mutable_spec()->set_description(root->ToString());
  for (const Group& g : asked) {
    v1::GroupRequest* gr = req.add_groups();
    gr->set_key(g.key);
    const int64_t members = static_cast<int64_t>(g.ranks.size());
    const int64_t chunks = layout::ChunkCount(members, options_.ranks_per_id);
    gr->set_num_ids(static_cast<uint32_t>(chunks));
    for (int64_t c = 0; c < chunks; ++c) {
      if (g.ranks[layout::ChunkLeader(members, chunks, c)] != placement_.rank) continue;
      // This rank leads chunk c: its process becomes that id's NCCL bootstrap root, and the
      // coordinator takes that id from no other rank. If it cannot mint, it still reports (with the
      // reason) so that every member fails fast, not at the deadline.
      absl::StatusOr<NcclUniqueId> id = absl::InternalError("not minted");
      {
        absl::MutexLock lock(&mu_);
        if (auto it = minted_.find({g.key, c}); it != minted_.end()) id = it->second;
      }
      if (!id.ok()) {
        absl::StatusOr<const NcclRuntime*> nccl = NcclRuntime::Load(options_.nccl_library);
        id = nccl.ok() ? (*nccl)->MintId() : absl::StatusOr<NcclUniqueId>(nccl.status());
        if (id.ok()) {
          absl::MutexLock lock(&mu_);
          minted_.emplace(std::make_pair(g.key, c), *id);
        }
      }
      if (!id.ok()) {
        gr->set_mint_error(absl::StrCat("rank ", placement_.rank, ": ", id.status().message()));
        continue;
      }
      v1::MintedId* minted = gr->add_minted();
      minted->set_index(static_cast<uint32_t>(c));
      minted->set_id(std::string(reinterpret_cast<const char*>(id->data()), id->size()));
    }
  }
  v1::ResolveGroupsResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + options_.timeout));
  InterruptibleCall interruptible(options_.interrupter.get(), &ctx);
  const grpc::Status s = stub_->ResolveGroups(&ctx, req, &resp);
  if (!s.ok()) {
    return FromGrpc(s, ids ? absl::StrCat("cannot get the NCCL ids of ", lm.ToString())
                           : absl::StrCat("cannot check ", lm.ToString(), " across the ranks"));
  }
  std::map<std::string, const v1::GroupIds*> by_key;
  for (const v1::GroupIds& g : resp.groups()) by_key[g.key()] = &g;
  for (Group& g : asked) {
    auto it = by_key.find(g.key);
    if (it == by_key.end() || it->second->ids().empty()) {
      return absl::InternalError(absl::StrCat("the agent answered no ids for group ", g.key));
    }
    for (const std::string& bytes : it->second->ids()) {
      if (bytes.size() != sizeof(NcclUniqueId)) return absl::InternalError("malformed NCCL id");
      NcclUniqueId id;
      std::memcpy(id.data(), bytes.data(), id.size());
      g.ids.push_back(id);
    }
  }
  if (check_only) return std::vector<Group>{};
  absl::MutexLock lock(&mu_);
  for (Group* g : missing) {
    for (const Group& a : asked) {
      if (a.key == g->key) g->ids = a.ids;
    }
    groups_.emplace(g->key, *g);
  }
  if (need_world) world_ = asked.back();
  return groups;
}

}  // namespace meshd::client_internal
