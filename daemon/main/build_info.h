// What build a binary is: meshd's version, the git revision it was built from ("-dirty" with
// uncommitted changes, "unknown" outside a checkout) and the CMake build type — for `--version`.
#ifndef MESHD_DAEMON_MAIN_BUILD_INFO_H_
#define MESHD_DAEMON_MAIN_BUILD_INFO_H_

#include <string>

namespace meshd {

// "meshd 0.1.0 (git 1a2b3c4d5e6f, Release)" for `program` "meshd".
std::string VersionLine(const std::string& program);

}  // namespace meshd

#endif  // MESHD_DAEMON_MAIN_BUILD_INFO_H_
