// PeerIdentity (see peer_identity.h).
#include "daemon/security/peer_identity.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "grpc/grpc_security_constants.h"

namespace meshd::security {
namespace {

std::vector<std::string> Values(const grpc::AuthContext& context, const char* property) {
  std::vector<std::string> out;
  for (const grpc::string_ref& v : context.FindPropertyValues(property)) {
    out.emplace_back(v.data(), v.size());
  }
  return out;
}

std::string First(const grpc::AuthContext& context, const char* property) {
  std::vector<std::string> v = Values(context, property);
  return v.empty() ? "" : v.front();
}

}  // namespace

PeerIdentity FromAuthContext(const grpc::AuthContext& context) {
  PeerIdentity id;
  // gRPC marks a context authenticated once the peer's certificate was verified; a TLS server that
  // does not require client certificates would leave it unauthenticated, as plaintext does.
  if (!context.IsPeerAuthenticated()) return id;
  const std::string security = First(context, GRPC_TRANSPORT_SECURITY_TYPE_PROPERTY_NAME);
  if (security != GRPC_SSL_TRANSPORT_SECURITY_TYPE && security != GRPC_TLS_TRANSPORT_SECURITY_TYPE) {
    return id;
  }
  id.authenticated = true;
  id.dns_names = Values(context, GRPC_PEER_DNS_PROPERTY_NAME);
  id.uris = Values(context, GRPC_PEER_URI_PROPERTY_NAME);
  id.spiffe_id = First(context, GRPC_PEER_SPIFFE_ID_PROPERTY_NAME);
  id.common_name = First(context, GRPC_X509_CN_PROPERTY_NAME);
  id.subject = First(context, GRPC_X509_SUBJECT_PROPERTY_NAME);
  return id;
}

std::vector<std::string> PeerIdentity::NodeNames() const {
  if (!authenticated) return {};
  std::vector<std::string> names = dns_names;
  if (dns_names.empty() && !common_name.empty()) names.push_back(common_name);
  const size_t slash = spiffe_id.rfind('/');
  if (!spiffe_id.empty() && slash != std::string::npos &&
      slash > std::string("spiffe://").size() && slash + 1 < spiffe_id.size()) {
    names.push_back(spiffe_id.substr(slash + 1));
  }
  return names;
}

bool PeerIdentity::Names(absl::string_view name) const {
  if (name.empty()) return false;
  const std::vector<std::string> names = NodeNames();
  return std::find(names.begin(), names.end(), name) != names.end();
}

std::string PeerIdentity::DebugString() const {
  if (!authenticated) return "unauthenticated";
  return absl::StrCat("dns=[", absl::StrJoin(dns_names, ","), "] uri=[", absl::StrJoin(uris, ","),
                      "] cn=", common_name);
}

}  // namespace meshd::security
