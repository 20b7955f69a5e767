// The names an agent reports for its node: the node name (unique in the cluster) and the hostname
// (the coordinator orders a job's nodes by NVLink domain, then hostname, then node name). Each
// defaults to gethostname(), which in a Kubernetes pod is the pod's name ("meshd-agent-x7k2q"),
// so a DaemonSet passes both from the downward API (spec.nodeName); an agent in a pod without
// them is told so in a warning.
//
// Thread-safety: pure functions.
#ifndef MESHD_DAEMON_RUNTIME_AGENT_IDENTITY_H_
#define MESHD_DAEMON_RUNTIME_AGENT_IDENTITY_H_

#include <string>

#include "absl/status/statusor.h"

namespace meshd::runtime {

struct AgentIdentity {
  std::string node_name;
  std::string hostname;
  // Empty, or what the operator should fix (logged as a warning at start).
  std::string warning;
};

// `node_name`, `hostname`: the flags (--node-name, --hostname; empty: not given). `system_hostname`:
// gethostname(). `in_pod`: KUBERNETES_SERVICE_HOST is set (the kubelet sets it in every pod).
// Errors: INVALID_ARGUMENT a name that is not 1-253 letters, digits, '.', '_' or '-' (the message
// names the flag).
absl::StatusOr<AgentIdentity> ResolveAgentIdentity(const std::string& node_name,
                                                   const std::string& hostname,
                                                   const std::string& system_hostname, bool in_pod);

// Whether this process runs in a Kubernetes pod (KUBERNETES_SERVICE_HOST is set).
bool InKubernetesPod();

}  // namespace meshd::runtime

#endif  // MESHD_DAEMON_RUNTIME_AGENT_IDENTITY_H_
