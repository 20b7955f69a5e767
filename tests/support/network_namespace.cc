// NetworkNamespace (see network_namespace.h).
#include "tests/support/network_namespace.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "tests/support/run_command.h"

namespace meshd::testing {
namespace {

// Runs `ip ARGS`; the error names the command and what it printed.
absl::Status Ip(const std::string& ip, const std::string& args) {
  const CommandResult r = RunCommand(absl::StrCat(ip, " ", args), /*merge_stderr=*/true);
  if (r.exit_code == 0) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("`ip ", args, "` failed (", r.exit_code, "): ",
                   absl::StripTrailingAsciiWhitespace(r.out)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<NetworkNamespace>> NetworkNamespace::Create() {
  const CommandResult which = RunCommand("command -v ip");
  if (which.exit_code != 0 || which.out.empty()) {
    return absl::FailedPreconditionError("iproute2's `ip` is not installed");
  }
  std::unique_ptr<NetworkNamespace> ns(new NetworkNamespace);
  ns->ip_ = std::string(absl::StripTrailingAsciiWhitespace(which.out));
  const int id = getpid() % 100000;
  const int subnet = getpid() % 16000;  // a /30: 4 addresses
  ns->name_ = absl::StrCat("meshd-part-", id);
  ns->host_link_ = absl::StrCat("mdh", id);
  const std::string ns_link = absl::StrCat("mdn", id);
  const std::string prefix = absl::StrCat("10.231.", subnet / 64, ".");
  ns->host_ip_ = absl::StrCat(prefix, (subnet % 64) * 4 + 1);
  ns->ns_ip_ = absl::StrCat(prefix, (subnet % 64) * 4 + 2);
  const std::string in_ns = absl::StrCat("netns exec ", ns->name_, " ip ");
  for (const std::string& step :
       {absl::StrCat("netns add ", ns->name_),
        absl::StrCat("link add ", ns->host_link_, " type veth peer name ", ns_link),
        absl::StrCat("link set ", ns_link, " netns ", ns->name_),
        absl::StrCat("addr add ", ns->host_ip_, "/30 dev ", ns->host_link_),
        absl::StrCat("link set ", ns->host_link_, " up"),
        absl::StrCat(in_ns, "addr add ", ns->ns_ip_, "/30 dev ", ns_link),
        absl::StrCat(in_ns, "link set ", ns_link, " up"),
        absl::StrCat(in_ns, "link set lo up")}) {
    if (absl::Status s = Ip(ns->ip_, step); !s.ok()) return s;  // the destructor cleans up
  }
  return ns;
}

NetworkNamespace::~NetworkNamespace() {
  RunCommand(absl::StrCat(ip_, " link del ", host_link_));
  RunCommand(absl::StrCat(ip_, " netns del ", name_));
}

std::vector<std::string> NetworkNamespace::Exec() const { return {ip_, "netns", "exec", name_}; }

absl::Status NetworkNamespace::Cut() {
  return Ip(ip_, absl::StrCat("link set ", host_link_, " down"));
}

absl::Status NetworkNamespace::Heal() {
  return Ip(ip_, absl::StrCat("link set ", host_link_, " up"));
}

}  // namespace meshd::testing
