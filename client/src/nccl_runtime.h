// NcclRuntime: NCCL and the CUDA runtime loaded with dlopen, so libmeshd_client builds and runs on
// hosts without them; only the calls meshd makes, with prototypes declared here (matching nccl.h
// and cuda_runtime_api.h) so no CUDA header is needed at build time.
//
// Thread-safety: Load() is thread-safe and caches per library path; the functions are
// NCCL's/CUDA's.
#ifndef MESHD_CLIENT_SRC_NCCL_RUNTIME_H_
#define MESHD_CLIENT_SRC_NCCL_RUNTIME_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "meshd/client.h"

namespace meshd::client_internal {

struct NcclUniqueIdC {
  char internal[128];
};
using ncclComm_t = void*;
using cudaStream_t = void*;

struct NcclRuntime {
  // Errors: FAILED_PRECONDITION when the library cannot be loaded or lacks a function.
  static absl::StatusOr<const NcclRuntime*> Load(const std::string& library);

  int version = 0;  // e.g. 22809 for 2.28.9
  int (*GetUniqueId)(NcclUniqueIdC*) = nullptr;
  int (*CommInitRank)(ncclComm_t*, int, NcclUniqueIdC, int) = nullptr;
  int (*CommInitRankScalable)(ncclComm_t*, int, int, int, NcclUniqueIdC*, void*) = nullptr;
  int (*CommSplit)(ncclComm_t, int, int, ncclComm_t*, void*) = nullptr;
  int (*CommDestroy)(ncclComm_t) = nullptr;
  int (*AllReduce)(const void*, void*, size_t, int, int, ncclComm_t, cudaStream_t) = nullptr;
  const char* (*GetErrorString)(int) = nullptr;

  // A fresh id from ncclGetUniqueId (the calling process becomes the bootstrap root).
  absl::StatusOr<NcclUniqueId> MintId() const;
  absl::Status Check(int result, const char* what) const;
};

struct CudaRuntime {
  // Errors: FAILED_PRECONDITION when no CUDA runtime can be loaded, or it sees no device.
  static absl::StatusOr<const CudaRuntime*> Load(const std::string& library);

  int device_count = 0;
  int (*SetDevice)(int) = nullptr;
  int (*StreamCreate)(cudaStream_t*) = nullptr;
  int (*StreamSynchronize)(cudaStream_t) = nullptr;
  int (*StreamDestroy)(cudaStream_t) = nullptr;
  int (*Malloc)(void**, size_t) = nullptr;
  int (*Free)(void*) = nullptr;
  int (*Memcpy)(void*, const void*, size_t, int) = nullptr;  // kind 1: H2D, 2: D2H
  const char* (*GetErrorString)(int) = nullptr;

  absl::Status Check(int result, const char* what) const;
};

}  // namespace meshd::client_internal

#endif  // MESHD_CLIENT_SRC_NCCL_RUNTIME_H_
