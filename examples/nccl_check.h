// RequireNccl: the example worker's check, before it attaches, that NCCL can really be loaded
// where it runs (--require-nccl): a training image without libnccl.so.2 then fails at once with a
// message naming what is missing, instead of after the rendezvous (the group ids cannot be minted)
// or, worse, with communicators skipped and exit 0.
//
// Thread-safety: call from one thread (dlopen/dlerror).
#ifndef MESHD_EXAMPLES_NCCL_CHECK_H_
#define MESHD_EXAMPLES_NCCL_CHECK_H_

#include <string>

#include "absl/status/statusor.h"

namespace meshd_example {

// The library libmeshd_client loads: `flag` when given, else $MESHD_NCCL_LIBRARY, else
// "libnccl.so.2".
std::string NcclLibrary(const std::string& flag);

// Loads `library` and checks it is NCCL (ncclGetUniqueId, ncclGetVersion). Returns its version,
// e.g. "2.21.5". Errors: FAILED_PRECONDITION naming the library, the loader's reason and what to
// do (build the image FROM a CUDA/NCCL base, or set MESHD_NCCL_LIBRARY).
absl::StatusOr<std::string> RequireNccl(const std::string& library);

}  // namespace meshd_example

#endif  // MESHD_EXAMPLES_NCCL_CHECK_H_
