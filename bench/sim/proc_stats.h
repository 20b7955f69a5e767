// ProcStats: a process's CPU time and peak resident memory, read from /proc (Linux).
#ifndef MESHD_BENCH_SIM_PROC_STATS_H_
#define MESHD_BENCH_SIM_PROC_STATS_H_

#include <sys/types.h>
#include <time.h>

#include <optional>

#include "absl/status/statusor.h"

namespace meshd::bench {

struct ProcStats {
  double cpu_s = 0;         // user + system
  double peak_rss_mb = 0;   // VmHWM
  double rss_mb = 0;        // VmRSS now
  int threads = 0;          // Threads now
};

// NOT_FOUND when the process is gone; INTERNAL when /proc cannot be parsed.
absl::StatusOr<ProcStats> ReadProcStats(pid_t pid);
// The same for a server under test whose pid may be unknown (0): nothing when it cannot be read.
std::optional<ProcStats> ServerStats(pid_t pid);

// Seconds on a CPU-time clock (CLOCK_PROCESS_CPUTIME_ID, or a process's from
// clock_getcpuclockid), to the nanosecond; -1 when the clock cannot be read.
double CpuClockSeconds(clockid_t clock);

}  // namespace meshd::bench

#endif  // MESHD_BENCH_SIM_PROC_STATS_H_
