// NetworkNamespace: a real network namespace joined to this one by a veth pair, made by the test
// itself with iproute2 (needs root and a kernel that allows it) — a host whose network can be cut
// and healed, as a partition does to a node. The host side gets HOST_IP, the namespace NS_IP
// (a /30 of 10.231.0.0/16 chosen from the pid, so parallel tests do not collide).
//
// Thread-safety: none; one test owns it.
#ifndef MESHD_TESTS_SUPPORT_NETWORK_NAMESPACE_H_
#define MESHD_TESTS_SUPPORT_NETWORK_NAMESPACE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace meshd::testing {

class NetworkNamespace {
 public:
  // Makes the namespace and the veth pair, both ends up. FAILED_PRECONDITION, saying why, where
  // `ip` is missing or the kernel refuses (not root, no CAP_NET_ADMIN, no veth): tests skip then.
  static absl::StatusOr<std::unique_ptr<NetworkNamespace>> Create();
  ~NetworkNamespace();  // removes both (the veth pair goes with the namespace)

  const std::string& host_ip() const { return host_ip_; }
  const std::string& ns_ip() const { return ns_ip_; }
  // argv prefix that runs a program inside the namespace: {ip, netns, exec, NAME}.
  std::vector<std::string> Exec() const;

  // Takes the host side of the link down (packets both ways are lost, as with a pulled cable), or
  // up again.
  absl::Status Cut();
  absl::Status Heal();

 private:
  NetworkNamespace() = default;

  std::string ip_;  // the iproute2 binary
  std::string name_, host_link_, host_ip_, ns_ip_;
};

}  // namespace meshd::testing

#endif  // MESHD_TESTS_SUPPORT_NETWORK_NAMESPACE_H_
