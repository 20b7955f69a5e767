// flood_bench: liveness under hostile input (issue 21). Starts a real `meshd coordinator` (or uses
// --coordinator), runs a --nodes job and a small bystander job of simulated nodes (bench/sim,
// heartbeating at the interval the coordinator asks for), measures their heartbeats for
// --quiet seconds, then one client floods the coordinator for --flood seconds with bad requests on
// every method of meshd.v1.Coordinator — malformed, just under the 8 MiB receive limit (a huge
// field; millions of empty entries) and just over it — as fast as it is answered. Prints one JSON
// line: bad requests absorbed per second, nodes declared dead (must be 0), both jobs' generations
// before and after (must not change), the coordinator's RSS at the start, peak during the flood
// and end, heartbeat latency p50/p99 before and during the flood.
// Exit 0 when no node died and no job was disturbed; 1 with the reason on stderr otherwise.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/sim/bench_process.h"
#include "bench/sim/cluster_sim.h"
#include "bench/sim/flood_client.h"
#include "bench/sim/flood_requests.h"
#include "bench/sim/placement.h"
#include "bench/sim/proc_stats.h"
#include "bench/sim/workload.h"
#include "grpc/grpc.h"
#include "grpcpp/create_channel.h"
#include "meshd/v1/coordinator.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/support/subprocess.h"

namespace {

using namespace meshd::bench;  // NOLINT

struct Flags : CoordinatorFlags {
  uint32_t nodes = 1024;
  uint32_t gpus_per_node = 8;
  uint32_t bystander_nodes = 4;
  double quiet_s = 5;
  double flood_s = 20;
  int in_flight = 8;
  size_t max_receive_bytes = 8 << 20;  // the coordinator's (service::ServerOptions)
};

int Fail(const std::string& what) {
  std::cerr << "flood_bench: " << what << std::endl;
  return 1;
}

// Heartbeat latencies by phase: before the flood, during it.
class Latencies {
 public:
  enum Phase { kSetup, kQuiet, kFlood, kAfter };
  void SetPhase(Phase p) { phase_ = p; }
  void Add(double seconds) {
    const Phase p = phase_;
    if (p != kQuiet && p != kFlood) return;
    absl::MutexLock lock(&mu_);
    (p == kQuiet ? quiet_ : flood_).push_back(seconds);
  }
  // {count, p50 ms, p99 ms, max ms}
  nlohmann::ordered_json Figures(Phase p) {
    absl::MutexLock lock(&mu_);
    std::vector<double>& v = p == kQuiet ? quiet_ : flood_;
    std::sort(v.begin(), v.end());
    const auto at = [&](double q) {
      return v.empty() ? 0.0 : v[std::min(v.size() - 1, static_cast<size_t>(q * v.size()))] * 1e3;
    };
    return {{"heartbeats", v.size()},
            {"p50_ms", at(0.50)},
            {"p99_ms", at(0.99)},
            {"max_ms", v.empty() ? 0.0 : v.back() * 1e3}};
  }

 private:
  std::atomic<Phase> phase_{kSetup};
  absl::Mutex mu_;
  std::vector<double> quiet_ ABSL_GUARDED_BY(mu_), flood_ ABSL_GUARDED_BY(mu_);
};

// Holds both simulated jobs up (their while_running) until released.
class Hold {
 public:
  void Arrive() {
    absl::MutexLock lock(&mu_);
    ++running_;
    mu_.Await(absl::Condition(&released_));
  }
  bool AwaitRunning(int n, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    const auto all = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return running_ == n; };
    return mu_.AwaitWithTimeout(absl::Condition(&all), timeout);
  }
  void Release() {
    absl::MutexLock lock(&mu_);
    released_ = true;
  }

 private:
  absl::Mutex mu_;
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
};

// Waits `d` of real time: the benchmark's phases are measured in it.
void Spend(absl::Duration d) { absl::SleepFor(d); }

}  // namespace

int main(int argc, char** argv) {
  BindSymbolsNow(argv, "MESHD_FLOOD_BENCH_BOUND_NOW");
  grpc_init();
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  Flags f;
  CLI::App app{"flood_bench: bad requests flood a real meshd coordinator while jobs run"};
  app.add_option("--nodes", f.nodes, "Simulated nodes of the running job")
      ->check(CLI::Range(1u, 1u << 20));
  app.add_option("--gpus-per-node", f.gpus_per_node, "GPUs (ranks) per node")
      ->check(CLI::Range(1u, 1024u));
  app.add_option("--bystander-nodes", f.bystander_nodes, "Nodes of the bystander job")
      ->check(CLI::Range(1u, 1024u));
  app.add_option("--quiet", f.quiet_s, "Seconds of heartbeats measured before the flood");
  app.add_option("--flood", f.flood_s, "Seconds of flood")->check(CLI::Range(0.1, 3600.0));
  app.add_option("--in-flight", f.in_flight, "Bad requests the client keeps outstanding")
      ->check(CLI::Range(1, 1024));
  app.add_option("--max-receive-bytes", f.max_receive_bytes,
                 "The coordinator's receive limit (bodies are built just under and over it)");
  AddCoordinatorFlags(app, f, "flood_bench");
  CLI11_PARSE(app, argc, argv);

  absl::StatusOr<std::vector<FloodRequest>> requests =
      BuildFloodRequests("meshd.v1.Coordinator", f.max_receive_bytes);
  if (!requests.ok()) return Fail(requests.status().ToString());

  std::unique_ptr<meshd::process::Subprocess> coordinator;
  std::string address = f.coordinator;
  int pid = f.coordinator_pid;
  std::string coordinator_cpus = "unknown";
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
    if (!cpus.ok()) return Fail(cpus.status().ToString());
    coordinator_cpus = *cpus;
    absl::StatusOr<std::string> addr =
        coordinator->WaitForLine("meshd coordinator listening on ", absl::Seconds(30));
    if (!addr.ok())
      return Fail(absl::StrCat("the coordinator did not start: ", addr.status().ToString()));
    address = *addr;
    pid = coordinator->pid();
  }

  Latencies latencies;
  Hold hold;
  const auto job_options = [&](const std::string& job, uint32_t nodes, uint32_t first) {
    SimOptions o;
    o.address = address;
    o.nodes = nodes;
    o.gpus_per_node = f.gpus_per_node;
    o.channels = f.channels == 0 ? DefaultChannels(nodes) : f.channels;
    o.job = job;
    o.first_node = first;
    o.timeout = absl::Seconds(f.timeout_s);
    o.while_running = [&hold] { hold.Arrive(); };
    o.on_heartbeat = [&latencies](double s) { latencies.Add(s); };
    return o;
  };
  struct Job {
    SimOptions options;
    absl::StatusOr<Workload> workload = absl::UnknownError("not built");
    absl::StatusOr<SimResult> result = absl::UnknownError("not run");
    std::thread thread;
  };
  std::vector<Job> jobs(2);
  jobs[0].options = job_options("flood-job", f.nodes, 0);
  jobs[1].options = job_options("bystander", f.bystander_nodes, f.nodes);
  for (Job& j : jobs) {
    WorkloadOptions wo;
    wo.nodes = j.options.nodes;
    wo.gpus_per_node = f.gpus_per_node;
    j.workload = BuildWorkload(wo);
    if (!j.workload.ok()) return Fail(j.workload.status().ToString());
  }
  for (Job& j : jobs) {
    j.thread = std::thread([&j] { j.result = RunClusterSim(j.options, &*j.workload); });
  }
  const bool running = hold.AwaitRunning(2, absl::Seconds(f.timeout_s));

  auto stub = meshd::v1::Coordinator::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  const auto generation = [&](const std::string& job) -> int64_t {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    meshd::v1::GetJobRequest req;
    req.set_job(job);
    meshd::v1::JobStatus resp;
    return stub->GetJob(&ctx, req, &resp).ok() ? static_cast<int64_t>(resp.generation()) : -1;
  };
  const auto dead = [&]() -> int64_t {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    meshd::v1::CoordinatorStatus resp;
    return stub->GetStatus(&ctx, meshd::v1::GetStatusRequest(), &resp).ok()
               ? static_cast<int64_t>(resp.nodes_dead())
               : -1;
  };

  nlohmann::ordered_json j;
  std::optional<FloodResult> flood;
  std::optional<ProcStats> start_stats, end_stats;
  double peak_rss_mb = 0;
  double flood_cpu_s = 0;
  int64_t gen_before[2] = {-1, -1}, gen_after[2] = {-1, -1}, dead_after = -1;
  if (running) {
    latencies.SetPhase(Latencies::kQuiet);
    Spend(absl::Seconds(f.quiet_s));
    gen_before[0] = generation("flood-job");
    gen_before[1] = generation("bystander");
    start_stats = ServerStats(pid);
    latencies.SetPhase(Latencies::kFlood);
    FloodClient client(address, *requests, f.in_flight);
    client.Start();
    const absl::Time end = absl::Now() + absl::Seconds(f.flood_s);
    while (absl::Now() < end) {
      Spend(std::min(absl::Milliseconds(100), end - absl::Now()));
      if (std::optional<ProcStats> s = ServerStats(pid)) {
        peak_rss_mb = std::max(peak_rss_mb, s->rss_mb);
      }
    }
    client.Stop();
    flood = client.Result();
    latencies.SetPhase(Latencies::kAfter);
    end_stats = ServerStats(pid);
    if (start_stats && end_stats) flood_cpu_s = end_stats->cpu_s - start_stats->cpu_s;
    // One heartbeat interval more: a node the flood starved would be declared dead by now.
    Spend(absl::Seconds(2));
    gen_after[0] = generation("flood-job");
    gen_after[1] = generation("bystander");
    dead_after = dead();
  }
  hold.Release();
  for (Job& job : jobs) job.thread.join();
  if (coordinator) {
    coordinator->Signal(SIGTERM);
    (void)coordinator->Wait(absl::Seconds(30));
  }
  if (!running || !flood) {
    for (Job& job : jobs) {
      if (!job.result.ok())
        return Fail(absl::StrCat(job.options.job, ": ", job.result.status().ToString()));
    }
    return Fail("the jobs did not start within --timeout");
  }

  j["nodes"] = f.nodes;
  j["gpus_per_node"] = f.gpus_per_node;
  j["bystander_nodes"] = f.bystander_nodes;
  j["coordinator_cpus"] = coordinator_cpus;
  j["flood_s"] = flood->seconds;
  j["in_flight"] = f.in_flight;
  j["kinds"] = requests->size();
  j["bad_requests"] = flood->answered;
  j["bad_requests_per_s"] = flood->answered / flood->seconds;
  j["bad_mb_per_s"] = static_cast<double>(flood->bytes) / 1e6 / flood->seconds;
  j["answered_ok"] = flood->ok;
  j["codes"] = flood->codes;
  j["nodes_dead"] = dead_after;
  j["job_generation"] = {gen_before[0], gen_after[0]};
  j["bystander_generation"] = {gen_before[1], gen_after[1]};
  if (start_stats && end_stats) {
    j["coordinator_rss_mb_start"] = start_stats->rss_mb;
    j["coordinator_rss_mb_peak"] = peak_rss_mb;
    j["coordinator_rss_mb_end"] = end_stats->rss_mb;
    j["coordinator_cpu_s_flood"] = flood_cpu_s;
  }
  j["heartbeat_before"] = latencies.Figures(Latencies::kQuiet);
  j["heartbeat_flood"] = latencies.Figures(Latencies::kFlood);
  std::cout << j.dump() << std::endl;
  for (Job& job : jobs) {  // a heartbeat refused (its node declared dead) fails the job's run
    if (!job.result.ok()) {
      return Fail(absl::StrCat(job.options.job, ": ", job.result.status().ToString()));
    }
  }
  if (dead_after != 0) return Fail(absl::StrCat(dead_after, " nodes declared dead"));
  for (int i = 0; i < 2; ++i) {
    if (gen_before[i] < 1 || gen_after[i] != gen_before[i]) {
      return Fail(absl::StrCat(jobs[i].options.job, " disturbed: generation ", gen_before[i],
                               " -> ", gen_after[i]));
    }
  }
  return 0;
}
