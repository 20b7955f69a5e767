// grpc_floor_bench: what gRPC alone costs for meshd_bench's calls. Starts a bare gRPC server (a
// child process, on one CPU as meshd_bench places the coordinator) that holds and answers opaque
// payloads of meshd's message sizes, and drives it with --nodes simulated nodes making
// meshd_bench's three exchanges: register (answered at once), join (held until every node
// joined), resolve (held until every node asked). No meshd code is in the path, so its figures
// are the floor under meshd_bench's: set them side by side (bench/compare.sh --floor).
// --session carries each node's three exchanges on one bidi stream instead of three calls.
// Prints a table and, last, one JSON line; exit 0 on a complete run, 1 with the reason.
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <optional>
#include <string>

#include "CLI/CLI.hpp"
#include "grpc/grpc.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "bench/floor/floor_load.h"
#include "bench/floor/floor_server.h"
#include "bench/sim/placement.h"
#include "bench/sim/proc_stats.h"
#include "tests/support/subprocess.h"
#include "nlohmann/json.hpp"

namespace {

constexpr char kServing[] = "grpc_floor_bench serving on ";

int Fail(const std::string& what) {
  std::cerr << "grpc_floor_bench: " << what << std::endl;
  return 1;
}

// The child: serve until killed.
int Serve(uint32_t nodes) {
  meshd::bench::floor::ServerOptions o;
  o.nodes = nodes;
  absl::StatusOr<std::string> address = meshd::bench::floor::StartFloorServer(o);
  if (!address.ok()) return Fail(std::string(address.status().message()));
  std::cout << kServing << *address << std::endl;
  while (true) pause();
}

}  // namespace

int main(int argc, char** argv) {
  using namespace meshd::bench;  // NOLINT
  uint32_t nodes = 64;
  uint32_t channels = 0;
  bool session = false;
  bool serve = false;
  int server_cpu = -2;
  double timeout_s = 300;
  bool json = false;
  std::string server_address;
  int server_pid = 0;
  CLI::App app{
      "grpc_floor_bench: meshd_bench's calls on a bare gRPC server (the floor under meshd)"};
  app.add_option("--nodes", nodes, "Simulated nodes")->check(CLI::Range(1u, 1u << 20));
  app.add_option("--channels", channels,
                 "gRPC connections the simulated nodes share (default: as meshd_bench, one per "
                 "512 nodes, 4 to 32)")
      ->check(CLI::Range(0u, 4096u));
  app.add_flag("--session", session,
               "One bidi stream per node carrying its three exchanges, instead of three calls");
  app.add_option("--server-cpu", server_cpu,
                 "CPU the server runs on, the load using every CPU (default: the first this "
                 "process may use; -1: any)")
      ->check(CLI::Range(-1, 1023));
  app.add_option("--timeout", timeout_s, "Deadline of the whole run, seconds")
      ->check(CLI::Range(1.0, 3600.0));
  app.add_option("--server", server_address,
                 "Use this running server (grpc_floor_bench --serve --nodes N, e.g. under a "
                 "profiler) instead of starting one");
  app.add_option("--server-pid", server_pid, "With --server: its pid, for its CPU and memory");
  app.add_flag("--json", json, "Print only the JSON line");
  app.add_flag("--serve", serve, "(internal) be the server");
  CLI11_PARSE(app, argc, argv);
  // gRPC stays initialized until the process exits (one start-up for all the runs' channels).
  // The SIGSEGV in grpc_completion_queue_next this was once taken to avoid (1 run in ~6 at 16,384
  // nodes) was a channel released on the callback API's own thread, which freed the queue that
  // thread polls: the simulators now wait until every call is gone (bench/sim/calls_in_flight.h).
  grpc_init();
  if (serve) return Serve(nodes);

  std::unique_ptr<meshd::process::Subprocess> server;
  std::string address = server_address;
  std::string cpus = "unknown";  // a server this process did not start
  int pid = server_pid;
  if (address.empty()) {
    std::error_code ec;
    const std::string self = std::filesystem::read_symlink("/proc/self/exe", ec).string();
    if (ec) return Fail("cannot find this program's path in /proc/self/exe");
    absl::StatusOr<std::string> placed =
        StartOnCpu(server_cpu, "--server-cpu", [&]() -> absl::Status {
          auto p = meshd::process::Subprocess::Start(
              {self, "--serve", "--nodes", absl::StrCat(nodes)});
          if (!p.ok()) return p.status();
          server = *std::move(p);
          return absl::OkStatus();
        });
    if (!placed.ok()) return Fail(std::string(placed.status().message()));
    cpus = *placed;
    absl::StatusOr<std::string> bound = server->WaitForLine(kServing, absl::Seconds(30));
    if (!bound.ok()) {
      return Fail(absl::StrCat("the server did not start: ", bound.status().message()));
    }
    address = *bound;
    pid = server->pid();
  }

  floor::LoadOptions lo;
  lo.address = address;
  lo.nodes = nodes;
  lo.channels = channels == 0 ? DefaultChannels(nodes) : channels;
  lo.session = session;
  lo.timeout = absl::Seconds(timeout_s);
  const std::optional<ProcStats> before = ServerStats(pid);
  absl::StatusOr<floor::LoadResult> r = floor::RunFloorLoad(lo);
  const std::optional<ProcStats> after = ServerStats(pid);
  if (server) {
    server->Signal(SIGKILL);
    (void)server->Wait(absl::Seconds(10));
  }
  if (!r.ok()) return Fail(absl::StrCat("the run failed: ", r.status().ToString()));

  nlohmann::ordered_json j;
  j["nodes"] = nodes;
  j["mode"] = session ? "session" : "unary";
  j["channels"] = lo.channels;
  j["server_cpus"] = cpus;
  j["exchanges"] = r->exchanges;
  j["calls"] = r->streams;
  j["t_registered_s"] = r->t_registered_s;
  j["t_joined_s"] = r->t_joined_s;
  j["t_done_s"] = r->t_done_s;
  j["done_after_registered_s"] = r->t_done_s - r->t_registered_s;
  j["load_cpu_s"] = r->load_cpu_s;
  if (before && after) {
    const double cpu = after->cpu_s - before->cpu_s;
    j["server_cpu_s"] = cpu;
    j["server_cpu_us_per_exchange"] = cpu * 1e6 / static_cast<double>(r->exchanges);
    j["server_peak_rss_mb"] = after->peak_rss_mb;
  } else {
    j["server_cpu_s"] = nullptr;
    j["server_peak_rss_mb"] = nullptr;
  }
  if (!json) {
    auto line = [](absl::string_view what, const std::string& value) {
      std::cout << absl::StrFormat("  %-34s %s\n", what, value);
    };
    std::cout << absl::StrFormat("grpc_floor_bench: %u nodes, %s, bare gRPC server on CPUs %s\n",
                                 nodes, session ? "one stream per node" : "three calls per node",
                                 cpus);
    line("every node registered", absl::StrFormat("%.3f s", r->t_registered_s));
    line("every node joined", absl::StrFormat("%.3f s", r->t_joined_s));
    line("every node resolved", absl::StrFormat("%.3f s (%.3f s after the last registration)",
                                                r->t_done_s, r->t_done_s - r->t_registered_s));
    line("exchanges", absl::StrFormat("%u over %u connections", r->exchanges, lo.channels));
    if (before && after) {
      const double cpu = after->cpu_s - before->cpu_s;
      line("server CPU", absl::StrFormat("%.3f s (%.1f us per exchange)", cpu,
                                         cpu * 1e6 / static_cast<double>(r->exchanges)));
      line("server peak RSS", absl::StrFormat("%.1f MB", after->peak_rss_mb));
    }
    line("load CPU (all nodes)", absl::StrFormat("%.3f s", r->load_cpu_s));
  }
  std::cout << j.dump() << std::endl;
  return 0;
}
