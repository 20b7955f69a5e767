// ResolveAgentIdentity (see agent_identity.h).
#include "daemon/runtime/agent_identity.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "daemon/domain/limits.h"
#include "daemon/domain/validation.h"

namespace meshd::runtime {

absl::StatusOr<AgentIdentity> ResolveAgentIdentity(const std::string& node_name,
                                                   const std::string& hostname,
                                                   const std::string& system_hostname,
                                                   bool in_pod) {
  AgentIdentity id;
  id.node_name = node_name.empty() ? system_hostname : node_name;
  id.hostname = hostname.empty() ? system_hostname : hostname;
  if (absl::Status s = domain::ValidateName("node", id.node_name, domain::kMaxNodeNameBytes);
      !s.ok()) {
    return absl::InvalidArgumentError(
        node_name.empty() ? absl::StrCat(s.message(), " (the hostname: set --node-name)")
                          : absl::StrCat("--node-name: ", s.message()));
  }
  if (!hostname.empty()) {
    if (absl::Status s = domain::ValidateName("host", hostname, domain::kMaxNodeNameBytes);
        !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--hostname: ", s.message()));
    }
  }
  if (in_pod && (node_name.empty() || hostname.empty())) {
    std::vector<std::string> missing;
    if (node_name.empty()) missing.push_back("MESHD_NODE_NAME (--node-name)");
    if (hostname.empty()) missing.push_back("MESHD_HOSTNAME (--hostname)");
    id.warning = absl::StrCat(
        "running in a Kubernetes pod (KUBERNETES_SERVICE_HOST is set) without ",
        absl::StrJoin(missing, " or "), ": '", system_hostname,
        "' is the pod's name, which changes with every pod and orders nodes by random suffixes; "
        "set both from the downward API (env valueFrom fieldRef fieldPath: spec.nodeName), as "
        "deploy/k8s/base/agent-daemonset.yaml does");
  }
  return id;
}

bool InKubernetesPod() {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  return host != nullptr && host[0] != '\0';
}

}  // namespace meshd::runtime
