# Third-party dependencies, all from Debian 12 packages (scripts/packages-build.txt).
# Recipes follow what works with Debian's packaging: protobuf has no CMake config (module mode),
# gRPC's config needs protobuf-compiler-grpc, NCCL/CUDA are optional and loaded with dlopen at run time.

find_package(Threads REQUIRED)
find_package(absl CONFIG REQUIRED)
find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)
find_package(spdlog CONFIG REQUIRED)
find_package(nlohmann_json CONFIG REQUIRED)
find_package(CLI11 CONFIG REQUIRED)
find_package(prometheus-cpp CONFIG REQUIRED)
# OpenSSL (libssl-dev): the metrics port's TLS (daemon/metrics/https_endpoint.cc) and the tests'
# TLS client; the same libssl3 gRPC uses.
find_package(OpenSSL REQUIRED)
if(MESHD_BUILD_TESTS)
  find_package(GTest CONFIG REQUIRED)
  include(GoogleTest)
endif()
if(MESHD_BUILD_BENCH)
  find_package(benchmark CONFIG REQUIRED)
endif()

# NCCL: only its header is used at build time (for the function signatures); the library itself is
# dlopen'ed at run time, so hosts without CUDA still build and run meshd.
find_path(MESHD_NCCL_INCLUDE_DIR nccl.h HINTS /usr/local/cuda/include)
if(MESHD_NCCL_INCLUDE_DIR)
  message(STATUS "meshd: nccl.h found in ${MESHD_NCCL_INCLUDE_DIR}")
else()
  message(STATUS "meshd: nccl.h not found; NCCL support is loaded by name at run time only")
endif()

# jemalloc for the daemon: gRPC and protobuf allocate per call, and with many threads glibc's
# malloc was a fifth of the coordinator's CPU in meshd_bench. Not with the sanitizers (they bring
# their own allocator).
set(MESHD_MALLOC_LIBRARY "")
if(MESHD_JEMALLOC AND NOT MESHD_SANITIZE AND NOT MESHD_TSAN)
  find_library(MESHD_JEMALLOC_PATH NAMES jemalloc)
  if(MESHD_JEMALLOC_PATH)
    set(MESHD_MALLOC_LIBRARY ${MESHD_JEMALLOC_PATH})
  else()
    message(STATUS "jemalloc not found: meshd uses glibc malloc (scripts/install-deps.sh installs it)")
  endif()
endif()
