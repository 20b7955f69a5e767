/* <meshd/client_c.h> — the C ABI of libmeshd_client, for bindings in other languages.
 * Every function returns a canonical status code (0 = OK, 3 = INVALID_ARGUMENT, 4 =
 * DEADLINE_EXCEEDED, 9 = FAILED_PRECONDITION, 10 = ABORTED, 14 = UNAVAILABLE, ...) and, on error,
 * writes a NUL-terminated message into `err` (at most err_len bytes; err may be NULL).
 * Handles are thread-safe as in <meshd/client.h>; free each with its own function. */
#ifndef MESHD_CLIENT_CLIENT_C_H_
#define MESHD_CLIENT_CLIENT_C_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct meshd_client meshd_client;
typedef struct meshd_mesh meshd_mesh;

/* Attaches to `job` through the agent at `socket` (NULL: $MESHD_SOCKET). local_rank/local_world < 0
 * read LOCAL_RANK/LOCAL_WORLD_SIZE; nnodes <= 0 reads MESHD_NNODES. Blocks until the round closes
 * or timeout_ms passes. */
int meshd_attach(const char* socket, const char* job, int local_rank, int local_world, int nnodes,
                 int64_t timeout_ms, meshd_client** out, char* err, size_t err_len);
void meshd_detach(meshd_client* client);

int meshd_rank(const meshd_client* client);
int meshd_world_size(const meshd_client* client);
int meshd_local_rank(const meshd_client* client);
uint64_t meshd_generation(const meshd_client* client);
/* 0 while the generation runs; ABORTED (10) once it ended, with the reason in `err`. */
int meshd_health(const meshd_client* client, char* err, size_t err_len);

/* init_device_mesh(shape, names): names may be NULL (unnamed dims); mesh_name may be NULL. */
int meshd_init_device_mesh(meshd_client* client, const int64_t* shape, const char* const* names,
                           int ndim, const char* mesh_name, meshd_mesh** out, char* err,
                           size_t err_len);
void meshd_mesh_free(meshd_mesh* mesh);

/* The mesh maths, with no network (PyTorch's DeviceMesh rules; docs/mesh-semantics.md). A dim is
 * `dim_name` when it is not NULL — a dim name, or a flattened dim of the mesh's root (from any mesh
 * of that root, as PyTorch's get_group takes it) — else the index `dim` (negative counts from the
 * end). A bad dim is INVALID_ARGUMENT naming the valid ones. Every meshd_mesh** out is a new
 * handle to free with meshd_mesh_free. */

/* PyTorch's DeviceMesh(device_type, mesh=table, mesh_dim_names=names) as `rank` of a world of
 * `world_size` sees it, with no client: `ranks` (num_ranks of them) is the table row-major in
 * `shape` (ndim sizes), any order, any subset of the world; names may be NULL (unnamed dims). Its
 * groups have no NCCL ids. INVALID_ARGUMENT: a bad table, names or rank. */
int meshd_mesh_from_ranks(const int64_t* shape, int ndim, const int64_t* ranks, size_t num_ranks,
                          const char* const* names, int64_t rank, int64_t world_size,
                          meshd_mesh** out, char* err, size_t err_len);
/* mesh[names]: the num_names named dims, in that order (a flattened name from the root). */
int meshd_mesh_slice(const meshd_mesh* mesh, const char* const* names, int num_names,
                     meshd_mesh** out, char* err, size_t err_len);
/* mesh._flatten(name): name NULL joins the dims' names with "_". */
int meshd_mesh_flatten(const meshd_mesh* mesh, const char* name, meshd_mesh** out, char* err,
                       size_t err_len);
/* mesh._unflatten(dim, sizes, names): the dim (dim_name, else the index dim >= 0) split into
 * num_sizes dims of `sizes`, named `names`. */
int meshd_mesh_unflatten(const meshd_mesh* mesh, int dim, const char* dim_name,
                         const int64_t* sizes, const char* const* names, int num_sizes,
                         meshd_mesh** out, char* err, size_t err_len);
/* The root mesh (PyTorch's _get_root_mesh()): the mesh `mesh` was derived from, or itself. */
int meshd_mesh_root(const meshd_mesh* mesh, meshd_mesh** out, char* err, size_t err_len);

int meshd_mesh_ndim(const meshd_mesh* mesh);
/* PyTorch's size(dim). */
int meshd_mesh_size(const meshd_mesh* mesh, int dim, const char* dim_name, int64_t* size, char* err,
                    size_t err_len);
/* This rank's coordinate (PyTorch's get_coordinate()): up to `capacity` entries into `coords`, and
 * into *num_coords the mesh's ndim, or 0 when this rank is not in the mesh (PyTorch's None). */
int meshd_mesh_coordinate(const meshd_mesh* mesh, int64_t* coords, size_t capacity,
                          size_t* num_coords, char* err, size_t err_len);
/* This rank's group along a dim, with no client: up to `capacity` members (mesh order) into
 * `ranks`, the count into *num_ranks, this rank's index among the sorted members (PyTorch's
 * get_local_rank) into *group_rank. FAILED_PRECONDITION when this rank is not in the mesh. */
int meshd_mesh_group_ranks(const meshd_mesh* mesh, int dim, const char* dim_name, int64_t* ranks,
                           size_t capacity, size_t* num_ranks, int64_t* group_rank, char* err,
                           size_t err_len);
/* "DeviceMesh((dp=2, tp=4), stride=(4, 1))", cut to out_len - 1 bytes and NUL-terminated; the
 * full length (without the NUL) is returned. */
size_t meshd_mesh_to_string(const meshd_mesh* mesh, char* out, size_t out_len);
/* PyTorch's ==: the same layout over the same ranks with the same names (1), or not (0). */
int meshd_mesh_equal(const meshd_mesh* a, const meshd_mesh* b);
/* Consistent with meshd_mesh_equal, within one process. */
uint64_t meshd_mesh_hash(const meshd_mesh* mesh);

/* PyTorch's DeviceMesh(device_type, mesh=table) over the job's world
 * (Client::InitDeviceMeshFromRanks): `ranks` (num_ranks) row-major in `shape` (ndim sizes), any
 * order, any subset of the world; names and mesh_name may be NULL. Collective and checked as
 * meshd_init_device_mesh; ranks outside the table take no part in its exchange. */
int meshd_init_device_mesh_from_ranks(meshd_client* client, const int64_t* shape, int ndim,
                                      const int64_t* ranks, size_t num_ranks,
                                      const char* const* names, const char* mesh_name,
                                      meshd_mesh** out, char* err, size_t err_len);
/* PyTorch's DeviceMesh.from_group (Client::MeshFromGroup) for this rank's group along a dim of
 * `mesh` (fetched as meshd_mesh_group does): the 1-D mesh over the group's members, whose one group
 * is that group — the same ids. `new_name` (may be NULL: unnamed) names its dim. */
int meshd_mesh_from_group(meshd_client* client, const meshd_mesh* mesh, int dim,
                          const char* dim_name, const char* new_name, meshd_mesh** out, char* err,
                          size_t err_len);
/* Every NCCL unique id of this rank's group along a dim (meshd_mesh_group gives the first only):
 * up to `capacity` ids of 128 bytes each into `ids` (capacity * 128 bytes), the count into
 * *num_ids (one per ClientOptions::ranks_per_id members; 1 by default). Fetches them as
 * meshd_mesh_group does. */
int meshd_mesh_group_ids(meshd_client* client, const meshd_mesh* mesh, int dim,
                         const char* dim_name, uint8_t* ids, size_t capacity, size_t* num_ids,
                         char* err, size_t err_len);

/* This rank's group along `dim`: up to `capacity` member ranks into `ranks` (the count into
 * *num_ranks), this rank's sorted index into *group_rank, and the group's first NCCL unique id
 * (128 bytes) into `id`. */
int meshd_mesh_group(meshd_client* client, const meshd_mesh* mesh, int dim, int64_t* ranks,
                     size_t capacity, size_t* num_ranks, int64_t* group_rank, uint8_t id[128],
                     char* err, size_t err_len);

/* Communicators (see meshd::Client::MakeCommunicator). Modes: */
#define MESHD_COMM_INIT_RANK 0 /* ncclCommInitRankConfig with the group's first id */
#define MESHD_COMM_SCALABLE 1  /* ncclCommInitRankScalable (NCCL >= 2.23) */
#define MESHD_COMM_SPLIT 2     /* ncclCommSplit of the world communicator (NCCL >= 2.18) */

typedef struct meshd_comm meshd_comm;

/* How to make one. Fill it with meshd_comm_options_init (every field unset), then set fields.
 * An int field < 0 and a NULL net_name are unset: NCCL's default. Each ncclConfig_t field needs
 * the NCCL named (FAILED_PRECONDITION on an older one). */
typedef struct meshd_comm_options {
  size_t struct_size;   /* sizeof(meshd_comm_options): set by meshd_comm_options_init */
  int mode;             /* MESHD_COMM_*; default MESHD_COMM_INIT_RANK */
  int64_t timeout_ms;   /* deadline of the creation; <= 0: the client's timeout */
  int cga_cluster_size; /* ncclConfig_t.cgaClusterSize, NCCL >= 2.17 */
  int min_ctas;         /* minCTAs, >= 2.17 */
  int max_ctas;         /* maxCTAs, >= 2.17 */
  const char* net_name; /* netName, >= 2.17 */
  int split_share;      /* splitShare (0 or 1), >= 2.18 */
  int traffic_class;    /* trafficClass, >= 2.26 */
} meshd_comm_options;
void meshd_comm_options_init(meshd_comm_options* options);

/* This rank's communicator for its group along a dim of `mesh` — `dim_name` when not NULL (a name,
 * or a flattened name of the mesh's root), else the index `dim` — made as `options` say (NULL:
 * defaults), or the one made before for the same group and mode while it lives. Every rank may
 * call it: a rank outside the mesh gets *out = NULL and 0 (with MESHD_COMM_SPLIT after taking part
 * in the split without a color, as every rank must). Errors: FAILED_PRECONDITION (no NCCL or GPU,
 * an NCCL too old), DEADLINE_EXCEEDED (naming the ranks that never arrived), ABORTED, CANCELLED,
 * INVALID_ARGUMENT, INTERNAL. Free *out with meshd_comm_free (also after the client's detach). */
int meshd_comm_make(meshd_client* client, const meshd_mesh* mesh, int dim, const char* dim_name,
                    const meshd_comm_options* options, meshd_comm** out, char* err, size_t err_len);
/* MESHD_COMM_SPLIT on a rank in none of the groups being split (see SplitNoColor). */
int meshd_comm_split_nocolor(meshd_client* client, const meshd_comm_options* options, char* err,
                             size_t err_len);
/* The ncclComm_t (as void*); NULL once aborted or for a NULL comm. */
void* meshd_comm_nccl(const meshd_comm* comm);
int meshd_comm_size(const meshd_comm* comm);
int meshd_comm_rank(const meshd_comm* comm);
/* ncclCommAbort, once (idempotent). Returns 0; INVALID_ARGUMENT for a NULL comm. */
int meshd_comm_abort(meshd_comm* comm, char* err, size_t err_len);
/* 0 while usable; ABORTED (10) once aborted, with the reason; NCCL's asynchronous error. */
int meshd_comm_status(const meshd_comm* comm, char* err, size_t err_len);
/* Drops this handle: the communicator is destroyed (ncclCommDestroy, unless aborted) when no
 * other handle or C++ reference holds it. NULL is ignored. */
void meshd_comm_free(meshd_comm* comm);

#ifdef __cplusplus
}
#endif

#endif /* MESHD_CLIENT_CLIENT_C_H_ */
