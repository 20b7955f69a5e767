// store_bench: PyTorch's start-up through meshd's key-value store. Starts a real `meshd
// coordinator` (or uses --coordinator), registers --nodes simulated nodes of --gpus-per-node ranks
// and joins them to one job, then runs, for every rank, what torch 2.x sends its Store in
// init_process_group and while it makes a process group for every group of a pp x dp x tp mesh
// (bench/sim/store_workload.h), each simulated node sending the coordinator what its agent would
// relay (bench/sim/store_sim.h). Prints a table and, last, one JSON line:
//   {"system":"meshd","ranks":..,"groups":..,"store_s":..,"rank_calls":..,
//    "coordinator_calls":..,"coordinator_cpu_s":..,"join_s":.., ...}
// bench/store_compare.py runs it beside PyTorch's TCPStore on the same workload.
// Exit 0 on a complete, checked run; 1 with the reason on stderr otherwise.
#include <signal.h>
#include <unistd.h>

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
#include "bench/sim/placement.h"
#include "bench/sim/proc_stats.h"
#include "bench/sim/store_sim.h"
#include "bench/sim/store_workload.h"
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
  bool no_barriers = false;
  bool progress = false;
  bool json = false;
  bool keys = false;
  bool batch = true;  // as the agent does (StoreRelay)
};

int Fail(const std::string& what) {
  std::cerr << "store_bench: " << what << std::endl;
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace meshd::bench;  // NOLINT
  BindSymbolsNow(argv, "MESHD_STORE_BENCH_BOUND_NOW");
  grpc_init();  // kept until exit (see meshd_bench: a crash at exit otherwise)
  meshd::CalibrateMutexClock();
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  Flags f;
  CLI::App app{"store_bench: PyTorch's start-up through meshd's key-value store"};
  app.add_option("--nodes", f.nodes, "Simulated nodes")->check(CLI::Range(1u, 1u << 20));
  app.add_option("--gpus-per-node", f.gpus_per_node, "GPUs (ranks) per node")
      ->check(CLI::Range(1u, 1024u));
  app.add_option("--shape", f.shape,
                 "Mesh dims NAME=SIZE in order, one -1 for the rest "
                 "(default pp=4,dp=-1,tp=G; dp=-1,tp=G when nodes is not a multiple of 8)");
  app.add_flag("--no-barriers", f.no_barriers,
               "No store-based barriers: torch 2.x's default (TORCH_DIST_INIT_BARRIER unset), "
               "the NCCL id exchange alone");
  app.add_flag_callback(
      "--unbatched", [&f] { f.batch = false; },
      "Each store call of a node's ranks as its own coordinator call, identical waits still "
      "shared (what the agent sends a coordinator without KeyBatch)");
  AddCoordinatorFlags(app, f, "store_bench");
  app.add_flag("--progress", f.progress, "A progress line on stderr every second");
  app.add_flag("--json", f.json, "Print only the JSON line");
  app.add_flag("--keys", f.keys,
               "Print every group's name, size, leader and keys (tab-separated), and exit: what "
               "store_compare.py --check-keys compares with the TCPStore side's");
  CLI11_PARSE(app, argc, argv);

  StoreWorkloadOptions wo;
  wo.nodes = f.nodes;
  wo.gpus_per_node = f.gpus_per_node;
  wo.shape = f.shape;
  wo.barriers = !f.no_barriers;
  absl::StatusOr<StoreWorkload> workload = BuildStoreWorkload(wo);
  if (!workload.ok()) return Fail(std::string(workload.status().message()));
  if (f.keys) {
    for (const StoreGroup& g : workload->groups) {
      std::cout << g.name << '\t' << g.size << '\t' << g.leader << '\t' << g.barrier_key << '\t'
                << g.last_worker_key << '\t' << g.id_key << '\n';
    }
    return 0;
  }

  std::unique_ptr<meshd::process::Subprocess> coordinator;
  std::string address = f.coordinator;
  std::string coordinator_cpus = "unknown";
  int pid = f.coordinator_pid;
  if (address.empty()) {
    if (f.meshd.empty()) f.meshd = DefaultMeshd();
    absl::StatusOr<std::string> cpus =
        StartOnCpu(f.coordinator_cpu, "--coordinator-cpu", [&]() -> absl::Status {
          auto p = meshd::process::Subprocess::Start(
              {f.meshd, "coordinator", "--listen", "127.0.0.1:0", "--heartbeat-interval",
               f.heartbeat_interval, "--heartbeat-timeout", f.heartbeat_timeout},
              f.coordinator_log);
          if (!p.ok()) return p.status();
          coordinator = *std::move(p);
          return absl::OkStatus();
        });
    if (!cpus.ok()) return Fail(std::string(cpus.status().message()));
    coordinator_cpus = *cpus;
    absl::StatusOr<std::string> addr =
        coordinator->WaitForLine("meshd coordinator listening on ", absl::Seconds(30));
    if (!addr.ok()) {
      return Fail(absl::StrCat("the coordinator (", f.meshd, ") did not start: ",
                               addr.status().message(), "; see ", f.coordinator_log));
    }
    address = *addr;
    pid = coordinator->pid();
  }

  StoreSimOptions so;
  so.address = address;
  so.channels = f.channels == 0 ? DefaultChannels(f.nodes) : f.channels;
  so.timeout = absl::Seconds(f.timeout_s);
  so.progress = f.progress;
  so.batch = f.batch;
  std::optional<ProcStats> before;
  so.on_store_start = [&] { before = ServerStats(pid); };
  absl::StatusOr<StoreSimResult> r = RunStoreSim(so, *workload);
  const std::optional<ProcStats> after = ServerStats(pid);
  if (coordinator) {
    coordinator->Signal(SIGTERM);
    (void)coordinator->Wait(absl::Seconds(30));
  }
  if (!r.ok()) return Fail(absl::StrCat("the run failed: ", r.status().ToString()));

  std::vector<std::string> dims;
  for (const auto& [name, size] : workload->dims) dims.push_back(absl::StrCat(name, "=", size));
  nlohmann::ordered_json j;
  j["system"] = f.batch ? "meshd" : "meshd-unbatched";
  j["nodes"] = f.nodes;
  j["gpus_per_node"] = f.gpus_per_node;
  j["ranks"] = workload->world_size;
  j["shape"] = absl::StrJoin(dims, ",");
  j["groups"] = workload->groups.size();
  j["barriers"] = workload->barriers;
  j["store_s"] = r->store_s;
  j["rank_calls"] = r->rank_calls();
  j["rank_adds"] = r->rank_adds;
  j["rank_sets"] = r->rank_sets;
  j["rank_waits"] = r->rank_waits;
  j["rank_gets"] = r->rank_gets;
  j["coordinator_calls"] = r->coordinator_calls();
  j["key_batches"] = r->key_batches;
  j["key_adds"] = r->key_adds;
  j["key_sets"] = r->key_sets;
  j["key_waits"] = r->key_waits;
  j["key_gets"] = r->key_gets;
  j["join_s"] = r->t_joined_s;
  j["registered_s"] = r->t_registered_s;
  j["heartbeats"] = r->heartbeats;
  j["channels"] = so.channels;
  j["coordinator_cpus"] = coordinator_cpus;
  j["sim_cpu_s"] = r->sim_cpu_s;
  if (before && after) {
    const double cpu = after->cpu_s - before->cpu_s;
    j["coordinator_cpu_s"] = cpu;
    j["coordinator_cpu_us_per_call"] = cpu * 1e6 / static_cast<double>(r->coordinator_calls());
    j["coordinator_peak_rss_mb"] = after->peak_rss_mb;
  } else {
    j["coordinator_cpu_s"] = nullptr;
    j["coordinator_peak_rss_mb"] = nullptr;
  }
  if (!f.json) {
    auto line = [](absl::string_view what, const std::string& value) {
      std::cout << absl::StrFormat("  %-38s %s\n", what, value);
    };
    std::cout << absl::StrFormat(
        "store_bench: %u nodes x %u GPUs = %u ranks, mesh %s, %u groups, barriers %s%s\n", f.nodes,
        f.gpus_per_node, workload->world_size, j["shape"].get<std::string>(),
        workload->groups.size(), workload->barriers ? "on" : "off",
        f.batch ? "" : ", every call on its own (--unbatched)");
    line("registered / joined (not in the store time)",
         absl::StrFormat("%.3f s / %.3f s", r->t_registered_s, r->t_joined_s));
    line("store workload (first call to last rank)", absl::StrFormat("%.3f s", r->store_s));
    line("rank store calls (add/set/wait/get)",
         absl::StrFormat("%u (%u / %u / %u / %u)", r->rank_calls(), r->rank_adds, r->rank_sets,
                         r->rank_waits, r->rank_gets));
    if (f.batch) {
      line("coordinator calls (KeyBatch)",
           absl::StrFormat("%u over %u connections", r->coordinator_calls(), so.channels));
    } else {
      line("coordinator calls (add/set/wait/get)",
           absl::StrFormat("%u (%u / %u / %u / %u) over %u connections", r->coordinator_calls(),
                           r->key_adds, r->key_sets, r->key_waits, r->key_gets, so.channels));
    }
    line("heartbeats (whole run)", absl::StrCat(r->heartbeats));
    line("coordinator on CPUs", coordinator_cpus);
    if (before && after) {
      const double cpu = after->cpu_s - before->cpu_s;
      line("coordinator CPU (store workload)",
           absl::StrFormat("%.3f s (%.1f us per coordinator call)", cpu,
                           cpu * 1e6 / static_cast<double>(r->coordinator_calls())));
      line("coordinator peak RSS", absl::StrFormat("%.1f MB", after->peak_rss_mb));
    }
    line("simulator CPU (store workload)", absl::StrFormat("%.3f s", r->sim_cpu_s));
  }
  std::cout << j.dump() << std::endl;
  return 0;
}
