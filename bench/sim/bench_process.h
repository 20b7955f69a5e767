// What the benchmarks that start a coordinator share: its flags (CoordinatorFlags, added to a
// CLI11 app by AddCoordinatorFlags), where the meshd binary is, and binding the process's symbols
// before the timed run.
//
// Thread-safety: call from main() before any thread starts.
#ifndef MESHD_BENCH_SIM_BENCH_PROCESS_H_
#define MESHD_BENCH_SIM_BENCH_PROCESS_H_

#include <sched.h>

#include <cstdint>
#include <string>

#include "CLI/CLI.hpp"

namespace meshd::bench {

// The coordinator a benchmark runs against, and the run's deadline.
struct CoordinatorFlags {
  uint32_t channels = 0;  // 0: DefaultChannels(nodes)
  std::string coordinator;
  int coordinator_pid = 0;
  std::string meshd;
  std::string coordinator_log = "/dev/null";
  std::string heartbeat_interval = "1s";
  std::string heartbeat_timeout = "5s";
  double timeout_s = 300;
  int coordinator_cpu = -2;  // -2: the first CPU this process may use; -1: anywhere
};

// --channels, --coordinator, --coordinator-pid, --meshd, --coordinator-log, --coordinator-cpu,
// --heartbeat-interval, --heartbeat-timeout, --timeout. `bench`: the program's name, for help.
inline void AddCoordinatorFlags(CLI::App& app, CoordinatorFlags& f, const std::string& bench) {
  app.add_option("--channels", f.channels,
                 "gRPC connections the simulated nodes share (default: one per 512 nodes, 4 to 32)")
      ->check(CLI::Range(1u, 4096u));
  app.add_option("--coordinator", f.coordinator,
                 "Use this running coordinator (HOST:PORT or unix:PATH) instead of starting one");
  app.add_option("--coordinator-pid", f.coordinator_pid,
                 "With --coordinator: its pid, for CPU and memory figures");
  app.add_option("--meshd", f.meshd, "The meshd binary to start (default: next to " + bench + ")");
  app.add_option("--coordinator-log", f.coordinator_log, "Where the started coordinator logs");
  app.add_option("--coordinator-cpu", f.coordinator_cpu,
                 "CPU the started coordinator runs on, the simulated nodes using every CPU "
                 "(default: the first this process may use; -1: any)")
      ->check(CLI::Range(-1, CPU_SETSIZE - 1));
  app.add_option("--heartbeat-interval", f.heartbeat_interval, "For the started coordinator");
  app.add_option("--heartbeat-timeout", f.heartbeat_timeout, "For the started coordinator");
  app.add_option("--timeout", f.timeout_s, "Deadline of the whole run, seconds")
      ->check(CLI::Range(1.0, 3600.0));
}

// The meshd next to this program, else "meshd" (from PATH).
std::string DefaultMeshd();

// The simulated nodes stand for agent processes that have run for a while: their symbols are
// bound. A fresh benchmark binds gRPC's symbols lazily — ~600 lookups across the ~80 shared
// libraries Debian splits gRPC, Abseil and protobuf into, in the first milliseconds of the timed
// run (perf: ld.so was a fifth of meshd_bench's CPU there) — so this runs the program once more
// with LD_BIND_NOW set, then takes it out of the environment again (unless the user had set it),
// so that the coordinator the program starts runs as shipped. `mark`: an environment variable
// name of the program's own, for the second run to know it is one.
void BindSymbolsNow(char** argv, const char* mark);

}  // namespace meshd::bench

#endif  // MESHD_BENCH_SIM_BENCH_PROCESS_H_
