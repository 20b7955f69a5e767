// Workload (see workload.h).
#include "bench/sim/workload.h"

#include <cstring>
#include <map>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/layout/device_mesh.h"
#include "common/layout/mesh_spec.h"

namespace meshd::bench {

absl::StatusOr<std::vector<std::pair<std::string, int64_t>>> ParseShape(absl::string_view shape,
                                                                       uint64_t world_size) {
  std::vector<std::pair<std::string, int64_t>> dims;
  int rest = -1;
  uint64_t known = 1;
  for (absl::string_view part : absl::StrSplit(shape, ',')) {
    std::pair<std::string, std::string> kv = absl::StrSplit(part, absl::MaxSplits('=', 1));
    int64_t size = 0;
    if (kv.first.empty() || !absl::SimpleAtoi(kv.second, &size) || (size < 1 && size != -1)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--shape: '", part, "' must be NAME=SIZE with SIZE >= 1 or -1 (e.g. pp=4,dp=-1,tp=8)"));
    }
    if (size == -1) {
      if (rest >= 0) return absl::InvalidArgumentError("--shape: only one dim may be -1");
      rest = static_cast<int>(dims.size());
    } else {
      known *= static_cast<uint64_t>(size);
    }
    dims.emplace_back(kv.first, size);
  }
  if (rest >= 0) {
    if (known == 0 || world_size % known != 0) {
      return absl::InvalidArgumentError(absl::StrCat("--shape ", shape, ": the fixed dims (",
                                                     known, " ranks) do not divide the world of ",
                                                     world_size, " ranks"));
    }
    dims[rest].second = static_cast<int64_t>(world_size / known);
    known = world_size;
  }
  if (known != world_size) {
    return absl::InvalidArgumentError(absl::StrCat("--shape ", shape, " has ", known,
                                                   " ranks but the world has ", world_size,
                                                   " (nodes x gpus-per-node)"));
  }
  return dims;
}

absl::StatusOr<Workload> BuildWorkload(const WorkloadOptions& o) {
  if (o.nodes < 1 || o.gpus_per_node < 1) {
    return absl::InvalidArgumentError("--nodes and --gpus-per-node must be at least 1");
  }
  Workload w;
  w.world_size = uint64_t{o.nodes} * o.gpus_per_node;
  std::string shape = o.shape;
  if (shape.empty()) {
    shape = o.nodes % 8 == 0 ? absl::StrCat("pp=4,dp=-1,cp=2,tp=", o.gpus_per_node)
                             : absl::StrCat("dp=-1,tp=", o.gpus_per_node);
  }
  absl::StatusOr<std::vector<std::pair<std::string, int64_t>>> dims = ParseShape(shape, w.world_size);
  if (!dims.ok()) return dims.status();
  w.dims = *dims;
  std::vector<int64_t> sizes;
  std::vector<std::string> names;
  for (const auto& [name, size] : w.dims) {
    names.push_back(name);
    sizes.push_back(size);
  }
  absl::StatusOr<layout::DeviceMesh> mesh =
      layout::DeviceMesh::Create(sizes, names, static_cast<int64_t>(w.world_size));
  if (!mesh.ok()) return mesh.status();
  w.description = mesh->ToString();

  // For every dim, each rank's group (row of the dim's group table) and place in it.
  struct Place {
    uint32_t group;
    uint32_t index;
  };
  const int ndim = mesh->ndim();
  std::vector<std::vector<Place>> place(ndim, std::vector<Place>(w.world_size));
  std::vector<int64_t> group_size(ndim);
  for (int d = 0; d < ndim; ++d) {
    const layout::GroupTable table = mesh->Groups(d);
    group_size[d] = table.group_size;
    w.groups += table.num_groups();
    for (int64_t g = 0; g < table.num_groups(); ++g) {
      absl::Span<const int64_t> row = table.row(g);
      for (size_t i = 0; i < row.size(); ++i) {
        place[d][row[i]] = Place{static_cast<uint32_t>(g), static_cast<uint32_t>(i)};
      }
    }
  }
  if (o.world_group) ++w.groups;

  std::mt19937_64 rng(0x6d657368);
  auto mint = [&] {
    std::string id(128, '\0');
    for (size_t i = 0; i < id.size(); i += 8) {
      const uint64_t x = rng();
      std::memcpy(&id[i], &x, 8);
    }
    ++w.ids;
    return id;
  };
  auto chunks = [&o](uint64_t members) {
    return static_cast<uint32_t>(layout::ChunkCount(static_cast<int64_t>(members), o.ranks_per_id));
  };
  // The chunk each member index leads (-1: none), as the client picks its leaders; the world
  // group's last.
  std::vector<std::vector<int64_t>> leads(ndim + 1);
  for (int d = 0; d <= ndim; ++d) {
    const int64_t members = d < ndim ? group_size[d] : static_cast<int64_t>(w.world_size);
    const int64_t n = chunks(static_cast<uint64_t>(members));
    leads[d].assign(members, -1);
    for (int64_t c = 0; c < n; ++c) leads[d][layout::ChunkLeader(members, n, c)] = c;
  }
  // The client's own fingerprint: the coordinator rebuilds the mesh from it to know the leaders.
  const std::string fingerprint = layout::MeshFingerprint(*mesh);
  // Each dim's keys, as the client writes them (layout::GroupKey): "<mesh key>/<layout>/<index>".
  std::vector<std::string> key_prefix(ndim);
  for (int d = 0; d < ndim; ++d) {
    const std::string k = layout::GroupKey(o.mesh_key, mesh->layout().axes()[d], 0);
    key_prefix[d] = k.substr(0, k.size() - 1);
  }
  w.requests.resize(o.nodes);
  for (uint32_t n = 0; n < o.nodes; ++n) {
    v1::ResolveGroupsRequest& req = w.requests[n];
    req.set_mesh_key(o.mesh_key);
    std::map<std::string, v1::GroupRequest*> by_key;
    auto group = [&](const std::string& key, uint32_t num_ids) {
      v1::GroupRequest*& g = by_key[key];
      if (g == nullptr) {
        g = req.add_groups();
        g->set_key(key);
        g->set_num_ids(num_ids);
      }
      return g;
    };
    for (uint32_t l = 0; l < o.gpus_per_node; ++l) {
      const uint64_t rank = uint64_t{n} * o.gpus_per_node + l;
      v1::ResolveGroupsRequest::RankSpec* spec = req.add_ranks();
      spec->set_rank(static_cast<uint32_t>(rank));
      spec->mutable_spec()->set_fingerprint(fingerprint);
      spec->mutable_spec()->set_description(w.description);
      for (int d = 0; d < ndim; ++d) {
        const Place p = place[d][rank];
        v1::GroupRequest* g =
            group(absl::StrCat(key_prefix[d], p.group), chunks(group_size[d]));
        if (const int64_t c = leads[d][p.index]; c >= 0) {
          v1::MintedId* m = g->add_minted();
          m->set_index(static_cast<uint32_t>(c));
          m->set_id(mint());
        }
      }
      if (o.world_group) {
        v1::GroupRequest* g =
            group(std::string(layout::kWorldGroupKey), chunks(w.world_size));
        if (const int64_t c = leads[ndim][rank]; c >= 0) {
          v1::MintedId* m = g->add_minted();
          m->set_index(static_cast<uint32_t>(c));
          m->set_id(mint());
        }
      }
    }
  }
  return w;
}

}  // namespace meshd::bench
