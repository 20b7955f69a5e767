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

/* This rank's group along `dim`: up to `capacity` member ranks into `ranks` (the count into
 * *num_ranks), this rank's sorted index into *group_rank, and the group's first NCCL unique id
 * (128 bytes) into `id`. */
int meshd_mesh_group(meshd_client* client, const meshd_mesh* mesh, int dim, int64_t* ranks,
                     size_t capacity, size_t* num_ranks, int64_t* group_rank, uint8_t id[128],
                     char* err, size_t err_len);

#ifdef __cplusplus
}
#endif

#endif /* MESHD_CLIENT_CLIENT_C_H_ */
