// Whether NCCL can be loaded here: tests that need real ncclGetUniqueId ids skip without it (a plain
// Debian host has no NCCL; the development and CI machines have it under /usr/local/cuda).
#ifndef MESHD_TESTS_SUPPORT_NCCL_H_
#define MESHD_TESTS_SUPPORT_NCCL_H_

#include <dlfcn.h>

namespace meshd::testing {

inline bool NcclLoadable() {
  static const bool loadable = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL) != nullptr;
  return loadable;
}

#define MESHD_SKIP_WITHOUT_NCCL()                                                      \
  if (!::meshd::testing::NcclLoadable())                                               \
  GTEST_SKIP() << "NCCL (libnccl.so.2) is not installed on this host: no ids to mint"

}  // namespace meshd::testing

#endif  // MESHD_TESTS_SUPPORT_NCCL_H_
