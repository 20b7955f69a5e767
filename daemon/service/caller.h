// CallerOf: who sent a server call, for the coordinator core's authorization — the node names
// its verified TLS client certificate carries, and the node and secret it presented in its call
// metadata (domain/caller.h). Translation only: the core decides what the caller may do.
//
// Thread-safety: reads only the call's context.
#ifndef MESHD_DAEMON_SERVICE_CALLER_H_
#define MESHD_DAEMON_SERVICE_CALLER_H_

#include "daemon/domain/caller.h"
#include "daemon/security/admin_policy.h"
#include "grpcpp/server_context.h"

namespace meshd::service {

domain::Caller CallerOf(const grpc::ServerContextBase& ctx);
// Whether the call's sender is an operator under `operators` (its verified certificate, or a
// plaintext caller on this host).
bool IsOperator(const grpc::ServerContextBase& ctx, const security::AdminPolicy& operators);

}  // namespace meshd::service

#endif  // MESHD_DAEMON_SERVICE_CALLER_H_
