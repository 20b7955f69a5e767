// VersionLine (see build_info.h), from the header cmake/WriteBuildInfo.cmake writes.
#include "daemon/main/build_info.h"

#include "meshd_build_info.h"

namespace meshd {

std::string VersionLine(const std::string& program) {
  return program + " " + MESHD_BUILD_VERSION + " (git " + MESHD_BUILD_REVISION + ", " +
         MESHD_BUILD_TYPE + ")";
}

}  // namespace meshd
