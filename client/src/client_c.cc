// The C ABI over meshd::Client (see <meshd/client_c.h>).
#include "meshd/client_c.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "meshd/client.h"

struct meshd_client {
  std::unique_ptr<meshd::Client> client;
};
struct meshd_mesh {
  meshd::DeviceMesh mesh;
};
struct meshd_comm {
  std::shared_ptr<meshd::Communicator> comm;
};

namespace {

int Report(const absl::Status& s, char* err, size_t err_len) {
  if (!s.ok() && err != nullptr && err_len > 0) {
    const std::string msg(s.message());
    const size_t n = std::min(msg.size(), err_len - 1);
    std::memcpy(err, msg.data(), n);
    err[n] = '\0';
  }
  return static_cast<int>(s.code());
}

absl::StatusOr<meshd::CommOptions> ToCommOptions(const meshd_comm_options* o) {
  meshd::CommOptions out;
  if (o == nullptr) return out;
  if (o->struct_size < sizeof(meshd_comm_options)) {
    return absl::InvalidArgumentError(
        "meshd_comm_options.struct_size is too small: fill it with meshd_comm_options_init");
  }
  switch (o->mode) {
    case MESHD_COMM_INIT_RANK:
      out.mode = meshd::CommInit::kInitRank;
      break;
    case MESHD_COMM_SCALABLE:
      out.mode = meshd::CommInit::kScalable;
      break;
    case MESHD_COMM_SPLIT:
      out.mode = meshd::CommInit::kSplit;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("meshd_comm_options.mode ", o->mode, " is not a MESHD_COMM_* mode"));
  }
  if (o->timeout_ms > 0) out.timeout = absl::Milliseconds(o->timeout_ms);
  if (o->cga_cluster_size >= 0) out.cga_cluster_size = o->cga_cluster_size;
  if (o->min_ctas >= 0) out.min_ctas = o->min_ctas;
  if (o->max_ctas >= 0) out.max_ctas = o->max_ctas;
  if (o->net_name != nullptr) out.net_name = std::string(o->net_name);
  if (o->split_share >= 0) out.split_share = o->split_share != 0;
  if (o->traffic_class >= 0) out.traffic_class = o->traffic_class;
  return out;
}

// Past what any mesh holds (layout::kMaxMeshDims): refused before a C array is copied.
constexpr int kMaxDims = 64;

// The dim a (dim, dim_name) pair of the C ABI names.
meshd::MeshDim DimOf(int dim, const char* dim_name) {
  if (dim_name != nullptr) return std::string(dim_name);
  return dim;
}

// `n` C strings, none NULL.
absl::StatusOr<std::vector<std::string>> Names(const char* const* names, int n) {
  std::vector<std::string> out;
  if (names == nullptr) return out;
  for (int i = 0; i < n; ++i) {
    if (names[i] == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("name ", i, " is NULL"));
    }
    out.emplace_back(names[i]);
  }
  return out;
}

int Emit(absl::StatusOr<meshd::DeviceMesh> mesh, meshd_mesh** out, char* err, size_t err_len) {
  if (!mesh.ok()) return Report(mesh.status(), err, err_len);
  *out = new meshd_mesh{*std::move(mesh)};
  return 0;
}

}  // namespace

extern "C" {

int meshd_attach(const char* socket, const char* job, int local_rank, int local_world, int nnodes,
                 int64_t timeout_ms, meshd_client** out, char* err, size_t err_len) {
  if (out == nullptr) return Report(absl::InvalidArgumentError("out is NULL"), err, err_len);
  meshd::ClientOptions o;
  if (socket != nullptr) o.socket = socket;
  if (job != nullptr) o.job = job;
  o.local_rank = local_rank;
  o.local_world = local_world;
  if (nnodes > 0) o.min_nodes = o.max_nodes = nnodes;
  if (timeout_ms > 0) o.timeout = absl::Milliseconds(timeout_ms);
  auto client = meshd::Client::Attach(std::move(o));
  if (!client.ok()) return Report(client.status(), err, err_len);
  *out = new meshd_client{*std::move(client)};
  return 0;
}

void meshd_detach(meshd_client* client) { delete client; }
int meshd_rank(const meshd_client* c) { return c->client->placement().rank; }
int meshd_world_size(const meshd_client* c) { return c->client->placement().world_size; }
int meshd_local_rank(const meshd_client* c) { return c->client->placement().local_rank; }
uint64_t meshd_generation(const meshd_client* c) { return c->client->placement().generation; }
int meshd_health(const meshd_client* c, char* err, size_t err_len) {
  return Report(c->client->health(), err, err_len);
}

int meshd_init_device_mesh(meshd_client* client, const int64_t* shape, const char* const* names,
                           int ndim, const char* mesh_name, meshd_mesh** out, char* err,
                           size_t err_len) {
  if (client == nullptr || shape == nullptr || out == nullptr || ndim < 1) {
    return Report(absl::InvalidArgumentError("client, shape and out are required, ndim >= 1"), err,
                  err_len);
  }
  std::vector<int64_t> s(shape, shape + ndim);
  std::vector<std::string> n;
  if (names != nullptr) n.assign(names, names + ndim);
  auto mesh = client->client->InitDeviceMesh(s, n, mesh_name ? mesh_name : "");
  if (!mesh.ok()) return Report(mesh.status(), err, err_len);
  *out = new meshd_mesh{*std::move(mesh)};
  return 0;
}

void meshd_mesh_free(meshd_mesh* mesh) { delete mesh; }

int meshd_mesh_from_ranks(const int64_t* shape, int ndim, const int64_t* ranks, size_t num_ranks,
                          const char* const* names, int64_t rank, int64_t world_size,
                          meshd_mesh** out, char* err, size_t err_len) {
  if (shape == nullptr || ranks == nullptr || out == nullptr || ndim < 1 || num_ranks < 1) {
    return Report(absl::InvalidArgumentError(
                      "shape, ranks and out are required, with ndim >= 1 and num_ranks >= 1"),
                  err, err_len);
  }
  // Bounded before anything is copied: the maths checks the rest.
  if (ndim > kMaxDims || num_ranks > static_cast<uint64_t>(std::max<int64_t>(world_size, 0))) {
    return Report(absl::InvalidArgumentError(absl::StrCat(
                      "a rank table of ", ndim, " dims and ", num_ranks, " ranks: at most ",
                      kMaxDims, " dims and the world's ", world_size, " ranks")),
                  err, err_len);
  }
  absl::StatusOr<std::vector<std::string>> n = Names(names, ndim);
  if (!n.ok()) return Report(n.status(), err, err_len);
  auto mesh = meshd::DeviceMesh::FromRankTable(std::vector<int64_t>(shape, shape + ndim),
                                               std::vector<int64_t>(ranks, ranks + num_ranks), *n,
                                               rank, world_size);
  return Emit(std::move(mesh), out, err, err_len);
}

int meshd_mesh_slice(const meshd_mesh* mesh, const char* const* names, int num_names,
                     meshd_mesh** out, char* err, size_t err_len) {
  if (mesh == nullptr || names == nullptr || out == nullptr || num_names < 1) {
    return Report(
        absl::InvalidArgumentError("mesh, names and out are required, with num_names >= 1"), err,
        err_len);
  }
  if (num_names > kMaxDims) {
    return Report(absl::InvalidArgumentError(absl::StrCat("cannot slice ", num_names,
                                                          " dims: a mesh has at most ", kMaxDims)),
                  err, err_len);
  }
  absl::StatusOr<std::vector<std::string>> n = Names(names, num_names);
  if (!n.ok()) return Report(n.status(), err, err_len);
  return Emit(mesh->mesh.Slice(*n), out, err, err_len);
}

int meshd_mesh_flatten(const meshd_mesh* mesh, const char* name, meshd_mesh** out, char* err,
                       size_t err_len) {
  if (mesh == nullptr || out == nullptr) {
    return Report(absl::InvalidArgumentError("mesh and out are required"), err, err_len);
  }
  std::optional<std::string> n;
  if (name != nullptr) n = std::string(name);
  return Emit(mesh->mesh.Flatten(n), out, err, err_len);
}

int meshd_mesh_unflatten(const meshd_mesh* mesh, int dim, const char* dim_name,
                         const int64_t* sizes, const char* const* names, int num_sizes,
                         meshd_mesh** out, char* err, size_t err_len) {
  if (mesh == nullptr || sizes == nullptr || names == nullptr || out == nullptr || num_sizes < 1) {
    return Report(
        absl::InvalidArgumentError("mesh, sizes, names and out are required, with num_sizes >= 1"),
        err, err_len);
  }
  if (num_sizes > kMaxDims) {
    return Report(absl::InvalidArgumentError(absl::StrCat("cannot unflatten into ", num_sizes,
                                                          " dims: a mesh has at most ", kMaxDims)),
                  err, err_len);
  }
  absl::StatusOr<std::vector<std::string>> n = Names(names, num_sizes);
  if (!n.ok()) return Report(n.status(), err, err_len);
  return Emit(mesh->mesh.Unflatten(DimOf(dim, dim_name),
                                   std::vector<int64_t>(sizes, sizes + num_sizes), *n),
              out, err, err_len);
}

int meshd_mesh_root(const meshd_mesh* mesh, meshd_mesh** out, char* err, size_t err_len) {
  if (mesh == nullptr || out == nullptr) {
    return Report(absl::InvalidArgumentError("mesh and out are required"), err, err_len);
  }
  *out = new meshd_mesh{mesh->mesh.root()};
  return 0;
}

int meshd_mesh_ndim(const meshd_mesh* mesh) { return mesh == nullptr ? 0 : mesh->mesh.ndim(); }

int meshd_mesh_size(const meshd_mesh* mesh, int dim, const char* dim_name, int64_t* size, char* err,
                    size_t err_len) {
  if (mesh == nullptr || size == nullptr) {
    return Report(absl::InvalidArgumentError("mesh and size are required"), err, err_len);
  }
  absl::StatusOr<int64_t> s = mesh->mesh.size(DimOf(dim, dim_name));
  if (!s.ok()) return Report(s.status(), err, err_len);
  *size = *s;
  return 0;
}

int meshd_mesh_coordinate(const meshd_mesh* mesh, int64_t* coords, size_t capacity,
                          size_t* num_coords, char* err, size_t err_len) {
  if (mesh == nullptr || num_coords == nullptr) {
    return Report(absl::InvalidArgumentError("mesh and num_coords are required"), err, err_len);
  }
  const std::optional<std::vector<int64_t>> c = mesh->mesh.coordinate();
  *num_coords = c ? c->size() : 0;
  if (c && coords != nullptr) std::copy_n(c->begin(), std::min(capacity, c->size()), coords);
  return 0;
}

int meshd_mesh_group_ranks(const meshd_mesh* mesh, int dim, const char* dim_name, int64_t* ranks,
                           size_t capacity, size_t* num_ranks, int64_t* group_rank, char* err,
                           size_t err_len) {
  if (mesh == nullptr) return Report(absl::InvalidArgumentError("mesh is required"), err, err_len);
  const meshd::MeshDim d = DimOf(dim, dim_name);
  absl::StatusOr<std::vector<int64_t>> g = mesh->mesh.group_ranks(d);
  if (!g.ok()) return Report(g.status(), err, err_len);
  absl::StatusOr<int64_t> local = mesh->mesh.local_rank(d);
  if (!local.ok()) return Report(local.status(), err, err_len);
  if (num_ranks != nullptr) *num_ranks = g->size();
  if (ranks != nullptr) std::copy_n(g->begin(), std::min(capacity, g->size()), ranks);
  if (group_rank != nullptr) *group_rank = *local;
  return 0;
}

size_t meshd_mesh_to_string(const meshd_mesh* mesh, char* out, size_t out_len) {
  const std::string s = mesh == nullptr ? std::string() : mesh->mesh.ToString();
  if (out != nullptr && out_len > 0) {
    const size_t n = std::min(s.size(), out_len - 1);
    std::memcpy(out, s.data(), n);
    out[n] = '\0';
  }
  return s.size();
}

int meshd_mesh_equal(const meshd_mesh* a, const meshd_mesh* b) {
  if (a == nullptr || b == nullptr) return a == b;
  return a->mesh == b->mesh ? 1 : 0;
}

uint64_t meshd_mesh_hash(const meshd_mesh* mesh) {
  return mesh == nullptr ? 0 : static_cast<uint64_t>(mesh->mesh.Hash());
}

int meshd_init_device_mesh_from_ranks(meshd_client* client, const int64_t* shape, int ndim,
                                      const int64_t* ranks, size_t num_ranks,
                                      const char* const* names, const char* mesh_name,
                                      meshd_mesh** out, char* err, size_t err_len) {
  if (client == nullptr || shape == nullptr || ranks == nullptr || out == nullptr || ndim < 1 ||
      num_ranks < 1) {
    return Report(absl::InvalidArgumentError("client, shape, ranks and out are required, with "
                                             "ndim >= 1 and num_ranks >= 1"),
                  err, err_len);
  }
  const int64_t world = client->client->placement().world_size;
  if (ndim > kMaxDims || num_ranks > static_cast<uint64_t>(world)) {
    return Report(absl::InvalidArgumentError(absl::StrCat(
                      "a rank table of ", ndim, " dims and ", num_ranks, " ranks: at most ",
                      kMaxDims, " dims and the world's ", world, " ranks")),
                  err, err_len);
  }
  absl::StatusOr<std::vector<std::string>> n = Names(names, ndim);
  if (!n.ok()) return Report(n.status(), err, err_len);
  return Emit(client->client->InitDeviceMeshFromRanks(
                  std::vector<int64_t>(shape, shape + ndim),
                  std::vector<int64_t>(ranks, ranks + num_ranks), *n, mesh_name ? mesh_name : ""),
              out, err, err_len);
}

int meshd_mesh_from_group(meshd_client* client, const meshd_mesh* mesh, int dim,
                          const char* dim_name, const char* new_name, meshd_mesh** out, char* err,
                          size_t err_len) {
  if (client == nullptr || mesh == nullptr || out == nullptr) {
    return Report(absl::InvalidArgumentError("client, mesh and out are required"), err, err_len);
  }
  auto resolved = mesh->mesh.ResolveDim(DimOf(dim, dim_name));
  if (!resolved.ok()) return Report(resolved.status(), err, err_len);
  auto g = client->client->GroupOf(resolved->first, resolved->second);
  if (!g.ok()) return Report(g.status(), err, err_len);
  return Emit(client->client->MeshFromGroup(*g, new_name ? new_name : ""), out, err, err_len);
}

int meshd_mesh_group_ids(meshd_client* client, const meshd_mesh* mesh, int dim,
                         const char* dim_name, uint8_t* ids, size_t capacity, size_t* num_ids,
                         char* err, size_t err_len) {
  if (client == nullptr || mesh == nullptr) {
    return Report(absl::InvalidArgumentError("client and mesh are required"), err, err_len);
  }
  // A flattened name's group is its flattened mesh's only one.
  auto resolved = mesh->mesh.ResolveDim(DimOf(dim, dim_name));
  if (!resolved.ok()) return Report(resolved.status(), err, err_len);
  auto g = client->client->GroupOf(resolved->first, resolved->second);
  if (!g.ok()) return Report(g.status(), err, err_len);
  if (num_ids != nullptr) *num_ids = g->ids.size();
  if (ids != nullptr) {
    for (size_t i = 0; i < std::min(capacity, g->ids.size()); ++i) {
      std::memcpy(ids + i * sizeof(meshd::NcclUniqueId), g->ids[i].data(),
                  sizeof(meshd::NcclUniqueId));
    }
  }
  return 0;
}

int meshd_mesh_group(meshd_client* client, const meshd_mesh* mesh, int dim, int64_t* ranks,
                     size_t capacity, size_t* num_ranks, int64_t* group_rank, uint8_t id[128],
                     char* err, size_t err_len) {
  if (client == nullptr || mesh == nullptr) {
    return Report(absl::InvalidArgumentError("client and mesh are required"), err, err_len);
  }
  auto g = client->client->GroupOf(mesh->mesh, dim);
  if (!g.ok()) return Report(g.status(), err, err_len);
  if (num_ranks != nullptr) *num_ranks = g->ranks.size();
  if (ranks != nullptr) std::copy_n(g->ranks.begin(), std::min(capacity, g->ranks.size()), ranks);
  if (group_rank != nullptr) *group_rank = g->group_rank;
  if (id != nullptr) std::memcpy(id, g->ids[0].data(), 128);
  return 0;
}

void meshd_comm_options_init(meshd_comm_options* o) {
  if (o == nullptr) return;
  *o = meshd_comm_options{};
  o->struct_size = sizeof(meshd_comm_options);
  o->mode = MESHD_COMM_INIT_RANK;
  o->timeout_ms = 0;
  o->cga_cluster_size = o->min_ctas = o->max_ctas = o->split_share = o->traffic_class = -1;
  o->net_name = nullptr;
}

int meshd_comm_make(meshd_client* client, const meshd_mesh* mesh, int dim, const char* dim_name,
                    const meshd_comm_options* options, meshd_comm** out, char* err,
                    size_t err_len) {
  if (client == nullptr || mesh == nullptr || out == nullptr) {
    return Report(absl::InvalidArgumentError("client, mesh and out are required"), err, err_len);
  }
  *out = nullptr;
  absl::StatusOr<meshd::CommOptions> o = ToCommOptions(options);
  if (!o.ok()) return Report(o.status(), err, err_len);
  const meshd::MeshDim which =
      dim_name != nullptr ? meshd::MeshDim(std::string(dim_name)) : meshd::MeshDim(dim);
  auto comm = client->client->MakeCommunicator(mesh->mesh, which, *o);
  if (!comm.ok()) return Report(comm.status(), err, err_len);
  if (*comm != nullptr) *out = new meshd_comm{*std::move(comm)};
  return 0;
}

int meshd_comm_split_nocolor(meshd_client* client, const meshd_comm_options* options, char* err,
                             size_t err_len) {
  if (client == nullptr)
    return Report(absl::InvalidArgumentError("client is required"), err, err_len);
  absl::StatusOr<meshd::CommOptions> o = ToCommOptions(options);
  if (!o.ok()) return Report(o.status(), err, err_len);
  return Report(client->client->SplitNoColor(*o), err, err_len);
}

void* meshd_comm_nccl(const meshd_comm* c) { return c == nullptr ? nullptr : c->comm->nccl_comm(); }
int meshd_comm_size(const meshd_comm* c) { return c == nullptr ? 0 : c->comm->size(); }
int meshd_comm_rank(const meshd_comm* c) { return c == nullptr ? -1 : c->comm->rank(); }

int meshd_comm_abort(meshd_comm* c, char* err, size_t err_len) {
  if (c == nullptr) return Report(absl::InvalidArgumentError("comm is NULL"), err, err_len);
  c->comm->Abort();
  return 0;
}

int meshd_comm_status(const meshd_comm* c, char* err, size_t err_len) {
  if (c == nullptr) return Report(absl::InvalidArgumentError("comm is NULL"), err, err_len);
  return Report(c->comm->status(), err, err_len);
}

void meshd_comm_free(meshd_comm* c) { delete c; }

}  // extern "C"
