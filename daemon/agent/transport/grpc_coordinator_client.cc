// The agent core's coordinator calls over gRPC (see grpc_coordinator_client.h).
#include "daemon/agent/transport/grpc_coordinator_client.h"

#include <algorithm>

#include "common/sync/handoff.h"
#include "daemon/security/random_secret.h"
#include "daemon/wire/agent_convert.h"
#include "daemon/wire/convert.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

namespace meshd::agent {
namespace {

const absl::Status& Cancelled() {
  static const absl::Status* const kCancelled =
      new absl::Status(absl::CancelledError("the agent is shutting down"));
  return *kCancelled;
}

}  // namespace

GrpcCoordinatorClient::GrpcCoordinatorClient(
    const std::string& target, absl::Duration max_backoff,
    std::shared_ptr<grpc::ChannelCredentials> credentials) {
  grpc::ChannelArguments args;
  // Answers carry key-value store values of up to 4 MiB plus their framing.
  args.SetMaxReceiveMessageSize(8 << 20);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(max_backoff)));
  if (credentials == nullptr) credentials = grpc::InsecureChannelCredentials();
  channel_ = grpc::CreateCustomChannel(target, credentials, args);
  stub_ = v1::Coordinator::NewStub(channel_);
}

bool GrpcCoordinatorClient::Begin(grpc::ClientContext* ctx, const CallOptions& options) {
  if (options.timeout != absl::InfiniteDuration()) {
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + options.timeout));
  }
  if (options.wait_for_ready) ctx->set_wait_for_ready(true);
  absl::MutexLock lock(&mu_);
  if (shut_down_) return false;
  if (!node_.empty()) {
    // Without a certificate naming the node, this is how the coordinator knows the call is its.
    ctx->AddMetadata(domain::kNodeMetadata, node_);
    if (!secret_.empty()) ctx->AddMetadata(domain::kNodeSecretMetadata, secret_);
  }
  calls_.insert(ctx);
  ++alive_;
  return true;
}

void GrpcCoordinatorClient::End(grpc::ClientContext* ctx) {
  absl::MutexLock lock(&mu_);
  calls_.erase(ctx);
}

void GrpcCoordinatorClient::Gone() {
  absl::MutexLock lock(&mu_);
  --alive_;
}

GrpcCoordinatorClient::~GrpcCoordinatorClient() {
  Shutdown();
  // Unbounded: every call was cancelled, and a cancelled call always completes.
  absl::MutexLock lock(&mu_);
  auto gone = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return alive_ == 0; };
  mu_.Await(absl::Condition(&gone));
}

void GrpcCoordinatorClient::Shutdown() {
  absl::MutexLock lock(&mu_);
  shut_down_ = true;
  for (grpc::ClientContext* ctx : calls_) ctx->TryCancel();
  // Until every callback has returned (Gone), not only begun (End): the agent's core, which those
  // callbacks call, may be destroyed once this returns.
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return alive_ == 0; };
  mu_.AwaitWithTimeout(absl::Condition(&idle), absl::Seconds(5));
}

template <typename Req, typename Resp, typename Start, typename Done>
void GrpcCoordinatorClient::Unary(Req req, CallOptions options, Start start, Done done) {
  // A reactor, not a callback: gRPC would copy a std::function on this thread and run the copy on
  // its own, an ordering ThreadSanitizer cannot see (common/sync/handoff.h); the reactor is
  // handed over explicitly. Default-initialized (`new Call`, not `new Call()`): zeroing it here
  // would be a write of the context gRPC's threads read.
  class Call final : public grpc::ClientUnaryReactor {
   public:
    Call(GrpcCoordinatorClient* client, Req r, Done d)
        : client_(client), req(std::move(r)), done_(std::move(d)) {}
    void OnDone(const grpc::Status& s) override {
      sync::TakeOver(this);
      client_->End(&ctx);
      done_(wire::FromGrpc(s), &resp);
      GrpcCoordinatorClient* const client = client_;
      delete this;
      client->Gone();
    }

    GrpcCoordinatorClient* const client_;
    grpc::ClientContext ctx;
    Req req;
    Resp resp;
    Done done_;
  };
  auto* call = new Call(this, std::move(req), std::move(done));
  if (!Begin(&call->ctx, options)) {
    // `done` always gets a response to read, never null: it reads one only when the status is
    // OK, but GCC cannot see that through an inlined absl::Status (with the sanitizers it then
    // reports a null dereference under -Warray-bounds).
    call->done_(Cancelled(), &call->resp);
    delete call;
    return;
  }
  start(&call->ctx, &call->req, &call->resp, static_cast<grpc::ClientUnaryReactor*>(call));
  sync::HandOff(call);  // OnDone runs after StartCall, on gRPC's thread
  call->StartCall();
}

void GrpcCoordinatorClient::RegisterNode(const domain::NodeInventory& inventory,
                                         const std::vector<domain::RunningJob>& running,
                                         CallOptions options, Answer<absl::Duration> done) {
  v1::RegisterNodeRequest req;
  wire::ToProto(inventory, req.mutable_inventory());
  for (const domain::RunningJob& r : running) wire::ToProto(r, req.add_running_jobs());
  {
    // The agent's own secret, chosen once (128 bits from the kernel), sent with every
    // registration: a retry whose first answer was lost is still this agent's.
    absl::MutexLock lock(&mu_);
    node_ = inventory.node;
    if (secret_.empty()) secret_ = security::RandomSecret();
  }
  Unary<v1::RegisterNodeRequest, v1::RegisterNodeResponse>(
      std::move(req), options,
      [this](auto* ctx, auto* rq, auto* rs, grpc::ClientUnaryReactor* reactor) {
        stub_->async()->RegisterNode(ctx, rq, rs, reactor);
      },
      [this, done = std::move(done)](absl::Status s, v1::RegisterNodeResponse* r) {
        if (!s.ok()) return done(s);
        {
          absl::MutexLock lock(&mu_);
          secret_ = r->node_secret();
        }
        done(absl::Milliseconds(r->heartbeat_interval_ms()));
      });
}

void GrpcCoordinatorClient::Heartbeat(const std::string& node, uint64_t incarnation,
                                      CallOptions options, Answer<absl::Duration> done) {
  v1::HeartbeatRequest req;
  req.set_node(node);
  req.set_incarnation(incarnation);
  Unary<v1::HeartbeatRequest, v1::HeartbeatResponse>(
      std::move(req), options,
      [this](auto* ctx, auto* rq, auto* rs, grpc::ClientUnaryReactor* reactor) {
        stub_->async()->Heartbeat(ctx, rq, rs, reactor);
      },
      [done = std::move(done)](absl::Status s, v1::HeartbeatResponse* r) {
        if (!s.ok()) return done(s);
        done(absl::Milliseconds(r->heartbeat_interval_ms()));
      });
}

void GrpcCoordinatorClient::JoinJob(const domain::JoinRequest& request, CallOptions options,
                                    Answer<domain::Assignment> done) {
  v1::JoinJobRequest req;
  wire::ToProto(request, &req);
  Unary<v1::JoinJobRequest, v1::Assignment>(
      std::move(req), options,
      [this](auto* ctx, auto* rq, auto* rs, grpc::ClientUnaryReactor* reactor) {
        stub_->async()->JoinJob(ctx, rq, rs, reactor);
      },
      [done = std::move(done)](absl::Status s, v1::Assignment* r) {
        if (!s.ok()) return done(s);
        done(wire::FromProto(*r));
      });
}

void GrpcCoordinatorClient::LeaveJob(const std::string& job, uint64_t generation,
                                     const std::string& node, const std::string& message,
                                     CallOptions options, std::function<void(absl::Status)> done) {
  v1::LeaveJobRequest req;
  req.set_job(job);
  req.set_generation(generation);
  req.set_node(node);
  req.set_message(message);
  Unary<v1::LeaveJobRequest, v1::LeaveJobResponse>(
      std::move(req), options,
      [this](auto* ctx, auto* rq, auto* rs, grpc::ClientUnaryReactor* reactor) {
        stub_->async()->LeaveJob(ctx, rq, rs, reactor);
      },
      [done = std::move(done)](absl::Status s, v1::LeaveJobResponse*) { done(s); });
}

void GrpcCoordinatorClient::FinishJob(const std::string& job, uint64_t generation,
                                      const std::string& node, CallOptions options,
                                      std::function<void(absl::Status)> done) {
  v1::FinishJobRequest req;
  req.set_job(job);
  req.set_generation(generation);
  req.set_node(node);
  Unary<v1::FinishJobRequest, v1::FinishJobResponse>(
      std::move(req), options,
      [this](auto* ctx, auto* rq, auto* rs, grpc::ClientUnaryReactor* reactor) {
        stub_->async()->FinishJob(ctx, rq, rs, reactor);
      },
      [done = std::move(done)](absl::Status s, v1::FinishJobResponse*) { done(s); });
}

void GrpcCoordinatorClient::LeaveNode(const std::string& node, uint64_t incarnation,
                                      const std::string& message, CallOptions options,
                                      std::function<void(absl::Status)> done) {
  v1::LeaveNodeRequest req;
  req.set_node(node);
  req.set_incarnation(incarnation);
  req.set_message(message);
  Unary<v1::LeaveNodeRequest, v1::LeaveNodeResponse>(
      std::move(req), options,
      [this](auto* ctx, auto* rq, auto* rs, grpc::ClientUnaryReactor* reactor) {
        stub_->async()->LeaveNode(ctx, rq, rs, reactor);
      },
      [done = std::move(done)](absl::Status s, v1::LeaveNodeResponse*) { done(s); });
}

void GrpcCoordinatorClient::ResolveGroups(v1::ResolveGroupsRequest request, CallOptions options,
                                          Answer<v1::ResolveGroupsResponse> done) {
  Unary<v1::ResolveGroupsRequest, v1::ResolveGroupsResponse>(
      std::move(request), options,
      [this](auto* ctx, auto* rq, auto* rs, grpc::ClientUnaryReactor* reactor) {
        stub_->async()->ResolveGroups(ctx, rq, rs, reactor);
      },
      [done = std::move(done)](absl::Status s, v1::ResolveGroupsResponse* r) {
        if (!s.ok()) return done(s);
        done(std::move(*r));
      });
}

#define MESHD_KEY_CALL(Name)                                                                 \
  void GrpcCoordinatorClient::Key(v1::Name##Request r, CallOptions o,                        \
                                  Answer<v1::Name##Response> done) {                         \
    Unary<v1::Name##Request, v1::Name##Response>(                                            \
        std::move(r), o,                                                                     \
        [this](auto* ctx, auto* rq, auto* rs, grpc::ClientUnaryReactor* reactor) {          \
          stub_->async()->Name(ctx, rq, rs, reactor);                                        \
        },                                                                                   \
        [done = std::move(done)](absl::Status s, v1::Name##Response* resp) {                 \
          if (!s.ok()) return done(s);                                                       \
          done(std::move(*resp));                                                            \
        });                                                                                  \
  }
MESHD_KEY_CALL(KeySet)
MESHD_KEY_CALL(KeyGet)
MESHD_KEY_CALL(KeyAdd)
MESHD_KEY_CALL(KeyCompareSet)
MESHD_KEY_CALL(KeyWait)
MESHD_KEY_CALL(KeyCheck)
MESHD_KEY_CALL(KeyDelete)
MESHD_KEY_CALL(KeyCount)
MESHD_KEY_CALL(KeyBatch)
#undef MESHD_KEY_CALL

// One WatchJob stream: the end if the coordinator sends one, else the status the stream ended with.
class GrpcCoordinatorClient::WatchCall final : public grpc::ClientReadReactor<v1::GenerationEnd> {
 public:
  WatchCall(GrpcCoordinatorClient* client, std::string job, uint64_t generation,
            Answer<domain::GenerationEnd> done)
      : client_(client), job_(std::move(job)), generation_(generation), done_(std::move(done)) {
    req_.set_job(job_);
    req_.set_generation(generation_);
  }
  grpc::ClientContext* context() { return &ctx_; }
  void Start() {
    sync::HandOff(this);  // its reactions run after it started
    client_->stub_->async()->WatchJob(&ctx_, &req_, this);
    StartRead(&end_);
    StartCall();
  }
  // Shut down before it started: answers CANCELLED and goes.
  void Refuse() {
    done_(Cancelled());
    delete this;
  }
  void OnReadDone(bool ok) override {
    sync::TakeOver(this);
    got_ = ok;
    sync::HandOff(this);  // OnDone comes after
  }
  void OnDone(const grpc::Status& s) override {
    sync::TakeOver(this);
    client_->End(&ctx_);
    if (got_) {
      done_(wire::FromProto(end_, job_, generation_));
    } else if (!s.ok()) {
      done_(wire::FromGrpc(s));
    } else {
      done_(absl::UnknownError("the coordinator closed the watch without an end"));
    }
    GrpcCoordinatorClient* const client = client_;
    delete this;
    client->Gone();
  }

 private:
  GrpcCoordinatorClient* const client_;
  const std::string job_;
  const uint64_t generation_;
  Answer<domain::GenerationEnd> done_;
  grpc::ClientContext ctx_;
  v1::WatchJobRequest req_;
  v1::GenerationEnd end_;
  bool got_ = false;
};

void GrpcCoordinatorClient::WatchJob(const std::string& job, uint64_t generation,
                                     CallOptions options, Answer<domain::GenerationEnd> done) {
  auto* call = new WatchCall(this, job, generation, std::move(done));
  if (!Begin(call->context(), options)) return call->Refuse();
  call->Start();
}

}  // namespace meshd::agent
