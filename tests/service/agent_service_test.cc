// meshd.v1.Agent on a real unix socket, with a real coordinator on 127.0.0.1:0 behind it: attach,
// aggregation, every error code, watch, status.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <algorithm>
#include <functional>
#include <set>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "daemon/runtime/agent_daemon.h"
#include "daemon/runtime/coordinator_daemon.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "meshd/v1/agent.grpc.pb.h"
#include "tests/support/fake_clock.h"
#include "tests/support/tcp_relay.h"
#include "tests/support/wait_for.h"

namespace meshd {
namespace {

using ::meshd::testing::WaitFor;

using ::testing::HasSubstr;

// One worker's Attach through `stub` (waits for the agent to be up).
grpc::Status AttachTo(v1::Agent::Stub* stub, const std::string& job, uint32_t local_rank,
                      uint32_t local_world, uint32_t nodes, absl::Duration timeout,
                      v1::AttachResponse* resp, const std::string& instance = "",
                      uint64_t sequence = 0) {
  v1::AttachRequest req;
  req.set_client_instance(instance);
  req.set_attach_sequence(sequence);
  req.set_job(job);
  req.set_local_rank(local_rank);
  req.set_local_world(local_world);
  req.mutable_nodes()->set_min_nodes(nodes);
  req.mutable_nodes()->set_max_nodes(nodes);
  grpc::ClientContext ctx;
  ctx.set_wait_for_ready(true);
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return stub->Attach(&ctx, req, resp);
}

// A coordinator and an agent on one FakeClock: time (heartbeats, their expiry, the agent's and
// coordinator's deadlines) moves only when a test advances it. Client deadlines stay real.
class AgentServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    runtime::CoordinatorDaemonOptions c;
    c.clock = &clock_;
    c.listen = "127.0.0.1:0";
    c.heartbeat_interval = absl::Milliseconds(100);
    c.heartbeat_timeout = absl::Seconds(1);
    c.tick = absl::Milliseconds(20);
    auto cd = runtime::CoordinatorDaemon::Start(c);
    ASSERT_TRUE(cd.ok()) << cd.status();
    coordinator_ = *std::move(cd);
    runtime::AgentDaemonOptions a;
    a.coordinator = coordinator_->address();
    a.socket = ::testing::TempDir() + "meshd_agent_test_" + std::to_string(getpid()) + ".sock";
    a.simulate_gpus = 2;
    a.node_name = "n0";
    a.clock = &clock_;
    auto ad = runtime::AgentDaemon::Start(a);
    ASSERT_TRUE(ad.ok()) << ad.status();
    agent_ = *std::move(ad);
    stub_ = v1::Agent::NewStub(
        grpc::CreateChannel(agent_->address(), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    agent_.reset();
    coordinator_.reset();
  }

  grpc::Status Attach(uint32_t local_rank, uint32_t local_world, v1::AttachResponse* resp,
                      absl::Duration timeout = absl::Seconds(10), const std::string& job = "job",
                      uint32_t nodes = 1, const std::string& instance = "",
                      uint64_t sequence = 0) {
    return AttachTo(stub_.get(), job, local_rank, local_world, nodes, timeout, resp, instance,
                    sequence);
  }

  // Whether local rank `local_rank` of "job" waits in the agent for its round.
  bool Waiting(uint32_t local_rank) {
    for (const auto& w : agent_->agent().Status().workers) {
      if (w.job == "job" && w.local_rank == local_rank && w.generation == 0) return true;
    }
    return false;
  }

  // Local ranks 0 and 1 of a 2-worker job on this node.
  void AttachTwo(v1::AttachResponse* r0, v1::AttachResponse* r1) {
    grpc::Status s0;
    std::thread t([&] { s0 = Attach(0, 2, r0); });
    const grpc::Status s1 = Attach(1, 2, r1);
    t.join();
    ASSERT_TRUE(s0.ok()) << s0.error_message();
    ASSERT_TRUE(s1.ok()) << s1.error_message();
  }

  FakeClock clock_;
  std::unique_ptr<runtime::CoordinatorDaemon> coordinator_;
  std::unique_ptr<runtime::AgentDaemon> agent_;
  std::unique_ptr<v1::Agent::Stub> stub_;
};

TEST_F(AgentServiceTest, Attach_TwoLocalWorkers_OneJoinForTheNode) {
  v1::AttachResponse r0, r1;
  ASSERT_NO_FATAL_FAILURE(AttachTwo(&r0, &r1));
  EXPECT_EQ(r0.rank(), 0u);
  EXPECT_EQ(r1.rank(), 1u);
  EXPECT_EQ(r1.world_size(), 2u);
  EXPECT_EQ(r1.gpu().uuid(), "SIM-n0-1");
  EXPECT_TRUE(r1.gpu().simulated());
  // The coordinator saw one node join, not two workers.
  auto job = coordinator_->core().Job("job");
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->members.size(), 1u);
  EXPECT_EQ(job->world_size, 2u);
}

TEST_F(AgentServiceTest, Store_IdenticalWaitsOfLocalWorkers_OneCoordinatorCall) {
  v1::AttachResponse r0, r1;
  ASSERT_NO_FATAL_FAILURE(AttachTwo(&r0, &r1));

  v1::KeyGetRequest get;
  get.set_job("job");
  get.set_generation(r0.generation());
  get.set_key("nccl/id");
  get.set_wait(true);
  v1::KeyGetResponse got[2];
  grpc::Status status[2];
  std::vector<std::thread> waiters;
  for (int i = 0; i < 2; ++i) {
    waiters.emplace_back([&, i] {
      grpc::ClientContext ctx;
      ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
      status[i] = stub_->KeyGet(&ctx, get, &got[i]);
    });
  }
  // Both waits arrived at the agent, and they hold one coordinator call.
  ASSERT_TRUE(WaitFor([&] { return agent_->agent().Status().key_calls == 2; }));
  ASSERT_TRUE(WaitFor([&] { return coordinator_->core().Status().waiting.kv == 1; }));
  EXPECT_EQ(agent_->agent().Status().key_calls_shared, 1u);

  v1::KeySetRequest set;
  set.set_job("job");
  set.set_generation(r0.generation());
  set.set_key("nccl/id");
  set.set_value(std::string(128, '\x5a'));
  v1::KeySetResponse set_resp;
  grpc::ClientContext set_ctx;
  ASSERT_TRUE(stub_->KeySet(&set_ctx, set, &set_resp).ok());
  for (auto& w : waiters) w.join();
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(status[i].ok()) << status[i].error_message();
    EXPECT_EQ(got[i].value(), std::string(128, '\x5a'));
  }
}

// Adds and sets of local workers on one key that arrive while one is in flight go as one
// coordinator call: every add still gets the value it would have got alone (all distinct, the
// counter exact), and the key ends with one of the values set.
TEST_F(AgentServiceTest, Store_ConcurrentAddsAndSetsOnOneKey_MergedExactly) {
  v1::AttachResponse r0, r1;
  ASSERT_NO_FATAL_FAILURE(AttachTwo(&r0, &r1));
  constexpr int kThreads = 4, kAdds = 150;
  std::vector<std::vector<int64_t>> seen(kThreads);
  std::vector<grpc::Status> failed(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kAdds; ++i) {
        v1::KeyAddRequest add;
        add.set_job("job");
        add.set_generation(r0.generation());
        add.set_key("counter");
        add.set_delta(1);
        v1::KeyAddResponse resp;
        grpc::ClientContext ctx;
        ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
        const grpc::Status s = stub_->KeyAdd(&ctx, add, &resp);
        if (!s.ok()) {
          failed[t] = s;
          return;
        }
        seen[t].push_back(resp.value());
        v1::KeySetRequest set;
        set.set_job("job");
        set.set_generation(r0.generation());
        set.set_key("last");
        set.set_value(absl::StrCat(t, "/", i));
        v1::KeySetResponse set_resp;
        grpc::ClientContext set_ctx;
        set_ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
        if (const grpc::Status ss = stub_->KeySet(&set_ctx, set, &set_resp); !ss.ok()) {
          failed[t] = ss;
          return;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  // How many went within another's call depends on timing (740 of 1,200 in a run); four workers
  // writing without pause overlap.
  const uint64_t merged = agent_->agent().Status().key_calls_shared;
  RecordProperty("store_calls_merged", static_cast<int>(merged));
  EXPECT_GT(merged, 0u);
  std::set<int64_t> all;
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_TRUE(failed[t].ok()) << failed[t].error_message();
    // One worker's adds are answered in its order.
    EXPECT_TRUE(std::is_sorted(seen[t].begin(), seen[t].end()));
    all.insert(seen[t].begin(), seen[t].end());
  }
  ASSERT_EQ(all.size(), static_cast<size_t>(kThreads * kAdds));  // no value given twice
  EXPECT_EQ(*all.begin(), 1);
  EXPECT_EQ(*all.rbegin(), kThreads * kAdds);
  v1::KeyGetRequest get;
  get.set_job("job");
  get.set_generation(r0.generation());
  get.set_key("last");
  v1::KeyGetResponse got;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->KeyGet(&ctx, get, &got).ok());
  EXPECT_THAT(got.value(), ::testing::EndsWith(absl::StrCat("/", kAdds - 1)));
}

// A worker's get after its own set answered sees that set, even while another local worker's
// identical get, sent before the set, is still waiting: it does not join that one.
TEST_F(AgentServiceTest, Store_GetAfterOwnSet_DoesNotJoinAnEarlierSharedGet) {
  v1::AttachResponse r0, r1;
  ASSERT_NO_FATAL_FAILURE(AttachTwo(&r0, &r1));
  auto request = [&](auto req) {
    req.set_job("job");
    req.set_generation(r0.generation());
    return req;
  };
  auto ctx = [] {
    auto c = std::make_unique<grpc::ClientContext>();
    c->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
    return c;
  };
  // Worker 1 waits on "k" (held at the coordinator: the key is not set).
  v1::KeyGetRequest get = request(v1::KeyGetRequest());
  get.set_key("k");
  get.set_wait(true);
  v1::KeyGetResponse first;
  grpc::Status first_status;
  std::thread waiter([&] { first_status = stub_->KeyGet(ctx().get(), get, &first); });
  ASSERT_TRUE(WaitFor([&] { return coordinator_->core().Status().waiting.kv == 1; }));
  // Worker 0 sets "k" then reads it: a fresh read, not a join of worker 1's older get.
  v1::KeySetRequest set = request(v1::KeySetRequest());
  set.set_key("k");
  set.set_value("mine");
  v1::KeySetResponse set_resp;
  ASSERT_TRUE(stub_->KeySet(ctx().get(), set, &set_resp).ok());
  v1::KeyGetResponse mine;
  ASSERT_TRUE(stub_->KeyGet(ctx().get(), get, &mine).ok());
  EXPECT_EQ(mine.value(), "mine");
  waiter.join();
  ASSERT_TRUE(first_status.ok()) << first_status.error_message();
  EXPECT_EQ(first.value(), "mine");
  EXPECT_EQ(agent_->agent().Status().key_calls_shared, 0u);
}

// A worker that joins a shared wait with an earlier deadline ends at its own deadline; the
// worker whose call is shared waits on and gets the value.
TEST_F(AgentServiceTest, Store_JoinerWithAnEarlierDeadline_EndsAloneAtIt) {
  v1::AttachResponse r0, r1;
  ASSERT_NO_FATAL_FAILURE(AttachTwo(&r0, &r1));
  v1::KeyGetRequest get;
  get.set_job("job");
  get.set_generation(r0.generation());
  get.set_key("late");
  get.set_wait(true);
  v1::KeyGetResponse long_resp, short_resp;
  grpc::Status long_status;
  std::thread long_waiter([&] {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
    long_status = stub_->KeyGet(&ctx, get, &long_resp);
  });
  ASSERT_TRUE(WaitFor([&] { return coordinator_->core().Status().waiting.kv == 1; }));
  grpc::ClientContext short_ctx;
  short_ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Milliseconds(300)));
  EXPECT_EQ(stub_->KeyGet(&short_ctx, get, &short_resp).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(agent_->agent().Status().key_calls_shared, 1u);  // it had joined
  v1::KeySetRequest set;
  set.set_job("job");
  set.set_generation(r0.generation());
  set.set_key("late");
  set.set_value("v");
  v1::KeySetResponse set_resp;
  grpc::ClientContext set_ctx;
  ASSERT_TRUE(stub_->KeySet(&set_ctx, set, &set_resp).ok());
  long_waiter.join();
  ASSERT_TRUE(long_status.ok()) << long_status.error_message();
  EXPECT_EQ(long_resp.value(), "v");
}

TEST_F(AgentServiceTest, Store_EveryCallRelayed_NoWorkerOfTheGeneration_FailedPrecondition) {
  v1::AttachResponse r0;
  ASSERT_TRUE(Attach(0, 1, &r0).ok());
  const uint64_t gen = r0.generation();
  auto call = [&](auto method, auto req, auto* resp) {
    req.set_job("job");
    req.set_generation(gen);
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    return (stub_.get()->*method)(&ctx, req, resp);
  };
  v1::KeyAddRequest add;
  add.set_key("n");
  add.set_delta(3);
  v1::KeyAddResponse added;
  ASSERT_TRUE(call(&v1::Agent::Stub::KeyAdd, add, &added).ok());
  EXPECT_EQ(added.value(), 3);

  v1::KeyCompareSetRequest cas;
  cas.set_key("leader");
  cas.set_expected("x");
  cas.set_desired("me");
  v1::KeyCompareSetResponse cas_resp;
  ASSERT_TRUE(call(&v1::Agent::Stub::KeyCompareSet, cas, &cas_resp).ok());
  EXPECT_FALSE(cas_resp.swapped());
  EXPECT_FALSE(cas_resp.present());

  v1::KeyWaitRequest wait;
  wait.add_keys("n");
  v1::KeyWaitResponse waited;
  EXPECT_TRUE(call(&v1::Agent::Stub::KeyWait, wait, &waited).ok());

  v1::KeyCheckRequest check;
  check.add_keys("n");
  check.add_keys("leader");
  v1::KeyCheckResponse checked;
  ASSERT_TRUE(call(&v1::Agent::Stub::KeyCheck, check, &checked).ok());
  EXPECT_FALSE(checked.all_set());

  v1::KeyCountRequest count;
  v1::KeyCountResponse counted;
  ASSERT_TRUE(call(&v1::Agent::Stub::KeyCount, count, &counted).ok());
  EXPECT_EQ(counted.count(), 1);

  v1::KeyDeleteRequest del;
  del.set_key("n");
  v1::KeyDeleteResponse deleted;
  ASSERT_TRUE(call(&v1::Agent::Stub::KeyDelete, del, &deleted).ok());
  EXPECT_TRUE(deleted.deleted());

  // Nobody of this node is in a later generation.
  v1::KeySetRequest set;
  set.set_job("job");
  set.set_generation(gen + 1);
  set.set_key("k");
  v1::KeySetResponse set_resp;
  grpc::ClientContext ctx;
  const grpc::Status s = stub_->KeySet(&ctx, set, &set_resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("attach first"));
}

TEST_F(AgentServiceTest, Attach_DuplicateLocalRank_AlreadyExists) {
  v1::AttachResponse r;
  grpc::Status first;
  std::thread t([&] { first = Attach(0, 2, &r, absl::Seconds(2), "job", 1, "proc-a", 1); });
  ASSERT_TRUE(WaitFor([&] { return Waiting(0); }));
  // Another process, or a caller that does not say which it is.
  for (const std::string& instance : {std::string("proc-b"), std::string()}) {
    const grpc::Status dup = Attach(0, 2, &r, absl::Seconds(10), "job", 1, instance, 2);
    EXPECT_EQ(dup.error_code(), grpc::StatusCode::ALREADY_EXISTS);
    EXPECT_THAT(dup.error_message(), HasSubstr("local rank 0"));
  }
  // Past the first one's deadline (gRPC rounds the timeout it sends up): the agent answers it.
  clock_.Advance(absl::Seconds(3));
  t.join();
  EXPECT_EQ(first.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(first.error_message(), HasSubstr("only 1 of 2 local workers"));
}

// A process attaches again while its earlier attach still waits (given up, its cancellation not
// yet seen): the later one by sequence takes the place, whichever the agent reads first.
TEST_F(AgentServiceTest, Attach_SameLocalRankAgainFromTheSameProcess_TheLaterAttachKeepsThePlace) {
  v1::AttachResponse r, r2, r3;
  grpc::Status first, second;
  std::thread t([&] { first = Attach(0, 2, &r, absl::Seconds(2), "job", 1, "proc-a", 1); });
  ASSERT_TRUE(WaitFor([&] { return Waiting(0); }));
  std::thread t2([&] { second = Attach(0, 2, &r2, absl::Seconds(2), "job", 1, "proc-a", 3); });
  t.join();  // answered at once: superseded
  EXPECT_EQ(first.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_THAT(first.error_message(), HasSubstr("superseded by a later attach of local rank 0"));
  // An earlier attach of the process arriving after the later one is refused at once.
  const grpc::Status late = Attach(0, 2, &r3, absl::Seconds(10), "job", 1, "proc-a", 2);
  EXPECT_EQ(late.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_THAT(late.error_message(), HasSubstr("superseded"));
  EXPECT_TRUE(Waiting(0));
  const grpc::Status oversized =
      Attach(0, 2, &r3, absl::Seconds(10), "job", 1, std::string(65, 'x'), 4);
  EXPECT_EQ(oversized.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(oversized.error_message(), HasSubstr("client_instance is 65 bytes"));
  // Past the second one's deadline (gRPC rounds the timeout it sends up): the agent answers it.
  clock_.Advance(absl::Seconds(3));
  t2.join();
  EXPECT_EQ(second.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(second.error_message(), HasSubstr("only 1 of 2 local workers"));
}

TEST_F(AgentServiceTest, Attach_MoreWorkersThanGpus_FailedPrecondition) {
  v1::AttachResponse r;
  const grpc::Status s = Attach(0, 3, &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("which has 2 GPUs"));
}

TEST_F(AgentServiceTest, Attach_BadRequests_InvalidArgument) {
  v1::AttachResponse r;
  EXPECT_EQ(Attach(2, 2, &r).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Attach(0, 0, &r).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Attach(0, 1, &r, absl::Seconds(5), "bad name!").error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Attach(0, 1, &r, absl::Seconds(5), "job", 0).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(AgentServiceTest, Attach_WorkersDisagree_InvalidArgument) {
  v1::AttachResponse r;
  grpc::Status first;
  std::thread t([&] { first = Attach(0, 2, &r, absl::Seconds(2)); });
  ASSERT_TRUE(WaitFor([&] { return Waiting(0); }));
  const grpc::Status s = Attach(1, 2, &r, absl::Seconds(5), "job", /*nodes=*/2);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("disagree"));
  clock_.Advance(absl::Seconds(3));
  t.join();
  EXPECT_EQ(first.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
}

TEST_F(AgentServiceTest, Attach_MissingLocalWorker_DeadlineExceeded) {
  v1::AttachResponse r;
  EXPECT_EQ(Attach(0, 2, &r, absl::Milliseconds(500)).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
}

TEST_F(AgentServiceTest, Watch_UnknownJob_NotFound_AndStatusListsWorkers) {
  v1::WatchRequest w;
  w.set_job("nope");
  w.set_generation(1);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  auto reader = stub_->Watch(&ctx, w);
  v1::GenerationEnd end;
  EXPECT_FALSE(reader->Read(&end));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);

  v1::AttachResponse r;
  ASSERT_TRUE(Attach(0, 1, &r).ok());
  v1::AgentStatus status;
  grpc::ClientContext sctx;
  ASSERT_TRUE(stub_->GetStatus(&sctx, v1::GetAgentStatusRequest(), &status).ok());
  EXPECT_TRUE(status.connected());
  EXPECT_EQ(status.inventory().gpus_size(), 2);
  ASSERT_EQ(status.workers_size(), 1);
  EXPECT_EQ(status.workers(0).generation(), r.generation());
}

TEST_F(AgentServiceTest, Watch_CoordinatorRestartOfNode_Relayed) {
  v1::AttachResponse r;
  ASSERT_TRUE(Attach(0, 1, &r).ok());
  v1::WatchRequest w;
  w.set_job("job");
  w.set_generation(r.generation());
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  auto reader = stub_->Watch(&ctx, w);
  // The node "restarts" from the coordinator's point of view: a new incarnation registers.
  domain::NodeInventory inv = agent_->agent().inventory();
  inv.incarnation += 2;
  ASSERT_TRUE(coordinator_->core().RegisterNode(inv).ok());
  v1::GenerationEnd end;
  ASSERT_TRUE(reader->Read(&end));
  EXPECT_EQ(end.reason(), v1::GenerationEnd::REASON_NODE_RESTARTED);
  EXPECT_EQ(end.node(), "n0");
}

TEST_F(AgentServiceTest, GarbageOnTheUnixSocket_AgentKeepsServing) {
  const std::string path = agent_->address().substr(std::string("unix:").size());
  for (int i = 0; i < 3; ++i) {
    const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path.c_str());
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    const char garbage[] = "\x00\xff PRI * HTTP/2.0 garbage\r\n\x13\x37";
    (void)!write(fd, garbage, sizeof garbage);
    close(fd);
  }
  v1::AgentStatus status;
  grpc::ClientContext ctx;
  EXPECT_TRUE(stub_->GetStatus(&ctx, v1::GetAgentStatusRequest(), &status).ok());
}

// Picks a port that is free right now.
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  socklen_t len = sizeof sa;
  getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  close(fd);
  return ntohs(sa.sin_port);
}

TEST(AgentDaemonTest, CoordinatorLateOrRestarted_AgentRegistersAgain) {
  const std::string address = "127.0.0.1:" + std::to_string(FreePort());
  runtime::AgentDaemonOptions a;
  a.coordinator = address;
  a.socket = ::testing::TempDir() + "meshd_late_" + std::to_string(getpid()) + ".sock";
  a.simulate_gpus = 1;
  a.node_name = "late";
  auto agent = runtime::AgentDaemon::Start(a);  // no coordinator yet: it keeps retrying
  ASSERT_TRUE(agent.ok()) << agent.status();
  EXPECT_FALSE((*agent)->agent().Status().connected);

  runtime::CoordinatorDaemonOptions c;
  c.listen = address;
  c.heartbeat_interval = absl::Milliseconds(100);
  c.heartbeat_timeout = absl::Seconds(1);
  for (int restart = 0; restart < 2; ++restart) {
    auto coordinator = runtime::CoordinatorDaemon::Start(c);
    ASSERT_TRUE(coordinator.ok()) << coordinator.status();
    WaitFor([&] { return !(*coordinator)->core().Nodes().empty(); }, absl::Seconds(15));
    ASSERT_EQ((*coordinator)->core().Nodes().size(), 1u) << "restart " << restart;
    EXPECT_EQ((*coordinator)->core().Nodes()[0].inventory.node, "late");
    (*coordinator)->Stop();  // the next coordinator starts empty: the agent must register again
  }
}

int PortOf(const std::string& address) {
  int port = 0;
  EXPECT_TRUE(absl::SimpleAtoi(address.substr(address.rfind(':') + 1), &port)) << address;
  return port;
}

// A running one-node job whose agent reaches the coordinator through a relay that can break.
// An agent daemon with one simulated GPU, named `node`, reaching the coordinator at `coordinator`
// (its socket named after `tag`), and a stub to it.
struct TestAgent {
  std::unique_ptr<runtime::AgentDaemon> daemon;
  std::unique_ptr<v1::Agent::Stub> stub;
};
absl::StatusOr<TestAgent> StartTestAgent(const std::string& node, const std::string& coordinator,
                                         const std::string& tag) {
  runtime::AgentDaemonOptions a;
  a.coordinator = coordinator;
  a.socket =
      ::testing::TempDir() + "meshd_" + tag + "_" + node + std::to_string(getpid()) + ".sock";
  a.simulate_gpus = 1;
  a.node_name = node;
  auto agent = runtime::AgentDaemon::Start(a);
  if (!agent.ok()) return agent.status();
  TestAgent t{*std::move(agent), nullptr};
  t.stub = v1::Agent::NewStub(
      grpc::CreateChannel(t.daemon->address(), grpc::InsecureChannelCredentials()));
  return t;
}

struct RelayedJob {
  explicit RelayedJob(const std::string& name) {
    runtime::CoordinatorDaemonOptions c;
    c.listen = "127.0.0.1:0";
    c.heartbeat_interval = absl::Milliseconds(100);
    c.heartbeat_timeout = absl::Seconds(10);  // no node is lost while the relay is cut
    coordinator = *runtime::CoordinatorDaemon::Start(c);
    relay = *testing::TcpRelay::Start(PortOf(coordinator->address()));
    runtime::AgentDaemonOptions a;
    a.coordinator = relay->address();
    a.socket = ::testing::TempDir() + "meshd_" + name + "_" + std::to_string(getpid()) + ".sock";
    a.simulate_gpus = 1;
    a.node_name = name;
    agent = *runtime::AgentDaemon::Start(a);
    stub = v1::Agent::NewStub(
        grpc::CreateChannel(agent->address(), grpc::InsecureChannelCredentials()));
    const grpc::Status s = AttachTo(stub.get(), name, 0, 1, 1, absl::Seconds(10), &attached);
    EXPECT_TRUE(s.ok()) << s.error_message();
    v1::WatchRequest w;
    w.set_job(name);
    w.set_generation(attached.generation());
    watch_ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    watch = stub->Watch(&watch_ctx, w);
    // The agent's own watch on the coordinator is up once the coordinator holds it.
    WaitFor([&] { return coordinator->core().Status().waiting.watch > 0; });
  }

  std::unique_ptr<runtime::CoordinatorDaemon> coordinator;
  std::unique_ptr<testing::TcpRelay> relay;
  std::unique_ptr<runtime::AgentDaemon> agent;
  std::unique_ptr<v1::Agent::Stub> stub;
  v1::AttachResponse attached;
  grpc::ClientContext watch_ctx;
  std::unique_ptr<grpc::ClientReader<v1::GenerationEnd>> watch;
};

// A connection reset between agent and coordinator is not the end of a running generation: the
// agent watches again, and the generation's real end still reaches the worker.
TEST(AgentDaemonTest, WatchLostToTheNetwork_GenerationGoesOnAndItsEndStillArrives) {
  RelayedJob job("blip");
  ASSERT_EQ(job.coordinator->core().Status().waiting.watch, 1u);
  const int relayed = job.relay->relayed();
  EXPECT_GE(job.relay->Cut(), 1);
  // The agent saw its connection break: it reconnected (to watch again).
  ASSERT_TRUE(WaitFor([&] { return job.relay->relayed() > relayed; }));
  ASSERT_TRUE(job.coordinator->core()
                  .LeaveJob("blip", job.attached.generation(), "blip", "ended by the test")
                  .ok());
  v1::GenerationEnd end;
  ASSERT_TRUE(job.watch->Read(&end));
  EXPECT_EQ(end.reason(), v1::GenerationEnd::REASON_NODE_LEFT) << end.ShortDebugString();
  EXPECT_THAT(end.message(), HasSubstr("ended by the test"));
}

// A coordinator that comes back without the job (it restarted and lost its state) ends the
// generation, saying so, rather than leaving the worker watching nothing.
TEST(AgentDaemonTest, CoordinatorRestarted_JobRecoveredFromTheAgent_ThenItsEndStillArrives) {
  RelayedJob job("reborn");
  runtime::CoordinatorDaemonOptions c;
  c.listen = "127.0.0.1:0";
  c.heartbeat_interval = absl::Milliseconds(100);
  auto fresh = runtime::CoordinatorDaemon::Start(c);  // the restarted coordinator: no jobs
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  job.relay->SetTarget(PortOf((*fresh)->address()));
  EXPECT_GE(job.relay->Cut(), 1);
  // The agent registers again reporting its running generation, which the new coordinator takes
  // back (one node: complete at once), and watches it there again.
  const uint64_t generation = job.attached.generation();
  absl::StatusOr<domain::JobView> view;
  WaitFor(
      [&] {
        view = (*fresh)->core().Job("reborn");
        return view.ok() && view->phase == domain::JobPhase::kRunning &&
               (*fresh)->core().Status().waiting.watch == 1;
      },
      absl::Seconds(15));
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->phase, domain::JobPhase::kRunning);
  EXPECT_EQ(view->generation, generation);
  ASSERT_EQ((*fresh)->core().Status().waiting.watch, 1u);
  // The worker heard nothing of the restart; the generation's real end still reaches it.
  ASSERT_TRUE((*fresh)->core().LeaveJob("reborn", generation, "reborn", "test ends it").ok());
  v1::GenerationEnd end;
  ASSERT_TRUE(job.watch->Read(&end));
  EXPECT_EQ(end.reason(), v1::GenerationEnd::REASON_NODE_LEFT) << end.ShortDebugString();
  EXPECT_THAT(end.message(), HasSubstr("test ends it"));
}

// A JoinJob held on the coordinator when the connection resets is sent again once the
// coordinator is reachable: the worker gets its rank, not UNAVAILABLE.
TEST(AgentDaemonTest, JoinHeldWhenTheConnectionResets_SentAgainAndAnswered) {
  runtime::CoordinatorDaemonOptions c;
  c.listen = "127.0.0.1:0";
  c.heartbeat_interval = absl::Milliseconds(100);
  c.heartbeat_timeout = absl::Seconds(10);
  auto coordinator = runtime::CoordinatorDaemon::Start(c);
  ASSERT_TRUE(coordinator.ok()) << coordinator.status();
  auto relay = testing::TcpRelay::Start(PortOf((*coordinator)->address()));
  ASSERT_TRUE(relay.ok()) << relay.status();
  std::vector<std::unique_ptr<runtime::AgentDaemon>> agents;
  std::vector<std::unique_ptr<v1::Agent::Stub>> stubs;
  for (const char* node : {"a", "b"}) {
    // Node a reaches the coordinator through the relay, node b directly.
    auto agent = StartTestAgent(
        node, agents.empty() ? (*relay)->address() : (*coordinator)->address(), "held");
    ASSERT_TRUE(agent.ok()) << agent.status();
    stubs.push_back(std::move(agent->stub));
    agents.push_back(std::move(agent->daemon));
  }
  const auto attach = [&](int i, v1::AttachResponse* resp) {
    return AttachTo(stubs[i].get(), "held", 0, 1, 2, absl::Seconds(20), resp);
  };
  v1::AttachResponse ra, rb;
  grpc::Status sa;
  std::thread first([&] { sa = attach(0, &ra); });
  WaitFor([&] { return (*coordinator)->core().Status().waiting.join > 0; });
  ASSERT_EQ((*coordinator)->core().Status().waiting.join, 1u);
  const int relayed = (*relay)->relayed();
  EXPECT_GE((*relay)->Cut(), 1);
  // Node a's agent reconnected (to send its join again) before node b joins.
  ASSERT_TRUE(WaitFor([&] { return (*relay)->relayed() > relayed; }));
  const grpc::Status sb = attach(1, &rb);
  first.join();
  ASSERT_TRUE(sa.ok()) << sa.error_message();
  ASSERT_TRUE(sb.ok()) << sb.error_message();
  EXPECT_EQ(ra.world_size(), 2u);
  EXPECT_EQ(ra.generation(), rb.generation());
  EXPECT_NE(ra.rank(), rb.rank());
}

// The coordinator restarts while a node's JoinJob is held in an open round: the agent sends it
// again, finds the new coordinator does not know the node, registers again and sends it once more;
// the round closes there with the node that joined it meanwhile.
TEST(AgentDaemonTest, CoordinatorRestartedDuringTheRound_JoinSentAgainOnceRegistered) {
  runtime::CoordinatorDaemonOptions c;
  c.listen = "127.0.0.1:0";
  c.heartbeat_interval = absl::Seconds(2);  // the join's resend comes before the next heartbeat
  c.heartbeat_timeout = absl::Seconds(10);
  auto old = runtime::CoordinatorDaemon::Start(c);
  ASSERT_TRUE(old.ok()) << old.status();
  auto fresh = runtime::CoordinatorDaemon::Start(c);  // the restarted coordinator: no state
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  auto relay = testing::TcpRelay::Start(PortOf((*old)->address()));
  ASSERT_TRUE(relay.ok()) << relay.status();
  std::vector<std::unique_ptr<runtime::AgentDaemon>> agents;
  std::vector<std::unique_ptr<v1::Agent::Stub>> stubs;
  for (const char* node : {"a", "b"}) {
    // Node a reaches "the coordinator" through the relay (old, then fresh); node b only knows
    // fresh.
    auto agent =
        StartTestAgent(node, agents.empty() ? (*relay)->address() : (*fresh)->address(), "reround");
    ASSERT_TRUE(agent.ok()) << agent.status();
    stubs.push_back(std::move(agent->stub));
    agents.push_back(std::move(agent->daemon));
  }
  v1::AttachResponse ra, rb;
  grpc::Status sa;
  std::thread first(
      [&] { sa = AttachTo(stubs[0].get(), "reround", 0, 1, 2, absl::Seconds(20), &ra); });
  WaitFor([&] { return (*old)->core().Status().waiting.join > 0; });
  ASSERT_EQ((*old)->core().Status().waiting.join, 1u);
  (*relay)->SetTarget(PortOf((*fresh)->address()));
  EXPECT_GE((*relay)->Cut(), 1);
  const grpc::Status sb = AttachTo(stubs[1].get(), "reround", 0, 1, 2, absl::Seconds(20), &rb);
  first.join();
  ASSERT_TRUE(sa.ok()) << sa.error_message();
  ASSERT_TRUE(sb.ok()) << sb.error_message();
  EXPECT_EQ(ra.world_size(), 2u);
  EXPECT_EQ(ra.generation(), rb.generation());
  EXPECT_NE(ra.rank(), rb.rank());
  EXPECT_EQ((*fresh)->core().Job("reround")->phase, domain::JobPhase::kRunning);
}

// The coordinator restarts while one node's ResolveGroups is held (the other node has not asked
// yet): the held call is sent again, the agents register again reporting the generation, the new
// coordinator takes the job back, and the exchange completes there — both workers get the id the
// leader minted.
TEST(AgentDaemonTest, CoordinatorRestartedDuringAGroupExchange_IdsStillRelayed) {
  runtime::CoordinatorDaemonOptions c;
  c.listen = "127.0.0.1:0";
  c.heartbeat_interval = absl::Milliseconds(200);
  c.heartbeat_timeout = absl::Seconds(10);
  auto old = runtime::CoordinatorDaemon::Start(c);
  ASSERT_TRUE(old.ok()) << old.status();
  auto fresh = runtime::CoordinatorDaemon::Start(c);
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  std::vector<std::unique_ptr<testing::TcpRelay>> relays;
  std::vector<std::unique_ptr<runtime::AgentDaemon>> agents;
  std::vector<std::unique_ptr<v1::Agent::Stub>> stubs;
  for (const char* node : {"a", "b"}) {
    relays.push_back(*testing::TcpRelay::Start(PortOf((*old)->address())));
    auto agent = StartTestAgent(node, relays.back()->address(), "regroup");
    ASSERT_TRUE(agent.ok()) << agent.status();
    stubs.push_back(std::move(agent->stub));
    agents.push_back(std::move(agent->daemon));
  }
  v1::AttachResponse attached[2];
  grpc::Status first;
  std::thread t([&] {
    first = AttachTo(stubs[0].get(), "regroup", 0, 1, 2, absl::Seconds(20), &attached[0]);
  });
  ASSERT_TRUE(AttachTo(stubs[1].get(), "regroup", 0, 1, 2, absl::Seconds(20), &attached[1]).ok());
  t.join();
  ASSERT_TRUE(first.ok()) << first.error_message();

  const std::string id(128, 'x');
  const auto resolve = [&](int i, v1::ResolveGroupsResponse* resp) {
    v1::RankGroupsRequest req;
    req.set_job("regroup");
    req.set_generation(attached[i].generation());
    req.set_local_rank(0);
    req.set_mesh_key("m");
    req.mutable_spec()->set_fingerprint("identity(2)|[(2):(1)]|world");  // the client's form
    req.mutable_spec()->set_description("DeviceMesh((world=2))");
    v1::GroupRequest* g = req.add_groups();
    g->set_key("world/0");
    g->set_num_ids(1);
    if (attached[i].rank() == 0) {
      v1::MintedId* m = g->add_minted();
      m->set_index(0);
      m->set_id(id);
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    return stubs[i]->ResolveGroups(&ctx, req, resp);
  };
  v1::ResolveGroupsResponse ra, rb;
  grpc::Status sa;
  // The member that does not lead the world group waits for its leader's id.
  const int follower = attached[0].rank() == 0 ? 1 : 0;
  std::thread held([&] { sa = resolve(follower, &ra); });
  WaitFor([&] { return (*old)->core().Status().waiting.groups > 0; });
  ASSERT_EQ((*old)->core().Status().waiting.groups, 1u);
  for (auto& r : relays) {
    r->SetTarget(PortOf((*fresh)->address()));
    EXPECT_GE(r->Cut(), 1);
  }
  const grpc::Status sb = resolve(1 - follower, &rb);
  held.join();
  ASSERT_TRUE(sa.ok()) << sa.error_message();
  ASSERT_TRUE(sb.ok()) << sb.error_message();
  for (const v1::ResolveGroupsResponse* r : {&ra, &rb}) {
    ASSERT_EQ(r->groups_size(), 1);
    ASSERT_EQ(r->groups(0).ids_size(), 1);
    EXPECT_EQ(r->groups(0).ids(0), id);
  }
  EXPECT_EQ((*fresh)->core().Job("regroup")->phase, domain::JobPhase::kRunning);
  EXPECT_EQ((*fresh)->core().Job("regroup")->generation, attached[0].generation());
}

// --health-listen: a TCP port for Kubernetes' gRPC probes that serves health and nothing else (the
// workers' API stays on the unix socket).
TEST(AgentDaemonTest, HealthListen_ServesOnlyHealthOnTcp) {
  runtime::AgentDaemonOptions a;
  a.coordinator = "127.0.0.1:1";  // no coordinator needed: health is about the agent itself
  a.socket = ::testing::TempDir() + "meshd_agent_health_" + std::to_string(getpid()) + ".sock";
  a.simulate_gpus = 1;
  a.health_listen = "127.0.0.1:0";
  auto agent = runtime::AgentDaemon::Start(a);
  ASSERT_TRUE(agent.ok()) << agent.status();
  ASSERT_THAT((*agent)->health_address(), ::testing::StartsWith("127.0.0.1:"));
  auto channel =
      grpc::CreateChannel((*agent)->health_address(), grpc::InsecureChannelCredentials());
  auto health = grpc::health::v1::Health::NewStub(channel);
  for (const std::string service : {"", "meshd.v1.Agent"}) {
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    grpc::health::v1::HealthCheckResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    ASSERT_TRUE(health->Check(&ctx, req, &resp).ok()) << service;
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING) << service;
  }
  v1::AttachRequest req;
  v1::AttachResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  EXPECT_EQ(v1::Agent::NewStub(channel)->Attach(&ctx, req, &resp).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);

  a.socket += "2";
  a.health_listen = (*agent)->health_address();  // taken
  EXPECT_EQ(runtime::AgentDaemon::Start(a).status().code(), absl::StatusCode::kUnavailable);
}

TEST(AgentDaemonTest, NoGpusAndNoSimulation_FailedPreconditionSaysWhatToDo) {
  runtime::AgentDaemonOptions a;
  a.socket = ::testing::TempDir() + "meshd_nogpu.sock";
  a.nvml_library = "/nonexistent/libnvidia-ml.so.1";
  const auto d = runtime::AgentDaemon::Start(a);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("--simulate-gpus N"));
}

}  // namespace
}  // namespace meshd
