// RequireNccl (see nccl_check.h).
#include "examples/nccl_check.h"

#include <dlfcn.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace meshd_example {
namespace {

constexpr char kFix[] =
    "this image has no usable NCCL: build the training image FROM a CUDA/NCCL base you provide "
    "(deploy/k8s/overlays/example/train-image/Dockerfile, --build-arg BASE=...), or set "
    "MESHD_NCCL_LIBRARY to the path of libnccl.so.2";

}  // namespace

std::string NcclLibrary(const std::string& flag) {
  if (!flag.empty()) return flag;
  const char* env = std::getenv("MESHD_NCCL_LIBRARY");
  return env != nullptr && env[0] != '\0' ? env : "libnccl.so.2";
}

absl::StatusOr<std::string> RequireNccl(const std::string& library) {
  void* h = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) {
    const char* why = dlerror();
    return absl::FailedPreconditionError(absl::StrCat("NCCL is required (--require-nccl) but ",
                                                      library, " cannot be loaded (",
                                                      why != nullptr ? why : "unknown reason",
                                                      "): ", kFix));
  }
  auto get_version = reinterpret_cast<int (*)(int*)>(dlsym(h, "ncclGetVersion"));
  if (dlsym(h, "ncclGetUniqueId") == nullptr || get_version == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "NCCL is required (--require-nccl) but ", library,
        " is not NCCL (no ncclGetUniqueId or ncclGetVersion): ", kFix));
  }
  int v = 0;
  if (get_version(&v) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("NCCL is required (--require-nccl) but ncclGetVersion of ", library,
                     " failed: ", kFix));
  }
  // NCCL >= 2.9 encodes major*10000 + minor*100 + patch.
  return absl::StrCat(v / 10000, ".", (v / 100) % 100, ".", v % 100);
}

}  // namespace meshd_example
