// Subprocess: runs a real program (integration tests, the load simulator) — its stdout read line by line with
// deadlines, signals, and a bounded wait. Its stderr goes to the test's stderr (the daemon's logs).
#ifndef MESHD_TESTS_SUPPORT_SUBPROCESS_H_
#define MESHD_TESTS_SUPPORT_SUBPROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace meshd::process {

class Subprocess {
 public:
  // Starts argv[0] (a path) with its stderr inherited, or appended to `stderr_path` when given;
  // with `pipe_stdin`, its stdin is a pipe that WriteLine writes to (else it is inherited).
  static absl::StatusOr<std::unique_ptr<Subprocess>> Start(const std::vector<std::string>& argv,
                                                           const std::string& stderr_path = "",
                                                           bool pipe_stdin = false);
  ~Subprocess();  // SIGKILL and reap if still running

  // The next stdout line (without the newline). DEADLINE_EXCEEDED after `timeout`; OUT_OF_RANGE at
  // EOF.
  absl::StatusOr<std::string> ReadLine(absl::Duration timeout);
  // Reads lines until one starts with `prefix`; returns the rest of that line.
  absl::StatusOr<std::string> WaitForLine(absl::string_view prefix, absl::Duration timeout);
  // Writes `line` and a newline to its stdin (Start with pipe_stdin).
  absl::Status WriteLine(absl::string_view line);
  void Signal(int sig);
  // The exit code (or 128 + signal). DEADLINE_EXCEEDED if it has not exited by then.
  absl::StatusOr<int> Wait(absl::Duration timeout);
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  int stdin_fd_ = -1;
  std::string buffer_;
  bool exited_ = false;
  int exit_code_ = -1;
};

}  // namespace meshd::process

#endif  // MESHD_TESTS_SUPPORT_SUBPROCESS_H_
