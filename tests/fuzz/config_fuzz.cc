// Fuzzer for meshd's config file (--config, TOML or INI): the input is a file's text, parsed by
// CLI11's config reader into the daemon's real option definitions (daemon/main/meshd_flags.h) for
// the coordinator and standalone modes, as `meshd coordinator --config FILE` reads it. A refused
// file is INVALID_ARGUMENT; any crash, sanitizer report or escaping exception is a bug.
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "daemon/main/meshd_flags.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  CLI::App app{"meshd"};
  meshd::flags::AddConfigFile(app);
  meshd::flags::CommonFlags coord_flags, standalone_flags;
  std::string coord_listen, standalone_listen;
  CLI::App* coord = app.add_subcommand("coordinator");
  coord->add_option("--listen", coord_listen);
  meshd::flags::AddCommonFlags(coord, coord_flags);
  meshd::flags::AddCoordinatorFlags(coord, coord_flags);
  CLI::App* standalone = app.add_subcommand("standalone");
  standalone->add_option("--listen", standalone_listen);
  meshd::flags::AddCommonFlags(standalone, standalone_flags);
  meshd::flags::AddCoordinatorFlags(standalone, standalone_flags);
  (void)meshd::flags::ParseConfigText(app, text);
  return 0;
}
