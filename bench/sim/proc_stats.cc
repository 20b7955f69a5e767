// ProcStats (see proc_stats.h).
#include "bench/sim/proc_stats.h"

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace meshd::bench {

double CpuClockSeconds(clockid_t clock) {
  timespec ts{};
  if (clock_gettime(clock, &ts) != 0) return -1;
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

absl::StatusOr<ProcStats> ReadProcStats(pid_t pid) {
  const std::string dir = absl::StrCat("/proc/", pid, "/");
  std::ifstream stat(dir + "stat");
  std::ifstream status(dir + "status");
  if (!stat || !status) return absl::NotFoundError(absl::StrCat("no process ", pid));
  std::stringstream buf;
  buf << stat.rdbuf();
  const std::string line = buf.str();
  // The command name may hold spaces: fields are counted after its closing parenthesis.
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return absl::InternalError(absl::StrCat("bad ", dir, "stat"));
  std::vector<std::string> fields = absl::StrSplit(line.substr(close + 2), ' ');
  // After the name: state is field 3 of stat(5), utime 14 and stime 15.
  uint64_t utime = 0, stime = 0;
  if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &utime) ||
      !absl::SimpleAtoi(fields[12], &stime)) {
    return absl::InternalError(absl::StrCat("bad ", dir, "stat"));
  }
  ProcStats s;
  // The process's CPU clock counts nanoseconds (and its ended threads); /proc's ticks (10 ms) are
  // the fallback, too coarse for a run of milliseconds.
  clockid_t clock;
  const double precise = clock_getcpuclockid(pid, &clock) == 0 ? CpuClockSeconds(clock) : -1;
  s.cpu_s = precise >= 0
                ? precise
                : static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
  std::string l;
  while (std::getline(status, l)) {
    absl::string_view v = l;
    if (absl::ConsumePrefix(&v, "Threads:")) {
      (void)absl::SimpleAtoi(absl::StripAsciiWhitespace(v), &s.threads);
      continue;
    }
    uint64_t kb = 0;
    const bool hwm = absl::ConsumePrefix(&v, "VmHWM:");
    const bool rss = !hwm && absl::ConsumePrefix(&v, "VmRSS:");
    if (!hwm && !rss) continue;
    v = absl::StripAsciiWhitespace(absl::StripSuffix(absl::StripAsciiWhitespace(v), "kB"));
    if (!absl::SimpleAtoi(v, &kb)) continue;
    (hwm ? s.peak_rss_mb : s.rss_mb) = static_cast<double>(kb) / 1024.0;
  }
  return s;
}

std::optional<ProcStats> ServerStats(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  absl::StatusOr<ProcStats> s = ReadProcStats(pid);
  if (!s.ok()) return std::nullopt;
  return *s;
}

}  // namespace meshd::bench
