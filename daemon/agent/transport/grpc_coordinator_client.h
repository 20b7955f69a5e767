// GrpcCoordinatorClient: the agent core's CoordinatorClient over gRPC (one channel to the
// coordinator, the callback API, daemon/wire for every conversion). Transport only: one send per
// call, no retries (the core resends), deadlines from each call's timeout on the real clock.
//
// Thread-safety: thread-safe. The destructor shuts down (cancels and waits for calls in flight).
#ifndef MESHD_DAEMON_AGENT_TRANSPORT_GRPC_COORDINATOR_CLIENT_H_
#define MESHD_DAEMON_AGENT_TRANSPORT_GRPC_COORDINATOR_CLIENT_H_

#include <memory>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "daemon/agent/core/coordinator_client.h"
#include "daemon/domain/caller.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/security/credentials.h"
#include "meshd/v1/coordinator.grpc.pb.h"

namespace meshd::agent {

class GrpcCoordinatorClient final : public CoordinatorClient {
 public:
  // `target`: "host:port". `max_backoff` caps gRPC's reconnect backoff (120 s by default: after a
  // long coordinator outage the agent could come back past the window in which a restarted
  // coordinator takes its running jobs back). `credentials`: the channel's (mutual TLS from
  // security::MutualTlsChannelCredentials in production); nullptr: plaintext.
  GrpcCoordinatorClient(const std::string& target, absl::Duration max_backoff,
                        std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr);
  // Cancels what is in flight and waits until every call is gone (see Gone).
  ~GrpcCoordinatorClient() override;

  void RegisterNode(const domain::NodeInventory& inventory,
                    const std::vector<domain::RunningJob>& running, CallOptions options,
                    Answer<absl::Duration> done) override;
  void Heartbeat(const std::string& node, uint64_t incarnation, CallOptions options,
                 Answer<absl::Duration> done) override;
  void JoinJob(const domain::JoinRequest& request, CallOptions options,
               Answer<domain::Assignment> done) override;
  void LeaveJob(const std::string& job, uint64_t generation, const std::string& node,
                const std::string& message, CallOptions options,
                std::function<void(absl::Status)> done) override;
  void LeaveNode(const std::string& node, uint64_t incarnation, const std::string& message,
                 CallOptions options, std::function<void(absl::Status)> done) override;
  void FinishJob(const std::string& job, uint64_t generation, const std::string& node,
                 CallOptions options, std::function<void(absl::Status)> done) override;
  void WatchJob(const std::string& job, uint64_t generation, CallOptions options,
                Answer<domain::GenerationEnd> done) override;
  void ResolveGroups(v1::ResolveGroupsRequest request, CallOptions options,
                     Answer<v1::ResolveGroupsResponse> done) override;
  void Key(v1::KeySetRequest r, CallOptions o, Answer<v1::KeySetResponse> done) override;
  void Key(v1::KeyGetRequest r, CallOptions o, Answer<v1::KeyGetResponse> done) override;
  void Key(v1::KeyAddRequest r, CallOptions o, Answer<v1::KeyAddResponse> done) override;
  void Key(v1::KeyCompareSetRequest r, CallOptions o,
           Answer<v1::KeyCompareSetResponse> done) override;
  void Key(v1::KeyWaitRequest r, CallOptions o, Answer<v1::KeyWaitResponse> done) override;
  void Key(v1::KeyCheckRequest r, CallOptions o, Answer<v1::KeyCheckResponse> done) override;
  void Key(v1::KeyDeleteRequest r, CallOptions o, Answer<v1::KeyDeleteResponse> done) override;
  void Key(v1::KeyCountRequest r, CallOptions o, Answer<v1::KeyCountResponse> done) override;
  void Key(v1::KeyBatchRequest r, CallOptions o, Answer<v1::KeyBatchResponse> done) override;
  void Shutdown() override;

 private:
  class WatchCall;

  // Sends one unary call: `start(ctx, req, resp, on_done)` starts it on the stub's async API;
  // `answer(status, resp)` turns its outcome into the core's answer.
  template <typename Req, typename Resp, typename Start, typename Done>
  void Unary(Req req, CallOptions options, Start start, Done done);
  // Registers a call in flight; false (and nothing registered) after Shutdown.
  bool Begin(grpc::ClientContext* ctx, const CallOptions& options) ABSL_LOCKS_EXCLUDED(mu_);
  void End(grpc::ClientContext* ctx) ABSL_LOCKS_EXCLUDED(mu_);
  // A call Begin registered is destroyed: last thing in its callback. A call's ClientContext holds
  // a reference to channel_; if the last one went on gRPC's callback thread (this client already
  // destroyed), gRPC 1.51 would free the callback queue that thread polls (see
  // bench/sim/calls_in_flight.h), so the destructor waits for every call to be gone.
  void Gone() ABSL_LOCKS_EXCLUDED(mu_);

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  std::set<grpc::ClientContext*> calls_ ABSL_GUARDED_BY(mu_);
  uint64_t alive_ ABSL_GUARDED_BY(mu_) = 0;  // calls begun and not yet gone
  // The node this agent registered, and the secret its registration returned: sent with every
  // call (domain/caller.h).
  std::string node_ ABSL_GUARDED_BY(mu_);
  std::string secret_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshd::agent

#endif  // MESHD_DAEMON_AGENT_TRANSPORT_GRPC_COORDINATOR_CLIENT_H_
