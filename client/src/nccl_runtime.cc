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

}  // namespace

absl::StatusOr<const NcclRuntime*> NcclRuntime::Load(const std::string& library) {
  return LoadOnce<NcclRuntime>(library, [&]() -> absl::StatusOr<std::unique_ptr<NcclRuntime>> {
    void* h = dlopen(library.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (h == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot load NCCL (", library, "): ", dlerror(),
                       "; install NCCL or point MESHD_NCCL_LIBRARY at libnccl.so.2"));
    }
    auto rt = std::make_unique<NcclRuntime>();
    int (*get_version)(int*) = nullptr;
    if (!Bind(h, "ncclGetUniqueId", rt->GetUniqueId) ||
        !Bind(h, "ncclCommInitRank", rt->CommInitRank) ||
        !Bind(h, "ncclCommDestroy", rt->CommDestroy) || !Bind(h, "ncclAllReduce", rt->AllReduce) ||
        !Bind(h, "ncclGetErrorString", rt->GetErrorString) ||
        !Bind(h, "ncclGetVersion", get_version)) {
      return absl::FailedPreconditionError(absl::StrCat(library, " lacks a core NCCL function"));
    }
    Bind(h, "ncclCommInitRankScalable", rt->CommInitRankScalable);  // NCCL >= 2.23
    Bind(h, "ncclCommSplit", rt->CommSplit);                        // NCCL >= 2.18
    get_version(&rt->version);
    return rt;
  });
}

absl::Status NcclRuntime::Check(int result, const char* what) const {
  if (result == 0) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, " failed: NCCL error ", result, " (",
                                          GetErrorString ? GetErrorString(result) : "?", ")"));
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
