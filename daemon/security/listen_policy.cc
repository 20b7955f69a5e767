// The plaintext-listener rule (see listen_policy.h).
#include "daemon/security/listen_policy.h"

#include <arpa/inet.h>

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace meshd::security {

bool IsLocalOnly(absl::string_view address) {
  if (absl::StartsWith(address, "unix:")) return true;
  // gRPC's URI forms name the same hosts.
  absl::ConsumePrefix(&address, "dns:///");
  absl::ConsumePrefix(&address, "ipv4:");
  absl::ConsumePrefix(&address, "ipv6:");
  std::string host;
  if (absl::StartsWith(address, "[")) {
    const size_t close = address.find(']');
    if (close == absl::string_view::npos) return false;
    host = std::string(address.substr(1, close - 1));
  } else {
    const size_t colon = address.rfind(':');
    host = std::string(colon == absl::string_view::npos ? address : address.substr(0, colon));
  }
  host = absl::AsciiStrToLower(host);
  if (host == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;  // 127.0.0.0/8
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    static const in6_addr kLoopback = IN6ADDR_LOOPBACK_INIT;
    return IN6_ARE_ADDR_EQUAL(&v6, &kLoopback);
  }
  return false;
}

absl::Status CheckPlaintextListen(absl::string_view flag, absl::string_view address, bool tls,
                                  bool insecure) {
  if (tls || insecure || IsLocalOnly(address)) return absl::OkStatus();
  // Not HOST:PORT at all: the listener refuses it with the right message.
  if (address.find(':') == absl::string_view::npos) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "refusing to serve plaintext on ", flag, " ", address,
      ", which other hosts can reach: anyone there could act as any node or job. Pass "
      "--tls-cert, --tls-key and --tls-ca (mutual TLS; see docs/security.md), or listen on "
      "loopback (e.g. 127.0.0.1), or pass --insecure to accept the risk on a trusted network"));
}

}  // namespace meshd::security
