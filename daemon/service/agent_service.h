// AgentService: meshd.v1.Agent on gRPC's callback API, translating to the node agent's logic.
// Attach holds its reactor until the job's round closes; Watch is a held stream; the Key* calls
// (the generation's key-value store) are relayed to the coordinator by the agent. PeerOf tells
// which local process (pid, uid, gid) made a call.
//
// Thread-safety: thread-safe (the agent is).
#ifndef MESHD_DAEMON_SERVICE_AGENT_SERVICE_H_
#define MESHD_DAEMON_SERVICE_AGENT_SERVICE_H_

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/time/clock.h"
#include "daemon/agent/core/agent.h"
#include "daemon/service/grpc_server.h"
#include "meshd/v1/agent.grpc.pb.h"

namespace meshd::service {

class AgentService final : public v1::Agent::CallbackService {
 public:
  // `peers`: where the server that serves this service records its unix connections'
  // credentials (ServerOptions::unix_peers); not owned, outlives the service; nullptr: unknown.
  AgentService(agent::Agent* agent, const Clock* clock, const UnixPeers* peers = nullptr,
               absl::Duration max_wait = absl::Minutes(10));

  // The process that made the call of `ctx` (SO_PEERCRED of its connection, as of connect()):
  // what binds a job to a local user. nullopt: the call did not come through the agent's unix
  // socket (a TCP port, an in-process channel) or the service has no `peers`; such a caller is
  // nobody known and must not be trusted as any uid. Thread-safe; any call, any time before it
  // finishes.
  // The uid of the process behind a call on the agent's unix socket (the job binding's key);
  // nullopt when unknown (not a unix-socket call).
  agent::WorkerUid UidOf(const grpc::CallbackServerContext* ctx) const;
  // What Leave does (the daemon's: the node leaves, then the agent stops talking to the
  // coordinator). Set before the service is served; unset, Leave answers UNIMPLEMENTED.
  using LeaveFn = std::function<void(const std::string& reason,
                                     std::function<void(absl::StatusOr<v1::LeaveResponse>)> done)>;
  void SetLeave(LeaveFn leave) { leave_ = std::move(leave); }
  std::optional<PeerCredentials> PeerOf(const grpc::CallbackServerContext* ctx) const;

  grpc::ServerUnaryReactor* Attach(grpc::CallbackServerContext* ctx, const v1::AttachRequest* req,
                                   v1::AttachResponse* resp) override;
  grpc::ServerWriteReactor<v1::GenerationEnd>* Watch(grpc::CallbackServerContext* ctx,
                                                     const v1::WatchRequest* req) override;
  grpc::ServerUnaryReactor* Detach(grpc::CallbackServerContext* ctx, const v1::DetachRequest* req,
                                   v1::DetachResponse* resp) override;
  grpc::ServerUnaryReactor* ResolveGroups(grpc::CallbackServerContext* ctx,
                                          const v1::RankGroupsRequest* req,
                                          v1::ResolveGroupsResponse* resp) override;
  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* ctx,
                                      const v1::GetAgentStatusRequest* req,
                                      v1::AgentStatus* resp) override;
  // The agent's own uid or root only: every worker may reach the socket, none may take the node
  // out of the cluster. Callers in the agent's process (no unix peer) may.
  grpc::ServerUnaryReactor* Leave(grpc::CallbackServerContext* ctx, const v1::LeaveRequest* req,
                                  v1::LeaveResponse* resp) override;

  grpc::ServerUnaryReactor* KeySet(grpc::CallbackServerContext* ctx, const v1::KeySetRequest* req,
                            v1::KeySetResponse* resp) override;
  grpc::ServerUnaryReactor* KeyGet(grpc::CallbackServerContext* ctx, const v1::KeyGetRequest* req,
                            v1::KeyGetResponse* resp) override;
  grpc::ServerUnaryReactor* KeyAdd(grpc::CallbackServerContext* ctx, const v1::KeyAddRequest* req,
                            v1::KeyAddResponse* resp) override;
  grpc::ServerUnaryReactor* KeyCompareSet(grpc::CallbackServerContext* ctx, const v1::KeyCompareSetRequest* req,
                            v1::KeyCompareSetResponse* resp) override;
  grpc::ServerUnaryReactor* KeyWait(grpc::CallbackServerContext* ctx, const v1::KeyWaitRequest* req,
                            v1::KeyWaitResponse* resp) override;
  grpc::ServerUnaryReactor* KeyCheck(grpc::CallbackServerContext* ctx, const v1::KeyCheckRequest* req,
                            v1::KeyCheckResponse* resp) override;
  grpc::ServerUnaryReactor* KeyDelete(grpc::CallbackServerContext* ctx, const v1::KeyDeleteRequest* req,
                            v1::KeyDeleteResponse* resp) override;
  grpc::ServerUnaryReactor* KeyCount(grpc::CallbackServerContext* ctx, const v1::KeyCountRequest* req,
                            v1::KeyCountResponse* resp) override;
 private:
  // Relays one Key* call of a local worker to the coordinator through the agent.
  template <typename Req, typename Resp>
  grpc::ServerUnaryReactor* RelayKey(grpc::CallbackServerContext* ctx, const Req* req,
                                     Resp* resp);

  agent::Agent* const agent_;
  const Clock* const clock_;
  const absl::Duration max_wait_;
  const UnixPeers* const peers_;
  LeaveFn leave_;  // set before serving, then constant
  // The credentials of the process behind each worker's Attach, by (job, local rank), for
  // GetStatus; pruned to the workers the agent still lists.
  mutable absl::Mutex attached_mu_;
  mutable std::map<std::pair<std::string, uint32_t>, PeerCredentials> attached_by_
      ABSL_GUARDED_BY(attached_mu_);
};

}  // namespace meshd::service

#endif  // MESHD_DAEMON_SERVICE_AGENT_SERVICE_H_
