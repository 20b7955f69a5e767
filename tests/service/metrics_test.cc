// The Prometheus endpoint against real daemons in process: a coordinator and an agent serving gRPC
// on loopback and a unix socket, scraped over HTTP the way Prometheus does, while a job registers,
// rendezvous, relays ids and loses a node. Every series checked is seen to move. The coordinator
// runs on a FakeClock: the test advances it where time must pass (a rendezvous, a heartbeat
// timeout) and polls a scrape with a deadline where the servers' threads must act.
#include <sys/socket.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "daemon/metrics/metrics_server.h"
#include "daemon/runtime/agent_daemon.h"
#include "daemon/domain/caller.h"
#include "daemon/runtime/coordinator_daemon.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "meshd/v1/coordinator.grpc.pb.h"
#include "tests/support/client_context.h"
#include "tests/support/fake_clock.h"
#include "tests/support/scrape.h"

namespace meshd {
namespace {

using ::testing::HasSubstr;
using Series = std::map<std::string, double>;

using testing::Ctx;

// The value of one series, or -1 when the scrape does not show it.
double Value(const Series& s, const std::string& series) {
  auto it = s.find(series);
  return it == s.end() ? -1 : it->second;
}

std::string Rpc(const std::string& server, const std::string& service, const std::string& method,
                const std::string& code, const std::string& type = "unary") {
  return absl::StrCat("grpc_server_handled_total{grpc_code=\"", code, "\",grpc_method=\"", method,
                      "\",grpc_service=\"", service, "\",grpc_type=\"", type, "\",server=\"",
                      server, "\"}");
}

class MetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = metrics::MetricsServer::Start("127.0.0.1:0");
    ASSERT_TRUE(m.ok()) << m.status();
    metrics_ = *std::move(m);
    runtime::CoordinatorDaemonOptions o;
    o.listen = "127.0.0.1:0";
    o.heartbeat_interval = absl::Milliseconds(100);
    o.heartbeat_timeout = absl::Seconds(3);
    o.tick = absl::Milliseconds(20);
    o.metrics = metrics_.get();
    o.clock = &clock_;
    auto d = runtime::CoordinatorDaemon::Start(o);
    ASSERT_TRUE(d.ok()) << d.status();
    coordinator_ = *std::move(d);
    stub_ = v1::Coordinator::NewStub(
        grpc::CreateChannel(coordinator_->address(), grpc::InsecureChannelCredentials()));
  }

  Series Scrape() {
    auto s = testing::Scrape(metrics_->url());
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : Series{};
  }
  // Scrapes until `series` shows `want` (or, with at_least, `want` or more), every 20 ms for at
  // most 10 s: the agent and held calls move on their own threads.
  bool Eventually(const std::string& series, double want, bool at_least = false) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (absl::Now() < deadline) {
      const double v = Value(Scrape(), series);
      if (v == want || (at_least && v > want)) return true;
      absl::SleepFor(absl::Milliseconds(20));
    }
    ADD_FAILURE() << series << " never reached " << want << "; last: " << Value(Scrape(), series);
    return false;
  }

  grpc::Status Register(const std::string& node) {
    v1::RegisterNodeRequest req;
    req.mutable_inventory()->set_node(node);
    req.mutable_inventory()->set_incarnation(1);
    v1::RegisterNodeResponse resp;
    const grpc::Status s = stub_->RegisterNode(Ctx().get(), req, &resp);
    if (s.ok()) secrets_[node] = resp.node_secret();
    return s;
  }
  // A context for a call that acts for `node`, with the metadata its agent sends.
  std::unique_ptr<grpc::ClientContext> As(const std::string& node) {
    auto ctx = Ctx();
    ctx->AddMetadata(domain::kNodeMetadata, node);
    ctx->AddMetadata(domain::kNodeSecretMetadata, secrets_[node]);
    return ctx;
  }
  grpc::Status Join(const std::string& node) {
    v1::JoinJobRequest r;
    r.set_job("job");
    r.set_node(node);
    r.set_incarnation(1);
    r.set_local_world(1);
    r.mutable_nodes()->set_min_nodes(2);
    r.mutable_nodes()->set_max_nodes(2);
    v1::Assignment a;
    return stub_->JoinJob(As(node).get(), r, &a);
  }
  grpc::Status Resolve(const std::string& node, uint32_t rank) {
    v1::ResolveGroupsRequest r;
    r.set_job("job");
    r.set_generation(1);
    r.set_node(node);
    r.set_mesh_key("mesh");
    auto* spec = r.add_ranks();
    spec->set_rank(rank);
    spec->mutable_spec()->set_fingerprint("identity(2)|[(2):(1)]|dp");  // the client's form
    v1::GroupRequest* g = r.add_groups();
    g->set_key("world/0");
    g->set_num_ids(1);
    if (rank == 0) {  // the group's leader mints its id
      v1::MintedId* id = g->add_minted();
      id->set_index(0);
      id->set_id(std::string(128, 'x'));
    }
    v1::ResolveGroupsResponse resp;
    return stub_->ResolveGroups(As(node).get(), r, &resp);
  }

  FakeClock clock_;  // the coordinator's; outlives it
  std::map<std::string, std::string> secrets_;  // node -> its registration's secret
  std::unique_ptr<metrics::MetricsServer> metrics_;
  std::unique_ptr<runtime::CoordinatorDaemon> coordinator_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
};

TEST_F(MetricsTest, ServesPrometheusTextWithBuildInfo) {
  auto r = testing::HttpGet(metrics_->address(), "/metrics");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_THAT(r->content_type, HasSubstr("text/plain"));
  EXPECT_THAT(r->body, HasSubstr("# TYPE meshd_coordinator_nodes gauge"));
  EXPECT_THAT(r->body, HasSubstr("# TYPE meshd_coordinator_rendezvous_duration_seconds histogram"));
  const Series s = Scrape();
  EXPECT_EQ(Value(s, "meshd_build_info{version=\"" MESHD_VERSION "\"}"), 1);
  EXPECT_EQ(Value(s, "meshd_coordinator_nodes{state=\"alive\"}"), 0);
  EXPECT_EQ(Value(s, "meshd_coordinator_generation_ends_total{reason=\"node_lost\"}"), 0);
  EXPECT_EQ(Value(s, "meshd_coordinator_heartbeat_timeout_seconds"), 3);
  // Another path is not the metrics.
  r = testing::HttpGet(metrics_->address(), "/nothing-here");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 404);
}

TEST_F(MetricsTest, SeriesFollowNodesJobsCallsIdsAndGenerations) {
  ASSERT_TRUE(Register("a").ok());
  ASSERT_TRUE(Register("b").ok());
  const absl::Time registered = clock_.Now();
  EXPECT_EQ(Register("").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  Series s = Scrape();
  EXPECT_EQ(Value(s, "meshd_coordinator_nodes{state=\"alive\"}"), 2);
  EXPECT_EQ(Value(s, Rpc("coordinator", "meshd.v1.Coordinator", "RegisterNode", "OK")), 2);
  EXPECT_EQ(Value(s, Rpc("coordinator", "meshd.v1.Coordinator", "RegisterNode", "InvalidArgument")),
            1);
  EXPECT_EQ(Value(s, "meshd_coordinator_events_total{event=\"node_registered\"}"), 2);

  // a's JoinJob is held until b joins: one join waiter, one joining job.
  std::thread a([&] { EXPECT_TRUE(Join("a").ok()); });
  ASSERT_TRUE(Eventually("meshd_coordinator_waiters{kind=\"join\"}", 1));
  const absl::Time held_since = absl::Now();  // a's call was in the server before this
  EXPECT_EQ(Value(Scrape(), "meshd_coordinator_jobs{phase=\"joining\"}"), 1);
  clock_.Advance(absl::Milliseconds(50));  // the round stays open 50 ms on the coordinator's clock
  const absl::Duration held = absl::Now() - held_since;  // and a's call is held at least this long
  ASSERT_TRUE(Join("b").ok());
  a.join();
  s = Scrape();
  EXPECT_EQ(Value(s, "meshd_coordinator_jobs{phase=\"running\"}"), 1);
  EXPECT_EQ(Value(s, "meshd_coordinator_waiters{kind=\"join\"}"), 0);
  EXPECT_EQ(Value(s, "meshd_coordinator_generations_started_total"), 1);
  EXPECT_EQ(Value(s, "meshd_coordinator_generations_recovered_total"), 0);
  EXPECT_EQ(Value(s, "meshd_coordinator_rendezvous_duration_seconds_count"), 1);
  EXPECT_GE(Value(s, "meshd_coordinator_rendezvous_duration_seconds_sum"), 0.05);
  EXPECT_EQ(Value(s, "meshd_coordinator_rendezvous_duration_seconds_bucket{le=\"0.01\"}"), 0);
  EXPECT_EQ(Value(s, "meshd_coordinator_rendezvous_duration_seconds_bucket{le=\"+Inf\"}"), 1);
  EXPECT_EQ(Value(s, Rpc("coordinator", "meshd.v1.Coordinator", "JoinJob", "OK")), 2);
  // The held JoinJob's time counts (gRPC's, in real time): at least the time it was seen held
  // before b joined.
  EXPECT_GE(Value(s,
                  "grpc_server_handling_seconds_sum{grpc_method=\"JoinJob\",grpc_service="
                  "\"meshd.v1.Coordinator\",grpc_type=\"unary\",server=\"coordinator\"}"),
            absl::ToDoubleSeconds(held));

  // The ids: both ranks report; each gets the world group's one id (b waits for its leader, a).
  std::thread r1([&] { EXPECT_TRUE(Resolve("b", 1).ok()); });
  ASSERT_TRUE(Eventually("meshd_coordinator_waiters{kind=\"groups\"}", 1));
  ASSERT_TRUE(Resolve("a", 0).ok());
  r1.join();
  s = Scrape();
  EXPECT_EQ(Value(s, "meshd_coordinator_ids_relayed_total"), 2);
  EXPECT_EQ(Value(s, "meshd_coordinator_group_answers_total"), 2);

  // b leaves: the generation ends (a bump, by reason), the job is joining again.
  v1::LeaveJobRequest leave;
  leave.set_job("job");
  leave.set_generation(1);
  leave.set_node("b");
  leave.set_message("worker lost");
  v1::LeaveJobResponse left;
  ASSERT_TRUE(stub_->LeaveJob(As("b").get(), leave, &left).ok());
  s = Scrape();
  EXPECT_EQ(Value(s, "meshd_coordinator_generation_ends_total{reason=\"node_left\"}"), 1);
  EXPECT_EQ(Value(s, "meshd_coordinator_generation_ends_total{reason=\"node_lost\"}"), 0);
  EXPECT_EQ(Value(s, "meshd_coordinator_jobs{phase=\"joining\"}"), 1);
  EXPECT_EQ(Value(s, "meshd_coordinator_events_total{event=\"generation_ended\"}"), 1);

  // A node that stops heartbeating is declared dead (timeout 3 s): not at 3 s, just after.
  clock_.Advance(registered + absl::Seconds(3) - clock_.Now());
  coordinator_->core().CheckDeadlines();
  s = Scrape();
  EXPECT_EQ(Value(s, "meshd_coordinator_nodes{state=\"alive\"}"), 2);
  EXPECT_EQ(Value(s, "meshd_coordinator_nodes{state=\"dead\"}"), 0);
  clock_.Advance(absl::Milliseconds(1));
  coordinator_->core().CheckDeadlines();
  s = Scrape();
  EXPECT_EQ(Value(s, "meshd_coordinator_nodes{state=\"alive\"}"), 0);
  EXPECT_EQ(Value(s, "meshd_coordinator_nodes{state=\"dead\"}"), 2);
}

TEST_F(MetricsTest, HealthChecksAndUnknownMethodsAreBounded) {
  auto health = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(coordinator_->address(), grpc::InsecureChannelCredentials()));
  grpc::health::v1::HealthCheckRequest req;
  req.set_service("meshd.v1.Coordinator");
  grpc::health::v1::HealthCheckResponse resp;
  ASSERT_TRUE(health->Check(Ctx().get(), req, &resp).ok());
  // A method nobody serves, through a generic call: no series named after it.
  grpc::GenericStub generic(
      grpc::CreateChannel(coordinator_->address(), grpc::InsecureChannelCredentials()));
  grpc::ByteBuffer out;
  const grpc::Slice empty("");
  grpc::ByteBuffer in(&empty, 1);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  grpc::Status status;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  generic.UnaryCall(&ctx, "/meshd.v1.Coordinator/NoSuchMethod", grpc::StubOptions(), &in, &out,
                    [&](grpc::Status s) {
                      std::lock_guard<std::mutex> lock(mu);
                      status = s;
                      done = true;
                      cv.notify_all();
                    });
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return done; }));
  }
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  const Series s = Scrape();
  EXPECT_EQ(Value(s, Rpc("coordinator", "grpc.health.v1.Health", "Check", "OK")), 1);
  for (const auto& [series, value] : s) EXPECT_THAT(series, ::testing::Not(HasSubstr("NoSuch")));
}

TEST_F(MetricsTest, AgentSeries_GpusRegistrationHeartbeatsAndItsCalls) {
  runtime::AgentDaemonOptions o;
  o.coordinator = coordinator_->address();
  o.socket = absl::StrCat(::testing::TempDir(), "meshd_metrics_", getpid(), "/agent.sock");
  o.simulate_gpus = 3;
  o.node_name = "n1";
  o.metrics = metrics_.get();
  auto agent = runtime::AgentDaemon::Start(o);
  ASSERT_TRUE(agent.ok()) << agent.status();
  ASSERT_TRUE(Eventually("meshd_agent_registered{node=\"n1\"}", 1));
  Series s = Scrape();
  EXPECT_EQ(Value(s, "meshd_agent_gpus{simulated=\"true\"}"), 3);
  EXPECT_EQ(Value(s, "meshd_agent_gpus{simulated=\"false\"}"), 0);
  EXPECT_EQ(Value(s, "meshd_agent_registrations_total"), 1);
  EXPECT_EQ(Value(s, "meshd_agent_workers{state=\"attached\"}"), 0);
  EXPECT_EQ(Value(s, "meshd_agent_store_calls_total{sent=\"own\"}"), 0);
  EXPECT_EQ(Value(s, "meshd_agent_store_calls_total{sent=\"shared\"}"), 0);
  EXPECT_EQ(Value(s, "meshd_agent_store_coordinator_calls_total"), 0);
  const double beats = Value(s, "meshd_agent_heartbeats_total{result=\"ok\"}");
  ASSERT_TRUE(Eventually("meshd_agent_heartbeats_total{result=\"ok\"}", beats + 2, true));
  // The agent's own server counts into the same families, as server="agent".
  auto health = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel((*agent)->address(), grpc::InsecureChannelCredentials()));
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  ASSERT_TRUE(health->Check(Ctx().get(), req, &resp).ok());
  s = Scrape();
  EXPECT_EQ(Value(s, Rpc("agent", "grpc.health.v1.Health", "Check", "OK")), 1);
  EXPECT_GE(Value(s, Rpc("coordinator", "meshd.v1.Coordinator", "Heartbeat", "OK")), 1);
  // Once the agent stops, its series leave the scrape, and its node left (it said so).
  (*agent)->Stop();
  s = Scrape();
  EXPECT_EQ(Value(s, "meshd_agent_registered{node=\"n1\"}"), -1);
  EXPECT_EQ(Value(s, "meshd_coordinator_nodes{state=\"alive\"}"), 0);
  EXPECT_EQ(Value(s, "meshd_coordinator_nodes{state=\"left\"}"), 1);
  EXPECT_EQ(Value(s, "meshd_coordinator_events_total{event=\"node_left\"}"), 1);
}

TEST(MetricsServerTest, BadAddresses_ClearErrors) {
  auto bad = metrics::MetricsServer::Start("9464");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("HOST:PORT"));
  EXPECT_EQ(metrics::MetricsServer::Start("127.0.0.1:99999").status().code(),
            absl::StatusCode::kInvalidArgument);
  auto first = metrics::MetricsServer::Start("127.0.0.1:0");
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = metrics::MetricsServer::Start((*first)->address());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr((*first)->address()));
}

TEST(MetricsServerTest, Ipv6Address_ServedOrRefusedClearly) {
  auto v6 = metrics::MetricsServer::Start("[::1]:0");
  if (metrics::MetricsServer::SupportsIpv6()) {
    ASSERT_TRUE(v6.ok()) << v6.status();
    EXPECT_THAT((*v6)->address(), ::testing::StartsWith("[::1]:"));
    return;
  }
  EXPECT_EQ(v6.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(v6.status().message()), HasSubstr("IPv6"));
  EXPECT_THAT(std::string(v6.status().message()), HasSubstr("0.0.0.0:9464"));
  EXPECT_EQ(metrics::MetricsServer::Start("::1:0").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace meshd
