// AdminPolicy: who is an operator — the identities the coordinator's --admin-identity names, matched
// against a caller's verified client certificate, and the rule for plaintext callers. Only an
// operator may use the admin calls (meshd.v1.Admin); read-only listing stays open to any peer.
//
// A pattern is one of:
//   spiffe://td/operator/alice   a URI SAN, exactly;            spiffe://td/operator/*  a prefix
//   dns:ops.example.com          a DNS SAN, exactly;            dns:ops-*               a prefix
//   cn:alice                     the subject's common name
//   OU=admin (O=..., CN=...)     an attribute of the subject, exactly (e.g. an OU for operators)
// A node's certificate is an operator's only if a pattern matches it: keep operators' names apart
// from nodes' (another OU, another SPIFFE path).
//
// Without TLS there is no identity: a plaintext caller is an operator when it calls from the
// coordinator's own host (loopback or a unix socket) — the host that may already read its files.
//
// Thread-safety: immutable after Parse.
#ifndef MESHD_DAEMON_SECURITY_ADMIN_POLICY_H_
#define MESHD_DAEMON_SECURITY_ADMIN_POLICY_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "daemon/security/peer_identity.h"

namespace meshd::security {

class AdminPolicy {
 public:
  // Patterns as above (empty: no certificate is an operator's). Errors: INVALID_ARGUMENT an empty
  // pattern, a '*' anywhere but at the end of a URI or DNS pattern, or an unknown "x:" prefix.
  static absl::StatusOr<AdminPolicy> Parse(const std::vector<std::string>& patterns);
  AdminPolicy() = default;

  // Whether a caller with this identity, arriving from `peer` (gRPC's "ipv4:127.0.0.1:5000",
  // "ipv6:[::1]:5000", "unix:..."), is an operator.
  bool IsOperator(const PeerIdentity& identity, absl::string_view peer) const;
  // Whether a verified certificate with this identity matches a pattern.
  bool Matches(const PeerIdentity& identity) const;

  const std::vector<std::string>& patterns() const { return patterns_; }

 private:
  std::vector<std::string> patterns_;
};

// Whether gRPC's peer string names a caller on this host: loopback (127.0.0.0/8, ::1) or a unix
// socket.
bool IsLocalPeer(absl::string_view peer);

}  // namespace meshd::security

#endif  // MESHD_DAEMON_SECURITY_ADMIN_POLICY_H_
