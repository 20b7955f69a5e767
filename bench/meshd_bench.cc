// meshd_bench: the scale benchmark. Starts a real `meshd coordinator` (or uses --coordinator) and
// simulates --nodes nodes of --gpus-per-node GPUs through the real gRPC protocol (register,
// heartbeat, join one job, resolve every group id of a pp x dp x cp x tp mesh), then prints a
// table and, last, one JSON line:
//   {"nodes":..,"ranks":..,"t_registered_s":..,"t_ranks_s":..,"t_ids_s":..,"rpcs":..,
//    "coordinator_cpu_s":..,"coordinator_peak_rss_mb":.., ...}
// Exit 0 on a complete, checked run; 1 with the reason on stderr otherwise.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "bench/sim/cluster_sim.h"
#include "bench/sim/placement.h"
#include "bench/sim/proc_stats.h"
#include "bench/sim/restart_sim.h"
#include "bench/sim/workload.h"
#include "tests/support/subprocess.h"
#include "common/time/mutex_clock.h"
#include "grpc/grpc.h"
#include "bench/sim/bench_process.h"
#include "nlohmann/json.hpp"

namespace {

struct Flags : meshd::bench::CoordinatorFlags {
  uint32_t nodes = 64;
  uint32_t gpus_per_node = 8;
  std::string shape;
  bool no_world_group = false;
  bool register_first = false;
  bool restart = false;
  uint32_t ranks_per_id = 0;
  int64_t withhold_node = -1;
  int partial_after_ms = 1000;
  bool json = false;
};

int Fail(const std::string& what) {
  std::cerr << "meshd_bench: " << what << std::endl;
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace meshd::bench;  // NOLINT
  BindSymbolsNow(argv, "MESHD_BENCH_BOUND_NOW");
  // gRPC stays initialized until the process exits (one start-up for all the runs' channels).
  // The SIGSEGV in grpc_completion_queue_next this was once taken to avoid (1 run in ~6 at 16,384
  // nodes) was a channel released on the callback API's own thread, which freed the queue that
  // thread polls: the simulators now wait until every call is gone (bench/sim/calls_in_flight.h).
  grpc_init();
  meshd::CalibrateMutexClock();  // before the clock, as an agent running for a while has
  // As in the daemon: Abseil's lock-order graph (on in Debian's build) costs the simulated
  // agents ~6% of their CPU at 16,384 nodes, CPU the coordinator shares on a small machine.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  Flags f;
  CLI::App app{"meshd_bench: a simulated cluster against a real meshd coordinator"};
  app.add_option("--nodes", f.nodes, "Simulated nodes")->check(CLI::Range(1u, 1u << 20));
  app.add_option("--gpus-per-node", f.gpus_per_node, "GPUs (ranks) per node")
      ->check(CLI::Range(1u, 1024u));
  app.add_option("--shape", f.shape,
                 "Mesh dims NAME=SIZE in order, one -1 for the rest "
                 "(default pp=4,dp=-1,cp=2,tp=G; dp=-1,tp=G when nodes is not a multiple of 8)");
  app.add_flag("--no-world-group", f.no_world_group,
               "Do not resolve the world group (libmeshd_client resolves it)");
  app.add_option("--ranks-per-id", f.ranks_per_id,
                 "Members per NCCL id as ClientOptions::ranks_per_id (0: one id per group; "
                 "128 simulates ncclCommInitRankScalable as PyTorch sets it up)");
  AddCoordinatorFlags(app, f, "meshd_bench");
  app.add_flag("--register-first", f.register_first,
               "Register every node, then start the job (a job on a running cluster: its figures "
               "job_ranks_s/job_ids_s exclude connecting and registering)");
  app.add_flag("--restart", f.restart,
               "After the run, kill the coordinator (SIGKILL) and start a new one on its address: "
               "every node registers again reporting the running generation; restart_recovered_s "
               "is how long until the job runs again");
  app.add_option("--withhold-node", f.withhold_node,
                 "A late node: the node given this rank sends its ResolveGroups only once every "
                 "other node holds every id it does not mint (others_ids_s)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  app.add_option("--partial-after-ms", f.partial_after_ms,
                 "ResolveGroupsRequest.partial_after_ms, as agents send it; a node answered in "
                 "part asks again for the rest. 0: every request answered whole")
      ->check(CLI::Range(0, 600000));
  app.add_flag("--json", f.json, "Print only the JSON line");
  CLI11_PARSE(app, argc, argv);

  if (f.withhold_node >= static_cast<int64_t>(f.nodes)) {
    return Fail(absl::StrCat("--withhold-node ", f.withhold_node, " is not a node rank below --nodes ",
                             f.nodes));
  }
  WorkloadOptions wo;
  wo.nodes = f.nodes;
  wo.gpus_per_node = f.gpus_per_node;
  wo.shape = f.shape;
  wo.world_group = !f.no_world_group;
  wo.ranks_per_id = f.ranks_per_id;
  absl::StatusOr<Workload> workload = BuildWorkload(wo);
  if (!workload.ok()) return Fail(std::string(workload.status().message()));

  std::unique_ptr<meshd::process::Subprocess> coordinator;
  std::string address = f.coordinator;
  std::string coordinator_cpus = "unknown";  // a coordinator this process did not start
  int pid = f.coordinator_pid;
  // Starts a coordinator listening on `listen` (on --coordinator-cpu) and waits until it serves.
  const auto start_coordinator = [&](const std::string& listen) -> absl::Status {
    absl::StatusOr<std::string> cpus =
        StartOnCpu(f.coordinator_cpu, "--coordinator-cpu", [&]() -> absl::Status {
          auto p = meshd::process::Subprocess::Start(
              {f.meshd, "coordinator", "--listen", listen, "--heartbeat-interval",
               f.heartbeat_interval, "--heartbeat-timeout", f.heartbeat_timeout},
              f.coordinator_log);
          if (!p.ok()) return p.status();
          coordinator = *std::move(p);
          return absl::OkStatus();
        });
    if (!cpus.ok()) return cpus.status();
    coordinator_cpus = *cpus;
    absl::StatusOr<std::string> addr =
        coordinator->WaitForLine("meshd coordinator listening on ", absl::Seconds(30));
    if (!addr.ok()) {
      return absl::UnavailableError(absl::StrCat("the coordinator (", f.meshd,
                                                 ") did not start: ", addr.status().message(),
                                                 "; see ", f.coordinator_log));
    }
    address = *addr;
    pid = coordinator->pid();
    return absl::OkStatus();
  };
  if (address.empty()) {
    if (f.meshd.empty()) f.meshd = DefaultMeshd();
    if (absl::Status s = start_coordinator("127.0.0.1:0"); !s.ok()) {
      return Fail(std::string(s.message()));
    }
  } else if (f.restart) {
    return Fail("--restart restarts the coordinator meshd_bench starts: drop --coordinator");
  }
  const std::optional<ProcStats> before = ServerStats(pid);

  SimOptions so;
  so.address = address;
  so.nodes = f.nodes;
  so.gpus_per_node = f.gpus_per_node;
  so.channels = f.channels == 0 ? DefaultChannels(f.nodes) : f.channels;
  so.timeout = absl::Seconds(f.timeout_s);
  so.register_first = f.register_first;
  so.withhold_node_rank = f.withhold_node;
  so.partial_after = absl::Milliseconds(f.partial_after_ms);
  absl::StatusOr<SimResult> r = RunClusterSim(so, &*workload);
  const std::optional<ProcStats> after = ServerStats(pid);
  std::optional<RestartResult> restarted;
  std::optional<ProcStats> restart_before, restart_after;
  if (r.ok() && f.restart) {
    coordinator->Signal(SIGKILL);
    (void)coordinator->Wait(absl::Seconds(30));
    if (absl::Status s = start_coordinator(address); !s.ok()) return Fail(std::string(s.message()));
    restart_before = ServerStats(pid);
    RestartOptions ro;
    ro.address = address;
    ro.nodes = f.nodes;
    ro.gpus_per_node = f.gpus_per_node;
    ro.channels = so.channels;
    ro.job = so.job;
    ro.generation = r->generation;
    ro.node_ranks = r->node_ranks;
    ro.timeout = so.timeout;
    absl::StatusOr<RestartResult> rr = RunRestartSim(ro);
    restart_after = ServerStats(pid);
    if (!rr.ok()) return Fail(absl::StrCat("the restart failed: ", rr.status().ToString()));
    restarted = *rr;
  }
  if (coordinator) {
    coordinator->Signal(SIGTERM);
    (void)coordinator->Wait(absl::Seconds(30));
  }
  if (!r.ok()) return Fail(absl::StrCat("the run failed: ", r.status().ToString()));

  std::vector<std::string> dims;
  for (const auto& [name, size] : workload->dims) dims.push_back(absl::StrCat(name, "=", size));
  const uint64_t ranks = workload->world_size;
  nlohmann::ordered_json j;
  j["nodes"] = f.nodes;
  j["gpus_per_node"] = f.gpus_per_node;
  j["ranks"] = ranks;
  j["shape"] = absl::StrJoin(dims, ",");
  j["groups"] = workload->groups;
  j["world_group"] = !f.no_world_group;
  j["ranks_per_id"] = f.ranks_per_id;
  j["channels"] = so.channels;
  j["coordinator_cpus"] = coordinator_cpus;
  j["ids"] = workload->ids;
  j["t_first_registered_s"] = r->t_first_registered_s;
  j["t_registered_s"] = r->t_registered_s;
  j["t_ranks_s"] = r->t_ranks_s;
  j["t_ids_s"] = r->t_ids_s;
  j["ids_after_registered_s"] = r->t_ids_s - r->t_registered_s;
  j["register_first"] = f.register_first;
  j["t_job_start_s"] = r->t_job_start_s;
  j["job_ranks_s"] = r->t_ranks_s - r->t_job_start_s;
  j["job_ids_s"] = r->t_ids_s - r->t_job_start_s;
  j["rpcs"] = r->rpcs;
  j["heartbeats"] = r->heartbeats;
  j["partial_after_ms"] = f.partial_after_ms;
  j["partial_answers"] = r->partial_answers;
  j["sim_cpu_s"] = r->sim_cpu_s;
  if (f.withhold_node >= 0) {
    j["withheld_node_rank"] = f.withhold_node;
    j["nodes_waiting_for_withheld"] = r->nodes_waiting_for_late;
    // null when every other node waits for the withheld one
    j["others_ids_s"] = r->t_others_ids_s < 0 ? nlohmann::json() : nlohmann::json(r->t_others_ids_s);
    j["others_ids_after_registered_s"] =
        r->t_others_ids_s < 0 ? nlohmann::json()
                              : nlohmann::json(r->t_others_ids_s - r->t_registered_s);
  }
  if (before && after) {
    const double cpu = after->cpu_s - before->cpu_s;
    j["coordinator_cpu_s"] = cpu;
    j["coordinator_peak_rss_mb"] = after->peak_rss_mb;
    j["coordinator_cpu_us_per_rank"] = cpu * 1e6 / static_cast<double>(ranks);
    j["coordinator_cpu_us_per_node"] = cpu * 1e6 / f.nodes;
  } else {
    j["coordinator_cpu_s"] = nullptr;
    j["coordinator_peak_rss_mb"] = nullptr;
  }
  if (restarted) {
    j["restart_recovered_s"] = restarted->t_recovered_s;
    if (restart_before && restart_after) {
      j["restart_coordinator_cpu_s"] = restart_after->cpu_s - restart_before->cpu_s;
    }
  }
  if (!f.json) {
    auto line = [](absl::string_view what, const std::string& value) {
      std::cout << absl::StrFormat("  %-34s %s\n", what, value);
    };
    std::cout << absl::StrFormat("meshd_bench: %u nodes x %u GPUs = %u ranks, mesh %s, %u groups\n",
                                 f.nodes, f.gpus_per_node, ranks, j["shape"].get<std::string>(),
                                 workload->groups);
    line("every node registered", absl::StrFormat("%.3f s", r->t_registered_s));
    line("every rank knows its rank", absl::StrFormat("%.3f s", r->t_ranks_s));
    line("every rank holds every group id",
         absl::StrFormat("%.3f s (%.3f s after the last registration)", r->t_ids_s,
                         r->t_ids_s - r->t_registered_s));
    if (f.withhold_node >= 0) {
      line(absl::StrFormat("node %d withheld: the others' ids (%u ask for its groups)",
                           f.withhold_node, r->nodes_waiting_for_late),
           absl::StrFormat("%.3f s (%.3f s after the last registration)", r->t_others_ids_s,
                           r->t_others_ids_s - r->t_registered_s));
    }
    if (f.register_first) {
      line("job started (all registered)", absl::StrFormat("%.3f s", r->t_job_start_s));
      line("from the job's start: ranks / ids",
           absl::StrFormat("%.3f s / %.3f s", r->t_ranks_s - r->t_job_start_s,
                           r->t_ids_s - r->t_job_start_s));
    }
    line("RPCs sent", absl::StrFormat("%u (%u heartbeats) over %u connections", r->rpcs,
                                      r->heartbeats, so.channels));
    line("answered in part, then asked again",
         f.partial_after_ms == 0
             ? std::string("never (--partial-after-ms 0)")
             : absl::StrFormat("%u (partial_after_ms %d)", r->partial_answers, f.partial_after_ms));
    line("coordinator on CPUs", coordinator_cpus);
    if (before && after) {
      const double cpu = after->cpu_s - before->cpu_s;
      line("coordinator CPU",
           absl::StrFormat("%.3f s (%.2f us per rank, %.1f us per node)", cpu,
                           cpu * 1e6 / static_cast<double>(ranks), cpu * 1e6 / f.nodes));
      line("coordinator peak RSS", absl::StrFormat("%.1f MB", after->peak_rss_mb));
    }
    line("simulator CPU (all nodes)", absl::StrFormat("%.3f s", r->sim_cpu_s));
    if (restarted) {
      line("coordinator restarted: job back",
           absl::StrFormat("%.3f s after the new one served", restarted->t_recovered_s));
    }
  }
  std::cout << j.dump() << std::endl;
  return 0;
}
