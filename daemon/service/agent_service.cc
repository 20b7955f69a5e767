// meshd.v1.Agent translated onto the node agent (see agent_service.h).
#include "daemon/service/agent_service.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/log/log.h"
#include "common/sync/handoff.h"
#include "daemon/service/watch_reactor.h"
#include "daemon/wire/agent_convert.h"
#include "daemon/wire/convert.h"

namespace meshd::service {

using wire::CallDeadline;
using wire::FromProto;
using wire::ToGrpc;
using wire::ToProto;

AgentService::AgentService(agent::Agent* agent, const Clock* clock, const UnixPeers* peers,
                           absl::Duration max_wait)
    : agent_(agent), clock_(clock), max_wait_(max_wait), peers_(peers) {}

agent::WorkerUid AgentService::UidOf(const grpc::CallbackServerContext* ctx) const {
  if (peers_ == nullptr) return std::nullopt;  // no unix socket (in-process callers)
  if (const std::optional<PeerCredentials> peer = PeerOf(ctx)) return peer->uid;
  // Served on the socket but its credentials are not known: never anyone's uid (no job's owner
  // matches it), rather than no check.
  return static_cast<uint32_t>(-1);
}

std::optional<PeerCredentials> AgentService::PeerOf(const grpc::CallbackServerContext* ctx) const {
  if (peers_ == nullptr) return std::nullopt;
  return peers_->Find(ctx->peer());
}

namespace {

// Attach's reactor: answers when the round closes; a call cancelled before (the worker went
// away) withdraws the worker from the agent so that its local rank is free again.
class AttachReactor final : public grpc::ServerUnaryReactor {
 public:
  AttachReactor(agent::Agent* agent, std::string job, uint32_t local_rank)
      : agent_(agent), job_(std::move(job)), local_rank_(local_rank) {}

  // The agent's id for this attach (0: answered already).
  void Started(uint64_t id) {
    bool cancelled;
    {
      absl::MutexLock lock(&mu_);
      id_ = id;
      cancelled = cancelled_;
    }
    if (cancelled && id != 0) agent_->WithdrawAttach(job_, local_rank_, id);
  }
  void OnCancel() override {
    sync::TakeOver(this);
    uint64_t id;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      id = id_;
    }
    if (id != 0) agent_->WithdrawAttach(job_, local_rank_, id);
    sync::HandOff(this);  // OnDone comes after
  }
  void OnDone() override {
    sync::TakeOver(this);
    delete this;
  }
  void Finish(grpc::Status s) {
    sync::HandOff(this);  // OnDone comes after
    grpc::ServerUnaryReactor::Finish(std::move(s));
  }

 private:
  agent::Agent* const agent_;
  const std::string job_;
  const uint32_t local_rank_;
  absl::Mutex mu_;
  uint64_t id_ ABSL_GUARDED_BY(mu_) = 0;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerUnaryReactor* AgentService::Attach(grpc::CallbackServerContext* ctx,
                                               const v1::AttachRequest* req,
                                               v1::AttachResponse* resp) {
  const std::optional<PeerCredentials> peer = PeerOf(ctx);
  if (peer) {
    log::Debug("attach", {{"job", req->job()},
                          {"local_rank", absl::StrCat(req->local_rank())},
                          {"pid", absl::StrCat(peer->pid)},
                          {"uid", absl::StrCat(peer->uid)},
                          {"gid", absl::StrCat(peer->gid)}});
  }
  auto* reactor = new AttachReactor(agent_, req->job(), req->local_rank());
  const uint64_t id = agent_->Attach(
      req->job(), req->local_rank(), req->local_world(), FromProto(req->nodes()),
      CallDeadline(ctx->deadline(), clock_->Now(), max_wait_),
      [this, reactor, resp, peer, job = req->job()](absl::StatusOr<agent::AttachResult> r) {
        if (r.ok()) {
          wire::ToAttachResponse(r->assignment, r->local_rank, r->gpu, resp);
          if (peer) {  // who holds this place now, for GetStatus
            absl::MutexLock lock(&attached_mu_);
            attached_by_[{job, r->local_rank}] = *peer;
          }
        }
        reactor->Finish(ToGrpc(r.status()));
      },
      UidOf(ctx), agent::AttachOrigin{req->client_instance(), req->attach_sequence()});
  reactor->Started(id);
  sync::HandOff(reactor);  // gRPC may cancel it on any thread
  return reactor;
}

grpc::ServerWriteReactor<v1::GenerationEnd>* AgentService::Watch(grpc::CallbackServerContext* ctx,
                                                                 const v1::WatchRequest* req) {
  agent::Agent* a = agent_;
  return new GenerationWatchReactor(
      [a, job = req->job(), generation = req->generation(), local_rank = req->local_rank(),
       uid = UidOf(ctx)](GenerationWatchReactor::Deliver deliver)
          -> absl::StatusOr<GenerationWatchReactor::Cancel> {
        auto cancel = a->Watch(
            job, generation, local_rank,
            [deliver](const domain::GenerationEnd& e) {
              v1::GenerationEnd p;
              ToProto(e, &p);
              deliver(p);
            },
            uid);
        if (!cancel.ok()) return cancel.status();
        return GenerationWatchReactor::Cancel(*std::move(cancel));
      });
}

grpc::ServerUnaryReactor* AgentService::Detach(grpc::CallbackServerContext* ctx,
                                               const v1::DetachRequest* req, v1::DetachResponse*) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(
      ToGrpc(agent_->Detach(req->job(), req->generation(), req->local_rank(), UidOf(ctx))));
  return reactor;
}

grpc::ServerUnaryReactor* AgentService::ResolveGroups(grpc::CallbackServerContext* ctx,
                                                      const v1::RankGroupsRequest* req,
                                                      v1::ResolveGroupsResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  agent_->ResolveGroups(
      *req, CallDeadline(ctx->deadline(), clock_->Now(), max_wait_),
      [reactor, resp](absl::StatusOr<v1::ResolveGroupsResponse> ids) {
        if (ids.ok()) resp->Swap(&*ids);
        reactor->Finish(ToGrpc(ids.status()));
      },
      UidOf(ctx));
  return reactor;
}

grpc::ServerUnaryReactor* AgentService::GetStatus(grpc::CallbackServerContext* ctx,
                                                  const v1::GetAgentStatusRequest*,
                                                  v1::AgentStatus* resp) {
  ToProto(agent_->Status(), resp);
  resp->set_version(MESHD_VERSION);
  {
    absl::MutexLock lock(&attached_mu_);
    std::map<std::pair<std::string, uint32_t>, PeerCredentials> listed;
    for (v1::AgentStatus::Worker& w : *resp->mutable_workers()) {
      auto it = attached_by_.find({w.job(), w.local_rank()});
      if (it == attached_by_.end()) continue;
      w.set_pid(static_cast<uint32_t>(it->second.pid));
      w.set_uid(it->second.uid);
      w.set_gid(it->second.gid);
      listed.insert(*it);
    }
    attached_by_ = std::move(listed);  // workers no longer listed are forgotten
  }
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* AgentService::Leave(grpc::CallbackServerContext* ctx,
                                              const v1::LeaveRequest* req,
                                              v1::LeaveResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const uint32_t own = static_cast<uint32_t>(geteuid());
  if (const agent::WorkerUid uid = UidOf(ctx); uid && *uid != own && *uid != 0) {
    reactor->Finish(ToGrpc(absl::PermissionDeniedError(absl::StrCat(
        "only the agent's own user (uid ", own, ") or root may make this node leave the cluster; "
        "this call came from uid ", *uid, " (workers may not: run meshctl leave as the agent's user, "
        "as the DaemonSet's preStop hook does)"))));
    return reactor;
  }
  if (!leave_) {
    reactor->Finish(ToGrpc(absl::UnimplementedError("this agent cannot leave on request")));
    return reactor;
  }
  leave_(req->reason(), [reactor, resp](absl::StatusOr<v1::LeaveResponse> answer) {
    if (answer.ok()) resp->Swap(&*answer);
    reactor->Finish(ToGrpc(answer.status()));
  });
  return reactor;
}

template <typename Req, typename Resp>
grpc::ServerUnaryReactor* AgentService::RelayKey(grpc::CallbackServerContext* ctx, const Req* req,
                                                 Resp* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  agent_->RelayKeyCall<Req, Resp>(*req, CallDeadline(ctx->deadline(), clock_->Now(), max_wait_),
                                  [reactor, resp](absl::StatusOr<Resp> answer) {
                                    if (answer.ok()) resp->Swap(&*answer);
                                    reactor->Finish(ToGrpc(answer.status()));
                                  },
                                  UidOf(ctx));
  return reactor;
}

grpc::ServerUnaryReactor* AgentService::KeySet(grpc::CallbackServerContext* ctx,
                                           const v1::KeySetRequest* req, v1::KeySetResponse* resp) {
  return RelayKey(ctx, req, resp);
}

grpc::ServerUnaryReactor* AgentService::KeyGet(grpc::CallbackServerContext* ctx,
                                           const v1::KeyGetRequest* req, v1::KeyGetResponse* resp) {
  return RelayKey(ctx, req, resp);
}

grpc::ServerUnaryReactor* AgentService::KeyAdd(grpc::CallbackServerContext* ctx,
                                           const v1::KeyAddRequest* req, v1::KeyAddResponse* resp) {
  return RelayKey(ctx, req, resp);
}

grpc::ServerUnaryReactor* AgentService::KeyCompareSet(grpc::CallbackServerContext* ctx,
                                           const v1::KeyCompareSetRequest* req, v1::KeyCompareSetResponse* resp) {
  return RelayKey(ctx, req, resp);
}

grpc::ServerUnaryReactor* AgentService::KeyWait(grpc::CallbackServerContext* ctx,
                                           const v1::KeyWaitRequest* req, v1::KeyWaitResponse* resp) {
  return RelayKey(ctx, req, resp);
}

grpc::ServerUnaryReactor* AgentService::KeyCheck(grpc::CallbackServerContext* ctx,
                                           const v1::KeyCheckRequest* req, v1::KeyCheckResponse* resp) {
  return RelayKey(ctx, req, resp);
}

grpc::ServerUnaryReactor* AgentService::KeyDelete(grpc::CallbackServerContext* ctx,
                                           const v1::KeyDeleteRequest* req, v1::KeyDeleteResponse* resp) {
  return RelayKey(ctx, req, resp);
}

grpc::ServerUnaryReactor* AgentService::KeyCount(grpc::CallbackServerContext* ctx,
                                           const v1::KeyCountRequest* req, v1::KeyCountResponse* resp) {
  return RelayKey(ctx, req, resp);
}

}  // namespace meshd::service
