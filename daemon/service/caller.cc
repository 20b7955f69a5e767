// Who sent a call (see caller.h).
#include "daemon/service/caller.h"

#include <string>

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
    caller.certified_nodes = security::FromAuthContext(*auth).NodeNames();
  }
  return caller;
}

bool IsOperator(const grpc::ServerContextBase& ctx, const security::AdminPolicy& operators) {
  security::PeerIdentity id;
  if (std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context()) {
    id = security::FromAuthContext(*auth);
  }
  return operators.IsOperator(id, ctx.peer());
}

}  // namespace meshd::service
