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
#include "daemon/main/build_info.h"
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

struct CommonFlags {
  std::string log_format = "text";
  std::string log_level = "info";
  std::string heartbeat_interval = "1s";
  std::string heartbeat_timeout = "5s";
  uint32_t max_heartbeat_rate = 2000;
  std::string recovery_window = "10s";
  std::vector<std::string> admin_identities;
  std::string membership_key;
  std::string node_retention = "10m";
  std::string job_retention = "10m";
  std::string metrics_listen;
  std::string tls_cert, tls_key, tls_ca;
  std::string tls_refresh = "10s";
  bool insecure = false;
};

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

// The coordinator's own (coordinator and standalone); an agent has none of them (it is told its
// heartbeat timing by the coordinator), so `meshd agent --heartbeat-timeout 5s` is a usage error.
void AddCoordinatorFlags(CLI::App* cmd, CommonFlags& f) {
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
  cmd->add_option("--recovery-window", f.recovery_window,
                  "After a coordinator restart, how long a running job that some of its nodes "
                  "reported waits for the others before its generation ends (at least the "
                  "heartbeat timeout)")
      ->envname("MESHD_RECOVERY_WINDOW")
      ->capture_default_str();
  cmd->add_option("--admin-identity", f.admin_identities,
                  "With TLS: the client certificates that are operators' and may use the admin "
                  "calls (meshctl node cordon|drain|..., meshctl job end): a URI SAN "
                  "(spiffe://td/operator/*: a prefix), dns:NAME, cn:NAME or a subject attribute "
                  "like OU=admin (comma-separated). Without TLS, callers on this host are operators")
      ->envname("MESHD_ADMIN_IDENTITY")
      ->delimiter(',');
  cmd->add_option("--membership-key", f.membership_key,
                  "File with the key the coordinator signs each node's place in a job with "
                  "(created, mode 0600, when absent; keep it across restarts, e.g. "
                  "/var/lib/meshd/membership.key): a restarted coordinator then recovers running "
                  "jobs only from the places it gave. Unset: it takes the agents' reports on trust")
      ->envname("MESHD_MEMBERSHIP_KEY");
  cmd->add_option("--node-retention", f.node_retention,
                  "A node dead or departed this long is removed from the registry (its name, "
                  "GPUs and series)")
      ->envname("MESHD_NODE_RETENTION")
      ->capture_default_str();
  cmd->add_option("--job-retention", f.job_retention,
                  "A job nobody joined this long (its generation ended, or its joins expired) is "
                  "removed")
      ->envname("MESHD_JOB_RETENTION")
      ->capture_default_str();
}

void AddCommonFlags(CLI::App* cmd, CommonFlags& f) {
  cmd->add_option("--metrics-listen", f.metrics_listen,
                  "HOST:PORT to serve Prometheus metrics on, at /metrics (e.g. 0.0.0.0:9464; "
                  "port 0: a free one); HTTPS with a client certificate required when TLS is "
                  "configured. Off when empty")
      ->envname("MESHD_METRICS_LISTEN")
      ->capture_default_str();
  cmd->add_option("--tls-cert", f.tls_cert,
                  "PEM certificate (chain) this daemon presents on its TCP ports and to the "
                  "coordinator; with --tls-key and --tls-ca every TCP port speaks mutual TLS")
      ->envname("MESHD_TLS_CERT");
  cmd->add_option("--tls-key", f.tls_key, "PEM private key of --tls-cert (unencrypted)")
      ->envname("MESHD_TLS_KEY");
  cmd->add_option("--tls-ca", f.tls_ca,
                  "PEM CA bundle: peers' certificates must chain to it (clients of this daemon "
                  "must present one)")
      ->envname("MESHD_TLS_CA");
  cmd->add_option("--tls-refresh", f.tls_refresh,
                  "How often the TLS files are re-read; replacing them rotates the certificates "
                  "for new connections without a restart")
      ->envname("MESHD_TLS_REFRESH")
      ->capture_default_str();
  cmd->add_flag("--insecure", f.insecure,
                "Without TLS, serve plaintext TCP on addresses other hosts can reach (refused "
                "otherwise); logs a warning and sets the metric meshd_insecure to 1")
      ->envname("MESHD_INSECURE");
  cmd->add_option("--log-format", f.log_format, "Log format on stderr: text or json")
      ->envname("MESHD_LOG_FORMAT")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  cmd->add_option("--log-level", f.log_level, "debug, info, warn or error")
      ->envname("MESHD_LOG_LEVEL")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}))
      ->capture_default_str();
}

// Whether the command line itself gives `opt` (--name VALUE or --name=VALUE).
bool OnCommandLine(const CLI::Option* opt, int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") break;
    for (const std::string& name : opt->get_lnames()) {
      if (arg == "--" + name || absl::StartsWith(arg, "--" + name + "=")) return true;
    }
  }
  return false;
}

// Command line > environment > config file > default. CLI11 applies a MESHD_* variable only to an
// option the config file left unset (so the file would win), and to every mode's options, chosen
// or not; each mode has its own storage, and here the chosen mode's variables are applied again
// over the config file's values, unless the command line gave the option. Throws CLI::Error.
void ApplyEnvironment(CLI::App* cmd, int argc, char** argv) {
  for (CLI::Option* opt : cmd->get_options()) {
    const std::string env = opt->get_envname();
    if (env.empty()) continue;
    const char* value = std::getenv(env.c_str());
    if (value == nullptr || OnCommandLine(opt, argc, argv)) continue;
    opt->clear();
    opt->add_result(std::string(value));
    opt->run_callback();
  }
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
  app.set_version_flag("--version", meshd::VersionLine("meshd"));

  // Each mode has its own storage: CLI11 reads the environment for every mode, chosen or not.
  CommonFlags coord_common, agent_common, standalone_common;
  std::string coord_listen, standalone_listen;  // empty: kTlsListen or kPlaintextListen
  const std::string listen_help =
      absl::StrCat(" (default ", kTlsListen, " with TLS, ", kPlaintextListen, " without)");
  CLI::App* coord = app.add_subcommand(
      "coordinator",
      "Run the cluster coordinator: node registry, job rendezvous, ranks, generations, KV");
  coord->add_option("--listen", coord_listen,
                    "HOST:PORT to serve gRPC on (port 0 picks a free port)" + listen_help)
      ->envname("MESHD_LISTEN");
  AddCommonFlags(coord, coord_common);
  AddCoordinatorFlags(coord, coord_common);

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
  AddCommonFlags(agent, agent_common);

  CLI::App* standalone = app.add_subcommand(
      "standalone", "Run coordinator and agent in one process: the single-host default");
  standalone->add_option("--listen", standalone_listen,
                         "HOST:PORT of the coordinator (port 0: a free port)" + listen_help)
      ->envname("MESHD_LISTEN");
  add_agent_flags(standalone, standalone_agent_options);
  AddCommonFlags(standalone, standalone_common);
  AddCoordinatorFlags(standalone, standalone_common);

  try {
    app.parse(argc, argv);
    for (CLI::App* mode : {coord, agent, standalone}) {
      if (mode->parsed()) ApplyEnvironment(mode, argc, argv);
    }
  } catch (const CLI::Error& e) {
    return app.exit(e) == 0 ? 0 : kUsage;
  }
  CommonFlags& common = coord->parsed()   ? coord_common
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
      !ParseDurationFlag("job-retention", common.job_retention, &options.job_retention)) {
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
