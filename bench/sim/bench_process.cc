// See bench_process.h.
#include "bench/sim/bench_process.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <system_error>

namespace meshd::bench {

std::string DefaultMeshd() {
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? "meshd" : (self.parent_path() / "meshd").string();
}

void BindSymbolsNow(char** argv, const char* mark_name) {
  // The mark: "1" we set LD_BIND_NOW; "0" the user did.
  const char* mark = getenv(mark_name);
  if (mark == nullptr) {
    const bool set_by_user = getenv("LD_BIND_NOW") != nullptr;
    setenv(mark_name, set_by_user ? "0" : "1", 1);
    setenv("LD_BIND_NOW", "1", 1);
    std::error_code ec;  // the real path, so that the process keeps its name (not "exe")
    const std::string self = std::filesystem::read_symlink("/proc/self/exe", ec).string();
    if (!ec) execv(self.c_str(), argv);  // returns only on failure: go on with lazy binding
    mark = set_by_user ? "0" : "1";
  }
  if (std::string(mark) == "1") unsetenv("LD_BIND_NOW");
  unsetenv(mark_name);
}

}  // namespace meshd::bench
