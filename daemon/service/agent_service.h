// AgentService: meshd.v1.Agent on gRPC's callback API, translating to the node agent's logic.
// Attach holds its reactor until the job's round closes; Watch is a held stream.
//
// Thread-safety: thread-safe (the agent is).
#ifndef MESHD_DAEMON_SERVICE_AGENT_SERVICE_H_
#define MESHD_DAEMON_SERVICE_AGENT_SERVICE_H_

#include "absl/time/time.h"
#include "common/time/clock.h"
#include "daemon/agent/agent.h"
#include "meshd/v1/agent.grpc.pb.h"

namespace meshd::service {

class AgentService final : public v1::Agent::CallbackService {
 public:
  AgentService(agent::Agent* agent, const Clock* clock,
               absl::Duration max_wait = absl::Minutes(10));

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

 private:
  agent::Agent* const agent_;
  const Clock* const clock_;
  const absl::Duration max_wait_;
};

}  // namespace meshd::service

#endif  // MESHD_DAEMON_SERVICE_AGENT_SERVICE_H_
