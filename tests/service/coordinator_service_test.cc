// meshd.v1.Coordinator against a real server on 127.0.0.1:0: one test per RPC and status code,
// health, limits, garbage on the socket, a unix socket, and shutdown. The coordinator runs on a
// FakeClock: where a test waits for time to pass (heartbeat expiry, a call's deadline) it advances
// the clock; where it waits for the server's threads, it polls a condition with a deadline.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "daemon/runtime/coordinator_daemon.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "meshd/v1/coordinator.grpc.pb.h"
#include "tests/support/client_context.h"
#include "tests/support/fake_clock.h"
#include "tests/support/raw_call.h"
#include "tests/support/wait_for.h"

namespace meshd {
namespace {

using ::meshd::testing::WaitFor;
using ::testing::HasSubstr;
using ::testing::Not;

using testing::Ctx;

class CoordinatorServiceTest : public ::testing::Test {
 protected:
  void SetUp() override { StartDaemon(absl::Seconds(2)); }

  // (Re)starts the coordinator, on clock_. Tests whose nodes do not heartbeat while they load the
  // server with thousands of calls give a timeout no test's advance of the clock reaches.
  void StartDaemon(absl::Duration heartbeat_timeout) {
    daemon_.reset();
    runtime::CoordinatorDaemonOptions o;
    o.listen = "127.0.0.1:0";
    o.heartbeat_interval = absl::Milliseconds(200);
    o.heartbeat_timeout = heartbeat_timeout;
    o.tick = absl::Milliseconds(20);
    o.clock = &clock_;
    auto d = runtime::CoordinatorDaemon::Start(o);
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = *std::move(d);
    channel_ = grpc::CreateChannel(daemon_->address(), grpc::InsecureChannelCredentials());
    stub_ = v1::Coordinator::NewStub(channel_);
  }

  grpc::Status Register(const std::string& node, uint64_t incarnation = 1) {
    v1::RegisterNodeRequest req;
    v1::NodeInventory* inv = req.mutable_inventory();
    inv->set_node(node);
    inv->set_hostname("host-" + node);
    inv->set_incarnation(incarnation);
    for (int i = 0; i < 2; ++i) {
      v1::Gpu* g = inv->add_gpus();
      g->set_index(i);
      g->set_uuid("SIM-" + node + "-" + std::to_string(i));
      g->set_simulated(true);
    }
    v1::RegisterNodeResponse resp;
    // As the node's own agent: presenting its secret when it has one (registering again, or a
    // restart that authenticates as the node).
    const grpc::Status s = stub_->RegisterNode(As(node).get(), req, &resp);
    if (s.ok()) secrets_[node] = resp.node_secret();
    return s;
  }
  // A context for a call that acts for `node`: the metadata its agent sends (domain/caller.h).
  std::unique_ptr<grpc::ClientContext> As(const std::string& node,
                                          absl::Duration timeout = absl::Seconds(10)) {
    auto ctx = Ctx(timeout);
    ctx->AddMetadata(domain::kNodeMetadata, node);
    if (auto it = secrets_.find(node); it != secrets_.end()) {
      ctx->AddMetadata(domain::kNodeSecretMetadata, it->second);
    }
    return ctx;
  }

  v1::JoinJobRequest JoinReq(const std::string& job, const std::string& node, uint32_t nodes,
                             uint64_t incarnation = 1) {
    v1::JoinJobRequest r;
    r.set_job(job);
    r.set_node(node);
    r.set_incarnation(incarnation);
    r.set_local_world(2);
    r.mutable_nodes()->set_min_nodes(nodes);
    r.mutable_nodes()->set_max_nodes(nodes);
    return r;
  }

  grpc::Status Heartbeat(const std::string& node, uint64_t incarnation = 1) {
    v1::HeartbeatRequest req;
    req.set_node(node);
    req.set_incarnation(incarnation);
    v1::HeartbeatResponse resp;
    return stub_->Heartbeat(As(node).get(), req, &resp);
  }

  // Moves the coordinator's time on and lets it act on it at once, as its ticker would.
  void Advance(absl::Duration d) {
    clock_.Advance(d);
    daemon_->core().CheckDeadlines();
  }
  // Waits until the coordinator holds `n` calls of a kind (a join, a key wait, ...).
  bool Held(uint32_t domain::WaiterCounts::*kind, uint32_t n) {
    return WaitFor([&] { return daemon_->core().Status().waiting.*kind == n; });
  }

  // Registers a and b and runs job "job" (generation 1) with both.
  void StartJob() {
    ASSERT_TRUE(Register("a").ok());
    ASSERT_TRUE(Register("b").ok());
    v1::Assignment a;
    std::thread t(
        [&] { EXPECT_TRUE(stub_->JoinJob(As("a").get(), JoinReq("job", "a", 2), &a).ok()); });
    v1::Assignment b;
    ASSERT_TRUE(stub_->JoinJob(As("b").get(), JoinReq("job", "b", 2), &b).ok());
    t.join();
  }

  FakeClock clock_;  // outlives daemon_
  std::map<std::string, std::string> secrets_;  // node -> the secret its registration returned
  std::unique_ptr<runtime::CoordinatorDaemon> daemon_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
};

// A second coordinator on a taken port is refused (gRPC's default SO_REUSEPORT would have let both
// bind and split the agents between them).
TEST_F(CoordinatorServiceTest, SecondServerOnTakenPort_Unavailable) {
  runtime::CoordinatorDaemonOptions o;
  o.listen = daemon_->address();
  auto second = runtime::CoordinatorDaemon::Start(o);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(CoordinatorServiceTest, RegisterNode_Ok_TellsHeartbeatSettings) {
  v1::RegisterNodeRequest req;
  req.mutable_inventory()->set_node("a");
  req.mutable_inventory()->set_incarnation(7);
  v1::RegisterNodeResponse resp;
  ASSERT_TRUE(stub_->RegisterNode(Ctx().get(), req, &resp).ok());
  EXPECT_EQ(resp.heartbeat_interval_ms(), 200u);
  EXPECT_EQ(resp.heartbeat_timeout_ms(), 2000u);
  EXPECT_FALSE(resp.restarted());
}

TEST_F(CoordinatorServiceTest, RegisterNode_EmptyName_InvalidArgument) {
  const grpc::Status s = Register("");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("node name is empty"));
}

TEST_F(CoordinatorServiceTest, RegisterNode_SomeoneElsesGpus_AlreadyExists) {
  ASSERT_TRUE(Register("a").ok());
  v1::RegisterNodeRequest req;
  req.mutable_inventory()->set_node("b");
  req.mutable_inventory()->set_incarnation(1);
  req.mutable_inventory()->add_gpus()->set_uuid("SIM-a-0");
  v1::RegisterNodeResponse resp;
  EXPECT_EQ(stub_->RegisterNode(Ctx().get(), req, &resp).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
}

TEST_F(CoordinatorServiceTest, Heartbeat_UnknownNode_NotFound) {
  v1::HeartbeatRequest req;
  req.set_node("ghost");
  req.set_incarnation(1);
  v1::HeartbeatResponse resp;
  EXPECT_EQ(stub_->Heartbeat(Ctx().get(), req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
}

// Issue 20's attacks, each refused with PERMISSION_DENIED while the job runs on undisturbed: one
// process speaking as another node (registering under its name, heartbeating for it, leaving its
// job, exchanging ids for it) or reading another job's store.
TEST_F(CoordinatorServiceTest, SpoofedNodeCalls_PermissionDenied_JobRunsOn) {
  StartJob();
  // RegisterNode under member b's name, from another process (no secret): it used to end the job.
  v1::RegisterNodeRequest reg;
  reg.mutable_inventory()->set_node("b");
  reg.mutable_inventory()->set_incarnation(99);
  v1::RegisterNodeResponse reg_resp;
  const grpc::Status spoof = stub_->RegisterNode(Ctx().get(), reg, &reg_resp);
  EXPECT_EQ(spoof.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(spoof.error_message(), HasSubstr("alive under another agent"));
  // Heartbeats for b without its secret (they kept a killed agent's node alive).
  v1::HeartbeatRequest hb;
  hb.set_node("b");
  hb.set_incarnation(1);
  v1::HeartbeatResponse hb_resp;
  EXPECT_EQ(stub_->Heartbeat(Ctx().get(), hb, &hb_resp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // LeaveJob for member a, presenting b's secret under a's name.
  auto forged = Ctx();
  forged->AddMetadata(domain::kNodeMetadata, "a");
  forged->AddMetadata(domain::kNodeSecretMetadata, secrets_["b"]);
  v1::LeaveJobRequest leave;
  leave.set_job("job");
  leave.set_generation(1);
  leave.set_node("a");
  v1::LeaveJobResponse leave_resp;
  EXPECT_EQ(stub_->LeaveJob(forged.get(), leave, &leave_resp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // A registered node that is not a member reads the job's store.
  ASSERT_TRUE(Register("c").ok());
  v1::KeyGetRequest get;
  get.set_job("job");
  get.set_generation(1);
  get.set_key("secret");
  v1::KeyGetResponse got;
  const grpc::Status read = stub_->KeyGet(As("c").get(), get, &got);
  EXPECT_EQ(read.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(read.error_message(), Not(HasSubstr("'a'")));
  // The job runs on: same generation, both members, nobody told anything.
  absl::StatusOr<domain::JobView> job = daemon_->core().Job("job");
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->phase, domain::JobPhase::kRunning);
  EXPECT_EQ(job->generation, 1u);
  // The real members still act: a's own leave is accepted.
  EXPECT_TRUE(stub_->LeaveJob(As("a").get(), leave, &leave_resp).ok());
}

TEST_F(CoordinatorServiceTest, JoinJob_RoundClosesForBoth) {
  ASSERT_TRUE(Register("a").ok());
  ASSERT_TRUE(Register("b").ok());
  v1::Assignment a, b;
  grpc::Status sa;
  std::thread t([&] { sa = stub_->JoinJob(As("a").get(), JoinReq("job", "a", 2), &a); });
  v1::JoinJobRequest with_members = JoinReq("job", "b", 2);
  with_members.set_with_members(true);
  ASSERT_TRUE(stub_->JoinJob(As("b").get(), with_members, &b).ok());
  t.join();
  ASSERT_TRUE(sa.ok()) << sa.error_message();
  EXPECT_EQ(a.node_rank(), 0u);
  EXPECT_EQ(b.node_rank(), 1u);
  EXPECT_EQ(a.world_size(), 4u);
  EXPECT_EQ(a.num_nodes(), 2u);
  EXPECT_EQ(a.generation(), b.generation());
  // The member list only for the node that asked for it.
  EXPECT_EQ(a.members_size(), 0);
  ASSERT_EQ(b.members_size(), 2);
  EXPECT_EQ(b.members(0).node(), "a");
  EXPECT_EQ(b.members(1).node(), "b");
  EXPECT_EQ(b.members(1).node_rank(), 1u);
}

// The client's deadline reaches the coordinator: once its clock passes it, the held join ends.
TEST_F(CoordinatorServiceTest, JoinJob_ClientDeadline_DeadlineExceeded) {
  ASSERT_TRUE(Register("a").ok());
  grpc::Status s;
  std::thread t([&] {
    v1::Assignment a;
    s = stub_->JoinJob(As("a", absl::Seconds(1)).get(), JoinReq("job", "a", 2), &a);
  });
  EXPECT_TRUE(Held(&domain::WaiterCounts::join, 1));  // (else the call's own deadline ends it)
  // Past the call's deadline (gRPC rounds the timeout it sends up), within the heartbeat timeout.
  Advance(absl::Milliseconds(1500));
  t.join();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
}

TEST_F(CoordinatorServiceTest, JoinJob_UnregisteredNode_NotFound) {
  v1::Assignment a;
  EXPECT_EQ(stub_->JoinJob(As("ghost").get(), JoinReq("job", "ghost", 1), &a).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(CoordinatorServiceTest, JoinJob_NonMemberOfRunningFixedJob_FailedPrecondition) {
  StartJob();
  ASSERT_TRUE(Register("c").ok());
  v1::Assignment c;
  const grpc::Status s = stub_->JoinJob(As("c").get(), JoinReq("job", "c", 2), &c);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("admits no new nodes"));
}

TEST_F(CoordinatorServiceTest, WatchJob_NodeRestart_StreamsEndThenFinishes) {
  StartJob();
  v1::WatchJobRequest req;
  req.set_job("job");
  req.set_generation(1);
  auto ctx = As("a");
  auto reader = stub_->WatchJob(ctx.get(), req);
  ASSERT_TRUE(Register("b", 2).ok());
  v1::GenerationEnd end;
  ASSERT_TRUE(reader->Read(&end));
  EXPECT_EQ(end.reason(), v1::GenerationEnd::REASON_NODE_RESTARTED);
  EXPECT_EQ(end.node(), "b");
  EXPECT_FALSE(reader->Read(&end));
  EXPECT_TRUE(reader->Finish().ok());
}

// On the coordinator's clock: a and b were heard at `start`; only a heartbeats after it.
TEST_F(CoordinatorServiceTest, WatchJob_NodeLost_WithinTimeoutPlusOneSecond) {
  StartJob();
  const absl::Time start = clock_.Now();
  v1::WatchJobRequest req;
  req.set_job("job");
  req.set_generation(1);
  auto ctx = As("a");
  auto reader = stub_->WatchJob(ctx.get(), req);
  ASSERT_TRUE(Held(&domain::WaiterCounts::watch, 1));
  for (int i = 0; i < 10; ++i) {  // 2 s in 200 ms heartbeat intervals
    clock_.Advance(absl::Milliseconds(200));
    ASSERT_TRUE(Heartbeat("a").ok());
    daemon_->core().CheckDeadlines();
  }
  // b has been silent for exactly the timeout (2 s): still a member, the generation runs.
  absl::StatusOr<domain::JobView> job = daemon_->core().Job("job");
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->phase, domain::JobPhase::kRunning);
  EXPECT_EQ(job->generation, 1u);
  EXPECT_EQ(daemon_->core().Status().waiting.watch, 1u);
  Advance(absl::Milliseconds(1));
  v1::GenerationEnd end;
  const bool got = reader->Read(&end);
  const absl::Duration took = clock_.Now() - start;
  ASSERT_TRUE(got);
  EXPECT_EQ(end.reason(), v1::GenerationEnd::REASON_NODE_LOST);
  EXPECT_EQ(end.node(), "b");
  EXPECT_LT(took, absl::Seconds(3));  // heartbeat timeout (2 s) + 1 s
}

TEST_F(CoordinatorServiceTest, WatchJob_UnknownJob_NotFound) {
  v1::WatchJobRequest req;
  req.set_job("nope");
  req.set_generation(1);
  auto ctx = As("a");
  auto reader = stub_->WatchJob(ctx.get(), req);
  v1::GenerationEnd end;
  EXPECT_FALSE(reader->Read(&end));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(CoordinatorServiceTest, KeyValue_SetWaitGetAddCompareSet) {
  StartJob();
  v1::KeyGetRequest get;
  get.set_job("job");
  get.set_generation(1);
  get.set_key("nccl/id");
  get.set_wait(true);
  v1::KeyGetResponse got;
  grpc::Status get_status;
  std::thread waiter([&] { get_status = stub_->KeyGet(As("a").get(), get, &got); });
  EXPECT_TRUE(Held(&domain::WaiterCounts::kv, 1));  // the get waits for the key
  v1::KeySetRequest set;
  set.set_job("job");
  set.set_generation(1);
  set.set_key("nccl/id");
  set.set_value(std::string(128, '\x01'));
  v1::KeySetResponse set_resp;
  ASSERT_TRUE(stub_->KeySet(As("a").get(), set, &set_resp).ok());
  waiter.join();
  ASSERT_TRUE(get_status.ok()) << get_status.error_message();
  EXPECT_EQ(got.value(), std::string(128, '\x01'));

  v1::KeyAddRequest add;
  add.set_job("job");
  add.set_generation(1);
  add.set_key("count");
  add.set_delta(3);
  v1::KeyAddResponse added;
  ASSERT_TRUE(stub_->KeyAdd(As("a").get(), add, &added).ok());
  EXPECT_EQ(added.value(), 3);

  v1::KeyCompareSetRequest cas;
  cas.set_job("job");
  cas.set_generation(1);
  cas.set_key("leader");
  cas.set_expect_absent(true);
  cas.set_desired("a");
  v1::KeyCompareSetResponse cas_resp;
  ASSERT_TRUE(stub_->KeyCompareSet(As("a").get(), cas, &cas_resp).ok());
  EXPECT_TRUE(cas_resp.swapped());
  ASSERT_TRUE(stub_->KeyCompareSet(As("a").get(), cas, &cas_resp).ok());
  EXPECT_FALSE(cas_resp.swapped());
  EXPECT_EQ(cas_resp.value(), "a");
}

// An agent's batch: its operations run in order with a result each; one whose every operation
// waits is held until one is satisfied; a malformed batch is refused whole.
TEST_F(CoordinatorServiceTest, KeyBatch_RunsInOrder_HeldWhenAllWait_MalformedRefused) {
  StartJob();
  v1::KeyBatchRequest batch;
  batch.set_job("job");
  batch.set_generation(1);
  v1::KeyBatchResponse answer;
  EXPECT_EQ(stub_->KeyBatch(As("a").get(), batch, &answer).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);  // no operations

  v1::KeyOp* wait_x = batch.add_ops();
  wait_x->mutable_get()->set_key("x");
  wait_x->mutable_get()->set_wait(true);
  batch.add_ops()->mutable_wait()->add_keys("y");
  grpc::Status held_status;
  v1::KeyBatchResponse held;
  std::thread waiter([&] { held_status = stub_->KeyBatch(As("b").get(), batch, &held); });
  EXPECT_TRUE(Held(&domain::WaiterCounts::kv, 2));  // each waiting operation counts

  v1::KeyBatchRequest writes;
  writes.set_job("job");
  writes.set_generation(1);
  v1::KeyOp* set = writes.add_ops();
  set->mutable_set()->set_key("x");
  set->mutable_set()->set_value("X");
  writes.add_ops()->mutable_add()->set_key("x");  // "X" is no counter: this one fails alone
  writes.add_ops()->mutable_add()->set_key("n");
  writes.mutable_ops(2)->mutable_add()->set_delta(4);
  ASSERT_TRUE(stub_->KeyBatch(As("a").get(), writes, &answer).ok());
  ASSERT_EQ(answer.results_size(), 3);
  EXPECT_TRUE(answer.results(0).has_set());
  EXPECT_EQ(answer.results(1).code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(answer.results(1).message(), HasSubstr("not an integer"));
  EXPECT_EQ(answer.results(2).add().value(), 4);

  waiter.join();
  ASSERT_TRUE(held_status.ok()) << held_status.error_message();
  ASSERT_EQ(held.results_size(), 2);
  EXPECT_EQ(held.results(0).get().value(), "X");
  EXPECT_TRUE(held.results(1).pending());  // y is not set: the agent asks again

  v1::KeyBatchRequest foreign = writes;
  foreign.mutable_ops(0)->mutable_set()->set_job("other");
  const grpc::Status refused = stub_->KeyBatch(As("a").get(), foreign, &answer);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(refused.error_message(), HasSubstr("operation 0"));
  v1::KeyBatchRequest empty_op = writes;
  empty_op.add_ops();
  EXPECT_EQ(stub_->KeyBatch(As("a").get(), empty_op, &answer).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  v1::KeyBatchRequest other_job = writes;
  other_job.set_job("nope");
  EXPECT_EQ(stub_->KeyBatch(As("a").get(), other_job, &answer).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(CoordinatorServiceTest, KeyGet_CodesForMissingStaleAndTimedOut) {
  StartJob();
  v1::KeyGetRequest get;
  get.set_job("job");
  get.set_generation(1);
  get.set_key("absent");
  v1::KeyGetResponse got;
  EXPECT_EQ(stub_->KeyGet(As("a").get(), get, &got).error_code(), grpc::StatusCode::NOT_FOUND);
  get.set_wait(true);
  grpc::Status timed_out;
  std::thread waiter([&] {
    v1::KeyGetResponse never;
    timed_out = stub_->KeyGet(As("a", absl::Seconds(1)).get(), get, &never);
  });
  EXPECT_TRUE(Held(&domain::WaiterCounts::kv, 1));
  Advance(absl::Milliseconds(1500));  // past the call's deadline, within the heartbeat timeout
  waiter.join();
  EXPECT_EQ(timed_out.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  get.set_generation(2);
  EXPECT_EQ(stub_->KeyGet(As("a").get(), get, &got).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  ASSERT_TRUE(Register("a", 2).ok());  // restart: generation 1 ends
  get.set_generation(1);
  const grpc::Status stale = stub_->KeyGet(As("a").get(), get, &got);
  EXPECT_EQ(stale.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_THAT(stale.error_message(), HasSubstr("re-join"));
  get.set_job("other");
  EXPECT_EQ(stub_->KeyGet(As("a").get(), get, &got).error_code(), grpc::StatusCode::NOT_FOUND);
  get.set_job("job");
  get.set_key("");
  EXPECT_EQ(stub_->KeyGet(As("a").get(), get, &got).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(CoordinatorServiceTest, Barrier_TwoParticipants) {
  StartJob();
  auto enter = [&](const std::string& who, uint32_t count) {
    v1::BarrierRequest r;
    r.set_job("job");
    r.set_generation(1);
    r.set_barrier("init");
    r.set_participant(who);
    r.set_count(count);
    v1::BarrierResponse resp;
    return stub_->Barrier(As("a").get(), r, &resp);
  };
  grpc::Status first;
  std::thread t([&] { first = enter("r0", 2); });
  EXPECT_TRUE(enter("r1", 2).ok());
  t.join();
  EXPECT_TRUE(first.ok());
  EXPECT_EQ(enter("r1", 3).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

// `n` participants enter barrier `name` of job "job" (generation 1) expecting `count`, each its
// own call in flight at once; counts their outcomes by status code.
class HeldBarrierCalls {
 public:
  // Each call acts for node "a", presenting `secret`.
  HeldBarrierCalls(v1::Coordinator::Stub* stub, int n, const std::string& name, uint32_t count,
                   const std::string& secret)
      : n_(n) {
    for (int i = 0; i < n; ++i) {
      auto c = std::make_unique<Call>();
      c->ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
      c->ctx.AddMetadata(domain::kNodeMetadata, "a");
      c->ctx.AddMetadata(domain::kNodeSecretMetadata, secret);
      c->req.set_job("job");
      c->req.set_generation(1);
      c->req.set_barrier(name);
      c->req.set_participant(absl::StrCat("p", i));
      c->req.set_count(count);
      stub->async()->Barrier(&c->ctx, &c->req, &c->resp, [this](grpc::Status s) {
        absl::MutexLock lock(&mu_);
        ++codes_[s.error_code()];
        ++finished_;
      });
      calls_.push_back(std::move(c));
    }
  }
  ~HeldBarrierCalls() { EXPECT_TRUE(AllFinished()); }
  // True once every call finished (within 30 s).
  bool AllFinished() {
    absl::MutexLock lock(&mu_);
    auto all = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return finished_ == n_; };
    return mu_.AwaitWithTimeout(absl::Condition(&all), absl::Seconds(30));
  }
  int Count(grpc::StatusCode code) {
    absl::MutexLock lock(&mu_);
    return codes_[code];
  }

 private:
  struct Call {
    grpc::ClientContext ctx;
    v1::BarrierRequest req;
    v1::BarrierResponse resp;
  };
  const int n_;
  std::vector<std::unique_ptr<Call>> calls_;
  absl::Mutex mu_;
  std::map<grpc::StatusCode, int> codes_ ABSL_GUARDED_BY(mu_);
  int finished_ ABSL_GUARDED_BY(mu_) = 0;
};

// Held calls beyond one completion queue's share (AsyncQueues::kCallsPerQueue) are spread over
// the server's queues; every one of them is answered when the barrier fills.
TEST_F(CoordinatorServiceTest, Barrier_ThousandsHeldAcrossQueues_AllAnswered) {
  StartDaemon(absl::Minutes(2));  // no node may be declared lost meanwhile
  StartJob();
  HeldBarrierCalls calls(stub_.get(), 2600, "many", 2600, secrets_["a"]);
  ASSERT_TRUE(calls.AllFinished());
  EXPECT_EQ(calls.Count(grpc::StatusCode::OK), 2600);
}

// Stopping the daemon while thousands of calls are held cancels each of them; nothing is left
// behind and the stop returns.
TEST_F(CoordinatorServiceTest, Stop_ThousandsHeld_EachCancelled) {
  StartDaemon(absl::Minutes(2));  // no node may be declared lost meanwhile
  StartJob();
  HeldBarrierCalls calls(stub_.get(), 2100, "never", 2101, secrets_["a"]);
  // Wait until the coordinator holds them all (GetStatus counts waiters).
  v1::CoordinatorStatus status;
  WaitFor(
      [&] {
        return stub_->GetStatus(Ctx().get(), v1::GetStatusRequest(), &status).ok() &&
               status.waiters() >= 2100;
      },
      absl::Seconds(30));
  ASSERT_GE(status.waiters(), 2100u);
  daemon_->Stop();
  ASSERT_TRUE(calls.AllFinished());
  EXPECT_EQ(calls.Count(grpc::StatusCode::CANCELLED), 2100);
}

// A ResolveGroups payload that is not a ResolveGroupsRequest is refused with INVALID_ARGUMENT
// (the method parses its own request), and the server goes on serving.
TEST_F(CoordinatorServiceTest, ResolveGroups_UnparsableRequest_InvalidArgument) {
  grpc::GenericStub generic(channel_);
  const grpc::Status status = testing::RawUnaryCall(generic, "/meshd.v1.Coordinator/ResolveGroups",
                                                    "\xff\xff\xff\xff\x0f not a protobuf");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("ResolveGroupsRequest"));
  EXPECT_TRUE(Register("still-serving").ok());
}

// Only a group's leader mints its id (issue 20): member b, which does not lead dp group {0,2},
// reports its own id for it first, as itself (its secret); it is refused and nothing of its report
// counts, and then both members get the id that leader rank 0 (node a) minted.
TEST_F(CoordinatorServiceTest, ResolveGroups_MemberNotLeaderMints_PermissionDenied_LeadersIdRelayed) {
  StartJob();  // a holds ranks 0-1, b ranks 2-3
  const auto request = [](const std::string& node, uint32_t first,
                          std::vector<std::pair<std::string, char>> groups) {
    v1::ResolveGroupsRequest r;
    r.set_job("job");
    r.set_generation(1);
    r.set_node(node);
    r.set_mesh_key("m");
    for (uint32_t rank : {first, first + 1}) {
      v1::ResolveGroupsRequest::RankSpec* spec = r.add_ranks();
      spec->set_rank(rank);
      spec->mutable_spec()->set_fingerprint("identity(4)|[(2):(2), (2):(1)]|dp,tp");  // dp=2, tp=2
      spec->mutable_spec()->set_description("DeviceMesh((dp=2, tp=2), stride=(2, 1))");
    }
    for (const auto& [key, minted] : groups) {
      v1::GroupRequest* g = r.add_groups();
      g->set_key(key);
      g->set_num_ids(1);
      if (minted == 0) continue;
      v1::MintedId* id = g->add_minted();
      id->set_index(0);
      id->set_id(std::string(128, minted));
    }
    return r;
  };
  v1::ResolveGroupsResponse forged_resp;
  const grpc::Status forged = stub_->ResolveGroups(
      As("b").get(), request("b", 2, {{"m/(2):(2)/0", 'X'}, {"m/(2):(2)/1", 0}, {"m/(2):(1)/1", 'U'}}),
      &forged_resp);
  EXPECT_EQ(forged.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(forged.error_message(), HasSubstr("only rank 0's node may mint it"));

  v1::ResolveGroupsResponse ra, rb;
  grpc::Status sb;
  std::thread t([&] {
    sb = stub_->ResolveGroups(
        As("b").get(),
        request("b", 2, {{"m/(2):(2)/0", 0}, {"m/(2):(2)/1", 0}, {"m/(2):(1)/1", 'U'}}), &rb);
  });
  ASSERT_TRUE(Held(&domain::WaiterCounts::groups, 1));  // waits for the dp leaders' ids: 'X' did
                                                         // not count
  const grpc::Status sa = stub_->ResolveGroups(
      As("a").get(),
      request("a", 0, {{"m/(2):(2)/0", 'L'}, {"m/(2):(2)/1", 'M'}, {"m/(2):(1)/0", 'T'}}), &ra);
  t.join();
  ASSERT_TRUE(sa.ok()) << sa.error_message();
  ASSERT_TRUE(sb.ok()) << sb.error_message();
  for (const v1::ResolveGroupsResponse* r : {&ra, &rb}) {
    ASSERT_EQ(r->groups_size(), 3);
    EXPECT_EQ(r->groups(0).key(), "m/(2):(2)/0");
    ASSERT_EQ(r->groups(0).ids_size(), 1);
    EXPECT_EQ(r->groups(0).ids(0), std::string(128, 'L'));
  }
}

TEST_F(CoordinatorServiceTest, Introspection_StatusNodesJobs) {
  StartJob();
  v1::CoordinatorStatus status;
  ASSERT_TRUE(stub_->GetStatus(Ctx().get(), v1::GetStatusRequest(), &status).ok());
  EXPECT_EQ(status.nodes_alive(), 2u);
  EXPECT_EQ(status.jobs_running(), 1u);
  EXPECT_FALSE(status.version().empty());
  v1::ListNodesResponse nodes;
  ASSERT_TRUE(stub_->ListNodes(Ctx().get(), v1::ListNodesRequest(), &nodes).ok());
  ASSERT_EQ(nodes.nodes_size(), 2);
  EXPECT_EQ(nodes.nodes(0).state(), v1::NODE_STATE_ALIVE);
  EXPECT_TRUE(nodes.nodes(0).inventory().gpus(0).simulated());
  v1::ListJobsResponse jobs;
  ASSERT_TRUE(stub_->ListJobs(Ctx().get(), v1::ListJobsRequest(), &jobs).ok());
  ASSERT_EQ(jobs.jobs_size(), 1);
  EXPECT_EQ(jobs.jobs(0).phase(), v1::JOB_PHASE_RUNNING);
  v1::GetJobRequest get;
  get.set_job("job");
  v1::JobStatus job;
  ASSERT_TRUE(stub_->GetJob(Ctx().get(), get, &job).ok());
  EXPECT_EQ(job.world_size(), 4u);
  get.set_job("nope");
  EXPECT_EQ(stub_->GetJob(Ctx().get(), get, &job).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(CoordinatorServiceTest, Health_ServingThenNotServingOnShutdown) {
  auto health = grpc::health::v1::Health::NewStub(channel_);
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  ASSERT_TRUE(health->Check(Ctx().get(), req, &resp).ok());
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  req.set_service("meshd.v1.Coordinator");
  ASSERT_TRUE(health->Check(Ctx().get(), req, &resp).ok());
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  req.set_service("nope");
  EXPECT_EQ(health->Check(Ctx().get(), req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  daemon_->server().SetNotServing();
  req.set_service("meshd.v1.Coordinator");
  ASSERT_TRUE(health->Check(Ctx().get(), req, &resp).ok());
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
}

TEST_F(CoordinatorServiceTest, OversizedMessage_ResourceExhausted) {
  StartJob();
  v1::KeySetRequest set;
  set.set_job("job");
  set.set_generation(1);
  set.set_key("big");
  set.set_value(std::string(9 << 20, 'x'));
  v1::KeySetResponse resp;
  EXPECT_EQ(stub_->KeySet(As("a").get(), set, &resp).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST_F(CoordinatorServiceTest, GarbageBytesOnTheSocket_ServerKeepsServing) {
  const std::string& addr = daemon_->address();
  const int port = std::stoi(addr.substr(addr.rfind(':') + 1));
  for (int i = 0; i < 3; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    const std::string garbage = "GET / HTTP/1.1\r\n\r\n\x00\xff\xfe garbage \x13\x37";
    (void)!write(fd, garbage.data(), garbage.size());
    close(fd);
  }
  v1::CoordinatorStatus status;
  EXPECT_TRUE(stub_->GetStatus(Ctx().get(), v1::GetStatusRequest(), &status).ok());
}

TEST_F(CoordinatorServiceTest, Shutdown_PendingJoinCancelled) {
  ASSERT_TRUE(Register("a").ok());
  grpc::Status s;
  std::thread t([&] {
    v1::Assignment a;
    s = stub_->JoinJob(As("a").get(), JoinReq("job", "a", 2), &a);
  });
  EXPECT_TRUE(Held(&domain::WaiterCounts::join, 1));
  daemon_->Stop();
  t.join();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::CANCELLED);
}

TEST(GrpcServerTest, UnixSocket_Mode0660AndServes) {
  const std::string dir = ::testing::TempDir() + "meshd_sock_" + std::to_string(getpid());
  const std::string path = dir + "/c.sock";
  RealClock clock;
  coordinator::Coordinator core(&clock, {});
  service::CoordinatorService svc(&core, &clock);
  service::ServerOptions o;
  o.listen = {"unix:" + path};
  auto server = service::GrpcServer::Start(o, {&svc}, {"meshd.v1.Coordinator"});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ((*server)->addresses()[0], "unix:" + path);
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  auto stub = v1::Coordinator::NewStub(
      grpc::CreateChannel("unix:" + path, grpc::InsecureChannelCredentials()));
  v1::CoordinatorStatus status;
  EXPECT_TRUE(stub->GetStatus(Ctx().get(), v1::GetStatusRequest(), &status).ok());
  (*server)->Shutdown(absl::Seconds(1));
  core.Shutdown();
}

TEST(GrpcServerTest, RegularFileAtSocketPath_Unavailable) {
  const std::string path = ::testing::TempDir() + "meshd_not_a_socket_" + std::to_string(getpid());
  std::ofstream(path) << "x";
  service::ServerOptions o;
  o.listen = {"unix:" + path};
  const auto server = service::GrpcServer::Start(o, {}, {});
  EXPECT_EQ(server.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(server.status().message()), HasSubstr("not a socket"));
  std::filesystem::remove(path);
}

TEST(GrpcServerTest, MalformedAddress_InvalidArgument) {
  service::ServerOptions o;
  o.listen = {"nonsense"};
  EXPECT_EQ(service::GrpcServer::Start(o, {}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace meshd
