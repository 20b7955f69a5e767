// meshd's shared flags and config file (see meshd_flags.h).
#include "daemon/main/meshd_flags.h"

#include <cstdlib>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace meshd::flags {
namespace {

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

}  // namespace

void AddConfigFile(CLI::App& app) {
  app.set_config(
      "--config", "",
      "Read flags from this TOML/INI file ([coordinator], [agent] or [standalone] sections)");
  app.fallthrough();  // --config may follow the mode: meshd agent --config /etc/meshd/agent.toml
  app.allow_config_extras(CLI::config_extras_mode::error);  // a misplaced key is an error
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
  cmd->add_option("--round-timeout", f.round_timeout,
                  "A job's round open this long without closing is given up: its joiners are told "
                  "DEADLINE_EXCEEDED and the job's name is free for any size")
      ->envname("MESHD_ROUND_TIMEOUT")
      ->capture_default_str();
  cmd->add_option("--kv-max-keys", f.kv_max_keys,
                  "Keys and barriers one job generation's key-value store (the torch Store) may "
                  "hold; past it a set is refused with RESOURCE_EXHAUSTED")
      ->envname("MESHD_KV_MAX_KEYS")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--kv-max-bytes", f.kv_max_bytes,
                  "Bytes (keys and values) one job generation's key-value store may hold")
      ->envname("MESHD_KV_MAX_BYTES")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--kv-max-waits", f.kv_max_waits,
                  "Waits (KeyGet/KeyWait/Barrier calls held open, and each waiting operation of "
                  "a held KeyBatch) one job generation's key-value store may hold at once")
      ->envname("MESHD_KV_MAX_WAITS")
      ->check(CLI::PositiveNumber)
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

absl::Status ParseConfigText(CLI::App& app, absl::string_view text) {
  std::istringstream in{std::string(text)};
  try {
    app.parse_from_stream(in);
  } catch (const CLI::Error& e) {
    return absl::InvalidArgumentError(absl::StrCat("config file: ", e.what()));
  }
  return absl::OkStatus();
}

}  // namespace meshd::flags
