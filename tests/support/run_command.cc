// RunCommand (see run_command.h).
#include "tests/support/run_command.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

namespace meshd::testing {

CommandResult RunCommand(const std::string& command_line, bool merge_stderr,
                         const std::string& stdin_text) {
  std::string cmd = command_line + (merge_stderr ? " 2>&1" : " 2>/dev/null");
  std::string input_path;
  if (!stdin_text.empty()) {
    char tmpl[] = "/tmp/meshd_stdin_XXXXXX";
    const int fd = mkstemp(tmpl);
    if (fd >= 0) close(fd);
    input_path = tmpl;
    std::ofstream(input_path) << stdin_text;
    cmd += " < '" + input_path + "'";
  }
  CommandResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (p != nullptr) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
    const int status = pclose(p);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  if (!input_path.empty()) unlink(input_path.c_str());
  return r;
}

}  // namespace meshd::testing
