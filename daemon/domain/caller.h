// Caller: who sent a call to the coordinator, as the transport established it, for the core's
// authorization. A node is who its certificate says (TLS), or who proves it holds the secret its
// registration returned (the `meshd-node` and `meshd-node-secret` call metadata): a second
// process cannot speak as a node without either. Plain data: the service fills it in, the
// coordinator core decides.
#ifndef MESHD_DAEMON_DOMAIN_CALLER_H_
#define MESHD_DAEMON_DOMAIN_CALLER_H_

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

namespace meshd::domain {

// Call metadata an agent sends on every call once registered.
inline constexpr char kNodeMetadata[] = "meshd-node";
inline constexpr char kNodeSecretMetadata[] = "meshd-node-secret";
// A node secret an agent chooses is at least this long (128 bits, hex).
inline constexpr size_t kMinNodeSecretBytes = 32;

struct Caller {
  // The node the caller says it acts for and the secret it presented (empty when none).
  std::string node;
  std::string secret;
  // Node names its verified client certificate carries (DNS SANs, CN, SPIFFE URI SANs); empty
  // without TLS.
  std::vector<std::string> certified_nodes;
  // Whether the transport found the caller to be an operator (a certificate matching
  // --admin-identity, or a plaintext caller on the coordinator's own host): only then may it use
  // the admin calls. Set only by the Admin service.
  bool admin = false;
  // Who the caller is, for the logs of what it did: its certificate's names, or its address.
  std::string identity;

  bool Certifies(const std::string& name) const {
    return std::find(certified_nodes.begin(), certified_nodes.end(), name) !=
           certified_nodes.end();
  }
};

}  // namespace meshd::domain

#endif  // MESHD_DAEMON_DOMAIN_CALLER_H_
