// CoordinatorService: meshd.v1.Coordinator, a pure translation: convert the request, call the core,
// finish with the converted result. The methods that hold calls open (JoinJob, KeyGet, Barrier,
// ResolveGroups) and the two every agent sends in bulk (RegisterNode, Heartbeat) are on gRPC's
// async API, spread over the server's completion queues (see async_unary.h): no hop through the
// callback API's shared queue and its threads (at 16,384 nodes: ~100 MB less peak memory); the
// rest on the callback API. A held call is finished later by the core's
// completion, on whatever thread completes it; no thread waits. Heartbeat and RegisterNode are
// each on their own liveness lane (a queue and thread nothing else uses, see async_unary.h), so
// that heavy calls flooding the shared queues never delay a node's heartbeat.
//
// Thread-safety: thread-safe (the core is).
#ifndef MESHD_DAEMON_SERVICE_COORDINATOR_SERVICE_H_
#define MESHD_DAEMON_SERVICE_COORDINATOR_SERVICE_H_

#include <optional>

#include "absl/time/time.h"
#include "common/time/clock.h"
#include "daemon/coordinator/coordinator.h"
#include "daemon/security/admin_policy.h"
#include "daemon/service/async_unary.h"
#include "daemon/service/parsed_unary.h"
#include "meshd/v1/coordinator.grpc.pb.h"

namespace meshd::service {

namespace coordinator_service_internal {
using C = v1::Coordinator;
// Held and bulk methods async (ResolveGroups raw: its request is decoded and its answer encoded
// straight from and to the core's types; RegisterNode and Heartbeat raw: their requests bounded
// by size before they are parsed, see bounded_request.h), the others callback (gRPC's generated
// mix-ins).
using Base = C::WithRawMethod_RegisterNode<C::WithRawMethod_Heartbeat<
    C::WithRawMethod_JoinJob<C::WithCallbackMethod_LeaveJob<C::WithCallbackMethod_LeaveNode<C::WithCallbackMethod_FinishJob<C::WithCallbackMethod_WatchJob<
        C::WithRawMethod_KeySet<C::WithRawMethod_KeyGet<C::WithRawMethod_KeyAdd<
            C::WithCallbackMethod_KeyCompareSet<C::WithRawMethod_KeyWait<
                C::WithRawCallbackMethod_KeyCheck<C::WithCallbackMethod_KeyDelete<
                    C::WithCallbackMethod_KeyCount<C::WithRawMethod_KeyBatch<C::WithRawMethod_Barrier<
                        C::WithRawMethod_ResolveGroups<C::WithCallbackMethod_GetStatus<
                            C::WithCallbackMethod_ListNodes<C::WithCallbackMethod_ListJobs<
                                C::WithCallbackMethod_GetJob<
                                    C::Service>>>>>>>>>>>>>>>>>>>>>>;
}  // namespace coordinator_service_internal

class CoordinatorService final : public coordinator_service_internal::Base, public AsyncMethods {
 public:
  // `max_wait` caps every long wait whose call has no (or a later) deadline. `operators`: who may
  // see the keys a job's ranks wait for in GetJob (the Admin service's rule; none when absent).
  CoordinatorService(coordinator::Coordinator* core, const Clock* clock,
                     absl::Duration max_wait = absl::Minutes(10),
                     std::optional<security::AdminPolicy> operators = std::nullopt);

  grpc::ServerUnaryReactor* LeaveJob(grpc::CallbackServerContext* ctx,
                                     const v1::LeaveJobRequest* req,
                                     v1::LeaveJobResponse* resp) override;
  grpc::ServerUnaryReactor* FinishJob(grpc::CallbackServerContext* ctx,
                                      const v1::FinishJobRequest* req,
                                      v1::FinishJobResponse* resp) override;
  grpc::ServerUnaryReactor* LeaveNode(grpc::CallbackServerContext* ctx,
                                      const v1::LeaveNodeRequest* req,
                                      v1::LeaveNodeResponse* resp) override;
  grpc::ServerWriteReactor<v1::GenerationEnd>* WatchJob(grpc::CallbackServerContext* ctx,
                                                        const v1::WatchJobRequest* req) override;
  grpc::ServerUnaryReactor* KeyCompareSet(grpc::CallbackServerContext* ctx,
                                          const v1::KeyCompareSetRequest* req,
                                          v1::KeyCompareSetResponse* resp) override;
  // Raw: a check names up to 1,024 keys, and its request is refused past their size before it is
  // decoded (8 MiB of empty keys parsed into millions of strings).
  grpc::ServerUnaryReactor* KeyCheck(grpc::CallbackServerContext* ctx,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* KeyDelete(grpc::CallbackServerContext* ctx,
                                      const v1::KeyDeleteRequest* req,
                                      v1::KeyDeleteResponse* resp) override;
  grpc::ServerUnaryReactor* KeyCount(grpc::CallbackServerContext* ctx,
                                     const v1::KeyCountRequest* req,
                                     v1::KeyCountResponse* resp) override;
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

  void AwaitCalls(AsyncQueues* queues) override;

 private:
  template <typename Req, typename Resp>
  using Async = AsyncUnaryCall<Req, Resp>;
  // Requests the service parses itself, each within its method's limit (parsed_unary.h).
  template <typename Req, typename Resp>
  using Parsed = ParsedUnaryCall<Req, Resp>;

  using Raw = Async<grpc::ByteBuffer, grpc::ByteBuffer>;
  void ServeRegisterNode(grpc::ServerContext* ctx, const grpc::ByteBuffer& request,
                         grpc::ByteBuffer* resp, Raw::Reply reply);
  void ServeHeartbeat(grpc::ServerContext* ctx, const grpc::ByteBuffer& request,
                      grpc::ByteBuffer* resp, Raw::Reply reply);
  void ServeJoinJob(grpc::ServerContext* ctx, const v1::JoinJobRequest& req, v1::Assignment* resp,
                    Parsed<v1::JoinJobRequest, v1::Assignment>::Reply reply);
  void ServeKeyGet(grpc::ServerContext* ctx, const v1::KeyGetRequest& req, v1::KeyGetResponse* resp,
                   Parsed<v1::KeyGetRequest, v1::KeyGetResponse>::Reply reply);
  // The store's busiest calls (torch's start-up is sets, adds and waits) on the async API too:
  // on the callback API they complete through gRPC's one callback queue, which Debian's libgrpc
  // scans on every completion.
  void ServeKeySet(grpc::ServerContext* ctx, const v1::KeySetRequest& req, v1::KeySetResponse* resp,
                   Parsed<v1::KeySetRequest, v1::KeySetResponse>::Reply reply);
  void ServeKeyAdd(grpc::ServerContext* ctx, const v1::KeyAddRequest& req, v1::KeyAddResponse* resp,
                   Parsed<v1::KeyAddRequest, v1::KeyAddResponse>::Reply reply);
  void ServeKeyWait(grpc::ServerContext* ctx, const v1::KeyWaitRequest& req,
                    v1::KeyWaitResponse* resp,
                    Parsed<v1::KeyWaitRequest, v1::KeyWaitResponse>::Reply reply);
  // An agent's batch of its workers' store calls: held until one is satisfied when all wait.
  void ServeKeyBatch(grpc::ServerContext* ctx, const v1::KeyBatchRequest& req,
                     v1::KeyBatchResponse* resp,
                     Parsed<v1::KeyBatchRequest, v1::KeyBatchResponse>::Reply reply);
  void ServeBarrier(grpc::ServerContext* ctx, const v1::BarrierRequest& req,
                    v1::BarrierResponse* resp,
                    Parsed<v1::BarrierRequest, v1::BarrierResponse>::Reply reply);
  void ServeResolveGroups(grpc::ServerContext* ctx, const grpc::ByteBuffer& request,
                          grpc::ByteBuffer* resp,
                          Async<grpc::ByteBuffer, grpc::ByteBuffer>::Reply reply);
  absl::Time Deadline(const grpc::ServerContextBase* ctx) const;

  coordinator::Coordinator* const core_;
  const Clock* const clock_;
  const absl::Duration max_wait_;
  const std::optional<security::AdminPolicy> operators_;
  const Raw::Method register_node_;
  const Raw::Method heartbeat_;
  const Parsed<v1::JoinJobRequest, v1::Assignment>::Method join_job_;
  const Parsed<v1::KeyGetRequest, v1::KeyGetResponse>::Method key_get_;
  const Parsed<v1::KeySetRequest, v1::KeySetResponse>::Method key_set_;
  const Parsed<v1::KeyAddRequest, v1::KeyAddResponse>::Method key_add_;
  const Parsed<v1::KeyWaitRequest, v1::KeyWaitResponse>::Method key_wait_;
  const Parsed<v1::KeyBatchRequest, v1::KeyBatchResponse>::Method key_batch_;
  const Parsed<v1::BarrierRequest, v1::BarrierResponse>::Method barrier_;
  const Async<grpc::ByteBuffer, grpc::ByteBuffer>::Method resolve_groups_;
};

}  // namespace meshd::service

#endif  // MESHD_DAEMON_SERVICE_COORDINATOR_SERVICE_H_
