// Who sent a call (see caller.h).
#include "daemon/service/caller.h"

#include <string>

#include "absl/strings/strip.h"
#include "daemon/security/peer_identity.h"

namespace meshd::service {
namespace {

// The metadata value of `key`, capped (a secret is 32 characters, a node name at most 253).
std::string Metadata(const grpc::ServerContextBase& ctx, const char* key) {
  const auto& md = ctx.client_metadata();
  auto it = md.find(key);
  if (it == md.end() || it->second.size() > 512) return "";
  return std::string(it->second.data(), it->second.size());
}

}  // namespace

domain::Caller CallerOf(const grpc::ServerContextBase& ctx) {
  domain::Caller caller;
  caller.node = Metadata(ctx, domain::kNodeMetadata);
  caller.secret = Metadata(ctx, domain::kNodeSecretMetadata);
  if (std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context()) {
    const security::PeerIdentity peer = security::FromAuthContext(*auth);
    if (peer.authenticated) {
      // The names the certificate vouches for (PeerIdentity::Names' rule): its DNS SANs, or its
      // CN when it has none, and the last segment of its SPIFFE id.
      caller.certified_nodes = peer.dns_names;
      if (peer.dns_names.empty() && !peer.common_name.empty()) {
        caller.certified_nodes.push_back(peer.common_name);
      }
      // spiffe://<trust domain>/<path...>/<node>: the last segment of a path, never the trust
      // domain itself.
      constexpr absl::string_view kScheme = "spiffe://";
      absl::string_view id = peer.spiffe_id;
      if (absl::ConsumePrefix(&id, kScheme)) {
        const size_t path = id.find('/');
        const size_t last = id.rfind('/');
        if (path != absl::string_view::npos && last + 1 < id.size()) {
          caller.certified_nodes.emplace_back(id.substr(last + 1));
        }
      }
    }
  }
  return caller;
}

}  // namespace meshd::service
