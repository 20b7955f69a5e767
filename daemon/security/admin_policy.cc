// AdminPolicy (see admin_policy.h).
#include "daemon/security/admin_policy.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace meshd::security {
namespace {

// `value` equals `pattern`, or starts with it less a final '*'.
bool Glob(absl::string_view pattern, absl::string_view value) {
  if (absl::ConsumeSuffix(&pattern, "*")) return absl::StartsWith(value, pattern);
  return value == pattern;
}

bool AnyGlob(absl::string_view pattern, const std::vector<std::string>& values) {
  for (const std::string& v : values) {
    if (Glob(pattern, v)) return true;
  }
  return false;
}

// "OU=admin" is one of the subject's attributes ("CN=operator,OU=admin,O=meshd test"). Escaped
// commas ("\,") inside a value do not split it.
bool SubjectHas(absl::string_view attribute, absl::string_view subject) {
  size_t start = 0;
  for (size_t i = 0; i <= subject.size(); ++i) {
    if (i < subject.size() && (subject[i] != ',' || (i > 0 && subject[i - 1] == '\\'))) continue;
    absl::string_view part = absl::StripAsciiWhitespace(subject.substr(start, i - start));
    if (part == attribute) return true;
    start = i + 1;
  }
  return false;
}

bool IsAttribute(absl::string_view pattern) {
  const size_t eq = pattern.find('=');
  if (eq == 0 || eq == absl::string_view::npos) return false;
  for (char c : pattern.substr(0, eq)) {
    if (!absl::ascii_isalpha(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<AdminPolicy> AdminPolicy::Parse(const std::vector<std::string>& patterns) {
  AdminPolicy policy;
  for (const std::string& p : patterns) {
    absl::string_view rest = p;
    const bool uri = absl::StrContains(p, "://");
    const bool dns = absl::ConsumePrefix(&rest, "dns:");
    const bool cn = !dns && absl::ConsumePrefix(&rest, "cn:");
    const bool attribute = !uri && !dns && !cn && IsAttribute(p);
    const size_t star = rest.find('*');
    if (rest.empty() || !(uri || dns || cn || attribute) ||
        (star != absl::string_view::npos && (!(uri || dns) || star + 1 != rest.size()))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--admin-identity '", p.substr(0, 256),
          "' is not an identity pattern: give a URI SAN (spiffe://td/operator/alice, or a prefix "
          "ending in '*'), dns:NAME (or dns:PREFIX*), cn:NAME, or a subject attribute like "
          "OU=admin"));
    }
    policy.patterns_.push_back(p);
  }
  return policy;
}

bool AdminPolicy::Matches(const PeerIdentity& id) const {
  if (!id.authenticated) return false;
  for (const std::string& p : patterns_) {
    absl::string_view rest = p;
    if (absl::StrContains(p, "://")) {
      if (AnyGlob(p, id.uris)) return true;
    } else if (absl::ConsumePrefix(&rest, "dns:")) {
      if (AnyGlob(rest, id.dns_names)) return true;
    } else if (absl::ConsumePrefix(&rest, "cn:")) {
      if (!id.common_name.empty() && rest == id.common_name) return true;
    } else if (SubjectHas(p, id.subject)) {
      return true;
    }
  }
  return false;
}

bool AdminPolicy::IsOperator(const PeerIdentity& id, absl::string_view peer) const {
  return id.authenticated ? Matches(id) : IsLocalPeer(peer);
}

bool IsLocalPeer(absl::string_view peer) {
  return absl::StartsWith(peer, "unix:") || absl::StartsWith(peer, "ipv4:127.") ||
         absl::StartsWith(peer, "ipv6:[::1]") || absl::StartsWith(peer, "ipv6:[::ffff:127.");
}

}  // namespace meshd::security
