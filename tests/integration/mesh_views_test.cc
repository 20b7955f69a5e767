// Mesh views with real processes: a coordinator (with its metrics), two agents of two simulated
// GPUs each and four views_worker processes driven command by command. Proves what issue 23 asks:
// a slice of a fetched mesh costs no coordinator call (its RPC counter) and reaches the same groups
// (keys and ids) as the root; an unflatten that rebuilds the root's dims costs none either, a
// flatten only its new group; a late rank delays only the groups whose ids it mints, and on a node
// it shares with others only the workers in those groups (the agent's request answered in part); a
// subset mesh
// (one pipeline stage) works with the ranks outside it idle, and a permuted table's groups are
// PyTorch's.
#include <signal.h>
#include <unistd.h>

#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/support/nccl.h"
#include "tests/support/scrape.h"
#include "tests/support/subprocess.h"

namespace meshd {
namespace {

using process::Subprocess;
using json = nlohmann::json;

// Counted when a call starts, so every call a worker has had answered is in it (a call's "handled"
// count comes after its answer is sent, and could lag behind what the worker saw).
constexpr char kResolveGroups[] =
    "grpc_server_started_total{grpc_method=\"ResolveGroups\",grpc_service="
    "\"meshd.v1.Coordinator\",grpc_type=\"unary\",server=\"coordinator\"}";

class MeshViewsTest : public ::testing::Test {
 protected:
  static constexpr int kAgents = 2, kGpus = 2, kWorld = kAgents * kGpus;

  void SetUp() override {
    MESHD_SKIP_WITHOUT_NCCL();  // the leaders mint with the real ncclGetUniqueId
    signal(SIGPIPE, SIG_IGN);   // a dead worker's stdin: WriteLine fails, the test says so
    const std::string dir = absl::StrCat(::testing::TempDir(), "meshd_views_", getpid());
    coordinator_ = *Subprocess::Start({MESHD_PATH, "coordinator", "--listen", "127.0.0.1:0",
                                       "--metrics-listen", "127.0.0.1:0"});
    auto metrics = coordinator_->WaitForLine("meshd metrics on ", absl::Seconds(20));
    ASSERT_TRUE(metrics.ok()) << metrics.status();
    metrics_ = *metrics;
    auto address = coordinator_->WaitForLine("meshd coordinator listening on ", absl::Seconds(20));
    ASSERT_TRUE(address.ok()) << address.status();
    for (int a = 0; a < kAgents; ++a) {
      sockets_.push_back(absl::StrCat(dir, "/agent", a, ".sock"));
      agents_.push_back(*Subprocess::Start(
          {MESHD_PATH, "agent", "--coordinator", *address, "--socket", sockets_.back(),
           "--simulate-gpus", std::to_string(kGpus), "--node-name", absl::StrCat("node", a)}));
      ASSERT_TRUE(agents_.back()->WaitForLine("meshd agent listening on ", absl::Seconds(20)).ok());
    }
    // Worker i is rank i: node a's local ranks are ranks a*kGpus.. (one job, fixed size).
    workers_.resize(kWorld);
    for (int a = 0; a < kAgents; ++a) {
      for (int l = 0; l < kGpus; ++l) {
        workers_[a * kGpus + l] = *Subprocess::Start(
            {"/usr/bin/env", absl::StrCat("MESHD_SOCKET=", sockets_[a]), "MESHD_JOB=views",
             absl::StrCat("LOCAL_RANK=", l), absl::StrCat("LOCAL_WORLD_SIZE=", kGpus),
             absl::StrCat("MESHD_NNODES=", kAgents), VIEWS_WORKER_PATH},
            "", /*pipe_stdin=*/true);
      }
    }
    for (int r = 0; r < kWorld; ++r) {
      json j = Read(r);
      ASSERT_TRUE(j["ok"]) << j;
      ASSERT_EQ(j["rank"], r) << "ranks follow the node order";
    }
  }

  json Read(int rank, absl::Duration timeout = absl::Seconds(30)) {
    auto line = workers_[rank]->ReadLine(timeout);
    if (!line.ok()) return json{{"ok", false}, {"read", std::string(line.status().message())}};
    return json::parse(*line);
  }
  // Sends `command` to every rank in `ranks` (all when empty), then reads each one's answer.
  std::map<int, json> All(const std::string& command, std::set<int> ranks = {}) {
    if (ranks.empty()) {
      for (int r = 0; r < kWorld; ++r) ranks.insert(r);
    }
    for (int r : ranks) EXPECT_TRUE(workers_[r]->WriteLine(command).ok());
    std::map<int, json> out;
    for (int r : ranks) out[r] = Read(r);
    return out;
  }
  double ResolveCalls() {
    auto s = testing::Scrape(metrics_);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() && s->contains(kResolveGroups) ? s->at(kResolveGroups) : 0;
  }
  // key -> id of every group in the answers, checking members agree.
  static std::map<std::string, std::string> Ids(const std::map<int, json>& answers) {
    std::map<std::string, std::string> ids;
    for (const auto& [rank, j] : answers) {
      EXPECT_TRUE(j["ok"]) << "rank " << rank << ": " << j;
      if (!j["ok"]) continue;
      for (const json& g : j["groups"]) {
        auto [it, fresh] = ids.emplace(g["key"], g["id"]);
        EXPECT_EQ(it->second, g["id"]) << "rank " << rank << " holds another id for " << g["key"];
      }
    }
    return ids;
  }

  std::unique_ptr<Subprocess> coordinator_;
  std::vector<std::unique_ptr<Subprocess>> agents_;
  std::vector<std::string> sockets_;
  std::vector<std::unique_ptr<Subprocess>> workers_;
  std::string metrics_;
};

TEST_F(MeshViewsTest, SliceCostsNoCall_UnflattenToTheRootsDimsNone_FlattenOnlyItsGroup) {
  const std::map<std::string, std::string> root = Ids(All("init 2,2 dp,tp"));
  ASSERT_EQ(root.size(), 4u);  // 2 dp groups, 2 tp groups (the world group is fetched, not listed)
  const double after_init = ResolveCalls();
  EXPECT_GE(after_init, 2);  // at least one per node

  // mesh["tp"], mesh["dp"], mesh["dp","tp"]: the root's groups, the same ids, no call.
  for (const char* view : {"slice:tp", "slice:dp", "slice:dp,tp", "root"}) {
    SCOPED_TRACE(view);
    const std::map<int, json> answers = All(absl::StrCat("groups ", view));
    for (const auto& [key, id] : Ids(answers)) {
      ASSERT_TRUE(root.contains(key)) << key;
      EXPECT_EQ(root.at(key), id) << key;
    }
  }
  EXPECT_EQ(ResolveCalls(), after_init);

  // The root flattened, then unflattened back to (dp, tp): the same dims as the root's, no call.
  // One new group: at least one call per node (more when the agent's batch window closed before
  // its second worker asked, as on a loaded machine).
  All("groups flatten:dp,tp:dp_tp");
  const double after_flatten = ResolveCalls();
  EXPECT_GE(after_flatten, after_init + kAgents);
  const std::map<int, json> again = All("groups flatten:dp,tp:dp_tp");
  EXPECT_EQ(ResolveCalls(), after_flatten);
  for (const auto& [key, id] : Ids(again)) EXPECT_EQ(key, "#0/(4):(1)/0");
  // The root flattened whole and unflattened into (2, 2): the root's own dims, no call; into
  // (4, 1), one new dim's group per rank (the size-1 dim's single-rank groups are new too).
  const std::map<int, json> refold = All("groups refold:2,2:x,y");
  EXPECT_EQ(ResolveCalls(), after_flatten);
  for (const auto& [key, id] : Ids(refold)) EXPECT_EQ(root.at(key), id) << key;
  All("groups refold:1,4:x,y");
  EXPECT_GE(ResolveCalls(), after_flatten + kAgents);
}

// Rank 2 (node 1) leads tp group {2,3} and is in dp group {0,2} (led by rank 0) and the world (led
// by rank 0). While it has not asked: ranks 0 and 1 — whose groups are all led on node 0 — are
// answered, rank 3 (in rank 2's tp group) waits; once rank 2 asks, both are answered.
TEST_F(MeshViewsTest, LateRankDelaysOnlyTheGroupsItLeads) {
  for (int r : {0, 1, 3}) ASSERT_TRUE(workers_[r]->WriteLine("init 2,2 dp,tp").ok());
  std::map<int, json> answers;
  for (int r : {0, 1}) {
    answers[r] = Read(r);
    ASSERT_TRUE(answers[r]["ok"]) << answers[r];
  }
  // Rank 3's answer can only come after rank 2's tp id: none is there now.
  EXPECT_FALSE(workers_[3]->ReadLine(absl::Milliseconds(200)).ok());
  ASSERT_TRUE(workers_[2]->WriteLine("init 2,2 dp,tp").ok());
  for (int r : {2, 3}) answers[r] = Read(r);
  const std::map<std::string, std::string> ids = Ids(answers);
  EXPECT_EQ(ids.size(), 4u);
}

// Rank 1 (node 0) leads dp group {1,3}. Node 1's two workers ask as one request: rank 2, whose
// groups (tp {2,3}, dp {0,2}, the world) are led by ranks that asked, is answered while rank 1 is
// late — the coordinator answers the node's request in part — and rank 3, in rank 1's dp group,
// waits for it. (On a slow machine the agent's 20 ms batch window may close between the two
// asks, and rank 2's request goes alone; the partial answer is then not needed: the counter is
// checked by the agent's and the coordinator's unit tests.)
TEST_F(MeshViewsTest, LateRankDelaysOnlyTheWorkersOfItsGroups_NotTheirWholeNode) {
  for (int r : {0, 2, 3}) ASSERT_TRUE(workers_[r]->WriteLine("init 2,2 dp,tp").ok());
  std::map<int, json> answers;
  for (int r : {0, 2}) {
    answers[r] = Read(r);
    ASSERT_TRUE(answers[r]["ok"]) << answers[r];
  }
  EXPECT_FALSE(workers_[3]->ReadLine(absl::Milliseconds(200)).ok());
  ASSERT_TRUE(workers_[1]->WriteLine("init 2,2 dp,tp").ok());
  for (int r : {1, 3}) answers[r] = Read(r);
  const std::map<std::string, std::string> ids = Ids(answers);
  EXPECT_EQ(ids.size(), 4u);
}

// One pipeline stage as its own mesh (ranks 2 and 3 of the world, a rank table): the ranks outside
// get a mesh with no coordinate and no groups, without waiting for anyone; the stage's ranks share
// its group. Then a permuted table [[3,1],[0,2]] over (a, b): PyTorch's groups, led by their first
// members.
TEST_F(MeshViewsTest, SubsetMesh_OutsideRanksIdle_PermutedTableGroupsArePyTorchs) {
  for (int r : {0, 1}) {
    ASSERT_TRUE(workers_[r]->WriteLine("init_ranks 2 2,3 stage").ok());
    const json j = Read(r);
    ASSERT_TRUE(j["ok"]) << j;
    EXPECT_TRUE(j["coordinate"].is_null()) << j;
    EXPECT_TRUE(j["groups"].empty()) << j;
  }
  const std::map<int, json> stage = All("init_ranks 2 2,3 stage", {2, 3});
  const std::map<std::string, std::string> stage_ids = Ids(stage);
  ASSERT_EQ(stage_ids.size(), 1u);
  EXPECT_EQ(stage.at(2)["groups"][0]["ranks"], json({2, 3}));

  const std::map<int, json> table = All("init_ranks 2,2 3,1,0,2 a,b");
  Ids(table);
  // a (dim 0): [3,0] and [1,2]; b (dim 1): [3,1] and [0,2].
  const std::map<int, std::pair<std::vector<int>, std::vector<int>>> want = {
      {0, {{3, 0}, {0, 2}}}, {1, {{1, 2}, {3, 1}}}, {2, {{1, 2}, {0, 2}}}, {3, {{3, 0}, {3, 1}}}};
  for (const auto& [rank, groups] : want) {
    ASSERT_TRUE(table.at(rank)["ok"]) << table.at(rank);
    EXPECT_EQ(table.at(rank)["groups"][0]["ranks"], json(groups.first)) << rank;
    EXPECT_EQ(table.at(rank)["groups"][1]["ranks"], json(groups.second)) << rank;
  }
}

}  // namespace
}  // namespace meshd
