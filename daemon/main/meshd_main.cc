// meshd — the daemon: `meshd coordinator` (one per cluster), `meshd agent` (one per host) or
// `meshd standalone` (both in one process, for a single host). Flags may also come from MESHD_*
// environment variables and from a config file (--config, TOML or INI: `listen = "0.0.0.0:7070"`).
//
// On start the daemon prints to stdout "meshd metrics on <url>" (with --metrics-listen) and then
// "meshd <mode> listening on <address>" once it serves; it logs to stderr. SIGTERM or SIGINT stop
// it in order: health NOT_SERVING, waits cancelled, server stopped.
#include <signal.h>

#include <cstdio>
#include <iostream>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/log/log.h"
#include "common/time/mutex_clock.h"
#include "daemon/metrics/metrics_server.h"
#include "daemon/runtime/agent_daemon.h"
#include "daemon/runtime/coordinator_daemon.h"
#include "daemon/runtime/sd_notify.h"
#include "daemon/service/ticker.h"

namespace {

constexpr int kUsage = 2;
constexpr int kFailed = 1;

struct CommonFlags {
  std::string log_format = "text";
  std::string log_level = "info";
  std::string heartbeat_interval = "1s";
  std::string heartbeat_timeout = "5s";
  uint32_t max_heartbeat_rate = 2000;
  std::string recovery_window = "10s";
  std::string metrics_listen;
};

bool ParseDurationFlag(const std::string& name, const std::string& text, absl::Duration* out) {
  if (absl::ParseDuration(text, out) && *out > absl::ZeroDuration()) return true;
  std::cerr << "meshd: --" << name << " must be a positive duration like 500ms, 5s or 1m, got '"
            << text << "'\n";
  return false;
}

// The coordinator's own (coordinator and standalone).
void AddCoordinatorFlags(CLI::App* cmd, CommonFlags& f) {
  cmd->add_option("--recovery-window", f.recovery_window,
                  "After a coordinator restart, how long a running job that some of its nodes "
                  "reported waits for the others before its generation ends (at least the "
                  "heartbeat timeout)")
      ->envname("MESHD_RECOVERY_WINDOW")
      ->capture_default_str();
}

void AddCommonFlags(CLI::App* cmd, CommonFlags& f) {
  cmd->add_option("--heartbeat-interval", f.heartbeat_interval,
                  "How often agents heartbeat (e.g. 500ms, 1s)")
      ->envname("MESHD_HEARTBEAT_INTERVAL")
      ->capture_default_str();
  cmd->add_option("--heartbeat-timeout", f.heartbeat_timeout,
                  "A node silent this long is declared dead and its jobs' generations end")
      ->envname("MESHD_HEARTBEAT_TIMEOUT")
      ->capture_default_str();
  cmd->add_option("--max-heartbeat-rate", f.max_heartbeat_rate,
                  "Heartbeats per second the coordinator accepts; past it agents are told a "
                  "longer interval and timeout, in proportion (0: no cap)")
      ->envname("MESHD_MAX_HEARTBEAT_RATE")
      ->capture_default_str();
  cmd->add_option("--metrics-listen", f.metrics_listen,
                  "HOST:PORT to serve Prometheus metrics on, at /metrics (e.g. 0.0.0.0:9464; "
                  "port 0: a free one). Off when empty")
      ->envname("MESHD_METRICS_LISTEN")
      ->capture_default_str();
  cmd->add_option("--log-format", f.log_format, "Log format on stderr: text or json")
      ->envname("MESHD_LOG_FORMAT")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  cmd->add_option("--log-level", f.log_level, "debug, info, warn or error")
      ->envname("MESHD_LOG_LEVEL")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}))
      ->capture_default_str();
}

// Blocks the stop signals in every thread (call before any thread starts), so sigwait sees them.
sigset_t BlockStopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

// Tells systemd (when it runs us) that the daemon serves, keeps its watchdog fed, waits for SIGTERM
// or SIGINT, and tells systemd that the daemon is stopping.
void ServeUntilStopSignal(const sigset_t& set, const std::string& status) {
  if (absl::Status s = meshd::runtime::SdNotify(absl::StrCat("READY=1\nSTATUS=", status)); !s.ok()) {
    meshd::log::Warn("sd_notify failed", {{"error", std::string(s.message())}});
  }
  std::unique_ptr<meshd::service::Ticker> watchdog;
  if (auto interval = meshd::runtime::WatchdogInterval()) {
    watchdog = std::make_unique<meshd::service::Ticker>(
        *interval, [] { (void)meshd::runtime::SdNotify("WATCHDOG=1"); });
  }
  int sig = 0;
  sigwait(&set, &sig);
  meshd::log::Info(absl::StrCat("received ", sig == SIGTERM ? "SIGTERM" : "SIGINT", ", stopping"));
  (void)meshd::runtime::SdNotify("STOPPING=1");
}

}  // namespace

int main(int argc, char** argv) {
  const sigset_t stop_signals = BlockStopSignals();
  // Abseil's lock-order graph costs ~5% of the coordinator's CPU under load (meshd_bench); the
  // tests keep it on, where it catches lock-order inversions.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  CLI::App app{"meshd: device-mesh control plane for GPU clusters"};
  app.set_config(
      "--config", "",
      "Read flags from this TOML/INI file ([coordinator], [agent] or [standalone] sections)");
  app.fallthrough();  // --config may follow the mode: meshd agent --config /etc/meshd/agent.toml
  app.allow_config_extras(CLI::config_extras_mode::error);  // a misplaced key is an error
  app.require_subcommand(1);

  CommonFlags common;
  std::string listen = "0.0.0.0:7070";
  CLI::App* coord = app.add_subcommand(
      "coordinator",
      "Run the cluster coordinator: node registry, job rendezvous, ranks, generations, KV");
  coord->add_option("--listen", listen, "HOST:PORT to serve gRPC on (port 0 picks a free port)")
      ->envname("MESHD_LISTEN")
      ->capture_default_str();
  AddCommonFlags(coord, common);
  AddCoordinatorFlags(coord, common);

  meshd::runtime::AgentDaemonOptions agent_options;
  auto add_agent_flags = [&agent_options](CLI::App* cmd) {
    cmd->add_option("--socket", agent_options.socket,
                    "Unix socket local workers attach on (created with mode 0660)")
        ->envname("MESHD_SOCKET")
        ->capture_default_str();
    cmd->add_option("--simulate-gpus", agent_options.simulate_gpus,
                    "Declare N simulated GPUs instead of discovering them with NVML (hosts "
                    "without GPUs); they are marked simulated everywhere")
        ->envname("MESHD_SIMULATE_GPUS")
        ->check(CLI::Range(0, 64));
    cmd->add_option("--node-name", agent_options.node_name,
                    "This node's name in the cluster (default: the hostname)")
        ->envname("MESHD_NODE_NAME");
    cmd->add_option("--health-listen", agent_options.health_listen,
                    "HOST:PORT to also serve grpc.health.v1.Health on TCP (only that), for "
                    "Kubernetes gRPC probes. Off when empty")
        ->envname("MESHD_HEALTH_LISTEN");
    cmd->add_option("--nvml-library", agent_options.nvml_library, "Where to load NVML from")
        ->envname("MESHD_NVML_LIBRARY")
        ->capture_default_str();
  };
  CLI::App* agent = app.add_subcommand(
      "agent", "Run the node agent: discover GPUs, register them, serve local workers");
  agent->add_option("--coordinator", agent_options.coordinator, "HOST:PORT of the coordinator")
      ->envname("MESHD_COORDINATOR")
      ->capture_default_str();
  add_agent_flags(agent);
  AddCommonFlags(agent, common);

  CLI::App* standalone = app.add_subcommand(
      "standalone", "Run coordinator and agent in one process: the single-host default");
  standalone->add_option("--listen", listen, "HOST:PORT of the coordinator (port 0: a free port)")
      ->envname("MESHD_LISTEN")
      ->capture_default_str();
  add_agent_flags(standalone);
  AddCommonFlags(standalone, common);
  AddCoordinatorFlags(standalone, common);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kUsage;
  }

  meshd::log::Init(
      common.log_format == "json" ? meshd::log::Format::kJson : meshd::log::Format::kText,
      meshd::log::ParseLevel(common.log_level));
  meshd::runtime::CoordinatorDaemonOptions options;
  options.listen = listen;
  if (!ParseDurationFlag("heartbeat-interval", common.heartbeat_interval,
                         &options.heartbeat_interval) ||
      !ParseDurationFlag("heartbeat-timeout", common.heartbeat_timeout,
                         &options.heartbeat_timeout) ||
      !ParseDurationFlag("recovery-window", common.recovery_window, &options.recovery_window)) {
    return kUsage;
  }
  options.max_heartbeats_per_second = common.max_heartbeat_rate;
  meshd::CalibrateMutexClock();  // about to serve: now, not during the first burst of calls

  auto fail = [](const absl::Status& s) {
    std::cerr << "meshd: " << s.message() << "\n";
    return kFailed;
  };
  // One scrape endpoint for the process (standalone: coordinator and agent share it).
  std::unique_ptr<meshd::metrics::MetricsServer> metrics;
  if (!common.metrics_listen.empty()) {
    auto started = meshd::metrics::MetricsServer::Start(common.metrics_listen);
    if (!started.ok()) return fail(started.status());
    metrics = *std::move(started);
    options.metrics = metrics.get();
    agent_options.metrics = metrics.get();
    std::cout << "meshd metrics on " << metrics->url() << std::endl;
    meshd::log::Info("metrics served", {{"url", metrics->url()}});
  }
  if (coord->parsed()) {
    auto daemon = meshd::runtime::CoordinatorDaemon::Start(options);
    if (!daemon.ok()) return fail(daemon.status());
    std::cout << "meshd coordinator listening on " << (*daemon)->address() << std::endl;
    ServeUntilStopSignal(stop_signals, "coordinator serving on " + (*daemon)->address());
    (*daemon)->Stop();
    return 0;
  }
  if (agent->parsed()) {
    auto daemon = meshd::runtime::AgentDaemon::Start(agent_options);
    if (!daemon.ok()) return fail(daemon.status());
    std::cout << "meshd agent listening on " << (*daemon)->address() << std::endl;
    ServeUntilStopSignal(stop_signals, "agent serving on " + (*daemon)->address());
    (*daemon)->Stop();
    return 0;
  }
  if (standalone->parsed()) {
    auto coordinator = meshd::runtime::CoordinatorDaemon::Start(options);
    if (!coordinator.ok()) return fail(coordinator.status());
    // The embedded agent reaches the coordinator over loopback whatever it listens on.
    const std::string& bound = (*coordinator)->address();
    agent_options.coordinator = absl::StrCat("127.0.0.1", bound.substr(bound.rfind(':')));
    auto agent_daemon = meshd::runtime::AgentDaemon::Start(agent_options);
    if (!agent_daemon.ok()) return fail(agent_daemon.status());
    std::cout << "meshd standalone listening on " << bound << " and " << (*agent_daemon)->address()
              << std::endl;
    ServeUntilStopSignal(stop_signals, "standalone serving on " + bound);
    (*agent_daemon)->Stop();
    (*coordinator)->Stop();
    return 0;
  }
  return kUsage;
}
