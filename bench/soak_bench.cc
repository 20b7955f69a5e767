// soak_bench: the coordinator over a long life, compressed (issue 22). Starts a real
// `meshd coordinator` with short retentions, warms it up (one small wave of every kind, then
// waits until it holds nothing), takes its RSS and metric series, runs the churn of
// bench/sim/soak_sim.h (by default 1,000 jobs created and ended and 10,000 node incarnations
// registered and let go), waits — polling, bounded — until the coordinator holds nothing again
// (GetStatus, ListNodes, ListJobs), then waits up to --settle for its RSS to come back within 10%
// of the start, and prints a table and, last, one JSON line:
//   {"jobs":..,"incarnations":..,"rss_start_mb":..,"rss_peak_mb":..,"rss_end_mb":..,
//    "rss_end_ratio":..,"series_start":..,"series_end":..,"per_thing_series_end":.., ...}
// Figures are printed, never asserted. Exit 0 on a complete run (the coordinator emptied);
// 1 with the reason on stderr otherwise.
#include <signal.h>

#include <algorithm>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "bench/sim/bench_process.h"
#include "bench/sim/coordinator_holds.h"
#include "bench/sim/placement.h"
#include "bench/sim/proc_stats.h"
#include "bench/sim/soak_sim.h"
#include "grpc/grpc.h"
#include "nlohmann/json.hpp"
#include "tests/support/subprocess.h"
#include "tests/support/wait_for.h"

namespace {

struct Flags {
  uint32_t jobs = 1000;
  uint32_t incarnations = 10000;
  uint32_t jobs_per_wave = 10;
  uint32_t name_pool = 500;
  uint32_t channels = 4;
  std::string meshd;
  std::string coordinator_log = "/dev/null";
  std::string heartbeat_interval = "250ms";
  std::string heartbeat_timeout = "1s";
  std::string retention = "1s";
  double drain_s = 120;
  double settle_s = 30;
  bool json = false;
};

int Fail(const std::string& what) {
  std::cerr << "soak_bench: " << what << std::endl;
  return 1;
}

// Series names in `a` and not in `b` (at most 8 shown).
std::vector<std::string> Missing(const std::map<std::string, double>& a,
                                 const std::map<std::string, double>& b) {
  std::vector<std::string> out;
  for (const auto& [series, value] : a) {
    if (!b.contains(series)) out.push_back(series);
  }
  return out;
}

std::string Shown(const std::vector<std::string>& names) {
  if (names.size() <= 8) return absl::StrJoin(names, " ");
  return absl::StrCat(absl::StrJoin(names.begin(), names.begin() + 8, " "), " and ",
                      names.size() - 8, " more");
}

}  // namespace

int main(int argc, char** argv) {
  using namespace meshd::bench;  // NOLINT
  BindSymbolsNow(argv, "MESHD_SOAK_BENCH_BOUND_NOW");
  grpc_init();  // for the whole process: see meshd_bench.cc
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  Flags f;
  CLI::App app{"soak_bench: jobs and node incarnations churned through one real meshd coordinator"};
  app.add_option("--jobs", f.jobs, "Jobs created and ended")->check(CLI::Range(1u, 1u << 20));
  app.add_option("--incarnations", f.incarnations,
                 "Node incarnations registered and let go (a multiple of --jobs: each job has "
                 "incarnations / jobs nodes)")
      ->check(CLI::Range(1u, 1u << 24));
  app.add_option("--jobs-per-wave", f.jobs_per_wave, "Jobs run side by side in one wave")
      ->check(CLI::Range(1u, 1000u));
  app.add_option("--name-pool", f.name_pool,
                 "Node names the reused half of the registrations goes round")
      ->check(CLI::Range(1u, 1u << 20));
  app.add_option("--channels", f.channels, "gRPC connections the simulated agents share")
      ->check(CLI::Range(1u, 64u));
  app.add_option("--meshd", f.meshd, "The meshd binary to start (default: next to soak_bench)");
  app.add_option("--coordinator-log", f.coordinator_log, "Where the coordinator logs");
  app.add_option("--heartbeat-interval", f.heartbeat_interval, "For the coordinator");
  app.add_option("--heartbeat-timeout", f.heartbeat_timeout,
                 "For the coordinator: how soon a silent agent's node is dead");
  app.add_option("--retention", f.retention,
                 "The coordinator's --node-retention and --job-retention");
  app.add_option("--drain-timeout", f.drain_s,
                 "Seconds the coordinator may take to hold nothing after the churn")
      ->check(CLI::Range(1.0, 3600.0));
  app.add_option("--settle", f.settle_s,
                 "Seconds to wait, once it holds nothing, for its RSS to come back within 10% of "
                 "the start (the allocator returns freed memory over time)")
      ->check(CLI::Range(0.0, 3600.0));
  app.add_flag("--json", f.json, "Print only the JSON line");
  CLI11_PARSE(app, argc, argv);
  if (f.incarnations % f.jobs != 0) return Fail("--incarnations must be a multiple of --jobs");
  if (f.meshd.empty()) f.meshd = DefaultMeshd();

  auto started = meshd::process::Subprocess::Start(
      {f.meshd, "coordinator", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
       "--heartbeat-interval", f.heartbeat_interval, "--heartbeat-timeout", f.heartbeat_timeout,
       "--node-retention", f.retention, "--job-retention", f.retention},
      f.coordinator_log);
  if (!started.ok()) return Fail(started.status().ToString());
  std::unique_ptr<meshd::process::Subprocess> coordinator = *std::move(started);
  absl::StatusOr<std::string> metrics_url =
      coordinator->WaitForLine("meshd metrics on ", absl::Seconds(30));
  absl::StatusOr<std::string> address =
      metrics_url.ok() ? coordinator->WaitForLine("meshd coordinator listening on ",
                                                  absl::Seconds(30))
                       : metrics_url.status();
  if (!address.ok()) {
    return Fail(absl::StrCat("the coordinator (", f.meshd, ") did not start: ",
                             address.status().ToString(), "; see ", f.coordinator_log));
  }
  const pid_t pid = coordinator->pid();
  auto stub = meshd::v1::Coordinator::NewStub(SimChannels(*address, 1)[0]);
  const absl::Duration drain = absl::Seconds(f.drain_s);
  // Whatever goes wrong from here, the coordinator is stopped (its destructor kills it).
  const auto stop = [&] {
    coordinator->Signal(SIGTERM);
    (void)coordinator->Wait(absl::Seconds(30));
  };

  // Warm-up: two waves as wide as the soak's, with jobs of every kind, the second under the
  // first's names again, so that gRPC's and the coordinator's one-time allocations (threads,
  // connections, each metric series of a bounded label) are in the start.
  const uint32_t warm_width = std::max(f.jobs_per_wave, 4u);
  SoakOptions warm;
  warm.address = *address;
  warm.jobs = 2 * warm_width;
  warm.incarnations = warm.jobs * (f.incarnations / f.jobs);
  warm.jobs_per_wave = warm_width;
  warm.name_pool = (warm_width * (f.incarnations / f.jobs) + 1) / 2;
  warm.prefix = "warmup";
  warm.channels = f.channels;
  if (absl::StatusOr<SoakResult> w = RunSoak(warm); !w.ok()) {
    stop();
    return Fail(absl::StrCat("the warm-up failed: ", w.status().ToString()));
  }
  if (absl::StatusOr<absl::Duration> d = WaitUntilEmpty(*stub, drain); !d.ok()) {
    stop();
    return Fail(absl::StrCat("after the warm-up: ", d.status().ToString()));
  }
  const absl::StatusOr<ProcStats> start_stats = ReadProcStats(pid);
  const absl::StatusOr<Series> start_series = ReadSeries(*metrics_url);
  if (!start_stats.ok() || !start_series.ok()) {
    stop();
    return Fail(absl::StrCat("reading the coordinator at the start: ",
                             start_stats.ok() ? start_series.status().ToString()
                                              : start_stats.status().ToString()));
  }

  SoakOptions so;
  so.address = *address;
  so.jobs = f.jobs;
  so.incarnations = f.incarnations;
  so.jobs_per_wave = f.jobs_per_wave;
  so.name_pool = f.name_pool;
  so.channels = f.channels;
  double rss_wave_max = start_stats->rss_mb;
  so.after_wave = [&](uint32_t) {
    if (absl::StatusOr<ProcStats> s = ReadProcStats(pid); s.ok()) {
      rss_wave_max = std::max(rss_wave_max, s->rss_mb);
    }
  };
  absl::StatusOr<SoakResult> r = RunSoak(so);
  if (!r.ok()) {
    stop();
    return Fail(absl::StrCat("the soak failed: ", r.status().ToString()));
  }
  const absl::StatusOr<absl::Duration> drained = WaitUntilEmpty(*stub, drain);
  if (!drained.ok()) {
    stop();
    return Fail(absl::StrCat("after the soak: ", drained.status().ToString()));
  }
  const absl::StatusOr<ProcStats> drained_stats = ReadProcStats(pid);
  const absl::StatusOr<Series> end_series = ReadSeries(*metrics_url);
  if (!drained_stats.ok() || !end_series.ok()) {
    stop();
    return Fail("reading the coordinator at the end failed");
  }
  // The allocator gives freed pages back over time (jemalloc's decay): poll, bounded.
  ProcStats end_stats = *drained_stats;
  const absl::Time settle_start = absl::Now();
  (void)meshd::testing::WaitFor(
      [&] {
        if (absl::StatusOr<ProcStats> s = ReadProcStats(pid); s.ok()) end_stats = *s;
        return end_stats.rss_mb <= start_stats->rss_mb * 1.10;
      },
      absl::Seconds(f.settle_s), absl::Milliseconds(250));
  const double settled_s = absl::ToDoubleSeconds(absl::Now() - settle_start);
  const absl::StatusOr<Holds> end_holds = ReadHolds(*stub, absl::Seconds(10));
  stop();
  if (!end_holds.ok()) return Fail(end_holds.status().ToString());

  const std::vector<std::string> added = Missing(end_series->all, start_series->all);
  const std::vector<std::string> dropped = Missing(start_series->all, end_series->all);
  const double ratio = end_stats.rss_mb / start_stats->rss_mb;
  nlohmann::ordered_json j;
  j["jobs"] = r->jobs;
  j["incarnations"] = r->incarnations;
  j["reused_names"] = r->reused_names;
  j["waves"] = r->waves;
  j["ended"] = {{"finished", r->ended_finished},
                {"left", r->ended_left},
                {"lost", r->ended_lost},
                {"by_operator", r->ended_by_operator}};
  j["generation_ends"] = r->generation_ends;
  j["retention"] = f.retention;
  j["heartbeat_timeout"] = f.heartbeat_timeout;
  j["churn_s"] = r->seconds;
  j["drain_s"] = absl::ToDoubleSeconds(*drained);
  j["rpcs"] = r->rpcs;
  j["heartbeats"] = r->heartbeats;
  j["heartbeat_errors"] = r->heartbeat_errors;
  j["coordinator_cpu_s"] = drained_stats->cpu_s - start_stats->cpu_s;
  j["rss_start_mb"] = start_stats->rss_mb;
  j["rss_peak_mb"] = std::max(rss_wave_max, drained_stats->peak_rss_mb);
  j["rss_drained_mb"] = drained_stats->rss_mb;
  j["rss_end_mb"] = end_stats.rss_mb;
  j["settle_s"] = settled_s;
  j["threads_start"] = start_stats->threads;
  j["threads_end"] = end_stats.threads;
  j["rss_end_ratio"] = ratio;
  j["series_start"] = start_series->all.size();
  j["series_end"] = end_series->all.size();
  j["series_added"] = added.size();
  j["series_dropped"] = dropped.size();
  j["per_thing_series_start"] = start_series->per_thing.size();
  j["per_thing_series_end"] = end_series->per_thing.size();
  j["held_gauges_end"] = end_series->held;
  j["nodes_listed_end"] = end_holds->nodes_listed;
  j["jobs_listed_end"] = end_holds->jobs_listed;
  if (!f.json) {
    auto line = [](absl::string_view what, const std::string& value) {
      std::cout << absl::StrFormat("  %-40s %s\n", what, value);
    };
    std::cout << absl::StrFormat(
        "soak_bench: %u jobs, %u node incarnations (%u under names seen before), %u waves\n",
        r->jobs, r->incarnations, r->reused_names, r->waves);
    line("jobs ended finished/left/lost/operator",
         absl::StrFormat("%u / %u / %u / %u", r->ended_finished, r->ended_left, r->ended_lost,
                         r->ended_by_operator));
    std::vector<std::string> ends;
    for (const auto& [reason, n] : r->generation_ends) ends.push_back(absl::StrCat(reason, " ", n));
    line("watches told", absl::StrJoin(ends, ", "));
    line("churn / until it held nothing",
         absl::StrFormat("%.1f s / %.1f s more (retention %s, heartbeat timeout %s)", r->seconds,
                         absl::ToDoubleSeconds(*drained), f.retention, f.heartbeat_timeout));
    line("RPCs", absl::StrFormat("%u (%u heartbeats, %u answered with an error)", r->rpcs,
                                 r->heartbeats, r->heartbeat_errors));
    line("coordinator CPU", absl::StrFormat("%.2f s", drained_stats->cpu_s - start_stats->cpu_s));
    line("coordinator RSS start / peak", absl::StrFormat("%.1f MB / %.1f MB", start_stats->rss_mb,
                                                         j["rss_peak_mb"].get<double>()));
    line("coordinator RSS emptied / end",
         absl::StrFormat("%.1f MB / %.1f MB after %.1f s: %.3f of the start",
                         drained_stats->rss_mb, end_stats.rss_mb, settled_s, ratio));
    line("coordinator threads start / end",
         absl::StrFormat("%d / %d", start_stats->threads, end_stats.threads));
    line("metric series start / end",
         absl::StrFormat("%u / %u (%u added, %u dropped)", start_series->all.size(),
                         end_series->all.size(), added.size(), dropped.size()));
    if (!added.empty()) line("  added", Shown(added));
    if (!dropped.empty()) line("  dropped", Shown(dropped));
    line("series for one node or job start / end",
         absl::StrFormat("%u / %u", start_series->per_thing.size(),
                         end_series->per_thing.size()));
    line("held at the end", end_holds->ToString());
  }
  std::cout << j.dump() << std::endl;
  return 0;
}
