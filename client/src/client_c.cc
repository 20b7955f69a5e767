// The C ABI over meshd::Client (see <meshd/client_c.h>).
#include "meshd/client_c.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "absl/time/time.h"
#include "meshd/client.h"

struct meshd_client {
  std::unique_ptr<meshd::Client> client;
};
struct meshd_mesh {
  meshd::DeviceMesh mesh;
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

}  // extern "C"
