// meshd.v1.Admin translated onto the coordinator core (see admin_service.h).
#include "daemon/service/admin_service.h"

#include "absl/strings/str_cat.h"
#include "daemon/security/peer_identity.h"
#include "daemon/service/caller.h"
#include "daemon/wire/convert.h"

namespace meshd::service {
namespace {

// Finishes the call with `r`, filling `resp` when it succeeded.
grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* ctx,
                                 const absl::StatusOr<coordinator::AdminResult>& r,
                                 v1::AdminResponse* resp) {
  if (r.ok()) {
    resp->set_changed(r->changed);
    resp->set_summary(r->summary);
    for (const auto& [job, generation] : r->ended) {
      v1::EndedGeneration* e = resp->add_ended();
      e->set_job(job);
      e->set_generation(generation);
    }
  }
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(wire::ToGrpc(r.status()));
  return reactor;
}

}  // namespace

domain::Caller AdminService::OperatorOf(const grpc::CallbackServerContext& ctx) const {
  domain::Caller caller = CallerOf(ctx);
  security::PeerIdentity id;
  if (std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context()) {
    id = security::FromAuthContext(*auth);
  }
  caller.admin = IsOperator(ctx, policy_);
  caller.identity =
      id.authenticated ? id.DebugString() : absl::StrCat("plaintext from ", ctx.peer());
  return caller;
}

grpc::ServerUnaryReactor* AdminService::CordonNode(grpc::CallbackServerContext* ctx,
                                                   const v1::CordonNodeRequest* req,
                                                   v1::AdminResponse* resp) {
  return Finish(ctx, core_->CordonNode(OperatorOf(*ctx), req->node(), true, req->reason()), resp);
}

grpc::ServerUnaryReactor* AdminService::UncordonNode(grpc::CallbackServerContext* ctx,
                                                     const v1::UncordonNodeRequest* req,
                                                     v1::AdminResponse* resp) {
  return Finish(ctx, core_->CordonNode(OperatorOf(*ctx), req->node(), false, ""), resp);
}

grpc::ServerUnaryReactor* AdminService::DrainNode(grpc::CallbackServerContext* ctx,
                                                  const v1::DrainNodeRequest* req,
                                                  v1::AdminResponse* resp) {
  return Finish(ctx, core_->DrainNode(OperatorOf(*ctx), req->node(), req->reason()), resp);
}

grpc::ServerUnaryReactor* AdminService::ForgetNode(grpc::CallbackServerContext* ctx,
                                                   const v1::ForgetNodeRequest* req,
                                                   v1::AdminResponse* resp) {
  return Finish(ctx, core_->ForgetNode(OperatorOf(*ctx), req->node()), resp);
}

grpc::ServerUnaryReactor* AdminService::EndJob(grpc::CallbackServerContext* ctx,
                                               const v1::EndJobRequest* req,
                                               v1::AdminResponse* resp) {
  return Finish(ctx, core_->EndJob(OperatorOf(*ctx), req->job(), req->reason()), resp);
}

}  // namespace meshd::service
