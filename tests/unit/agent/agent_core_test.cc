// The agent's core on a fake coordinator client and a fake clock: attach aggregation, resends
// after UNAVAILABLE and NOT_FOUND, re-registration after a coordinator restart, heartbeats and
// backoff, generation ends and watches, the group-id exchange, deadlines, Stop. No sleep: time
// moves when the test advances the clock and calls Tick.
#include "daemon/agent/core/agent.h"

#include <deque>
#include <memory>
#include <optional>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/fake_clock.h"
#include "tests/unit/agent/fake_coordinator_client.h"

namespace meshd::agent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

std::vector<domain::Gpu> Gpus(int n) {
  std::vector<domain::Gpu> gpus;
  for (int i = 0; i < n; ++i) {
    gpus.push_back(domain::Gpu{static_cast<uint32_t>(i), "SIM-" + std::to_string(i), "", "", 0,
                               "", true});
  }
  return gpus;
}

domain::Assignment Assigned(const std::string& job, uint64_t generation, uint32_t node_rank,
                            uint32_t num_nodes, uint32_t local_world) {
  return domain::Assignment{job,       generation, num_nodes * local_world, node_rank,
                            local_world, num_nodes,  nullptr, {}};
}

// What a worker's attach got.
struct Attached {
  std::optional<absl::StatusOr<AttachResult>> result;
  AttachDone done() {
    return [this](absl::StatusOr<AttachResult> r) { result = std::move(r); };
  }
};

class AgentCoreTest : public ::testing::Test {
 protected:
  static constexpr domain::NodeCount kTwoNodes{2, 2, absl::Seconds(1)};

  void SetUp() override {
    agent_ = std::make_unique<Agent>(AgentOptions{"coordinator:7070", "node-a", "host-a",
                                                  "unix:/tmp/a.sock", 77},
                                     Gpus(2), &clock_, &client_);
    agent_->Start();
  }
  void TearDown() override { agent_.reset(); }

  // Answers the pending registration with a heartbeat interval of 1 s.
  void Register() {
    auto r = client_.TakeRegister();
    ASSERT_TRUE(r.has_value());
    r->done(absl::Seconds(1));
  }
  // Both local workers of `job` attach; returns what they got.
  void AttachBoth(const std::string& job, Attached& w0, Attached& w1,
                  absl::Duration within = absl::Minutes(1)) {
    agent_->Attach(job, 0, 2, kTwoNodes, clock_.Now() + within, w0.done());
    agent_->Attach(job, 1, 2, kTwoNodes, clock_.Now() + within, w1.done());
  }
  // Local rank `local_rank` of `job` (of `local_world` workers, uid 1000) attaches as attach
  // `sequence` of worker process `instance`, answered into `w`, within `within`; the agent's id.
  uint64_t AttachFrom(const std::string& instance, uint64_t sequence, uint32_t local_rank,
                      Attached& w, absl::Duration within = absl::Minutes(1),
                      uint32_t local_world = 2, const std::string& job = "train") {
    return agent_->Attach(job, local_rank, local_world, kTwoNodes, clock_.Now() + within, w.done(),
                          1000, AttachOrigin{instance, sequence});
  }
  // Registered, both workers attached, the round closed: generation `generation` runs.
  void RunGeneration(const std::string& job, uint64_t generation, Attached& w0, Attached& w1) {
    AttachBoth(job, w0, w1);
    auto join = client_.TakeJoin();
    ASSERT_TRUE(join.has_value());
    join->done(Assigned(job, generation, 1, 2, 2));
    ASSERT_TRUE(w0.result.has_value() && w0.result->ok());
    ASSERT_TRUE(w1.result.has_value() && w1.result->ok());
  }
  void Advance(absl::Duration d) {
    clock_.Advance(d);
    agent_->Tick();
  }
  // A second on, the next heartbeat finds the node unknown (the coordinator restarted), and the
  // agent's registration again is answered.
  void RegisterAgainAfterARestart() {
    Advance(absl::Seconds(1));
    client_.TakeHeartbeat()->done(absl::NotFoundError("unknown node (the coordinator restarted)"));
    client_.TakeRegister()->done(absl::Seconds(1));
  }

  // A worker's result slot that outlives the agent (Stop answers workers still waiting).
  Attached& Worker() { return workers_.emplace_back(); }

  FakeClock clock_;
  FakeCoordinatorClient client_;
  std::deque<Attached> workers_;
  std::unique_ptr<Agent> agent_;
};

TEST_F(AgentCoreTest, RegistersWithItsInventoryAtStart) {
  auto r = client_.TakeRegister();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->request.inventory.node, "node-a");
  EXPECT_EQ(r->request.inventory.incarnation, 77u);
  EXPECT_THAT(r->request.inventory.gpus, SizeIs(2));
  EXPECT_TRUE(r->request.running.empty());
  EXPECT_FALSE(agent_->Status().connected);
  r->done(absl::Seconds(1));
  EXPECT_TRUE(agent_->Status().connected);
  EXPECT_EQ(agent_->Status().registrations, 1u);
}

TEST_F(AgentCoreTest, LocalWorkersJoinAsOneCallOnceAllAttached) {
  Register();
  Attached& w0 = Worker();
  Attached& w1 = Worker();
  agent_->Attach("train", 0, 2, kTwoNodes, clock_.Now() + absl::Minutes(1), w0.done());
  EXPECT_EQ(client_.joins(), 0u);  // one of two: still collecting
  EXPECT_FALSE(w0.result.has_value());
  agent_->Attach("train", 1, 2, kTwoNodes, clock_.Now() + absl::Minutes(1), w1.done());
  auto join = client_.TakeJoin();
  ASSERT_TRUE(join.has_value());
  EXPECT_EQ(client_.joins(), 0u);
  EXPECT_EQ(join->request.job, "train");
  EXPECT_EQ(join->request.node, "node-a");
  EXPECT_EQ(join->request.incarnation, 77u);
  EXPECT_EQ(join->request.local_world, 2u);
  EXPECT_EQ(join->request.nodes, kTwoNodes);
  join->done(Assigned("train", 3, 1, 2, 2));
  ASSERT_TRUE(w0.result.has_value() && w0.result->ok());
  ASSERT_TRUE(w1.result.has_value() && w1.result->ok());
  EXPECT_EQ((*w0.result)->rank, 2u);
  EXPECT_EQ((*w1.result)->rank, 3u);
  EXPECT_EQ((*w1.result)->gpu.uuid, "SIM-1");
  EXPECT_EQ((*w1.result)->assignment.generation, 3u);
  // One watch of the generation for the node.
  auto watch = client_.TakeWatch();
  ASSERT_TRUE(watch.has_value());
  EXPECT_EQ(watch->request.generation, 3u);
  EXPECT_EQ(watch->options.timeout, absl::InfiniteDuration());
}

TEST_F(AgentCoreTest, WorkersAttachedBeforeRegistrationJoinOnceRegistered) {
  Attached& w0 = Worker();
  Attached& w1 = Worker();
  AttachBoth("train", w0, w1);
  EXPECT_EQ(client_.joins(), 0u);
  Register();
  EXPECT_EQ(client_.joins(), 1u);
}

TEST_F(AgentCoreTest, WorkersThatDisagreeOrClashAreRefused) {
  Register();
  Attached& w0 = Worker();
  Attached& other = Worker();
  Attached& again = Worker();
  Attached& too_many = Worker();
  agent_->Attach("train", 0, 2, kTwoNodes, clock_.Now() + absl::Minutes(1), w0.done());
  agent_->Attach("train", 1, 2, domain::NodeCount{3, 3, absl::Seconds(1)},
                 clock_.Now() + absl::Minutes(1), other.done());
  ASSERT_TRUE(other.result.has_value());
  EXPECT_EQ(other.result->status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(other.result->status().message(), HasSubstr("disagree"));
  agent_->Attach("train", 0, 2, kTwoNodes, clock_.Now() + absl::Minutes(1), again.done());
  EXPECT_EQ(again.result->status().code(), absl::StatusCode::kAlreadyExists);
  agent_->Attach("big", 0, 3, kTwoNodes, clock_.Now() + absl::Minutes(1), too_many.done());
  EXPECT_EQ(too_many.result->status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(too_many.result->status().message(), HasSubstr("which has 2 GPUs"));
}

TEST_F(AgentCoreTest, JoinLostToTheTransportIsSentAgainAfterABackoff) {
  Register();
  Attached& w0 = Worker();
  Attached& w1 = Worker();
  AttachBoth("train", w0, w1);
  auto join = client_.TakeJoin();
  ASSERT_TRUE(join.has_value());
  EXPECT_FALSE(join->options.wait_for_ready);
  join->done(absl::UnavailableError("connection reset"));
  EXPECT_FALSE(w0.result.has_value());  // not an answer: it goes again
  Advance(absl::Milliseconds(49));
  EXPECT_EQ(client_.joins(), 0u);
  Advance(absl::Milliseconds(1));
  auto again = client_.TakeJoin();
  ASSERT_TRUE(again.has_value());
  EXPECT_TRUE(again->options.wait_for_ready);  // waits for the coordinator to be back
  // The second backoff doubles.
  again->done(absl::UnavailableError("connection refused"));
  Advance(absl::Milliseconds(99));
  EXPECT_EQ(client_.joins(), 0u);
  Advance(absl::Milliseconds(1));
  auto third = client_.TakeJoin();
  ASSERT_TRUE(third.has_value());
  third->done(Assigned("train", 1, 0, 2, 2));
  ASSERT_TRUE(w0.result.has_value());
  EXPECT_TRUE(w0.result->ok());
}

TEST_F(AgentCoreTest, JoinPastItsDeadlineIsNotSentAgain) {
  Register();
  Attached& w0 = Worker();
  Attached& w1 = Worker();
  AttachBoth("train", w0, w1, absl::Milliseconds(30));
  auto join = client_.TakeJoin();
  ASSERT_TRUE(join.has_value());
  EXPECT_LE(join->options.timeout, absl::Milliseconds(30));
  clock_.Advance(absl::Milliseconds(31));
  join->done(absl::UnavailableError("connection reset"));
  ASSERT_TRUE(w0.result.has_value());
  EXPECT_EQ(w0.result->status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(AgentCoreTest, JoinTheCoordinatorDidNotKnowIsSentAgainAfterRegisteringAgain) {
  Register();
  Attached& w0 = Worker();
  Attached& w1 = Worker();
  AttachBoth("train", w0, w1);
  auto join = client_.TakeJoin();
  join->done(absl::NotFoundError("no node 'node-a' (did the coordinator restart?)"));
  // Registers again at once; the join waits for it.
  EXPECT_EQ(client_.joins(), 0u);
  auto r = client_.TakeRegister();
  ASSERT_TRUE(r.has_value());
  r->done(absl::Seconds(1));
  auto again = client_.TakeJoin();
  ASSERT_TRUE(again.has_value());
  // Once registered again, NOT_FOUND is final.
  again->done(absl::NotFoundError("no job"));
  ASSERT_TRUE(w0.result.has_value());
  EXPECT_EQ(w0.result->status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_.registers(), 0u);
}

TEST_F(AgentCoreTest, HeartbeatsAtTheIntervalTheCoordinatorAsks) {
  Register();
  Advance(absl::Milliseconds(999));
  EXPECT_EQ(client_.heartbeats(), 0u);
  Advance(absl::Milliseconds(1));
  auto hb = client_.TakeHeartbeat();
  ASSERT_TRUE(hb.has_value());
  EXPECT_EQ(hb->request.node, "node-a");
  EXPECT_EQ(hb->request.incarnation, 77u);
  Advance(absl::Seconds(5));  // one heartbeat in flight at a time
  EXPECT_EQ(client_.heartbeats(), 0u);
  hb->done(absl::Seconds(3));  // the cluster grew: the coordinator stretches the interval
  Advance(absl::Milliseconds(2999));
  EXPECT_EQ(client_.heartbeats(), 0u);
  Advance(absl::Milliseconds(1));
  auto next = client_.TakeHeartbeat();
  ASSERT_TRUE(next.has_value());
  next->done(absl::UnavailableError("coordinator down"));
  EXPECT_EQ(agent_->Status().heartbeats, 1u);
  EXPECT_EQ(agent_->Status().heartbeat_failures, 1u);
  EXPECT_TRUE(agent_->Status().connected);  // a failed heartbeat is not a lost registration
}

TEST_F(AgentCoreTest, RegistrationFailuresBackOffWithJitter) {
  auto r = client_.TakeRegister();
  r->done(absl::UnavailableError("connection refused"));
  Advance(absl::Milliseconds(49));  // the first backoff is 100 ms × [0.5, 1.5)
  EXPECT_EQ(client_.registers(), 0u);
  Advance(absl::Milliseconds(101));
  auto again = client_.TakeRegister();
  ASSERT_TRUE(again.has_value());
  again->done(absl::UnavailableError("connection refused"));
  Advance(absl::Milliseconds(99));  // the second: 200 ms × [0.5, 1.5)
  EXPECT_EQ(client_.registers(), 0u);
  Advance(absl::Milliseconds(201));
  ASSERT_EQ(client_.registers(), 1u);
}

TEST_F(AgentCoreTest, ACoordinatorThatForgotTheNodeGetsItsRunningJobsReported) {
  Register();
  Attached& w0 = Worker();
  Attached& w1 = Worker();
  RunGeneration("train", 5, w0, w1);
  Advance(absl::Seconds(1));
  auto hb = client_.TakeHeartbeat();
  ASSERT_TRUE(hb.has_value());
  hb->done(absl::NotFoundError("unknown node (the coordinator restarted)"));
  EXPECT_FALSE(agent_->Status().connected);
  auto r = client_.TakeRegister();
  ASSERT_TRUE(r.has_value());
  ASSERT_THAT(r->request.running, SizeIs(1));
  const domain::RunningJob& running = r->request.running[0];
  EXPECT_EQ(running.job, "train");
  EXPECT_EQ(running.generation, 5u);
  EXPECT_EQ(running.node_rank, 1u);
  EXPECT_EQ(running.num_nodes, 2u);
  EXPECT_EQ(running.local_world, 2u);
  EXPECT_EQ(running.nodes, kTwoNodes);
  r->done(absl::Seconds(1));
  EXPECT_TRUE(agent_->Status().connected);
  EXPECT_EQ(agent_->Status().registrations, 2u);
}

TEST_F(AgentCoreTest, ACoordinatorRefusingTheReportsStillRegistersTheNode) {
  Register();
  Attached& w0 = Worker();
  Attached& w1 = Worker();
  RunGeneration("train", 5, w0, w1);
  Advance(absl::Seconds(1));
  client_.TakeHeartbeat()->done(absl::FailedPreconditionError("stale incarnation"));
  auto r = client_.TakeRegister();
  ASSERT_THAT(r->request.running, SizeIs(1));
  r->done(absl::InvalidArgumentError("unknown field"));
  auto without = client_.TakeRegister();
  ASSERT_TRUE(without.has_value());
  EXPECT_TRUE(without->request.running.empty());
  without->done(absl::Seconds(1));
  EXPECT_TRUE(agent_->Status().connected);
}

// A clean stop (SIGTERM): the agent's own workers are told it shuts down, then the coordinator is
// told the node leaves (so the other nodes' workers hear of it now); the end the coordinator then
// sends for this node's job is not relayed again.
TEST_F(AgentCoreTest, DepartTellsItsWorkersThenTheCoordinator) {
  Register();
  Attached& w0 = Worker();
  Attached& w1 = Worker();
  RunGeneration("train", 2, w0, w1);
  std::vector<domain::GenerationEnd> ends;
  for (uint32_t rank : {0u, 1u}) {
    ASSERT_TRUE(agent_->Watch("train", 2, rank, [&ends](const domain::GenerationEnd& e) {
                        ends.push_back(e);
                      }).ok());
  }
  auto watch = client_.TakeWatch();
  ASSERT_TRUE(watch.has_value());

  std::optional<absl::Status> departed;
  agent_->Depart("", absl::Seconds(2), [&departed](absl::Status s) { departed = s; });
  ASSERT_THAT(ends, SizeIs(2));
  EXPECT_EQ(ends[0].reason, domain::EndReason::kShutdown);
  auto leave = client_.TakeNodeLeave();
  ASSERT_TRUE(leave.has_value());
  EXPECT_EQ(leave->request.node, "node-a");
  EXPECT_EQ(leave->request.incarnation, 77u);
  EXPECT_EQ(leave->options.timeout, absl::Seconds(2));
  EXPECT_FALSE(departed.has_value());
  watch->done(domain::GenerationEnd{"train", 2, domain::EndReason::kNodeLeft, "node-a", "left"});
  leave->done(true);
  ASSERT_TRUE(departed.has_value());
  EXPECT_TRUE(departed->ok());
  EXPECT_THAT(ends, SizeIs(2));  // nothing more
  agent_->Stop();
}

TEST_F(AgentCoreTest, DepartBeforeRegistering_NothingToTell) {
  std::optional<absl::Status> departed;
  agent_->Depart("", absl::Seconds(2), [&departed](absl::Status s) { departed = s; });
  ASSERT_TRUE(departed.has_value());
  EXPECT_EQ(departed->code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(client_.TakeNodeLeave().has_value());
}

TEST_F(AgentCoreTest, AGenerationEndReachesEveryWorkerWatchAndReopensTheRound) {
  Register();
  Attached& w0 = Worker();
  Attached& w1 = Worker();
  RunGeneration("train", 2, w0, w1);
  std::vector<domain::GenerationEnd> ends;
  for (uint32_t rank : {0u, 1u}) {
    auto cancel = agent_->Watch("train", 2, rank,
                                [&ends](const domain::GenerationEnd& e) { ends.push_back(e); });
    ASSERT_TRUE(cancel.ok());
  }
  auto watch = client_.TakeWatch();
  ASSERT_TRUE(watch.has_value());
  watch->done(domain::GenerationEnd{"train", 2, domain::EndReason::kNodeLost, "node-b",
                                    "node 'node-b' stopped heartbeating"});
  ASSERT_THAT(ends, SizeIs(2));
  EXPECT_EQ(ends[0].reason, domain::EndReason::kNodeLost);
  EXPECT_EQ(ends[1].node, "node-b");
  // A watch of the ended generation is answered at once; the store refuses it (ABORTED).
  std::optional<domain::GenerationEnd> late;
  ASSERT_TRUE(agent_->Watch("train", 2, 0, [&late](const domain::GenerationEnd& e) {
                      late = e;
                    }).ok());
  EXPECT_TRUE(late.has_value());
  std::optional<absl::Status> get;
  v1::KeyGetRequest req;
  req.set_job("train");
  req.set_generation(2);
  req.set_key("k");
  agent_->RelayKeyCall<v1::KeyGetRequest, v1::KeyGetResponse>(
      req, clock_.Now() + absl::Seconds(1),
      [&get](absl::StatusOr<v1::KeyGetResponse> r) { get = r.status(); });
  ASSERT_TRUE(get.has_value());
  EXPECT_EQ(get->code(), absl::StatusCode::kAborted);
  // The workers re-attach: a new round of both.
  Attached& again0 = Worker();
  Attached& again1 = Worker();
  AttachBoth("train", again0, again1);
  auto join = client_.TakeJoin();
  ASSERT_TRUE(join.has_value());
  join->done(Assigned("train", 3, 0, 2, 2));
  ASSERT_TRUE(again0.result.has_value() && again0.result->ok());
  EXPECT_EQ((*again0.result)->assignment.generation, 3u);
}

TEST_F(AgentCoreTest, AWatchLostToTheTransportIsWatchedAgainWithoutAnEnd) {
  Register();
  Attached& w0 = Worker();
  Attached& w1 = Worker();
  RunGeneration("train", 2, w0, w1);
  bool ended = false;
  ASSERT_TRUE(agent_->Watch("train", 2, 0, [&ended](const domain::GenerationEnd&) {
                      ended = true;
                    }).ok());
  auto watch = client_.TakeWatch();
  EXPECT_FALSE(watch->options.wait_for_ready);
  watch->done(absl::UnavailableError("connection reset"));
  EXPECT_FALSE(ended);
  auto again = client_.TakeWatch();
  ASSERT_TRUE(again.has_value());
  EXPECT_TRUE(again->options.wait_for_ready);
  again->done(absl::InternalError("stream broke"));  // any other error ends the generation
  EXPECT_TRUE(ended);
}

TEST_F(AgentCoreTest, AWatchOfAJobTheCoordinatorForgotRegistersAgainThenEndsIfStillUnknown) {
  Register();
  Attached& w0 = Worker();
  Attached& w1 = Worker();
  RunGeneration("train", 2, w0, w1);
  std::optional<domain::GenerationEnd> end;
  ASSERT_TRUE(
      agent_->Watch("train", 2, 0, [&end](const domain::GenerationEnd& e) { end = e; }).ok());
  client_.TakeWatch()->done(absl::NotFoundError("no job 'train'"));
  EXPECT_FALSE(end.has_value());
  auto r = client_.TakeRegister();
  ASSERT_TRUE(r.has_value());
  EXPECT_THAT(r->request.running, SizeIs(1));  // the report lets the coordinator rebuild it
  EXPECT_EQ(client_.watches(), 0u);
  r->done(absl::Seconds(1));
  auto again = client_.TakeWatch();
  ASSERT_TRUE(again.has_value());
  again->done(absl::NotFoundError("no job 'train'"));
  ASSERT_TRUE(end.has_value());
  EXPECT_EQ(end->reason, domain::EndReason::kShutdown);
  EXPECT_THAT(end->message, HasSubstr("no longer knows the job"));
}

TEST_F(AgentCoreTest, AWorkerGoneWithoutDetachingMakesTheNodeLeave) {
  Register();
  Attached& w0 = Worker();
  Attached& w1 = Worker();
  RunGeneration("train", 2, w0, w1);
  auto cancel0 = agent_->Watch("train", 2, 0, [](const domain::GenerationEnd&) {});
  auto cancel1 = agent_->Watch("train", 2, 1, [](const domain::GenerationEnd&) {});
  ASSERT_TRUE(cancel0.ok() && cancel1.ok());
  ASSERT_TRUE(agent_->Detach("train", 2, 0).ok());
  (*cancel0)();  // detached first: a clean exit
  EXPECT_FALSE(client_.TakeLeave().has_value());
  (*cancel1)();  // its stream broke without a detach
  auto leave = client_.TakeLeave();
  ASSERT_TRUE(leave.has_value());
  EXPECT_EQ(leave->request.generation, 2u);
  EXPECT_THAT(leave->request.message, HasSubstr("local rank 1 (rank 3)"));
}

// Every local worker of the generation detached cleanly: the node tells the coordinator it is
// done with it (FinishJob), once; a worker gone without detaching is a lost worker instead.
TEST_F(AgentCoreTest, AllLocalWorkersDetachedCleanly_FinishJobOnce) {
  Register();
  Attached& w0 = Worker();
  Attached& w1 = Worker();
  RunGeneration("train", 2, w0, w1);
  ASSERT_TRUE(agent_->Detach("train", 2, 0).ok());
  EXPECT_FALSE(client_.TakeFinish().has_value());
  ASSERT_TRUE(agent_->Detach("train", 2, 1).ok());
  ASSERT_TRUE(agent_->Detach("train", 2, 1).ok());  // again: nothing more
  auto finish = client_.TakeFinish();
  ASSERT_TRUE(finish.has_value());
  EXPECT_EQ(finish->request.job, "train");
  EXPECT_EQ(finish->request.generation, 2u);
  finish->done(true);
  EXPECT_FALSE(client_.TakeFinish().has_value());
  EXPECT_FALSE(client_.TakeLeave().has_value());
}

// Workers that attach again after every one of them detached (the node finished the generation,
// its end not yet here) wait for the next round instead of getting the ending generation.
TEST_F(AgentCoreTest, WorkersAttachingWhileTheirNodeFinishesJoinTheNextRound) {
  Register();
  Attached& w0 = Worker();
  Attached& w1 = Worker();
  RunGeneration("train", 2, w0, w1);
  auto watch = client_.TakeWatch();
  ASSERT_TRUE(watch.has_value());
  ASSERT_TRUE(agent_->Detach("train", 2, 0).ok());
  ASSERT_TRUE(agent_->Detach("train", 2, 1).ok());
  auto finish = client_.TakeFinish();
  ASSERT_TRUE(finish.has_value());
  Attached& again0 = Worker();
  Attached& again1 = Worker();
  Attached& gone = Worker();
  const uint64_t gone_id =
      agent_->Attach("train", 0, 2, kTwoNodes, clock_.Now() + absl::Minutes(1), gone.done());
  ASSERT_NE(gone_id, 0u);
  agent_->WithdrawAttach("train", 0, gone_id);  // one that went away while waiting frees its place
  ASSERT_TRUE(gone.result.has_value());
  AttachBoth("train", again0, again1);
  EXPECT_FALSE(again0.result.has_value());
  EXPECT_FALSE(again1.result.has_value());
  EXPECT_EQ(client_.joins(), 0u);
  finish->done(true);
  watch->done(domain::GenerationEnd{"train", 2, domain::EndReason::kJobFinished, "",
                                    "finished: the workers of all 2 nodes detached"});
  auto join = client_.TakeJoin();
  ASSERT_TRUE(join.has_value());
  join->done(Assigned("train", 3, 1, 2, 2));
  ASSERT_TRUE(again0.result.has_value() && again0.result->ok());
  ASSERT_TRUE(again1.result.has_value() && again1.result->ok());
  EXPECT_EQ(again0.result->value().assignment.generation, 3u);
}

// A worker that went away without detaching ends the generation (the node leaves it): a worker
// restarting in its place waits for the next round instead of getting the ending generation.
TEST_F(AgentCoreTest, AWorkerRestartingAfterOneWasLostJoinsTheNextRound) {
  Register();
  Attached& w0 = Worker();
  Attached& w1 = Worker();
  RunGeneration("train", 2, w0, w1);
  auto watch = client_.TakeWatch();
  ASSERT_TRUE(watch.has_value());
  auto lost = agent_->Watch("train", 2, 0, [](const domain::GenerationEnd&) {});
  ASSERT_TRUE(lost.ok());
  (*lost)();  // its stream broke without a detach
  auto leave = client_.TakeLeave();
  ASSERT_TRUE(leave.has_value());
  Attached& restarted = Worker();
  agent_->Attach("train", 0, 2, kTwoNodes, clock_.Now() + absl::Minutes(1), restarted.done());
  EXPECT_FALSE(restarted.result.has_value());  // not generation 2, which is ending
  leave->done(true);
  watch->done(domain::GenerationEnd{"train", 2, domain::EndReason::kNodeLeft, "node-a",
                                    "worker local rank 0 went away without detaching"});
  Attached& peer = Worker();
  agent_->Attach("train", 1, 2, kTwoNodes, clock_.Now() + absl::Minutes(1), peer.done());
  auto join = client_.TakeJoin();
  ASSERT_TRUE(join.has_value());
  join->done(Assigned("train", 3, 1, 2, 2));
  ASSERT_TRUE(restarted.result.has_value() && restarted.result->ok());
  EXPECT_EQ(restarted.result->value().assignment.generation, 3u);
}

// The coordinator away when a worker is lost: its LeaveJob is sent again until acknowledged —
// after a transport failure (with a backoff), and after the coordinator forgot the node (once
// registered again, reporting the generation it still runs).
TEST_F(AgentCoreTest, ALostWorkersLeaveIsSentAgainUntilTheCoordinatorHasIt) {
  Register();
  Attached& w0 = Worker();
  Attached& w1 = Worker();
  RunGeneration("train", 2, w0, w1);
  auto cancel0 = agent_->Watch("train", 2, 0, [](const domain::GenerationEnd&) {});
  ASSERT_TRUE(cancel0.ok());
  (*cancel0)();  // lost
  auto leave = client_.TakeLeave();
  ASSERT_TRUE(leave.has_value());
  leave->done(absl::UnavailableError("connection reset"));
  EXPECT_FALSE(client_.TakeLeave().has_value());
  Advance(absl::Milliseconds(60));
  leave = client_.TakeLeave();
  ASSERT_TRUE(leave.has_value());
  EXPECT_TRUE(leave->options.wait_for_ready);
  // A restarted coordinator does not know the node: registered again, reporting generation 2.
  leave->done(absl::NotFoundError("node 'node-a' is not registered"));
  EXPECT_FALSE(client_.TakeLeave().has_value());
  Advance(absl::Seconds(2));  // the session registers again at its next tick
  auto again = client_.TakeRegister();
  ASSERT_TRUE(again.has_value());
  ASSERT_EQ(again->request.running.size(), 1u);
  EXPECT_EQ(again->request.running[0].generation, 2u);
  again->done(absl::Seconds(1));
  leave = client_.TakeLeave();
  ASSERT_TRUE(leave.has_value());
  EXPECT_EQ(leave->request.job, "train");
  leave->done(true);
  Advance(absl::Seconds(5));
  EXPECT_FALSE(client_.TakeLeave().has_value());  // acknowledged: never again
}

TEST_F(AgentCoreTest, ASecondProcessCannotTakeARunningWorkersPlace) {
  Register();
  Attached& w0 = Worker();
  Attached& w1 = Worker();
  RunGeneration("train", 2, w0, w1);
  auto cancel = agent_->Watch("train", 2, 1, [](const domain::GenerationEnd&) {});
  ASSERT_TRUE(cancel.ok());
  Attached& intruder = Worker();
  agent_->Attach("train", 1, 2, kTwoNodes, clock_.Now() + absl::Minutes(1), intruder.done());
  ASSERT_TRUE(intruder.result.has_value());
  EXPECT_EQ(intruder.result->status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(intruder.result->status().message(), HasSubstr("a live worker holds it"));
  // Rank 0 never watched (its process died before it could): a restarted worker gets it back.
  Attached& restarted = Worker();
  agent_->Attach("train", 0, 2, kTwoNodes, clock_.Now() + absl::Minutes(1), restarted.done());
  ASSERT_TRUE(restarted.result.has_value() && restarted.result->ok());
  EXPECT_EQ((*restarted.result)->rank, 2u);
  // Rank 1 detaches cleanly and its watch goes: the place is free again.
  ASSERT_TRUE(agent_->Detach("train", 2, 1).ok());
  (*cancel)();
  Attached& next = Worker();
  agent_->Attach("train", 1, 2, kTwoNodes, clock_.Now() + absl::Minutes(1), next.done());
  ASSERT_TRUE(next.result.has_value() && next.result->ok());
  EXPECT_FALSE(client_.TakeLeave().has_value());  // a clean exit: the node did not leave
}

TEST_F(AgentCoreTest, AttachesThatMissTheirDeadlineSayHowManyCame) {
  Register();
  Attached& w0 = Worker();
  agent_->Attach("train", 0, 2, kTwoNodes, clock_.Now() + absl::Seconds(2), w0.done());
  Advance(absl::Milliseconds(1999));
  EXPECT_FALSE(w0.result.has_value());
  Advance(absl::Milliseconds(1));
  ASSERT_TRUE(w0.result.has_value());
  EXPECT_EQ(w0.result->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(w0.result->status().message(), HasSubstr("only 1 of 2 local workers"));
}

TEST_F(AgentCoreTest, AWorkerThatWentAwayWhileGatheringFreesItsPlace) {
  Register();
  Attached& w0 = Worker();
  Attached& back = Worker();
  const uint64_t id =
      agent_->Attach("train", 0, 2, kTwoNodes, clock_.Now() + absl::Minutes(1), w0.done());
  ASSERT_NE(id, 0u);
  agent_->WithdrawAttach("train", 0, id);
  ASSERT_TRUE(w0.result.has_value());
  EXPECT_EQ(w0.result->status().code(), absl::StatusCode::kCancelled);
  agent_->Attach("train", 0, 2, kTwoNodes, clock_.Now() + absl::Minutes(1), back.done());
  EXPECT_FALSE(back.result.has_value());  // waiting again, not ALREADY_EXISTS
}

// A process whose waiting attach was interrupted attaches again before the agent saw the
// cancellation: the later attach (by its process's sequence) keeps the place, whichever comes
// first; another process (or one that does not say) may not take it.
TEST_F(AgentCoreTest, AnAttachAgainFromTheSameProcessTakesItsWaitingPlace) {
  Register();
  Attached& first = Worker();
  Attached& again = Worker();
  Attached& late = Worker();
  Attached& stranger = Worker();
  Attached& unknown = Worker();
  const uint64_t id = AttachFrom("proc-a", 1, 0, first);
  ASSERT_NE(id, 0u);
  AttachFrom("proc-a", 3, 0, again);
  ASSERT_TRUE(first.result.has_value());
  EXPECT_EQ(first.result->status().code(), absl::StatusCode::kCancelled);
  EXPECT_THAT(first.result->status().message(), HasSubstr("superseded by a later attach"));
  EXPECT_FALSE(again.result.has_value());  // it waits with the place
  // An earlier attach of the process, read after the later one: refused, the place kept.
  AttachFrom("proc-a", 2, 0, late);
  ASSERT_TRUE(late.result.has_value());
  EXPECT_EQ(late.result->status().code(), absl::StatusCode::kCancelled);
  AttachFrom("proc-b", 9, 0, stranger);
  ASSERT_TRUE(stranger.result.has_value());
  EXPECT_EQ(stranger.result->status().code(), absl::StatusCode::kAlreadyExists);
  AttachFrom("", 0, 0, unknown);  // a caller that does not say which process it is
  ASSERT_TRUE(unknown.result.has_value());
  EXPECT_EQ(unknown.result->status().code(), absl::StatusCode::kAlreadyExists);
  // The first call's cancellation, seen late, does not free the new call's place.
  agent_->WithdrawAttach("train", 0, id);
  EXPECT_FALSE(again.result.has_value());
  // Alone on the node, a later attach of the process may ask for other sizes too.
  Attached& resized = Worker();
  AttachFrom("proc-a", 4, 0, resized, absl::Minutes(1), 1);
  ASSERT_TRUE(again.result.has_value());
  EXPECT_EQ(again.result->status().code(), absl::StatusCode::kCancelled);
  auto resized_join = client_.TakeJoin();  // local world 1: the node joins at once
  ASSERT_TRUE(resized_join.has_value());
  EXPECT_EQ(resized_join->request.local_world, 1u);
}

// The test above, with the process's place kept at its sizes: the round of two local workers.
TEST_F(AgentCoreTest, AnAttachAgainFromTheSameProcessJoinsWithItsPeer) {
  Register();
  Attached& first = Worker();
  Attached& again = Worker();
  Attached& w1 = Worker();
  AttachFrom("proc-a", 1, 0, first);
  AttachFrom("proc-a", 3, 0, again);
  ASSERT_TRUE(first.result.has_value());
  AttachFrom("proc-c", 1, 1, w1);
  auto join = client_.TakeJoin();
  ASSERT_TRUE(join.has_value());
  join->done(Assigned("train", 2, 1, 2, 2));
  ASSERT_TRUE(again.result.has_value());
  EXPECT_TRUE(again.result->ok()) << again.result->status();
}

// A worker that took an interrupted attach's place while the node's join was in flight keeps
// its own, later deadline: when that join runs out of time, it waits on and the node joins again.
TEST_F(AgentCoreTest, AnAttachThatTookAPlaceDuringTheJoinKeepsItsOwnDeadline) {
  Register();
  Attached& first = Worker();
  Attached& w1 = Worker();
  Attached& again = Worker();
  Attached& w1_again = Worker();
  AttachFrom("proc-a", 1, 0, first);
  AttachFrom("proc-b", 1, 1, w1);
  auto join = client_.TakeJoin();
  ASSERT_TRUE(join.has_value());
  AttachFrom("proc-a", 2, 0, again, absl::Minutes(3));
  ASSERT_TRUE(first.result.has_value());  // superseded
  clock_.Advance(absl::Minutes(1));
  join->done(absl::DeadlineExceededError("only 1 of 2 nodes joined in time"));
  ASSERT_TRUE(w1.result.has_value());  // its own deadline has come
  EXPECT_EQ(w1.result->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_FALSE(again.result.has_value());  // waits on
  EXPECT_EQ(client_.joins(), 0u);          // for its local peer
  AttachFrom("proc-b", 2, 1, w1_again);
  auto rejoin = client_.TakeJoin();
  ASSERT_TRUE(rejoin.has_value());
  rejoin->done(Assigned("train", 2, 1, 2, 2));
  ASSERT_TRUE(again.result.has_value());
  EXPECT_TRUE(again.result->ok()) << again.result->status();
}

// A worker that goes away while the node's join is in flight is answered at once; another
// process may take its place, and a join that succeeds counts it for a restarted worker.
TEST_F(AgentCoreTest, AWorkerGoneDuringTheJoinFreesItsPlace) {
  Register();
  Attached& w0 = Worker();
  Attached& w1 = Worker();
  Attached& other = Worker();
  const uint64_t id = AttachFrom("proc-a", 1, 0, w0);
  AttachFrom("proc-b", 1, 1, w1);
  auto join = client_.TakeJoin();
  ASSERT_TRUE(join.has_value());
  agent_->WithdrawAttach("train", 0, id);
  ASSERT_TRUE(w0.result.has_value());
  EXPECT_EQ(w0.result->status().code(), absl::StatusCode::kCancelled);
  AttachFrom("proc-c", 1, 0, other);
  EXPECT_FALSE(other.result.has_value());  // it took the place
  join->done(Assigned("train", 2, 1, 2, 2));
  ASSERT_TRUE(other.result.has_value() && other.result->ok());
  ASSERT_TRUE(w1.result.has_value() && w1.result->ok());
}

// The same, the join running out of time: a withdrawn worker is neither kept nor joined again
// for, even with a later deadline than the join's.
TEST_F(AgentCoreTest, AWorkerGoneDuringAJoinThatRanOutIsNotJoinedAgainFor) {
  Register();
  Attached& first = Worker();
  Attached& again = Worker();
  AttachFrom("proc-a", 1, 0, first, absl::Minutes(1), 1, "solo");
  auto join = client_.TakeJoin();
  ASSERT_TRUE(join.has_value());
  const uint64_t id = AttachFrom("proc-a", 2, 0, again, absl::Minutes(10), 1, "solo");
  ASSERT_TRUE(first.result.has_value());  // superseded
  agent_->WithdrawAttach("solo", 0, id);  // and the later one went away too
  ASSERT_TRUE(again.result.has_value());
  EXPECT_EQ(again.result->status().code(), absl::StatusCode::kCancelled);
  clock_.Advance(absl::Minutes(1));
  join->done(absl::DeadlineExceededError("only 1 of 2 nodes joined in time"));
  EXPECT_EQ(client_.joins(), 0u);
  EXPECT_TRUE(agent_->Status().workers.empty());
}

v1::RankGroupsRequest Ask(uint32_t local_rank, const std::vector<std::string>& groups,
                          uint64_t generation = 2, uint32_t local_asks = 0) {
  v1::RankGroupsRequest r;
  r.set_job("train");
  r.set_generation(generation);
  r.set_local_rank(local_rank);
  r.set_mesh_key("#0");
  r.set_local_asks(local_asks);
  r.mutable_spec()->set_fingerprint("fp");
  r.mutable_spec()->set_description("DeviceMesh((dp=2, tp=2))");
  for (const std::string& key : groups) {
    v1::GroupRequest* g = r.add_groups();
    g->set_key(key);
    g->set_num_ids(1);
  }
  return r;
}

// The id the asking rank minted for chunk 0 of its `i`-th group: 128 bytes of `c`.
void Mint(v1::RankGroupsRequest& r, int i, char c) {
  v1::MintedId* m = r.mutable_groups(i)->add_minted();
  m->set_index(0);
  m->set_id(std::string(128, c));
}

// A coordinator's answer: each group with one id of 128 bytes of `c`, or (c = 0) none yet.
v1::ResolveGroupsResponse Ids(const std::vector<std::pair<std::string, char>>& groups) {
  v1::ResolveGroupsResponse out;
  for (const auto& [key, c] : groups) {
    v1::GroupIds* g = out.add_groups();
    g->set_key(key);
    if (c != 0) g->add_ids(std::string(128, c));
  }
  return out;
}

using GroupsGot = std::optional<absl::StatusOr<v1::ResolveGroupsResponse>>;
// Where a worker's answer lands.
Answer<v1::ResolveGroupsResponse> Into(GroupsGot& got) {
  return [&got](absl::StatusOr<v1::ResolveGroupsResponse> r) { got = std::move(r); };
}

// On a host, a job belongs to the uid of its first worker: a process of another uid can neither
// attach to it, watch it, detach it, exchange its ids nor use its store; --allow-uids lets one in.
TEST_F(AgentCoreTest, AJobIsBoundToItsFirstWorkersUid) {
  Register();
  Attached& w0 = Worker();
  Attached& w1 = Worker();
  agent_->Attach("train", 0, 2, kTwoNodes, clock_.Now() + absl::Minutes(1), w0.done(), 1000);
  Attached& other = Worker();
  agent_->Attach("train", 1, 2, kTwoNodes, clock_.Now() + absl::Minutes(1), other.done(), 2000);
  ASSERT_TRUE(other.result.has_value());
  EXPECT_EQ(other.result->status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(other.result->status().message(), HasSubstr("belongs to uid 1000"));
  agent_->Attach("train", 1, 2, kTwoNodes, clock_.Now() + absl::Minutes(1), w1.done(), 1000);
  client_.TakeJoin()->done(Assigned("train", 1, 0, 2, 2));
  ASSERT_TRUE(w0.result.has_value() && w0.result->ok());
  const auto denied = absl::StatusCode::kPermissionDenied;
  EXPECT_EQ(agent_->Watch("train", 1, 0, [](const domain::GenerationEnd&) {}, 2000).status().code(),
            denied);
  EXPECT_EQ(agent_->Detach("train", 1, 0, 2000).code(), denied);
  std::optional<absl::StatusOr<v1::ResolveGroupsResponse>> ids;
  agent_->ResolveGroups(Ask(0, {"dp/0"}, 1), clock_.Now() + absl::Minutes(1),
                        [&ids](absl::StatusOr<v1::ResolveGroupsResponse> r) { ids = r; }, 2000);
  EXPECT_EQ(ids->status().code(), denied);
  std::optional<absl::Status> get;
  v1::KeyGetRequest req;
  req.set_job("train");
  req.set_generation(1);
  req.set_key("k");
  agent_->RelayKeyCall<v1::KeyGetRequest, v1::KeyGetResponse>(
      req, clock_.Now() + absl::Seconds(1),
      [&get](absl::StatusOr<v1::KeyGetResponse> r) { get = r.status(); }, 2000);
  EXPECT_EQ(get->code(), denied);
  EXPECT_EQ(client_.TakeKey(), std::nullopt);  // nothing reached the coordinator
  EXPECT_EQ(client_.batches(), 0u);
  // The owner's own calls go through.
  EXPECT_TRUE(agent_->Watch("train", 1, 0, [](const domain::GenerationEnd&) {}, 1000).ok());
  // Both workers detach cleanly: while the generation runs, the job stays theirs (another uid
  // must not slip into the running generation) ...
  ASSERT_TRUE(agent_->Detach("train", 1, 0, 1000).ok());
  ASSERT_TRUE(agent_->Detach("train", 1, 1, 1000).ok());
  Attached& late = Worker();
  agent_->Attach("train", 1, 2, kTwoNodes, clock_.Now() + absl::Minutes(1), late.done(), 2000);
  EXPECT_EQ(late.result->status().code(), denied);
  // ... and once it ended, the job is no one's here any more.
  client_.TakeWatch()->done(
      domain::GenerationEnd{"train", 1, domain::EndReason::kNodeLeft, "node-a", "done"});
  Attached& next = Worker();
  agent_->Attach("train", 0, 2, kTwoNodes, clock_.Now() + absl::Minutes(1), next.done(), 2000);
  EXPECT_FALSE(next.result.has_value());  // waiting for its round, as uid 2000's job now
}

TEST_F(AgentCoreTest, ARefusedOrWithdrawnAttachBindsNothing) {
  Register();
  Attached& squatter = Worker();
  const uint64_t id = agent_->Attach("train", 0, 2, kTwoNodes, clock_.Now() + absl::Minutes(1),
                                     squatter.done(), 2000);
  agent_->WithdrawAttach("train", 0, id);  // it went away: the job is free again
  Attached& owner = Worker();
  agent_->Attach("train", 0, 2, kTwoNodes, clock_.Now() + absl::Minutes(1), owner.done(), 1000);
  EXPECT_FALSE(owner.result.has_value());  // admitted, waiting
  Attached& clash = Worker();  // another uid's refused attach changes nothing
  agent_->Attach("train", 1, 2, domain::NodeCount{3, 3, absl::Seconds(1)},
                 clock_.Now() + absl::Minutes(1), clash.done(), 2000);
  EXPECT_EQ(clash.result->status().code(), absl::StatusCode::kPermissionDenied);
  Attached& second = Worker();
  agent_->Attach("train", 1, 2, kTwoNodes, clock_.Now() + absl::Minutes(1), second.done(), 1000);
  EXPECT_EQ(client_.joins(), 1u);
}

TEST_F(AgentCoreTest, AllowedUidsShareAJob) {
  FakeCoordinatorClient client;
  AgentOptions options{"coordinator:7070", "node-b", "host-b", "unix:/tmp/b.sock", 78};
  options.allow_uids = {2000};
  Agent agent(options, Gpus(2), &clock_, &client);
  agent.Start();
  client.TakeRegister()->done(absl::Seconds(1));
  Attached& w0 = Worker();
  Attached& w1 = Worker();
  agent.Attach("train", 0, 2, kTwoNodes, clock_.Now() + absl::Minutes(1), w0.done(), 1000);
  agent.Attach("train", 1, 2, kTwoNodes, clock_.Now() + absl::Minutes(1), w1.done(), 2000);
  EXPECT_FALSE(w1.result.has_value());  // let in: both wait for the round
  EXPECT_EQ(client.joins(), 1u);
  agent.Stop();
}

TEST_F(AgentCoreTest, LocalWorkersGroupRequestsTravelAsOneResolveGroups) {
  Register();
  Attached& w0 = Worker();
  Attached& w1 = Worker();
  RunGeneration("train", 2, w0, w1);
  std::optional<absl::StatusOr<v1::ResolveGroupsResponse>> got0, got1;
  v1::RankGroupsRequest a0 = Ask(0, {"dp/0", "tp/1"});
  v1::MintedId* minted = a0.mutable_groups(1)->add_minted();
  minted->set_index(0);
  minted->set_id(std::string(128, 'x'));
  agent_->ResolveGroups(a0, clock_.Now() + absl::Minutes(1),
                        [&got0](absl::StatusOr<v1::ResolveGroupsResponse> r) { got0 = r; });
  EXPECT_EQ(client_.resolves(), 0u);
  agent_->ResolveGroups(Ask(1, {"dp/1", "tp/1"}), clock_.Now() + absl::Minutes(1),
                        [&got1](absl::StatusOr<v1::ResolveGroupsResponse> r) { got1 = r; });
  auto call = client_.TakeResolve();
  ASSERT_TRUE(call.has_value());
  const v1::ResolveGroupsRequest& req = call->request;
  EXPECT_EQ(req.node(), "node-a");
  EXPECT_EQ(req.mesh_key(), "#0");
  ASSERT_EQ(req.ranks_size(), 2);
  EXPECT_EQ(req.ranks(0).rank(), 2u);  // node rank 1 × local world 2
  EXPECT_EQ(req.ranks(1).rank(), 3u);
  EXPECT_EQ(req.ranks(1).spec().fingerprint(), "fp");
  ASSERT_EQ(req.groups_size(), 3);  // tp/1 once, with the id rank 2 minted
  EXPECT_EQ(req.groups(1).key(), "tp/1");
  EXPECT_EQ(req.groups(1).minted_size(), 1);
  v1::ResolveGroupsResponse answer;
  for (const char* key : {"dp/0", "tp/1", "dp/1"}) {
    v1::GroupIds* g = answer.add_groups();
    g->set_key(key);
    g->add_ids(std::string(128, key[0]));
  }
  call->done(answer);
  ASSERT_TRUE(got0.has_value() && got0->ok());
  ASSERT_EQ((*got0)->groups_size(), 2);
  EXPECT_EQ((*got0)->groups(0).key(), "dp/0");
  EXPECT_EQ((*got0)->groups(1).key(), "tp/1");
  ASSERT_TRUE(got1.has_value() && got1->ok());
  EXPECT_EQ((*got1)->groups(0).key(), "dp/1");
}

// The node's request allows a partial answer: the workers whose groups all came go on at once,
// and the node asks again for the groups still missing, reporting again every id it minted (for
// a coordinator that restarted meanwhile), until the last deadline of the workers still waiting;
// they get every group they asked for, from both answers.
TEST_F(AgentCoreTest, PartialAnswer_CompleteWorkersAnswered_RestAskedAgain) {
  Register();
  Attached& w0 = Worker();
  Attached& w1 = Worker();
  RunGeneration("train", 2, w0, w1);
  GroupsGot got0, got1;
  v1::RankGroupsRequest a0 = Ask(0, {"dp/0", "tp/1"});
  Mint(a0, 1, 't');
  agent_->ResolveGroups(a0, clock_.Now() + absl::Minutes(5), Into(got0));
  v1::RankGroupsRequest a1 = Ask(1, {"dp/1", "tp/1"});
  Mint(a1, 0, 'm');
  agent_->ResolveGroups(a1, clock_.Now() + absl::Minutes(1), Into(got1));
  auto first = client_.TakeResolve();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->request.partial_after_ms(),
            absl::ToInt64Milliseconds(MeshRelay::kPartialAfter));
  first->done(Ids({{"dp/0", 'd'}, {"tp/1", 't'}, {"dp/1", 0}}));  // dp/1 has no ids yet
  ASSERT_TRUE(got0.has_value() && got0->ok());
  ASSERT_EQ((*got0)->groups_size(), 2);
  EXPECT_EQ((*got0)->groups(1).ids(0), std::string(128, 't'));
  EXPECT_FALSE(got1.has_value());
  auto again = client_.TakeResolve();
  ASSERT_TRUE(again.has_value());
  ASSERT_EQ(again->request.groups_size(), 2);  // what is missing, and the ids it minted
  EXPECT_EQ(again->request.groups(0).key(), "tp/1");
  EXPECT_EQ(again->request.groups(0).minted_size(), 1);
  EXPECT_EQ(again->request.groups(1).key(), "dp/1");
  EXPECT_EQ(again->request.groups(1).minted_size(), 1);
  EXPECT_EQ(again->request.ranks_size(), 2);
  EXPECT_LE(again->options.timeout, absl::Minutes(1));  // w1's deadline: w0 was answered
  again->done(Ids({{"tp/1", 't'}, {"dp/1", 'm'}}));
  ASSERT_TRUE(got1.has_value() && got1->ok());
  ASSERT_EQ((*got1)->groups_size(), 2);
  EXPECT_EQ((*got1)->groups(0).ids(0), std::string(128, 'm'));
  EXPECT_EQ((*got1)->groups(1).ids(0), std::string(128, 't'));
  EXPECT_EQ(client_.resolves(), 0u);
}

// A view's asks are sent once the workers that ask for it did (local_asks), and the coordinator
// checks the spec under the root's key.
TEST_F(AgentCoreTest, ViewAskedByOneWorker_SentAtOnceUnderRootKey) {
  Register();
  Attached& w0 = Worker();
  Attached& w1 = Worker();
  RunGeneration("train", 2, w0, w1);
  v1::RankGroupsRequest a1 = Ask(1, {"#0/(2):(1)/1"}, 2, /*local_asks=*/1);
  a1.set_mesh_key("#0|DeviceMesh((tp=2), stride=(1,))");
  a1.set_root_key("#0");
  std::optional<absl::StatusOr<v1::ResolveGroupsResponse>> got;
  agent_->ResolveGroups(a1, clock_.Now() + absl::Minutes(1),
                        [&got](absl::StatusOr<v1::ResolveGroupsResponse> r) { got = r; });
  auto call = client_.TakeResolve();
  ASSERT_TRUE(call.has_value());
  EXPECT_EQ(call->request.mesh_key(), "#0");
  ASSERT_EQ(call->request.ranks_size(), 1);
  EXPECT_EQ(call->request.ranks(0).rank(), 3u);
  call->done(v1::ResolveGroupsResponse());  // answered while `got` lives
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(got->ok());
}

// A worker that has every group of a view already does not ask: the others' batch goes out a
// short while (MeshRelay::kBatchWindow) after its first ask, and a late ask starts the next one.
TEST_F(AgentCoreTest, BatchMissingAWorker_SentAfterTheWindow_LateAskSentOnItsOwn) {
  Register();
  Attached& w0 = Worker();
  Attached& w1 = Worker();
  RunGeneration("train", 2, w0, w1);
  std::optional<absl::StatusOr<v1::ResolveGroupsResponse>> got0, got1;
  agent_->ResolveGroups(Ask(0, {"dp/0"}), clock_.Now() + absl::Minutes(1),
                        [&got0](absl::StatusOr<v1::ResolveGroupsResponse> r) { got0 = r; });
  agent_->Tick();
  EXPECT_EQ(client_.resolves(), 0u);
  clock_.Advance(MeshRelay::kBatchWindow);
  agent_->Tick();
  auto first = client_.TakeResolve();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->request.ranks_size(), 1);
  agent_->ResolveGroups(Ask(1, {"dp/1"}), clock_.Now() + absl::Minutes(1),
                        [&got1](absl::StatusOr<v1::ResolveGroupsResponse> r) { got1 = r; });
  clock_.Advance(MeshRelay::kBatchWindow);
  agent_->Tick();
  auto second = client_.TakeResolve();
  ASSERT_TRUE(second.has_value());
  ASSERT_EQ(second->request.ranks_size(), 1);
  EXPECT_EQ(second->request.ranks(0).rank(), 3u);
  v1::ResolveGroupsResponse answer;
  v1::GroupIds* g = answer.add_groups();
  g->set_key("dp/0");
  g->add_ids(std::string(128, 'd'));
  first->done(answer);
  ASSERT_TRUE(got0.has_value() && got0->ok());
  EXPECT_FALSE(got1.has_value());
  second->done(v1::ResolveGroupsResponse());
  ASSERT_TRUE(got1.has_value());
  EXPECT_TRUE(got1->ok());
}

// What the node reported of a view — its ranks' specs and the ids it minted — is reported again
// after it registers again (a coordinator that restarted lost them, and other nodes' ranks may
// still ask for those groups); never for a generation that ended.
TEST_F(AgentCoreTest, ViewsAnsweredBeforeARestart_ReportedAgainOnceRegistered) {
  Register();
  Attached& w0 = Worker();
  Attached& w1 = Worker();
  RunGeneration("train", 2, w0, w1);
  GroupsGot got0, got1;
  v1::RankGroupsRequest a0 = Ask(0, {"dp/0", "tp/1"});
  Mint(a0, 1, 't');
  agent_->ResolveGroups(a0, clock_.Now() + absl::Minutes(1), Into(got0));
  agent_->ResolveGroups(Ask(1, {"dp/1", "tp/1"}), clock_.Now() + absl::Minutes(1), Into(got1));
  client_.TakeResolve()->done(Ids({{"dp/0", 'd'}, {"tp/1", 't'}, {"dp/1", 'e'}}));
  ASSERT_TRUE(got0.has_value() && got0->ok() && got1.has_value() && got1->ok());
  EXPECT_EQ(client_.resolves(), 0u);

  // The coordinator restarted: it no longer knows the node.
  Advance(absl::Seconds(1));
  client_.TakeHeartbeat()->done(absl::NotFoundError("unknown node (the coordinator restarted)"));
  auto r = client_.TakeRegister();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(client_.resolves(), 0u);  // not before the node is registered again
  r->done(absl::Seconds(1));
  EXPECT_EQ(client_.resolves(), 0u);  // nor at once: after MeshRelay::kRereportDelay (1-2x)
  Advance(MeshRelay::kRereportDelay * 2);
  auto again = client_.TakeResolve();
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->request.generation(), 2u);
  EXPECT_EQ(again->request.mesh_key(), "#0");
  ASSERT_EQ(again->request.ranks_size(), 2);  // both ranks' specs
  EXPECT_EQ(again->request.ranks(1).spec().fingerprint(), "fp");
  ASSERT_EQ(again->request.groups_size(), 1);  // only what it minted
  EXPECT_EQ(again->request.groups(0).key(), "tp/1");
  EXPECT_EQ(again->request.groups(0).minted(0).id(), std::string(128, 't'));
  // While the coordinator recovers the generation it answers UNAVAILABLE: sent again, past the
  // resender's attempts too (another node may take long to register again).
  again->done(absl::UnavailableError("recovering: 1 of 2 nodes reported"));
  for (int i = 0; i < Resender::kAttempts + 4; ++i) {
    Advance(absl::Seconds(1));
    auto next = client_.TakeResolve();
    ASSERT_TRUE(next.has_value()) << "send " << i;
    next->done(absl::UnavailableError("recovering: 1 of 2 nodes reported"));
  }
  Advance(absl::Seconds(1));
  auto third = client_.TakeResolve();
  ASSERT_TRUE(third.has_value());
  third->done(Ids({{"tp/1", 't'}}));  // the answer goes to nobody: the workers have theirs
  EXPECT_EQ(client_.resolves(), 0u);

  // A registration while reports are still being sent supersedes them: one report, not two.
  RegisterAgainAfterARestart();
  Advance(MeshRelay::kRereportDelay * 2);
  auto first = client_.TakeResolve();
  ASSERT_TRUE(first.has_value());
  RegisterAgainAfterARestart();
  first->done(absl::UnavailableError("recovering"));
  Advance(MeshRelay::kRereportDelay * 2);
  auto second = client_.TakeResolve();
  ASSERT_TRUE(second.has_value());
  second->done(Ids({{"tp/1", 't'}}));
  Advance(absl::Seconds(2));
  EXPECT_EQ(client_.resolves(), 0u);  // the first round's report was not sent again

  // Once the generation ended there is nothing to report.
  client_.TakeWatch()->done(
      domain::GenerationEnd{"train", 2, domain::EndReason::kNodeLeft, "node-b", "node left"});
  RegisterAgainAfterARestart();
  Advance(MeshRelay::kRereportDelay * 2);
  EXPECT_EQ(client_.resolves(), 0u);
}

// A view answered in two batches (a worker asked after the first was sent), each minting another
// chunk of one group: the report made again carries both ranks and both chunks.
TEST_F(AgentCoreTest, ViewAnsweredInTwoBatches_ReportedAgainWhole) {
  Register();
  Attached& w0 = Worker();
  Attached& w1 = Worker();
  RunGeneration("train", 2, w0, w1);
  GroupsGot got0, got1;
  auto chunk = [](uint32_t local_rank, uint32_t index, char c) {
    v1::RankGroupsRequest r = Ask(local_rank, {"big/0"});
    r.mutable_groups(0)->set_num_ids(2);
    v1::MintedId* m = r.mutable_groups(0)->add_minted();
    m->set_index(index);
    m->set_id(std::string(128, c));
    return r;
  };
  v1::ResolveGroupsResponse both;
  v1::GroupIds* g = both.add_groups();
  g->set_key("big/0");
  g->add_ids(std::string(128, 'a'));
  g->add_ids(std::string(128, 'b'));
  agent_->ResolveGroups(chunk(0, 0, 'a'), clock_.Now() + absl::Minutes(1), Into(got0));
  Advance(MeshRelay::kBatchWindow);
  client_.TakeResolve()->done(both);
  agent_->ResolveGroups(chunk(1, 1, 'b'), clock_.Now() + absl::Minutes(1), Into(got1));
  Advance(MeshRelay::kBatchWindow);
  client_.TakeResolve()->done(both);
  ASSERT_TRUE(got0.has_value() && got0->ok() && got1.has_value() && got1->ok());

  RegisterAgainAfterARestart();
  Advance(MeshRelay::kRereportDelay * 2);
  auto again = client_.TakeResolve();
  ASSERT_TRUE(again.has_value());
  ASSERT_EQ(again->request.ranks_size(), 2);
  ASSERT_EQ(again->request.groups_size(), 1);
  ASSERT_EQ(again->request.groups(0).minted_size(), 2);
  EXPECT_EQ(again->request.groups(0).minted(0).id(), std::string(128, 'a'));
  EXPECT_EQ(again->request.groups(0).minted(1).index(), 1u);
  EXPECT_EQ(again->request.groups(0).minted(1).id(), std::string(128, 'b'));
}

TEST_F(AgentCoreTest, GroupRequestsOfAnEndedGenerationAreAborted) {
  Register();
  Attached& w0 = Worker();
  Attached& w1 = Worker();
  RunGeneration("train", 2, w0, w1);
  std::optional<absl::StatusOr<v1::ResolveGroupsResponse>> got;
  agent_->ResolveGroups(Ask(0, {"dp/0"}), clock_.Now() + absl::Minutes(1),
                        [&got](absl::StatusOr<v1::ResolveGroupsResponse> r) { got = r; });
  client_.TakeWatch()->done(
      domain::GenerationEnd{"train", 2, domain::EndReason::kNodeLeft, "node-b", "node left"});
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->status().code(), absl::StatusCode::kAborted);
  got.reset();
  agent_->ResolveGroups(Ask(1, {"dp/1"}), clock_.Now() + absl::Minutes(1),
                        [&got](absl::StatusOr<v1::ResolveGroupsResponse> r) { got = r; });
  EXPECT_EQ(got->status().code(), absl::StatusCode::kAborted);
}

// A generation that ends while a node asks again after a partial answer: the worker already
// answered keeps its answer; the one still waiting learns the end (ABORTED) — from the
// coordinator's answer to the re-ask, or MeshRelay::kEndGrace after the end without one.
TEST_F(AgentCoreTest, GenerationEndsWhileAskingAgain_TheWaitingWorkerAborted) {
  Register();
  Attached& w0 = Worker();
  Attached& w1 = Worker();
  RunGeneration("train", 2, w0, w1);
  GroupsGot got0, got1;
  agent_->ResolveGroups(Ask(0, {"tp/1"}), clock_.Now() + absl::Minutes(1), Into(got0));
  agent_->ResolveGroups(Ask(1, {"tp/1", "dp/1"}), clock_.Now() + absl::Minutes(1), Into(got1));
  auto first = client_.TakeResolve();
  ASSERT_TRUE(first.has_value());
  first->done(Ids({{"tp/1", 't'}, {"dp/1", 0}}));
  ASSERT_TRUE(got0.has_value() && got0->ok());
  auto again = client_.TakeResolve();
  ASSERT_TRUE(again.has_value());
  client_.TakeWatch()->done(
      domain::GenerationEnd{"train", 2, domain::EndReason::kNodeLeft, "node-b", "node left"});
  agent_->Tick();
  EXPECT_FALSE(got1.has_value());  // the coordinator's answer may say more than the end
  clock_.Advance(MeshRelay::kEndGrace);
  agent_->Tick();
  ASSERT_TRUE(got1.has_value());
  EXPECT_EQ(got1->status().code(), absl::StatusCode::kAborted);
  EXPECT_TRUE(got0->ok());
  again->done(absl::AbortedError("generation 2 ended"));  // late: nobody left to tell
}

TEST_F(AgentCoreTest, StopAnswersEveryWaitingWorkerCancelled) {
  Register();
  Attached& waiting = Worker();
  agent_->Attach("train", 0, 2, kTwoNodes, clock_.Now() + absl::Minutes(1), waiting.done());
  Attached& w0 = Worker();
  Attached& w1 = Worker();
  RunGeneration("other", 1, w0, w1);
  std::optional<domain::GenerationEnd> end;
  ASSERT_TRUE(
      agent_->Watch("other", 1, 0, [&end](const domain::GenerationEnd& e) { end = e; }).ok());
  agent_->Stop();
  ASSERT_TRUE(waiting.result.has_value());
  EXPECT_EQ(waiting.result->status().code(), absl::StatusCode::kCancelled);
  ASSERT_TRUE(end.has_value());
  EXPECT_EQ(end->reason, domain::EndReason::kShutdown);
  EXPECT_EQ(client_.watches(), 0u);  // the coordinator watch was cancelled
  Attached& late = Worker();
  agent_->Attach("train", 1, 2, kTwoNodes, clock_.Now() + absl::Minutes(1), late.done());
  EXPECT_EQ(late.result->status().code(), absl::StatusCode::kCancelled);
}

}  // namespace
}  // namespace meshd::agent
