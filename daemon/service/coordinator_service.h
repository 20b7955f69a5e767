// CoordinatorService: meshd.v1.Coordinator on gRPC's callback API. Pure translation: convert the
// request, call the core, finish with the converted result. Long waits hold their reactor and are
// finished later by the core's completion, on whatever thread completes them; no thread waits.
//
// Thread-safety: thread-safe (the core is).
#ifndef MESHD_DAEMON_SERVICE_COORDINATOR_SERVICE_H_
#define MESHD_DAEMON_SERVICE_COORDINATOR_SERVICE_H_

#include "absl/time/time.h"
#include "common/time/clock.h"
#include "daemon/coordinator/coordinator.h"
#include "meshd/v1/coordinator.grpc.pb.h"

namespace meshd::service {

class CoordinatorService final : public v1::Coordinator::CallbackService {
 public:
  // `max_wait` caps every long wait whose call has no (or a later) deadline.
  CoordinatorService(coordinator::Coordinator* core, const Clock* clock,
                     absl::Duration max_wait = absl::Minutes(10));

  grpc::ServerUnaryReactor* RegisterNode(grpc::CallbackServerContext* ctx,
                                         const v1::RegisterNodeRequest* req,
                                         v1::RegisterNodeResponse* resp) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* ctx,
                                      const v1::HeartbeatRequest* req,
                                      v1::HeartbeatResponse* resp) override;
  grpc::ServerUnaryReactor* JoinJob(grpc::CallbackServerContext* ctx, const v1::JoinJobRequest* req,
                                    v1::Assignment* resp) override;
  grpc::ServerUnaryReactor* LeaveJob(grpc::CallbackServerContext* ctx,
                                     const v1::LeaveJobRequest* req,
                                     v1::LeaveJobResponse* resp) override;
  grpc::ServerWriteReactor<v1::GenerationEnd>* WatchJob(grpc::CallbackServerContext* ctx,
                                                        const v1::WatchJobRequest* req) override;
  grpc::ServerUnaryReactor* KeySet(grpc::CallbackServerContext* ctx, const v1::KeySetRequest* req,
                                   v1::KeySetResponse* resp) override;
  grpc::ServerUnaryReactor* KeyGet(grpc::CallbackServerContext* ctx, const v1::KeyGetRequest* req,
                                   v1::KeyGetResponse* resp) override;
  grpc::ServerUnaryReactor* KeyAdd(grpc::CallbackServerContext* ctx, const v1::KeyAddRequest* req,
                                   v1::KeyAddResponse* resp) override;
  grpc::ServerUnaryReactor* KeyCompareSet(grpc::CallbackServerContext* ctx,
                                          const v1::KeyCompareSetRequest* req,
                                          v1::KeyCompareSetResponse* resp) override;
  grpc::ServerUnaryReactor* Barrier(grpc::CallbackServerContext* ctx, const v1::BarrierRequest* req,
                                    v1::BarrierResponse* resp) override;
  grpc::ServerUnaryReactor* ResolveGroups(grpc::CallbackServerContext* ctx,
                                          const v1::ResolveGroupsRequest* req,
                                          v1::ResolveGroupsResponse* resp) override;
  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* ctx,
                                      const v1::GetStatusRequest* req,
                                      v1::CoordinatorStatus* resp) override;
  grpc::ServerUnaryReactor* ListNodes(grpc::CallbackServerContext* ctx,
                                      const v1::ListNodesRequest* req,
                                      v1::ListNodesResponse* resp) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* ctx,
                                     const v1::ListJobsRequest* req,
                                     v1::ListJobsResponse* resp) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* ctx, const v1::GetJobRequest* req,
                                   v1::JobStatus* resp) override;

 private:
  absl::Time Deadline(grpc::CallbackServerContext* ctx) const;

  coordinator::Coordinator* const core_;
  const Clock* const clock_;
  const absl::Duration max_wait_;
};

}  // namespace meshd::service

#endif  // MESHD_DAEMON_SERVICE_COORDINATOR_SERVICE_H_
