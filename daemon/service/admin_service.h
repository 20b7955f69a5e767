// AdminService: meshd.v1.Admin, the operators' verbs, translated onto the coordinator core. The
// service decides only who the caller is (an operator or not, by the AdminPolicy); the core refuses
// a caller that is not one and does the rest.
//
// Thread-safety: thread-safe (the core is; the policy is immutable).
#ifndef MESHD_DAEMON_SERVICE_ADMIN_SERVICE_H_
#define MESHD_DAEMON_SERVICE_ADMIN_SERVICE_H_

#include "daemon/coordinator/coordinator.h"
#include "daemon/security/admin_policy.h"
#include "meshd/v1/admin.grpc.pb.h"

namespace meshd::service {

class AdminService final : public v1::Admin::CallbackService {
 public:
  // `core` is not owned and outlives the service.
  AdminService(coordinator::Coordinator* core, security::AdminPolicy policy)
      : core_(core), policy_(std::move(policy)) {}

  grpc::ServerUnaryReactor* CordonNode(grpc::CallbackServerContext* ctx,
                                       const v1::CordonNodeRequest* req,
                                       v1::AdminResponse* resp) override;
  grpc::ServerUnaryReactor* UncordonNode(grpc::CallbackServerContext* ctx,
                                         const v1::UncordonNodeRequest* req,
                                         v1::AdminResponse* resp) override;
  grpc::ServerUnaryReactor* DrainNode(grpc::CallbackServerContext* ctx,
                                      const v1::DrainNodeRequest* req,
                                      v1::AdminResponse* resp) override;
  grpc::ServerUnaryReactor* ForgetNode(grpc::CallbackServerContext* ctx,
                                       const v1::ForgetNodeRequest* req,
                                       v1::AdminResponse* resp) override;
  grpc::ServerUnaryReactor* EndJob(grpc::CallbackServerContext* ctx, const v1::EndJobRequest* req,
                                   v1::AdminResponse* resp) override;

 private:
  // The caller as the core sees it, with Caller::admin and Caller::identity filled in.
  domain::Caller OperatorOf(const grpc::CallbackServerContext& ctx) const;

  coordinator::Coordinator* const core_;
  const security::AdminPolicy policy_;
};

}  // namespace meshd::service

#endif  // MESHD_DAEMON_SERVICE_ADMIN_SERVICE_H_
