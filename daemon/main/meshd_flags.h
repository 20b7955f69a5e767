// meshd's flags shared by its modes, and its config file: the option definitions meshd_main.cc
// builds its command line from, as a library so that tests and tests/fuzz/config_fuzz.cc parse
// config files against the daemon's real definitions. CLI11 stays in this header's users (meshd's
// main and the fuzzer); nothing else includes it.
//
// Thread-safety: none (command-line parsing, once, at start).
#ifndef MESHD_DAEMON_MAIN_MESHD_FLAGS_H_
#define MESHD_DAEMON_MAIN_MESHD_FLAGS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "daemon/domain/limits.h"

namespace meshd::flags {

// The flags every mode has (and the coordinator's, unused by an agent), as text: durations are
// parsed after the command line is.
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
  std::string round_timeout = "10m";
  size_t kv_max_keys = meshd::domain::kDefaultStoreKeys;
  size_t kv_max_bytes = meshd::domain::kDefaultStoreBytes;
  size_t kv_max_waits = meshd::domain::kDefaultStoreWaits;
  std::string metrics_listen;
  std::string tls_cert, tls_key, tls_ca;
  std::string tls_refresh = "10s";
  bool insecure = false;
};

// --config FILE on `app` (TOML or INI, [coordinator], [agent] or [standalone] sections), which may
// follow the mode; a key that names no option of the mode is an error.
void AddConfigFile(CLI::App& app);

// The coordinator's own (coordinator and standalone); an agent has none of them (it is told its
// heartbeat timing by the coordinator), so `meshd agent --heartbeat-timeout 5s` is a usage error.
void AddCoordinatorFlags(CLI::App* cmd, CommonFlags& f);
// Logging, metrics and TLS: every mode's.
void AddCommonFlags(CLI::App* cmd, CommonFlags& f);

// Command line > environment > config file > default: applies the chosen mode's MESHD_* variables
// over the config file's values, unless the command line gave the option. Throws CLI::Error.
void ApplyEnvironment(CLI::App* cmd, int argc, char** argv);

// Parses a config file's text into `app` (built with AddConfigFile and its modes), as --config
// would read the file. Errors: INVALID_ARGUMENT with CLI11's message (a malformed file, an unknown
// key, a value an option refuses). Catches everything CLI11 throws: for tests and the fuzzer.
absl::Status ParseConfigText(CLI::App& app, absl::string_view text);

}  // namespace meshd::flags

#endif  // MESHD_DAEMON_MAIN_MESHD_FLAGS_H_
