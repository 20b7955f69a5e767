// meshd.v1.Coordinator translated onto the coordinator core (see coordinator_service.h).
#include "daemon/service/coordinator_service.h"

#include "daemon/service/bounded_request.h"
#include "daemon/service/caller.h"
#include "daemon/service/watch_reactor.h"
#include "daemon/wire/convert.h"
#include "daemon/wire/group_ids_encoding.h"
#include "daemon/wire/kv_batch_convert.h"
#include "daemon/wire/resolve_groups_decoding.h"

namespace meshd::service {

using wire::CallDeadline;
using wire::EncodeResolveGroupsResponse;
using wire::FromProto;
using wire::ToGrpc;
using wire::ToProto;
namespace {

grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* ctx, const absl::Status& s) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpc(s));
  return reactor;
}

// An async method's two halves on `s`: asking gRPC for its next call (the generated Request<Name>)
// and serving one (Serve<Name>).
template <typename Req, typename Resp, typename S, typename RequestFn, typename ServeFn>
typename AsyncUnaryCall<Req, Resp>::Method AsyncMethod(S* s, RequestFn request, ServeFn serve,
                                                       Lane lane = Lane::kShared) {
  return {[s, request](grpc::ServerContext* ctx, Req* req,
                       grpc::ServerAsyncResponseWriter<Resp>* writer,
                       grpc::CompletionQueue* call_cq, grpc::ServerCompletionQueue* arrival_cq,
                       void* tag) { (s->*request)(ctx, req, writer, call_cq, arrival_cq, tag); },
          [s, serve](grpc::ServerContext* ctx, const Req& req, Resp* resp,
                     typename AsyncUnaryCall<Req, Resp>::Reply reply) {
            (s->*serve)(ctx, req, resp, std::move(reply));
          },
          lane};
}

// A method whose request the service parses itself, at most `max_bytes` of it (ParsedUnaryCall).
template <typename Req, typename Resp, typename S, typename RequestFn, typename ServeFn>
typename ParsedUnaryCall<Req, Resp>::Method ParsedMethod(S* s, RequestFn request, ServeFn serve,
                                                         const char* name, size_t max_bytes) {
  return {[s, request](grpc::ServerContext* ctx, grpc::ByteBuffer* req,
                       grpc::ServerAsyncResponseWriter<grpc::ByteBuffer>* writer,
                       grpc::CompletionQueue* call_cq, grpc::ServerCompletionQueue* arrival_cq,
                       void* tag) { (s->*request)(ctx, req, writer, call_cq, arrival_cq, tag); },
          [s, serve](grpc::ServerContext* ctx, const Req& req, Resp* resp,
                     typename ParsedUnaryCall<Req, Resp>::Reply reply) {
            (s->*serve)(ctx, req, resp, std::move(reply));
          },
          name, max_bytes};
}

}  // namespace

CoordinatorService::CoordinatorService(coordinator::Coordinator* core, const Clock* clock,
                                       absl::Duration max_wait,
                                       std::optional<security::AdminPolicy> operators)
    : core_(core),
      clock_(clock),
      max_wait_(max_wait),
      operators_(std::move(operators)),
      register_node_(AsyncMethod<grpc::ByteBuffer, grpc::ByteBuffer>(
          this, &CoordinatorService::RequestRegisterNode, &CoordinatorService::ServeRegisterNode,
          Lane::kRegistrations)),
      heartbeat_(AsyncMethod<grpc::ByteBuffer, grpc::ByteBuffer>(
          this, &CoordinatorService::RequestHeartbeat, &CoordinatorService::ServeHeartbeat,
          Lane::kHeartbeats)),
      join_job_(ParsedMethod<v1::JoinJobRequest, v1::Assignment>(
          this, &CoordinatorService::RequestJoinJob, &CoordinatorService::ServeJoinJob, "JoinJob",
          kMaxJoinJobRequestBytes)),
      key_get_(ParsedMethod<v1::KeyGetRequest, v1::KeyGetResponse>(
          this, &CoordinatorService::RequestKeyGet, &CoordinatorService::ServeKeyGet, "KeyGet",
          kMaxKeyRequestBytes)),
      key_set_(ParsedMethod<v1::KeySetRequest, v1::KeySetResponse>(
          this, &CoordinatorService::RequestKeySet, &CoordinatorService::ServeKeySet, "KeySet",
          kMaxKeySetRequestBytes)),
      key_add_(ParsedMethod<v1::KeyAddRequest, v1::KeyAddResponse>(
          this, &CoordinatorService::RequestKeyAdd, &CoordinatorService::ServeKeyAdd, "KeyAdd",
          kMaxKeyRequestBytes)),
      key_wait_(ParsedMethod<v1::KeyWaitRequest, v1::KeyWaitResponse>(
          this, &CoordinatorService::RequestKeyWait, &CoordinatorService::ServeKeyWait, "KeyWait",
          kMaxKeyWaitRequestBytes)),
      key_batch_(ParsedMethod<v1::KeyBatchRequest, v1::KeyBatchResponse>(
          this, &CoordinatorService::RequestKeyBatch, &CoordinatorService::ServeKeyBatch,
          "KeyBatch", kMaxKeyBatchRequestBytes)),
      barrier_(ParsedMethod<v1::BarrierRequest, v1::BarrierResponse>(
          this, &CoordinatorService::RequestBarrier, &CoordinatorService::ServeBarrier, "Barrier",
          kMaxKeyRequestBytes)),
      resolve_groups_(AsyncMethod<grpc::ByteBuffer, grpc::ByteBuffer>(
          this, &CoordinatorService::RequestResolveGroups,
          &CoordinatorService::ServeResolveGroups)) {}

void CoordinatorService::AwaitCalls(AsyncQueues* queues) {
  // Two calls of each asked for at a time, so that one arriving while the arrivals' thread serves
  // another does not wait for the next ask.
  for (int i = 0; i < 2; ++i) {
    Raw::Await(&register_node_, queues);
    Raw::Await(&heartbeat_, queues);
    Parsed<v1::JoinJobRequest, v1::Assignment>::Await(&join_job_, queues);
    Parsed<v1::KeyGetRequest, v1::KeyGetResponse>::Await(&key_get_, queues);
    Parsed<v1::KeySetRequest, v1::KeySetResponse>::Await(&key_set_, queues);
    Parsed<v1::KeyAddRequest, v1::KeyAddResponse>::Await(&key_add_, queues);
    Parsed<v1::KeyWaitRequest, v1::KeyWaitResponse>::Await(&key_wait_, queues);
    Parsed<v1::KeyBatchRequest, v1::KeyBatchResponse>::Await(&key_batch_, queues);
    Parsed<v1::BarrierRequest, v1::BarrierResponse>::Await(&barrier_, queues);
    Async<grpc::ByteBuffer, grpc::ByteBuffer>::Await(&resolve_groups_, queues);
  }
}

absl::Time CoordinatorService::Deadline(const grpc::ServerContextBase* ctx) const {
  return CallDeadline(ctx->deadline(), clock_->Now(), max_wait_);
}

void CoordinatorService::ServeRegisterNode(grpc::ServerContext* ctx,
                                           const grpc::ByteBuffer& request,
                                           grpc::ByteBuffer* out, Raw::Reply reply) {
  v1::RegisterNodeRequest req;
  if (absl::Status s =
          ParseBounded(request, kMaxRegisterNodeRequestBytes, "RegisterNode", &req);
      !s.ok()) {
    return reply(ToGrpc(s));
  }
  std::vector<domain::RunningJob> running;
  for (const v1::RunningJob& r : req.running_jobs()) running.push_back(FromProto(r));
  absl::StatusOr<coordinator::NodeRegistered> r =
      core_->RegisterNodeAs(CallerOf(*ctx), FromProto(req.inventory()), running);
  if (r.ok()) {
    v1::RegisterNodeResponse response;
    response.set_restarted(r->restarted);
    response.set_node_secret(r->secret);
    response.set_heartbeat_interval_ms(
        static_cast<uint32_t>(absl::ToInt64Milliseconds(r->timing.interval)));
    response.set_heartbeat_timeout_ms(
        static_cast<uint32_t>(absl::ToInt64Milliseconds(r->timing.timeout)));
    *out = Serialize(response);
  }
  reply(ToGrpc(r.status()));
}

void CoordinatorService::ServeHeartbeat(grpc::ServerContext* ctx, const grpc::ByteBuffer& request,
                                        grpc::ByteBuffer* out, Raw::Reply reply) {
  v1::HeartbeatRequest req;
  if (absl::Status s = ParseBounded(request, kMaxHeartbeatRequestBytes, "Heartbeat", &req);
      !s.ok()) {
    return reply(ToGrpc(s));
  }
  if (absl::Status s = core_->AuthorizeNode(CallerOf(*ctx), req.node()); !s.ok()) {
    return reply(ToGrpc(s));
  }
  const absl::StatusOr<coordinator::HeartbeatTiming> t =
      core_->Heartbeat(req.node(), req.incarnation());
  if (t.ok()) {
    v1::HeartbeatResponse resp;
    resp.set_heartbeat_interval_ms(static_cast<uint32_t>(absl::ToInt64Milliseconds(t->interval)));
    resp.set_heartbeat_timeout_ms(static_cast<uint32_t>(absl::ToInt64Milliseconds(t->timeout)));
    *out = Serialize(resp);
  }
  reply(ToGrpc(t.status()));
}

void CoordinatorService::ServeJoinJob(grpc::ServerContext* ctx, const v1::JoinJobRequest& req,
                                      v1::Assignment* resp,
                                      Parsed<v1::JoinJobRequest, v1::Assignment>::Reply reply) {
  if (absl::Status s = core_->AuthorizeNode(CallerOf(*ctx), req.node()); !s.ok()) {
    return reply(ToGrpc(s));
  }
  core_->JoinJob(FromProto(req), Deadline(ctx),
                 [reply = std::move(reply), resp,
                  with_members = req.with_members()](absl::StatusOr<domain::Assignment> a) {
                   if (a.ok()) ToProto(*a, with_members, resp);
                   reply(ToGrpc(a.status()));
                 });
}

grpc::ServerUnaryReactor* CoordinatorService::LeaveJob(grpc::CallbackServerContext* ctx,
                                                       const v1::LeaveJobRequest* req,
                                                       v1::LeaveJobResponse*) {
  if (absl::Status s = core_->AuthorizeNode(CallerOf(*ctx), req->node()); !s.ok()) {
    return Done(ctx, s);
  }
  return Done(ctx, core_->LeaveJob(req->job(), req->generation(), req->node(), req->message()));
}

grpc::ServerUnaryReactor* CoordinatorService::FinishJob(grpc::CallbackServerContext* ctx,
                                                        const v1::FinishJobRequest* req,
                                                        v1::FinishJobResponse*) {
  if (absl::Status s = core_->AuthorizeNode(CallerOf(*ctx), req->node()); !s.ok()) {
    return Done(ctx, s);
  }
  return Done(ctx, core_->FinishJob(req->job(), req->generation(), req->node()));
}

grpc::ServerUnaryReactor* CoordinatorService::LeaveNode(grpc::CallbackServerContext* ctx,
                                                        const v1::LeaveNodeRequest* req,
                                                        v1::LeaveNodeResponse*) {
  if (absl::Status s = core_->AuthorizeNode(CallerOf(*ctx), req->node()); !s.ok()) {
    return Done(ctx, s);
  }
  return Done(ctx, core_->LeaveNode(req->node(), req->incarnation(), req->message()));
}

grpc::ServerWriteReactor<v1::GenerationEnd>* CoordinatorService::WatchJob(
    grpc::CallbackServerContext* ctx, const v1::WatchJobRequest* req) {
  coordinator::Coordinator* core = core_;
  return new GenerationWatchReactor([core, job = req->job(), generation = req->generation(),
                                     caller = CallerOf(*ctx)](
                                        GenerationWatchReactor::Deliver deliver)
                                        -> absl::StatusOr<GenerationWatchReactor::Cancel> {
    if (absl::Status s = core->AuthorizeMember(caller, job, generation); !s.ok()) return s;
    absl::StatusOr<uint64_t> id =
        core->WatchJob(job, generation, [deliver](const domain::GenerationEnd& e) {
          v1::GenerationEnd p;
          ToProto(e, &p);
          deliver(p);
        });
    if (!id.ok()) return id.status();
    return GenerationWatchReactor::Cancel([core, id = *id] { core->CancelWatch(id); });
  });
}

void CoordinatorService::ServeKeySet(grpc::ServerContext* ctx, const v1::KeySetRequest& req,
                                     v1::KeySetResponse* /*resp*/,
                                     Parsed<v1::KeySetRequest, v1::KeySetResponse>::Reply reply) {
  if (absl::Status s = core_->AuthorizeMember(CallerOf(*ctx), req.job(), req.generation());
      !s.ok()) {
    return reply(ToGrpc(s));
  }
  core_->KeySet(req.job(), req.generation(), req.key(), req.value(),
                [reply = std::move(reply)](absl::Status s) { reply(ToGrpc(s)); });
}

void CoordinatorService::ServeKeyGet(grpc::ServerContext* ctx, const v1::KeyGetRequest& req,
                                     v1::KeyGetResponse* resp,
                                     Parsed<v1::KeyGetRequest, v1::KeyGetResponse>::Reply reply) {
  if (absl::Status s = core_->AuthorizeMember(CallerOf(*ctx), req.job(), req.generation());
      !s.ok()) {
    return reply(ToGrpc(s));
  }
  core_->KeyGet(req.job(), req.generation(), req.key(), req.wait(), Deadline(ctx),
                [reply = std::move(reply), resp](absl::StatusOr<std::string> v) {
                  if (v.ok()) resp->set_value(*std::move(v));
                  reply(ToGrpc(v.status()));
                });
}

void CoordinatorService::ServeKeyAdd(grpc::ServerContext* ctx, const v1::KeyAddRequest& req,
                                     v1::KeyAddResponse* resp,
                                     Parsed<v1::KeyAddRequest, v1::KeyAddResponse>::Reply reply) {
  if (absl::Status s = core_->AuthorizeMember(CallerOf(*ctx), req.job(), req.generation());
      !s.ok()) {
    return reply(ToGrpc(s));
  }
  absl::StatusOr<int64_t> v = core_->KeyAdd(req.job(), req.generation(), req.key(), req.delta());
  if (v.ok()) resp->set_value(*v);
  reply(ToGrpc(v.status()));
}

grpc::ServerUnaryReactor* CoordinatorService::KeyCompareSet(grpc::CallbackServerContext* ctx,
                                                            const v1::KeyCompareSetRequest* req,
                                                            v1::KeyCompareSetResponse* resp) {
  if (absl::Status s = core_->AuthorizeMember(CallerOf(*ctx), req->job(), req->generation());
      !s.ok()) {
    return Done(ctx, s);
  }
  auto r = core_->KeyCompareSet(req->job(), req->generation(), req->key(),
                                req->expect_absent() ? nullptr : &req->expected(), req->desired());
  if (r.ok()) {
    resp->set_swapped(r->swapped);
    resp->set_value(r->value);
    resp->set_present(r->present);
  }
  return Done(ctx, r.status());
}

void CoordinatorService::ServeKeyWait(grpc::ServerContext* ctx, const v1::KeyWaitRequest& req,
                                      v1::KeyWaitResponse* /*resp*/,
                                      Parsed<v1::KeyWaitRequest, v1::KeyWaitResponse>::Reply reply) {
  if (absl::Status s = core_->AuthorizeMember(CallerOf(*ctx), req.job(), req.generation());
      !s.ok()) {
    return reply(ToGrpc(s));
  }
  core_->KeyWait(req.job(), req.generation(),
                 std::vector<std::string>(req.keys().begin(), req.keys().end()), Deadline(ctx),
                 [reply = std::move(reply)](absl::Status s) { reply(ToGrpc(s)); });
}

grpc::ServerUnaryReactor* CoordinatorService::KeyCheck(grpc::CallbackServerContext* ctx,
                                                       const grpc::ByteBuffer* request,
                                                       grpc::ByteBuffer* response) {
  v1::KeyCheckRequest req;
  if (absl::Status s = ParseBounded(*request, kMaxKeyWaitRequestBytes, "KeyCheck", &req);
      !s.ok()) {
    return Done(ctx, s);
  }
  if (absl::Status s = core_->AuthorizeMember(CallerOf(*ctx), req.job(), req.generation());
      !s.ok()) {
    return Done(ctx, s);
  }
  absl::StatusOr<bool> all = core_->KeyCheck(
      req.job(), req.generation(), std::vector<std::string>(req.keys().begin(), req.keys().end()));
  if (all.ok()) {
    v1::KeyCheckResponse resp;
    resp.set_all_set(*all);
    *response = Serialize(resp);
  }
  return Done(ctx, all.status());
}

grpc::ServerUnaryReactor* CoordinatorService::KeyDelete(grpc::CallbackServerContext* ctx,
                                                        const v1::KeyDeleteRequest* req,
                                                        v1::KeyDeleteResponse* resp) {
  if (absl::Status s = core_->AuthorizeMember(CallerOf(*ctx), req->job(), req->generation());
      !s.ok()) {
    return Done(ctx, s);
  }
  absl::StatusOr<bool> deleted = core_->KeyDelete(req->job(), req->generation(), req->key());
  if (deleted.ok()) resp->set_deleted(*deleted);
  return Done(ctx, deleted.status());
}

grpc::ServerUnaryReactor* CoordinatorService::KeyCount(grpc::CallbackServerContext* ctx,
                                                       const v1::KeyCountRequest* req,
                                                       v1::KeyCountResponse* resp) {
  if (absl::Status s = core_->AuthorizeMember(CallerOf(*ctx), req->job(), req->generation());
      !s.ok()) {
    return Done(ctx, s);
  }
  absl::StatusOr<int64_t> count = core_->KeyCount(req->job(), req->generation());
  if (count.ok()) resp->set_count(*count);
  return Done(ctx, count.status());
}

void CoordinatorService::ServeKeyBatch(
    grpc::ServerContext* ctx, const v1::KeyBatchRequest& req, v1::KeyBatchResponse* resp,
    Parsed<v1::KeyBatchRequest, v1::KeyBatchResponse>::Reply reply) {
  if (absl::Status s = core_->AuthorizeMember(CallerOf(*ctx), req.job(), req.generation());
      !s.ok()) {
    return reply(ToGrpc(s));
  }
  // The parsed request is this call's own until it is answered: its keys and values move out.
  v1::KeyBatchRequest& own = const_cast<v1::KeyBatchRequest&>(req);
  absl::StatusOr<std::vector<domain::KvOp>> ops = wire::BatchOps(own);
  if (!ops.ok()) return reply(ToGrpc(ops.status()));
  std::vector<domain::KvOp::Kind> kinds;
  kinds.reserve(ops->size());
  for (const domain::KvOp& op : *ops) kinds.push_back(op.kind);
  core_->KeyBatch(req.job(), req.generation(), *std::move(ops), Deadline(ctx),
                  [reply = std::move(reply), resp, kinds = std::move(kinds)](
                      absl::StatusOr<std::vector<domain::KvOpResult>> results) {
                    if (results.ok()) *resp = wire::BatchAnswer(kinds, *std::move(results));
                    reply(ToGrpc(results.status()));
                  });
}

void CoordinatorService::ServeBarrier(grpc::ServerContext* ctx, const v1::BarrierRequest& req,
                                      v1::BarrierResponse*,
                                      Parsed<v1::BarrierRequest, v1::BarrierResponse>::Reply reply) {
  if (absl::Status s = core_->AuthorizeMember(CallerOf(*ctx), req.job(), req.generation());
      !s.ok()) {
    return reply(ToGrpc(s));
  }
  core_->Barrier(req.job(), req.generation(), req.barrier(), req.participant(), req.count(),
                 Deadline(ctx), [reply = std::move(reply)](absl::Status s) { reply(ToGrpc(s)); });
}

void CoordinatorService::ServeResolveGroups(
    grpc::ServerContext* ctx, const grpc::ByteBuffer& request, grpc::ByteBuffer* resp,
    Async<grpc::ByteBuffer, grpc::ByteBuffer>::Reply reply) {
  // Read straight into the core's types (resolve_groups_decoding.h): one per node of a mesh.
  absl::StatusOr<wire::ResolveGroupsCall> req = wire::DecodeResolveGroupsRequest(request);
  if (!req.ok()) return reply(ToGrpc(req.status()));
  if (absl::Status s = core_->AuthorizeNode(CallerOf(*ctx), req->node); !s.ok()) {
    return reply(ToGrpc(s));
  }
  core_->ResolveGroups(req->job, req->generation, req->node, req->mesh_key, req->ranks,
                       std::move(req->groups), Deadline(ctx),
                       absl::Milliseconds(req->partial_after_ms),
                       [reply = std::move(reply),
                        resp](absl::StatusOr<std::vector<domain::SharedGroupIds>> ids) {
                         if (ids.ok()) *resp = EncodeResolveGroupsResponse(*ids);
                         reply(ToGrpc(ids.status()));
                       });
}

grpc::ServerUnaryReactor* CoordinatorService::GetStatus(grpc::CallbackServerContext* ctx,
                                                        const v1::GetStatusRequest*,
                                                        v1::CoordinatorStatus* resp) {
  const domain::StatusView s = core_->Status();
  resp->set_version(MESHD_VERSION);
  resp->set_uptime_ms(absl::ToInt64Milliseconds(s.uptime));
  resp->set_nodes_alive(s.nodes_alive);
  resp->set_nodes_dead(s.nodes_dead);
  resp->set_nodes_cordoned(s.nodes_cordoned);
  resp->set_nodes_left(s.nodes_left);
  resp->set_jobs_joining(s.jobs_joining);
  resp->set_jobs_running(s.jobs_running);
  resp->set_waiters(s.waiters);
  resp->set_heartbeat_timeout_ms(
      static_cast<uint32_t>(absl::ToInt64Milliseconds(s.heartbeat_timeout)));
  return Done(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* CoordinatorService::ListNodes(grpc::CallbackServerContext* ctx,
                                                        const v1::ListNodesRequest*,
                                                        v1::ListNodesResponse* resp) {
  for (const domain::NodeView& n : core_->Nodes()) ToProto(n, resp->add_nodes());
  return Done(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* CoordinatorService::ListJobs(grpc::CallbackServerContext* ctx,
                                                       const v1::ListJobsRequest*,
                                                       v1::ListJobsResponse* resp) {
  for (const domain::JobView& j : core_->Jobs()) ToProto(j, resp->add_jobs());
  return Done(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* CoordinatorService::GetJob(grpc::CallbackServerContext* ctx,
                                                     const v1::GetJobRequest* req,
                                                     v1::JobStatus* resp) {
  // Key names are the job's: the keys most waited for go to operators only.
  const bool operator_call = operators_.has_value() && IsOperator(*ctx, *operators_);
  absl::StatusOr<domain::JobView> j = core_->Job(req->job(), operator_call);
  if (j.ok()) ToProto(*j, resp);
  return Done(ctx, j.status());
}

}  // namespace meshd::service
