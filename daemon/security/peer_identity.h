// PeerIdentity: who the peer of a server call is, as its TLS client certificate says — the names
// the authorization of node and operator calls is decided on. Plaintext calls (unix sockets, or
// a daemon run without TLS) have an empty, unauthenticated identity.
//
// Thread-safety: a value type; FromAuthContext only reads the call's context.
#ifndef MESHD_DAEMON_SECURITY_PEER_IDENTITY_H_
#define MESHD_DAEMON_SECURITY_PEER_IDENTITY_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "grpcpp/security/auth_context.h"

namespace meshd::security {

struct PeerIdentity {
  // Whether the peer presented a certificate that chains to our CA (mutual TLS). False for
  // plaintext; then every other field is empty.
  bool authenticated = false;
  std::vector<std::string> dns_names;  // DNS SANs, in the certificate's order
  std::vector<std::string> uris;       // URI SANs, e.g. "spiffe://cluster.local/node/gpu-17"
  std::string spiffe_id;               // the URI SAN when it is the one spiffe:// URI, else ""
  std::string common_name;             // the subject's CN, "" when absent
  std::string subject;                 // the subject, e.g. "CN=gpu-17,O=meshd" ("" before gRPC 1.5x)

  // The node names the certificate vouches for: its DNS SANs, or its CN when it has none, and
  // the last path segment of its SPIFFE id ("spiffe://td/node/gpu-17" names "gpu-17"; a bare
  // trust domain names nothing). Empty unauthenticated. The one rule the authorization uses.
  std::vector<std::string> NodeNames() const;
  // Whether NodeNames() holds `name`.
  bool Names(absl::string_view name) const;
  // "dns=[a,b] uri=[...] cn=x" for logs and errors; "unauthenticated" for plaintext.
  std::string DebugString() const;
};

// The identity of the peer of the server call whose auth context this is
// (`ServerContext::auth_context()` / `CallbackServerContext::auth_context()`).
PeerIdentity FromAuthContext(const grpc::AuthContext& context);

}  // namespace meshd::security

#endif  // MESHD_DAEMON_SECURITY_PEER_IDENTITY_H_
