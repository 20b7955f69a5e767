# MESHD_STATIC_DEPS: the daemon's binaries (meshd, meshctl, meshd_bench) carry gRPC, protobuf and
# Abseil inside them instead of loading ~80 shared libraries. Calls between those libraries then go
# straight to their targets instead of through the PLT, and every binary starts without the
# dynamic loader resolving thousands of symbols: in 20 alternating 64-node meshd_bench runs the
# coordinator's CPU fell 11.9 -> 8.4 ms and the cold start 12.8 -> 10.8 ms (README, Performance).
# A single meshd file also runs on hosts without Debian's gRPC packages (GPU nodes, slim images).
#
# Debian's imported targets name the shared libraries, so the swap happens at link time:
# cmake/link-static-deps.sh runs the link line CMake wrote with the archives in place of those
# libraries. Libraries stay shared (libmeshd_client, test programs), and so do OpenSSL, zlib,
# c-ares and RE2.

option(MESHD_STATIC_DEPS
       "Link gRPC, protobuf and Abseil statically into meshd, meshctl and meshd_bench" ON)

set(MESHD_STATIC_DEPS_ACTIVE OFF)
if(MESHD_STATIC_DEPS)
  # The libraries cmake/link-static-deps.sh swaps (its static_name); Debian's libgrpc++-dev,
  # libprotobuf-dev and libabsl-dev ship their archives. Abseil's are checked by one of them.
  set(missing "")
  foreach(lib grpc grpc++ grpc++_reflection gpr upb address_sorting protobuf absl_base)
    find_library(MESHD_STATIC_${lib} NAMES lib${lib}.a)
    mark_as_advanced(MESHD_STATIC_${lib})
    if(NOT MESHD_STATIC_${lib})
      list(APPEND missing lib${lib}.a)
    endif()
  endforeach()
  if(missing)
    message(STATUS "meshd: MESHD_STATIC_DEPS is on but ${missing} not found: the binaries link "
                   "gRPC, protobuf and Abseil as shared libraries")
  elseif(MESHD_SANITIZE OR MESHD_TSAN)
    message(STATUS "meshd: sanitizer build: the binaries link gRPC, protobuf and Abseil as shared "
                   "libraries")
  else()
    set(MESHD_STATIC_DEPS_ACTIVE ON)
    message(STATUS "meshd: meshd, meshctl and meshd_bench link gRPC, protobuf and Abseil statically")
  endif()
endif()

# meshd_link_deps_statically(<executable>...)
function(meshd_link_deps_statically)
  if(NOT MESHD_STATIC_DEPS_ACTIVE)
    return()
  endif()
  foreach(target IN LISTS ARGN)
    set_property(TARGET ${target} PROPERTY RULE_LAUNCH_LINK
                 "${PROJECT_SOURCE_DIR}/cmake/link-static-deps.sh")
    set_property(TARGET ${target} APPEND PROPERTY LINK_DEPENDS
                 "${PROJECT_SOURCE_DIR}/cmake/link-static-deps.sh")
  endforeach()
endfunction()
