// NCCL and CUDA through dlopen (see nccl_runtime.h).
#include "client/src/nccl_runtime.h"

#include <dlfcn.h>

#include <cstring>
#include <map>
#include <memory>
#include <mutex>

#include "absl/strings/str_cat.h"

namespace meshd::client_internal {
namespace {

template <typename F>
bool Bind(void* handle, const char* name, F& fn) {
  fn = reinterpret_cast<F>(dlsym(handle, name));
  return fn != nullptr;
}

// Loads each library once per process: the first result (a runtime or the reason it cannot load)
// is kept for good. Loaded libraries and their function tables live as long as the process, so the
// caches are never destroyed.
template <typename Runtime, typename LoadFn>
absl::StatusOr<const Runtime*> LoadOnce(const std::string& library, LoadFn load) {
  static std::mutex mu;
  static auto* cache = new std::map<std::string, absl::StatusOr<const Runtime*>>();
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = cache->find(library); it != cache->end()) return it->second;
  absl::StatusOr<std::unique_ptr<Runtime>> loaded = load();
  absl::StatusOr<const Runtime*> result =
      loaded.ok() ? absl::StatusOr<const Runtime*>(loaded->release()) : loaded.status();
  cache->emplace(library, result);
  return result;
}

struct FeatureInfo {
  const char* name;
  int major, minor;
};

FeatureInfo Info(NcclFeature f) {
  switch (f) {
    case NcclFeature::kNonBlockingInit:
      return {"ncclCommInitRankConfig", 2, 14};
    case NcclFeature::kCgaClusterSize:
      return {"ncclConfig_t.cgaClusterSize", 2, 17};
    case NcclFeature::kMinCtas:
      return {"ncclConfig_t.minCTAs", 2, 17};
    case NcclFeature::kMaxCtas:
      return {"ncclConfig_t.maxCTAs", 2, 17};
    case NcclFeature::kNetName:
      return {"ncclConfig_t.netName", 2, 17};
    case NcclFeature::kSplit:
      return {"ncclCommSplit", 2, 18};
    case NcclFeature::kSplitShare:
      return {"ncclConfig_t.splitShare", 2, 18};
    case NcclFeature::kScalableInit:
      return {"ncclCommInitRankScalable", 2, 23};
    case NcclFeature::kTrafficClass:
      return {"ncclConfig_t.trafficClass", 2, 26};
    case NcclFeature::kCommName:
      return {"ncclConfig_t.commName", 2, 27};
  }
  return {"?", 99, 0};
}

}  // namespace

int NcclVersionCode(int major, int minor, int patch) {
  return (major <= 2 && minor <= 8) ? major * 1000 + minor * 100 + patch
                                    : major * 10000 + minor * 100 + patch;
}

std::string NcclVersionString(int code) {
  if (code < 10000) return absl::StrCat(code / 1000, ".", code % 1000 / 100, ".", code % 100);
  return absl::StrCat(code / 10000, ".", code % 10000 / 100, ".", code % 100);
}

int NcclFeatureVersion(NcclFeature feature) {
  const FeatureInfo i = Info(feature);
  return NcclVersionCode(i.major, i.minor, 0);
}

const char* NcclFeatureName(NcclFeature feature) { return Info(feature).name; }

bool NcclRuntime::Has(NcclFeature feature) const {
  if (version < NcclFeatureVersion(feature)) return false;
  switch (feature) {
    case NcclFeature::kNonBlockingInit:
      return CommInitRankConfig != nullptr;
    case NcclFeature::kSplit:
      return CommSplit != nullptr;
    case NcclFeature::kScalableInit:
      return CommInitRankScalable != nullptr;
    case NcclFeature::kSplitShare:
      return CommSplit != nullptr && CommInitRankConfig != nullptr;
    default:  // a config field: every config-taking function has it from its version on
      return CommInitRankConfig != nullptr;
  }
}

absl::Status NcclRuntime::Require(NcclFeature feature, absl::string_view for_what) const {
  if (Has(feature)) return absl::OkStatus();
  const FeatureInfo i = Info(feature);
  return absl::FailedPreconditionError(
      absl::StrCat(for_what, " needs ", i.name, " (NCCL >= ", i.major, ".", i.minor, "); ", library,
                   " is NCCL ", NcclVersionString(version),
                   "; load a newer one (MESHD_NCCL_LIBRARY, e.g. the libnccl.so.2 PyTorch ships)"));
}

absl::StatusOr<const NcclRuntime*> NcclRuntime::Load(const std::string& library) {
  return LoadOnce<NcclRuntime>(library, [&]() -> absl::StatusOr<std::unique_ptr<NcclRuntime>> {
    void* h = dlopen(library.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (h == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot load NCCL (", library, "): ", dlerror(),
                       "; install NCCL or point MESHD_NCCL_LIBRARY at libnccl.so.2"));
    }
    auto rt = std::make_unique<NcclRuntime>();
    rt->library = library;
    int (*get_version)(int*) = nullptr;
    // Every NCCL since 2.4 has these; a library without one is not an NCCL meshd can use.
    const std::pair<const char*, bool> core[] = {
        {"ncclGetVersion", Bind(h, "ncclGetVersion", get_version)},
        {"ncclGetUniqueId", Bind(h, "ncclGetUniqueId", rt->GetUniqueId)},
        {"ncclCommInitRank", Bind(h, "ncclCommInitRank", rt->CommInitRank)},
        {"ncclCommDestroy", Bind(h, "ncclCommDestroy", rt->CommDestroy)},
        {"ncclCommAbort", Bind(h, "ncclCommAbort", rt->CommAbort)},
        {"ncclCommGetAsyncError", Bind(h, "ncclCommGetAsyncError", rt->CommGetAsyncError)},
        {"ncclCommCount", Bind(h, "ncclCommCount", rt->CommCount)},
        {"ncclAllReduce", Bind(h, "ncclAllReduce", rt->AllReduce)},
        {"ncclGetErrorString", Bind(h, "ncclGetErrorString", rt->GetErrorString)},
    };
    for (const auto& [name, found] : core) {
      if (!found) {
        return absl::FailedPreconditionError(
            absl::StrCat(library, " lacks ", name, ", which every NCCL since 2.4 has"));
      }
    }
    Bind(h, "ncclCommInitRankConfig", rt->CommInitRankConfig);      // NCCL >= 2.14
    Bind(h, "ncclCommSplit", rt->CommSplit);                        // NCCL >= 2.18
    Bind(h, "ncclCommInitRankScalable", rt->CommInitRankScalable);  // NCCL >= 2.23
    Bind(h, "ncclGetLastError", rt->GetLastError);                  // NCCL >= 2.13
    get_version(&rt->version);
    return rt;
  });
}

absl::Status NcclRuntime::Check(int result, const char* what, ncclComm_t comm) const {
  if (result == kNcclSuccess) return absl::OkStatus();
  std::string last;
  if (GetLastError != nullptr) {
    const char* m = GetLastError(comm);
    if (m != nullptr && *m != '\0') last = absl::StrCat(": ", m);
  }
  return absl::InternalError(absl::StrCat(what, " failed: NCCL error ", result, " (",
                                          GetErrorString ? GetErrorString(result) : "?", ")",
                                          last));
}

absl::StatusOr<NcclUniqueId> NcclRuntime::MintId() const {
  NcclUniqueIdC id{};
  if (absl::Status s = Check(GetUniqueId(&id), "ncclGetUniqueId"); !s.ok()) return s;
  NcclUniqueId out;
  std::memcpy(out.data(), id.internal, out.size());
  return out;
}

absl::StatusOr<const CudaRuntime*> CudaRuntime::Load(const std::string& library) {
  return LoadOnce<CudaRuntime>(library, [&]() -> absl::StatusOr<std::unique_ptr<CudaRuntime>> {
    void* h = nullptr;
    std::string tried;
    for (const char* name : {library.c_str(), "libcudart.so.13", "libcudart.so.12",
                             "libcudart.so.11", "libcudart.so"}) {
      if (*name == '\0') continue;
      h = dlopen(name, RTLD_NOW | RTLD_GLOBAL);
      if (h != nullptr) break;
      absl::StrAppend(&tried, tried.empty() ? "" : ", ", name);
    }
    if (h == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("no CUDA runtime (tried ", tried, "); communicators need CUDA and a GPU"));
    }
    auto rt = std::make_unique<CudaRuntime>();
    int (*get_count)(int*) = nullptr;
    if (!Bind(h, "cudaGetDeviceCount", get_count) || !Bind(h, "cudaSetDevice", rt->SetDevice) ||
        !Bind(h, "cudaStreamCreate", rt->StreamCreate) ||
        !Bind(h, "cudaStreamSynchronize", rt->StreamSynchronize) ||
        !Bind(h, "cudaStreamQuery", rt->StreamQuery) ||
        !Bind(h, "cudaStreamDestroy", rt->StreamDestroy) || !Bind(h, "cudaMalloc", rt->Malloc) ||
        !Bind(h, "cudaFree", rt->Free) || !Bind(h, "cudaMemcpy", rt->Memcpy) ||
        !Bind(h, "cudaGetErrorString", rt->GetErrorString)) {
      return absl::FailedPreconditionError("the CUDA runtime lacks a function meshd needs");
    }
    const int err = get_count(&rt->device_count);
    if (err != 0 || rt->device_count == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "no CUDA device on this host (cudaGetDeviceCount: ",
          err != 0 ? rt->GetErrorString(err) : "0 devices", "); NCCL communicators need a GPU"));
    }
    return rt;
  });
}

absl::Status CudaRuntime::Check(int result, const char* what) const {
  if (result == 0) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, " failed: CUDA error ", result, " (",
                                          GetErrorString ? GetErrorString(result) : "?", ")"));
}

}  // namespace meshd::client_internal
