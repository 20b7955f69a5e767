// NcclRuntime: NCCL and the CUDA runtime loaded with dlopen, so libmeshd_client builds and runs on
// hosts without them; only the calls meshd makes, with prototypes declared here (matching nccl.h
// and cuda_runtime_api.h) so no CUDA header is needed at build time.
//
// What a communicator may use depends on the NCCL that was loaded, never on the one meshd was
// built against: each optional function is looked up with dlsym, each ncclConfig_t field is
// used only when ncclGetVersion says the library knows it (NcclFeature, Require()).
//
// Thread-safety: Load() is thread-safe and caches per library path; the functions are
// NCCL's/CUDA's; the rest is immutable after Load().
#ifndef MESHD_CLIENT_SRC_NCCL_RUNTIME_H_
#define MESHD_CLIENT_SRC_NCCL_RUNTIME_H_

#include <climits>
#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "meshd/client.h"

namespace meshd::client_internal {

struct NcclUniqueIdC {
  char internal[128];
};
using ncclComm_t = void*;
using cudaStream_t = void*;

// ncclResult_t values meshd looks at.
inline constexpr int kNcclSuccess = 0;
inline constexpr int kNcclInProgress = 7;
inline constexpr int kNcclSplitNoColor = -1;  // NCCL_SPLIT_NOCOLOR
// cudaErrorNotReady: cudaStreamQuery's answer while work is queued.
inline constexpr int kCudaErrorNotReady = 600;

// ncclConfig_t as NCCL 2.28 lays it out (ncclConfig_v22800). NCCL only ever appends fields, and
// a library reads the prefix it knows (it copies min(size, its own sizeof) bytes and defaults the
// fields a config of an older `version` lacks), so this one layout serves every NCCL >= 2.14.
// Which fields meshd sets is decided by the loaded library's version (NcclFeature).
struct NcclConfigC {
  size_t size = sizeof(NcclConfigC);
  unsigned int magic = 0xcafebeef;
  unsigned int version = 22809;  // NCCL_VERSION(2, 28, 9): the layout above
  int blocking = INT_MIN;        // NCCL_CONFIG_UNDEF_INT: NCCL's default
  int cgaClusterSize = INT_MIN;
  int minCTAs = INT_MIN;
  int maxCTAs = INT_MIN;
  const char* netName = nullptr;  // NCCL_CONFIG_UNDEF_PTR
  int splitShare = INT_MIN;
  int trafficClass = INT_MIN;
  const char* commName = nullptr;
  int collnetEnable = INT_MIN;
  int CTAPolicy = INT_MIN;
  int shrinkShare = INT_MIN;
  int nvlsCTAs = INT_MIN;
  int nChannelsPerNetPeer = INT_MIN;
  int nvlinkCentricSched = INT_MIN;
};

// What a communicator may ask of NCCL, each with the first release that has it.
enum class NcclFeature {
  kNonBlockingInit,  // ncclCommInitRankConfig, ncclConfig_t.blocking (2.14)
  kCgaClusterSize,   // ncclConfig_t.cgaClusterSize (2.17)
  kMinCtas,          // ncclConfig_t.minCTAs (2.17)
  kMaxCtas,          // ncclConfig_t.maxCTAs (2.17)
  kNetName,          // ncclConfig_t.netName (2.17)
  kSplit,            // ncclCommSplit (2.18)
  kSplitShare,       // ncclConfig_t.splitShare (2.18)
  kScalableInit,     // ncclCommInitRankScalable (2.23)
  kTrafficClass,     // ncclConfig_t.trafficClass (2.26)
  kCommName,         // ncclConfig_t.commName (2.27)
};
// NCCL_VERSION(major, minor, patch): major*1000 + minor*100 + patch up to 2.8, then
// major*10000 + minor*100 + patch (so codes compare in release order across the change).
int NcclVersionCode(int major, int minor, int patch);
// "2.28.9" for 22809, "2.8.4" for 2804.
std::string NcclVersionString(int code);
// The first NCCL release with `feature` (a version code) and what it is called in messages
// ("ncclCommInitRankScalable", "ncclConfig_t.commName").
int NcclFeatureVersion(NcclFeature feature);
const char* NcclFeatureName(NcclFeature feature);

struct NcclRuntime {
  // Errors: FAILED_PRECONDITION when the library cannot be loaded or lacks a function every NCCL
  // since 2.4 has (the message names it).
  static absl::StatusOr<const NcclRuntime*> Load(const std::string& library);

  std::string library;  // as given to Load
  int version = 0;      // ncclGetVersion: e.g. 22809 for 2.28.9
  // Every NCCL since 2.4.
  int (*GetUniqueId)(NcclUniqueIdC*) = nullptr;
  int (*CommInitRank)(ncclComm_t*, int, NcclUniqueIdC, int) = nullptr;
  int (*CommDestroy)(ncclComm_t) = nullptr;
  int (*CommAbort)(ncclComm_t) = nullptr;
  int (*CommGetAsyncError)(ncclComm_t, int*) = nullptr;
  int (*CommCount)(ncclComm_t, int*) = nullptr;
  int (*AllReduce)(const void*, void*, size_t, int, int, ncclComm_t, cudaStream_t) = nullptr;
  const char* (*GetErrorString)(int) = nullptr;
  // Null when the library is older than the version named.
  int (*CommInitRankConfig)(ncclComm_t*, int, NcclUniqueIdC, int, NcclConfigC*) = nullptr;  // 2.14
  int (*CommSplit)(ncclComm_t, int, int, ncclComm_t*, NcclConfigC*) = nullptr;              // 2.18
  int (*CommInitRankScalable)(ncclComm_t*, int, int, int, NcclUniqueIdC*,
                              NcclConfigC*) = nullptr;  // 2.23
  const char* (*GetLastError)(ncclComm_t) = nullptr;    // 2.13

  // Whether this library has `feature`: its function was found and its version is at least the
  // feature's.
  bool Has(NcclFeature feature) const;
  // OK when it has; else FAILED_PRECONDITION naming what needs it (`for_what`), the feature, the
  // version that brought it and the version loaded, e.g. "CommInit::kScalable needs
  // ncclCommInitRankScalable (NCCL >= 2.23); libnccl.so.2 is NCCL 2.21.5".
  absl::Status Require(NcclFeature feature, absl::string_view for_what) const;

  // A fresh id from ncclGetUniqueId (the calling process becomes the bootstrap root).
  absl::StatusOr<NcclUniqueId> MintId() const;
  // OK for ncclSuccess; else INTERNAL naming `what`, the code and NCCL's string for it, and
  // NCCL's last error message for `comm` when the library has ncclGetLastError.
  absl::Status Check(int result, const char* what, ncclComm_t comm = nullptr) const;
};

struct CudaRuntime {
  // Errors: FAILED_PRECONDITION when no CUDA runtime can be loaded, or it sees no device.
  static absl::StatusOr<const CudaRuntime*> Load(const std::string& library);

  int device_count = 0;
  int (*SetDevice)(int) = nullptr;
  int (*StreamCreate)(cudaStream_t*) = nullptr;
  int (*StreamSynchronize)(cudaStream_t) = nullptr;
  int (*StreamQuery)(cudaStream_t) = nullptr;
  int (*StreamDestroy)(cudaStream_t) = nullptr;
  int (*Malloc)(void**, size_t) = nullptr;
  int (*Free)(void*) = nullptr;
  int (*Memcpy)(void*, const void*, size_t, int) = nullptr;  // kind 1: H2D, 2: D2H
  const char* (*GetErrorString)(int) = nullptr;

  absl::Status Check(int result, const char* what) const;
};

}  // namespace meshd::client_internal

#endif  // MESHD_CLIENT_SRC_NCCL_RUNTIME_H_
