// Liveness is served apart from the heavy calls (issue 21): while calls of other methods hold the
// thread their queue is served by, heartbeats and registrations are still answered and no node is
// declared dead. The heavy calls are held deterministically — a server interceptor stops every call
// of the chosen method on the thread that serves its arrival until the test lets it go — so the
// tests assert order and outcome (answered while they are held), never how long anything took.
// Before liveness lanes every async method arrived on one queue: the heartbeats below waited
// behind the held calls and ran into their deadline.
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "daemon/coordinator/coordinator.h"
#include "daemon/domain/caller.h"
#include "daemon/service/coordinator_service.h"
#include "daemon/service/grpc_server.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/support/server_interceptor.h"
#include "gtest/gtest.h"
#include "meshd/v1/coordinator.grpc.pb.h"
#include "tests/support/client_context.h"
#include "tests/support/fake_clock.h"
#include "tests/support/wait_for.h"

namespace meshd {
namespace {

using ::meshd::testing::Ctx;
using ::meshd::testing::WaitFor;
namespace gx = grpc::experimental;

// Holds every call of one method, on the thread its interceptor runs on, while closed.
class Gate {
 public:
  explicit Gate(std::string method) : method_(std::move(method)) {}
  const std::string& method() const { return method_; }

  void Pass() {
    absl::MutexLock lock(&mu_);
    ++held_;
    mu_.Await(absl::Condition(&open_));
    --held_;
  }
  void Close() {
    absl::MutexLock lock(&mu_);
    open_ = false;
  }
  void Open() {
    absl::MutexLock lock(&mu_);
    open_ = true;
  }
  int held() {
    absl::MutexLock lock(&mu_);
    return held_;
  }

 private:
  const std::string method_;
  absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = true;
  int held_ ABSL_GUARDED_BY(mu_) = 0;
};

class GateInterceptor : public gx::Interceptor {
 public:
  explicit GateInterceptor(Gate* gate) : gate_(gate) {}
  void Intercept(gx::InterceptorBatchMethods* methods) override {
    if (gate_ != nullptr &&
        methods->QueryInterceptionHookPoint(gx::InterceptionHookPoints::POST_RECV_MESSAGE)) {
      gate_->Pass();
    }
    methods->Proceed();
  }

 private:
  Gate* const gate_;  // nullptr: not the gated method
};

class GateFactory : public gx::ServerInterceptorFactoryInterface {
 public:
  explicit GateFactory(Gate* gate) : gate_(gate) {}
  gx::Interceptor* CreateServerInterceptor(gx::ServerRpcInfo* info) override {
    return new GateInterceptor(info->method() == gate_->method() ? gate_ : nullptr);
  }

 private:
  Gate* const gate_;
};

class LivenessLanesTest : public ::testing::Test {
 protected:
  // Serves meshd.v1.Coordinator on two shared queues; gate_ holds the calls of `gated` once closed.
  void Start(const std::string& gated) {
    gate_ = std::make_unique<Gate>(gated);
    coordinator::CoordinatorOptions o;
    o.heartbeat_interval = absl::Milliseconds(500);
    o.heartbeat_timeout = kTimeout;
    core_ = std::make_unique<coordinator::Coordinator>(&clock_, o);
    service_ = std::make_unique<service::CoordinatorService>(core_.get(), &clock_);
    service::ServerOptions so;
    so.listen = {"127.0.0.1:0"};
    so.completion_queues = 2;
    Gate* gate = gate_.get();
    so.interceptors = [gate] {
      std::vector<std::unique_ptr<gx::ServerInterceptorFactoryInterface>> v;
      v.push_back(std::make_unique<GateFactory>(gate));
      return v;
    };
    auto server = service::GrpcServer::Start(so, {service_.get()}, {"meshd.v1.Coordinator"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(server_->addresses()[0], grpc::InsecureChannelCredentials());
    stub_ = v1::Coordinator::NewStub(channel_);
    generic_ = std::make_unique<grpc::GenericStub>(channel_);
  }
  void TearDown() override {
    if (gate_ != nullptr) gate_->Open();
    if (core_ != nullptr) core_->Shutdown();
    server_.reset();
  }

  std::unique_ptr<grpc::ClientContext> As(const std::string& node) {
    auto ctx = Ctx(absl::Seconds(20));
    ctx->AddMetadata(domain::kNodeMetadata, node);
    if (auto it = secrets_.find(node); it != secrets_.end()) {
      ctx->AddMetadata(domain::kNodeSecretMetadata, it->second);
    }
    return ctx;
  }
  grpc::Status Register(const std::string& node) {
    v1::RegisterNodeRequest req;
    req.mutable_inventory()->set_node(node);
    req.mutable_inventory()->set_hostname("host-" + node);
    req.mutable_inventory()->set_incarnation(1);
    v1::RegisterNodeResponse resp;
    const grpc::Status s = stub_->RegisterNode(As(node).get(), req, &resp);
    if (s.ok()) secrets_[node] = resp.node_secret();
    return s;
  }
  grpc::Status Heartbeat(const std::string& node) {
    v1::HeartbeatRequest req;
    req.set_node(node);
    req.set_incarnation(1);
    v1::HeartbeatResponse resp;
    return stub_->Heartbeat(As(node).get(), req, &resp);
  }

  // `n` calls of `method` with `body` in flight, answered into codes (by arrival of the answer).
  struct Flood {
    std::vector<std::unique_ptr<grpc::ClientContext>> ctx;
    std::vector<grpc::ByteBuffer> requests, responses;
    absl::Mutex mu;
    std::vector<grpc::StatusCode> codes ABSL_GUARDED_BY(mu);
  };
  void Send(Flood& f, const std::string& method, const std::string& body, int n) {
    grpc::Slice slice(body);
    f.requests.assign(n, grpc::ByteBuffer(&slice, 1));
    f.responses.resize(n);
    for (int i = 0; i < n; ++i) {
      f.ctx.push_back(Ctx(absl::Seconds(60)));
      generic_->UnaryCall(f.ctx.back().get(), method, grpc::StubOptions(), &f.requests[i],
                          &f.responses[i], [&f](grpc::Status s) {
                            absl::MutexLock lock(&f.mu);
                            f.codes.push_back(s.error_code());
                          });
    }
  }
  static size_t Answered(Flood& f) {
    absl::MutexLock lock(&f.mu);
    return f.codes.size();
  }

  static constexpr absl::Duration kTimeout = absl::Seconds(2);
  FakeClock clock_;
  std::map<std::string, std::string> secrets_;
  std::unique_ptr<Gate> gate_;
  std::unique_ptr<coordinator::Coordinator> core_;
  std::unique_ptr<service::CoordinatorService> service_;
  std::unique_ptr<service::GrpcServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
  std::unique_ptr<grpc::GenericStub> generic_;
};

// The heartbeats of a node keep it alive through several timeouts (of the coordinator's clock)
// while ResolveGroups calls — the method an 8 MiB request of empty groups made heavy — hold the
// shared queues' arrival thread; a node registers meanwhile too. Then the held calls are answered.
TEST_F(LivenessLanesTest, Heartbeat_WhileHeavyCallsHoldSharedQueues_AnsweredNoNodeDead) {
  Start("/meshd.v1.Coordinator/ResolveGroups");
  ASSERT_TRUE(Register("a").ok());
  gate_->Close();
  Flood heavy;
  Send(heavy, "/meshd.v1.Coordinator/ResolveGroups", "\xff\xff\xff\xff\x0f not a protobuf", 8);
  ASSERT_TRUE(WaitFor([&] { return gate_->held() >= 1; }));
  for (int i = 0; i < 5; ++i) {  // 5 s of the coordinator's time, past its 2 s timeout
    clock_.Advance(absl::Seconds(1));
    ASSERT_TRUE(Heartbeat("a").ok()) << "heartbeat " << i << " while heavy calls are held";
    core_->CheckDeadlines();
  }
  ASSERT_TRUE(Register("b").ok());
  EXPECT_GE(gate_->held(), 1);  // still held: the heartbeats and registration did not wait
  EXPECT_EQ(Answered(heavy), 0u);
  EXPECT_EQ(core_->Status().nodes_dead, 0u);
  EXPECT_EQ(core_->Status().nodes_alive, 2u);
  gate_->Open();
  ASSERT_TRUE(WaitFor([&] { return Answered(heavy) == 8; }, absl::Seconds(30)));
  absl::MutexLock lock(&heavy.mu);
  for (grpc::StatusCode c : heavy.codes) EXPECT_EQ(c, grpc::StatusCode::INVALID_ARGUMENT);
}

// Registrations have a lane of their own too: while registrations are held (an 8 MiB one takes
// its thread for a while), a registered node's heartbeats are answered and it stays alive.
TEST_F(LivenessLanesTest, Heartbeat_WhileRegistrationsHeld_AnsweredNoNodeDead) {
  Start("/meshd.v1.Coordinator/RegisterNode");
  ASSERT_TRUE(Register("a").ok());
  gate_->Close();
  Flood registrations;
  v1::RegisterNodeRequest req;
  req.mutable_inventory()->set_node("b");
  req.mutable_inventory()->set_incarnation(1);
  Send(registrations, "/meshd.v1.Coordinator/RegisterNode", req.SerializeAsString(), 4);
  ASSERT_TRUE(WaitFor([&] { return gate_->held() >= 1; }));
  for (int i = 0; i < 5; ++i) {
    clock_.Advance(absl::Seconds(1));
    ASSERT_TRUE(Heartbeat("a").ok()) << "heartbeat " << i << " while registrations are held";
    core_->CheckDeadlines();
  }
  EXPECT_GE(gate_->held(), 1);
  EXPECT_EQ(Answered(registrations), 0u);
  EXPECT_EQ(core_->Status().nodes_dead, 0u);
  gate_->Open();
  ASSERT_TRUE(WaitFor([&] { return Answered(registrations) == 4; }, absl::Seconds(30)));
}

// A heartbeat or registration past its method's size limit is refused before it is decoded (an
// 8 MiB heartbeat of millions of unknown fields took its lane for a quarter of a second), naming
// the limit; the node's own heartbeats go on.
TEST_F(LivenessLanesTest, OversizedHeartbeatAndRegistration_InvalidArgument_NodeStillBeats) {
  Start("none");
  ASSERT_TRUE(Register("a").ok());
  std::string unknown;  // field 15, varint 0, repeated: a valid message of no known field
  for (int i = 0; i < (1 << 20); ++i) unknown += std::string("\x78\x00", 2);
  for (const char* method :
       {"/meshd.v1.Coordinator/Heartbeat", "/meshd.v1.Coordinator/RegisterNode"}) {
    Flood big;
    Send(big, method, unknown + unknown + unknown, 1);
    ASSERT_TRUE(WaitFor([&] { return Answered(big) == 1; }, absl::Seconds(30)));
    absl::MutexLock lock(&big.mu);
    EXPECT_EQ(big.codes[0], grpc::StatusCode::INVALID_ARGUMENT) << method;
  }
  EXPECT_TRUE(Heartbeat("a").ok());
  Flood junk;
  Send(junk, "/meshd.v1.Coordinator/Heartbeat", "\xff\xff\xff\xff\x0f not a protobuf", 1);
  ASSERT_TRUE(WaitFor([&] { return Answered(junk) == 1; }, absl::Seconds(30)));
  absl::MutexLock lock(&junk.mu);
  EXPECT_EQ(junk.codes[0], grpc::StatusCode::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace meshd
