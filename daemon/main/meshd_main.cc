// meshd — the daemon: `meshd coordinator` (one per cluster), `meshd agent` (one per host) or
// `meshd standalone` (both in one process, for a single host). Flags may also come from MESHD_*
// environment variables and from a config file (--config, TOML or INI: `listen = "0.0.0.0:7070"`);
// the command line wins over the environment, which wins over the config file.
//
// With --tls-cert, --tls-key and --tls-ca every TCP port speaks mutual TLS (docs/security.md).
// Without them a plaintext TCP port must be on loopback unless --insecure is given.
//
// On start the daemon prints to stdout "meshd metrics on <url>" (with --metrics-listen; https://
// with TLS) and then "meshd <mode> listening on <address>" once it serves; it logs to stderr.
// SIGTERM or SIGINT stop it in order: health NOT_SERVING, waits cancelled, server stopped.
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/log/log.h"
#include "common/time/mutex_clock.h"
#include "daemon/domain/limits.h"
#include "daemon/main/build_info.h"
#include "daemon/main/meshd_flags.h"
#include "daemon/metrics/metrics_server.h"
#include "daemon/runtime/agent_daemon.h"
#include "daemon/runtime/coordinator_daemon.h"
#include "daemon/runtime/sd_notify.h"
#include "daemon/security/listen_policy.h"
#include "daemon/security/tls_credentials.h"
#include "daemon/service/grpc_logging.h"
#include "daemon/service/ticker.h"

namespace {

constexpr int kUsage = 2;
constexpr int kFailed = 1;

// The default --listen: any address with TLS, loopback without (a plaintext coordinator is for this
// host only unless the operator says --insecure).
constexpr char kTlsListen[] = "0.0.0.0:7070";
constexpr char kPlaintextListen[] = "127.0.0.1:7070";

bool ParseDurationFlag(const std::string& name, const std::string& text, absl::Duration* out) {
  if (absl::ParseDuration(text, out) && *out > absl::ZeroDuration()) return true;
  std::cerr << "meshd: --" << name << " must be a positive duration like 500ms, 5s or 1m, got '"
            << text << "'\n";
  return false;
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
  meshd::flags::AddConfigFile(app);
  app.require_subcommand(1);
  app.set_version_flag("--version", meshd::VersionLine("meshd"));

  // Each mode has its own storage: CLI11 reads the environment for every mode, chosen or not.
  meshd::flags::CommonFlags coord_common, agent_common, standalone_common;
  std::string coord_listen, standalone_listen;  // empty: kTlsListen or kPlaintextListen
  const std::string listen_help =
      absl::StrCat(" (default ", kTlsListen, " with TLS, ", kPlaintextListen, " without)");
  CLI::App* coord = app.add_subcommand(
      "coordinator",
      "Run the cluster coordinator: node registry, job rendezvous, ranks, generations, KV");
  coord->add_option("--listen", coord_listen,
                    "HOST:PORT to serve gRPC on (port 0 picks a free port)" + listen_help)
      ->envname("MESHD_LISTEN");
  meshd::flags::AddCommonFlags(coord, coord_common);
  meshd::flags::AddCoordinatorFlags(coord, coord_common);

  meshd::runtime::AgentDaemonOptions agent_mode_options, standalone_agent_options;
  auto add_agent_flags = [](CLI::App* cmd, meshd::runtime::AgentDaemonOptions& agent_options) {
    cmd->add_option("--socket", agent_options.socket,
                    "Unix socket local workers attach on (created with mode 0660)")
        ->envname("MESHD_SOCKET")
        ->capture_default_str();
    cmd->add_option("--socket-group", agent_options.socket_group,
                    "Group the socket is given to: its members' processes may attach (default: "
                    "the daemon's own group)")
        ->envname("MESHD_SOCKET_GROUP");
    cmd->add_option("--allow-uids", agent_options.allow_uids,
                    "A job on this host belongs to the uid of its first worker: other uids may "
                    "not attach to it, watch it, detach it or use its store. These uids may "
                    "(comma-separated)")
        ->envname("MESHD_ALLOW_UIDS")
        ->delimiter(',');
    cmd->add_option("--simulate-gpus", agent_options.simulate_gpus,
                    "Declare N simulated GPUs instead of discovering them with NVML (hosts "
                    "without GPUs); they are marked simulated everywhere")
        ->envname("MESHD_SIMULATE_GPUS")
        ->check(CLI::Range(0, 64));
    cmd->add_option("--node-name", agent_options.node_name,
                    "This node's name in the cluster (default: the hostname)")
        ->envname("MESHD_NODE_NAME");
    cmd->add_option("--hostname", agent_options.hostname,
                    "The hostname reported to the coordinator, which orders a job's nodes by it "
                    "(default: gethostname(); in a Kubernetes pod that is the pod's name: pass "
                    "spec.nodeName)")
        ->envname("MESHD_HOSTNAME");
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
  agent->add_option("--coordinator", agent_mode_options.coordinator,
                    "HOST:PORT of the coordinator (with TLS, a name or IP its certificate has)")
      ->envname("MESHD_COORDINATOR")
      ->capture_default_str();
  add_agent_flags(agent, agent_mode_options);
  meshd::flags::AddCommonFlags(agent, agent_common);

  CLI::App* standalone = app.add_subcommand(
      "standalone", "Run coordinator and agent in one process: the single-host default");
  standalone->add_option("--listen", standalone_listen,
                         "HOST:PORT of the coordinator (port 0: a free port)" + listen_help)
      ->envname("MESHD_LISTEN");
  add_agent_flags(standalone, standalone_agent_options);
  meshd::flags::AddCommonFlags(standalone, standalone_common);
  meshd::flags::AddCoordinatorFlags(standalone, standalone_common);

  try {
    app.parse(argc, argv);
    for (CLI::App* mode : {coord, agent, standalone}) {
      if (mode->parsed()) meshd::flags::ApplyEnvironment(mode, argc, argv);
    }
  } catch (const CLI::Error& e) {
    return app.exit(e) == 0 ? 0 : kUsage;
  }
  meshd::flags::CommonFlags& common = coord->parsed()   ? coord_common
                        : agent->parsed() ? agent_common
                                          : standalone_common;
  meshd::runtime::AgentDaemonOptions& agent_options =
      agent->parsed() ? agent_mode_options : standalone_agent_options;
  std::string listen = coord->parsed() ? coord_listen : standalone_listen;

  meshd::log::Init(
      common.log_format == "json" ? meshd::log::Format::kJson : meshd::log::Format::kText,
      meshd::log::ParseLevel(common.log_level));
  meshd::service::RouteGrpcLogsToMeshdLog();  // gRPC's own lines in the same format
  const meshd::security::TlsFiles tls{common.tls_cert, common.tls_key, common.tls_ca};
  if (absl::Status s = meshd::security::ValidateTlsFiles(tls); !s.ok()) {
    std::cerr << "meshd: " << s.message() << "\n";
    return kUsage;
  }
  absl::Duration tls_refresh;
  if (!ParseDurationFlag("tls-refresh", common.tls_refresh, &tls_refresh)) return kUsage;
  if (listen.empty()) listen = tls.enabled() ? kTlsListen : kPlaintextListen;
  // Refused before anything starts, as a usage error: the message says what to pass.
  absl::Status exposed = agent->parsed()
                             ? meshd::security::CheckPlaintextListen(
                                   "--health-listen", agent_options.health_listen.empty()
                                                          ? "unix:"
                                                          : agent_options.health_listen,
                                   tls.enabled(), common.insecure)
                             : meshd::security::CheckPlaintextListen("--listen", listen,
                                                                     tls.enabled(), common.insecure);
  if (exposed.ok() && standalone->parsed() && !agent_options.health_listen.empty()) {
    exposed = meshd::security::CheckPlaintextListen(
        "--health-listen", agent_options.health_listen, tls.enabled(), common.insecure);
  }
  if (!exposed.ok()) {
    std::cerr << "meshd: " << exposed.message() << "\n";
    return kUsage;
  }
  agent_options.tls = tls;
  agent_options.tls_refresh = tls_refresh;
  agent_options.insecure = common.insecure;
  meshd::runtime::CoordinatorDaemonOptions options;
  options.listen = listen;
  options.tls = tls;
  options.tls_refresh = tls_refresh;
  options.insecure = common.insecure;
  options.admin_identities = common.admin_identities;
  options.membership_key = common.membership_key;
  if (!ParseDurationFlag("heartbeat-interval", common.heartbeat_interval,
                         &options.heartbeat_interval) ||
      !ParseDurationFlag("heartbeat-timeout", common.heartbeat_timeout,
                         &options.heartbeat_timeout) ||
      !ParseDurationFlag("recovery-window", common.recovery_window, &options.recovery_window) ||
      !ParseDurationFlag("node-retention", common.node_retention, &options.node_retention) ||
      !ParseDurationFlag("job-retention", common.job_retention, &options.job_retention) ||
      !ParseDurationFlag("round-timeout", common.round_timeout, &options.round_timeout)) {
    return kUsage;
  }
  options.max_heartbeats_per_second = common.max_heartbeat_rate;
  options.kv_limits = {common.kv_max_keys, common.kv_max_bytes, common.kv_max_waits};
  meshd::CalibrateMutexClock();  // about to serve: now, not during the first burst of calls

  auto fail = [](const absl::Status& s) {
    std::cerr << "meshd: " << s.message() << "\n";
    return kFailed;
  };
  // One scrape endpoint for the process (standalone: coordinator and agent share it).
  std::unique_ptr<meshd::metrics::MetricsServer> metrics;
  if (!common.metrics_listen.empty()) {
    // With TLS the metrics port speaks it too (HTTPS, a client certificate of the CA required).
    auto started = meshd::metrics::MetricsServer::Start(common.metrics_listen, tls, tls_refresh);
    if (!started.ok()) return fail(started.status());
    metrics = *std::move(started);
    options.metrics = metrics.get();
    agent_options.metrics = metrics.get();
    std::cout << "meshd metrics on " << metrics->url() << std::endl;
    meshd::log::Info("metrics served",
                     {{"url", metrics->url()}, {"tls", metrics->tls() ? "mutual" : "off"}});
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
    if (!(*daemon)->health_address().empty()) {
      std::cout << "meshd agent health on " << (*daemon)->health_address() << std::endl;
    }
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
