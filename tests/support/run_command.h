// RunCommand: runs a shell command line to completion and returns its exit code and output.
#ifndef MESHD_TESTS_SUPPORT_RUN_COMMAND_H_
#define MESHD_TESTS_SUPPORT_RUN_COMMAND_H_

#include <string>

namespace meshd::testing {

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout, with stderr appended when merged
};

// `stdin_text`, when not empty, is fed to the command's standard input.
CommandResult RunCommand(const std::string& command_line, bool merge_stderr = false,
                         const std::string& stdin_text = "");

}  // namespace meshd::testing

#endif  // MESHD_TESTS_SUPPORT_RUN_COMMAND_H_
