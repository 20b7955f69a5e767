// ClientImpl's mesh calls: InitDeviceMesh, Groups and GroupOf, and the exchange behind them — one
// ResolveGroups call to the agent that checks the mesh across the ranks and gets each group's NCCL
// ids (minted by the group's leaders). Thread-safety: see client_impl.h; exchanges are serialized
// by exchange_mu_, and the groups they fetch are cached under mu_.
#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/src/client_impl.h"
#include "client/src/device_mesh_impl.h"
#include "client/src/interrupter.h"
#include "client/src/nccl_runtime.h"
#include "common/layout/mesh_spec.h"

namespace meshd::client_internal {

absl::StatusOr<DeviceMesh> ClientImpl::InitDeviceMesh(const std::vector<int64_t>& shape,
                                                      const std::vector<std::string>& names,
                                                      const std::string& mesh_name, MeshIds ids) {
  if (absl::Status h = health(); !h.ok()) return h;
  absl::StatusOr<layout::DeviceMesh> mesh = layout::DeviceMesh::Create(
      shape, names.empty() ? layout::DimNames() : layout::DimNames(names), placement_.world_size);
  if (!mesh.ok()) return mesh.status();
  std::string key = mesh_name;
  if (key.empty()) {
    absl::MutexLock lock(&mu_);
    key = absl::StrCat("#", unnamed_meshes_++);
  }
  DeviceMesh m(std::make_shared<const DeviceMesh::Impl>(
      DeviceMesh::Impl{*std::move(mesh), placement_.rank, key, key}));
  if (ids == MeshIds::kNone) {
    // The spec check alone: an exchange with no groups, answered once every rank reported.
    absl::StatusOr<std::vector<Group>> none = Exchange(m, /*with_world=*/false, /*ids=*/false);
    if (!none.ok()) return none.status();
    return m;
  }
  absl::StatusOr<std::vector<Group>> groups = Exchange(m, /*with_world=*/true, /*ids=*/true);
  if (!groups.ok()) return groups.status();
  return m;
}

absl::StatusOr<std::vector<Group>> ClientImpl::Groups(const DeviceMesh& mesh) {
  {
    absl::MutexLock lock(&mu_);
    if (auto it = groups_.find(mesh.key()); it != groups_.end()) return it->second;
  }
  return Exchange(mesh, /*with_world=*/false, /*ids=*/true);
}

absl::StatusOr<Group> ClientImpl::GroupOf(const DeviceMesh& mesh, int dim) {
  if (dim < 0 || dim >= mesh.ndim()) {
    return absl::InvalidArgumentError(
        absl::StrCat("dim ", dim, " is out of range for ", mesh.ToString()));
  }
  absl::StatusOr<std::vector<Group>> groups = Groups(mesh);
  if (!groups.ok()) return groups.status();
  if (groups->empty()) {
    return absl::FailedPreconditionError(absl::StrCat("rank ", placement_.rank, " is not in ",
                                                      mesh.ToString(), ", so it has no groups"));
  }
  return (*groups)[dim];
}

absl::StatusOr<std::vector<Group>> ClientImpl::Exchange(const DeviceMesh& mesh, bool with_world,
                                                        bool ids) {
  std::lock_guard<std::mutex> serial(exchange_mu_);
  if (absl::Status h = health(); !h.ok()) return h;
  const layout::DeviceMesh& lm = mesh.impl()->mesh;
  // A mesh checked without ids before gets its ids under a key of their own (the coordinator
  // answers a key it has seen with what it answered then).
  std::string exchange_key = mesh.key();
  {
    absl::MutexLock lock(&mu_);
    if (!ids) {
      spec_only_.insert(mesh.key());
      exchange_key = mesh.key();
    } else if (spec_only_.contains(mesh.key())) {
      exchange_key = absl::StrCat(mesh.key(), "+ids");
    }
  }
  std::vector<Group> groups;
  if (ids && lm.coordinate(placement_.rank)) {
    for (int d = 0; d < lm.ndim(); ++d) {
      absl::StatusOr<layout::RankGroup> g = lm.GroupOf(placement_.rank, d);
      if (!g.ok()) return g.status();
      Group out;
      out.dims = {lm.DimLabel(d)};
      out.ranks = g->ranks;
      out.group_rank = g->local_rank;
      out.group_index = g->index;
      out.index = std::find(g->ranks.begin(), g->ranks.end(), placement_.rank) - g->ranks.begin();
      out.key = layout::GroupKey(exchange_key, lm.DimLabel(d), g->index);
      groups.push_back(std::move(out));
    }
  }
  if (with_world) {
    Group world;
    world.dims = {std::string(layout::kWorldGroupLabel)};
    for (int r = 0; r < placement_.world_size; ++r) world.ranks.push_back(r);
    world.index = world.group_rank = placement_.rank;
    world.key = layout::GroupKey(exchange_key, layout::kWorldGroupLabel, 0);
    groups.push_back(std::move(world));
  }

  v1::RankGroupsRequest req;
  req.set_job(options_.job);
  req.set_generation(placement_.generation);
  req.set_local_rank(static_cast<uint32_t>(placement_.local_rank));
  req.set_mesh_key(exchange_key);
  req.mutable_spec()->set_fingerprint(layout::MeshFingerprint(lm));
  req.mutable_spec()->set_description(lm.ToString());
  for (const Group& g : groups) {
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
      absl::StatusOr<const NcclRuntime*> nccl = NcclRuntime::Load(options_.nccl_library);
      absl::StatusOr<NcclUniqueId> id =
          nccl.ok() ? (*nccl)->MintId() : absl::StatusOr<NcclUniqueId>(nccl.status());
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
  for (Group& g : groups) {
    auto it = by_key.find(g.key);
    if (it == by_key.end()) return absl::InternalError(absl::StrCat("no ids for group ", g.key));
    for (const std::string& bytes : it->second->ids()) {
      if (bytes.size() != sizeof(NcclUniqueId)) return absl::InternalError("malformed NCCL id");
      NcclUniqueId id;
      std::memcpy(id.data(), bytes.data(), id.size());
      g.ids.push_back(id);
    }
  }
  if (!ids) return groups;
  absl::MutexLock lock(&mu_);
  if (with_world) world_ = groups.back();
  if (with_world) groups.pop_back();
  groups_[mesh.key()] = groups;
  return groups;
}

}  // namespace meshd::client_internal
