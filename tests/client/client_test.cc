// libmeshd_client against a real `meshd standalone` process: options and their errors, attach,
// meshes and group ids, communicators' refusal without a GPU, the end of a generation, the C ABI.
#include "meshd/client.h"

#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "meshd/client_c.h"
#include "tests/support/files.h"
#include "tests/support/nccl.h"
#include "tests/support/run_command.h"
#include "tests/support/standalone.h"

namespace meshd {
namespace {

using ::testing::HasSubstr;

// Client::Attach on a thread of its own, interruptible; joined (interrupted first if need be)
// when it goes.
class BackgroundAttach {
 public:
  explicit BackgroundAttach(ClientOptions o) {
    o.interrupter = interrupter_;
    thread_ = std::thread([this, o = std::move(o)] {
      result_ = Client::Attach(o);
      done_.Notify();
    });
  }
  ~BackgroundAttach() { Result(); }
  bool Done(absl::Duration within) { return done_.WaitForNotificationWithTimeout(within); }
  // Interrupts it until it returned; its result.
  const absl::StatusOr<std::unique_ptr<Client>>& Result() {
    while (!Done(absl::Milliseconds(20))) interrupter_->Interrupt();
    if (thread_.joinable()) thread_.join();
    return result_;
  }

 private:
  std::shared_ptr<Interrupter> interrupter_ = std::make_shared<Interrupter>();
  absl::Notification done_;
  absl::StatusOr<std::unique_ptr<Client>> result_;
  std::thread thread_;
};

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* v :
         {"MESHD_SOCKET", "MESHD_JOB", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MESHD_NNODES",
          "MESHD_RANKS_PER_ID"}) {
      unsetenv(v);
    }
    ASSERT_NO_FATAL_FAILURE(daemon_.Start(MESHD_PATH, 2));
  }
  ClientOptions Options(int local_rank = 0, int local_world = 1) {
    ClientOptions o;
    o.socket = daemon_.socket;
    o.job = "job";
    o.local_rank = local_rank;
    o.local_world = local_world;
    o.timeout = absl::Seconds(20);
    return o;
  }
  testing::Standalone daemon_;
};

TEST_F(ClientTest, Attach_MissingOptions_InvalidArgumentNamingTheVariable) {
  ClientOptions o = Options();
  o.job = "";
  auto c = Client::Attach(o);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("MESHD_JOB"));
  o = Options();
  o.local_rank = -1;
  EXPECT_THAT(std::string(Client::Attach(o).status().message()), HasSubstr("LOCAL_RANK"));
  setenv("LOCAL_RANK", "zero", 1);  // set, but not a number: said so, not "no local rank"
  EXPECT_THAT(std::string(Client::Attach(o).status().message()),
              HasSubstr("LOCAL_RANK='zero' is not a local rank"));
  unsetenv("LOCAL_RANK");
  setenv("MESHD_NNODES", "x:y", 1);
  EXPECT_EQ(Client::Attach(Options()).status().code(), absl::StatusCode::kInvalidArgument);
  unsetenv("MESHD_NNODES");
  setenv("MESHD_RANKS_PER_ID", "-3", 1);
  c = Client::Attach(Options());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("MESHD_RANKS_PER_ID"));
}

TEST_F(ClientTest, Store_TcpStoreSemantics) {
  auto c = Client::Attach(Options());
  ASSERT_TRUE(c.ok()) << c.status();
  Client& client = **c;
  const absl::Duration t = absl::Seconds(10);
  ASSERT_TRUE(client.KeySet("a", "1", t).ok());
  EXPECT_EQ(*client.KeyGet("a", t), "1");
  EXPECT_EQ(*client.KeyAdd("n", 2, t), 2);
  EXPECT_EQ(*client.KeyAdd("n", -5, t), -3);
  EXPECT_EQ(client.KeyAdd("a", 1, t).status().code(), absl::StatusCode::kOk);  // "1" counts
  // compare_set as TCPStore: absent + expected "" sets; absent + other expected answers expected.
  EXPECT_EQ(*client.KeyCompareSet("c", "", "first", t), "first");
  EXPECT_EQ(*client.KeyCompareSet("d", "x", "y", t), "x");
  EXPECT_FALSE(*client.KeyCheck({"d"}, t));
  EXPECT_EQ(*client.KeyCompareSet("c", "nope", "second", t), "first");
  EXPECT_EQ(*client.KeyCompareSet("c", "first", "second", t), "second");
  ASSERT_TRUE(client.KeySet("empty", "", t).ok());
  EXPECT_EQ(*client.KeyCompareSet("empty", "", "filled", t), "filled");
  EXPECT_TRUE(*client.KeyCheck({"a", "c"}, t));
  EXPECT_EQ(*client.KeyCount(t), 4);  // a, n, c, empty
  EXPECT_TRUE(*client.KeyDelete("a", t));
  EXPECT_FALSE(*client.KeyDelete("a", t));
  EXPECT_EQ(*client.KeyCount(t), 3);
  ASSERT_TRUE(client.KeyWait({"n", "c"}, t).ok());
  // The largest value travels both ways (through the agent and the coordinator).
  const std::string largest(4 << 20, 'v');
  ASSERT_TRUE(client.KeySet("large", largest, t).ok());
  absl::StatusOr<std::string> back = client.KeyGet("large", t);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->size(), largest.size());
  EXPECT_EQ(client.KeySet("larger", largest + "v", t).code(), absl::StatusCode::kInvalidArgument);

  // A wait that nobody answers ends at its timeout, naming the key.
  const absl::Status late = client.KeyGet("never", absl::Milliseconds(300)).status();
  EXPECT_EQ(late.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(late.message()), HasSubstr("'never'"));
  const absl::Status wait = client.KeyWait({"n", "never"}, absl::Milliseconds(300));
  EXPECT_EQ(wait.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(client.KeySet("", "v", t).code(), absl::StatusCode::kInvalidArgument);
}

// What the protocol refuses is refused by the client before anything is sent, with the limit in
// the message; waits and checks of more keys than one call names work as TCPStore's.
TEST_F(ClientTest, Store_LimitsCheckedFirst_ManyKeysInParts) {
  auto c = Client::Attach(Options());
  ASSERT_TRUE(c.ok()) << c.status();
  Client& client = **c;
  const absl::Duration t = absl::Seconds(10);
  const std::string too_large((4 << 20) + 1, 'v');
  for (const absl::Status& s :
       {client.KeySet("k", too_large, t),
        client.KeyCompareSet("k", "", too_large, t).status(),
        client.KeyCompareSet("k", too_large, "v", t).status(),
        client.KeySet("k", std::string(64 << 20, 'v'), t)}) {  // past gRPC's message limit too
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr("larger than the limit of 4194304"));
    EXPECT_THAT(std::string(s.message()), HasSubstr("key 'k'"));
  }
  EXPECT_FALSE(*client.KeyCheck({"k"}, t));  // nothing was stored
  const absl::Status not_text = client.KeySet("bad\xff", "v", t);
  EXPECT_EQ(not_text.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(not_text.message()), HasSubstr("not UTF-8"));
  EXPECT_EQ(client.KeyGet(std::string(1025, 'k'), t).status().code(),
            absl::StatusCode::kInvalidArgument);

  // TCPStore: no keys are all set at once.
  EXPECT_TRUE(client.KeyWait({}, t).ok());
  EXPECT_TRUE(*client.KeyCheck({}, t));
  // 2,500 keys: three calls' worth.
  std::vector<std::string> keys;
  for (int i = 0; i < 2500; ++i) keys.push_back(absl::StrCat("rank", i));
  EXPECT_FALSE(*client.KeyCheck(keys, t));
  for (size_t i = 0; i + 1 < keys.size(); ++i) ASSERT_TRUE(client.KeySet(keys[i], "1", t).ok());
  EXPECT_FALSE(*client.KeyCheck(keys, t));  // the last is missing, in the last part
  const absl::Status late = client.KeyWait(keys, absl::Milliseconds(300));
  EXPECT_EQ(late.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(late.message()), HasSubstr("'rank2048'"));  // the part it waited in
  ASSERT_TRUE(client.KeySet(keys.back(), "1", t).ok());
  EXPECT_TRUE(*client.KeyCheck(keys, t));
  EXPECT_TRUE(client.KeyWait(keys, t).ok());
}

TEST_F(ClientTest, Store_GetWaitsForAnotherWorkersSet) {
  absl::StatusOr<std::unique_ptr<Client>> other;
  std::thread t([&] { other = Client::Attach(Options(1, 2)); });
  auto c = Client::Attach(Options(0, 2));
  t.join();
  ASSERT_TRUE(c.ok() && other.ok());
  absl::StatusOr<std::string> got;
  std::thread getter([&] { got = (*c)->KeyGet("id", absl::Seconds(20)); });
  ASSERT_TRUE((*other)->KeySet("id", std::string(128, '\x01'), absl::Seconds(10)).ok());
  getter.join();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, std::string(128, '\x01'));
}

TEST_F(ClientTest, Interrupter_EndsABlockingCallWithCancelled) {
  ClientOptions o = Options();
  o.interrupter = std::make_shared<Interrupter>();
  auto c = Client::Attach(o);
  ASSERT_TRUE(c.ok()) << c.status();
  absl::Notification done;
  absl::StatusOr<std::string> got;
  std::thread getter([&] {
    got = (*c)->KeyGet("never", absl::Seconds(60));
    done.Notify();
  });
  // Interrupt until the call has ended: a call not yet in flight is not affected.
  while (!done.WaitForNotificationWithTimeout(absl::Milliseconds(20))) o.interrupter->Interrupt();
  getter.join();
  EXPECT_EQ(got.status().code(), absl::StatusCode::kCancelled);
  // The client still works.
  EXPECT_TRUE((*c)->KeySet("k", "v", absl::Seconds(10)).ok());
}

TEST_F(ClientTest, Interrupter_EndsAnAttachThatWaitsForTheRound) {
  {
    BackgroundAttach first(Options(0, 2));  // local rank 1 never comes
    EXPECT_EQ(first.Result().status().code(), absl::StatusCode::kCancelled);
  }
  // The same local rank attaches again at once (no ALREADY_EXISTS), whether or not the agent has
  // seen the cancelled call go yet: a new attach of the same process takes its waiting place.
  absl::StatusOr<std::unique_ptr<Client>> other;
  std::thread second([&] { other = Client::Attach(Options(1, 2)); });
  auto again = Client::Attach(Options(0, 2));
  second.join();
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_TRUE(other.ok()) << other.status();
}

// Two processes ask for one local rank: whichever comes second is refused ALREADY_EXISTS, naming
// the rank (a new attach of the same process would take the place: Interrupter_EndsAnAttach...).
TEST_F(ClientTest, Attach_LocalRankOfAnotherProcess_AlreadyExists) {
  const std::string log = absl::StrCat(::testing::TempDir(), "churn_worker_", getpid(), ".err");
  auto other = process::Subprocess::Start({CHURN_WORKER_PATH, "--socket", daemon_.socket, "--job",
                                           "job", "--local-rank", "0", "--local-world", "2"},
                                          log);
  ASSERT_TRUE(other.ok()) << other.status();
  BackgroundAttach attach(Options(0, 2));  // local rank 1 never comes
  absl::StatusOr<int> other_exit = absl::UnknownError("not yet");
  bool mine_returned = false;
  while (!(mine_returned = attach.Done(absl::Milliseconds(10)))) {
    other_exit = (*other)->Wait(absl::ZeroDuration());
    if (other_exit.ok()) break;
  }
  if (mine_returned) {  // this process came second
    const absl::Status s = attach.Result().status();
    EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists) << s;
    EXPECT_THAT(std::string(s.message()),
                HasSubstr("local rank 0 of job 'job' is already attached"));
    (*other)->Signal(SIGKILL);
  } else {  // the other one did: it failed, and this one still waits
    EXPECT_EQ(*other_exit, 1);
    const std::string err = testing::ReadFile(log);
    EXPECT_THAT(err, HasSubstr("ALREADY_EXISTS"));
    EXPECT_THAT(err, HasSubstr("local rank 0 of job 'job' is already attached"));
    EXPECT_EQ(attach.Result().status().code(), absl::StatusCode::kCancelled);
  }
  std::remove(log.c_str());
}

TEST_F(ClientTest, InitDeviceMesh_SpecOnly_NoIdsThenIdsOnDemand) {
  auto c = Client::Attach(Options());
  ASSERT_TRUE(c.ok()) << c.status();
  auto mesh = (*c)->InitDeviceMesh({1, 1}, {"dp", "tp"}, "", MeshIds::kNone);
  ASSERT_TRUE(mesh.ok()) << mesh.status();  // works without NCCL: nothing is minted
  EXPECT_EQ(*mesh->DimIndex(-1), 1);
  EXPECT_EQ(*mesh->DimIndex(std::string("dp")), 0);
  EXPECT_EQ(mesh->DimIndex(2).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(mesh->DimIndex(std::string("pp")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*mesh->all_group_ranks(0), std::vector<std::vector<int64_t>>{{0}});
  auto again = mesh->Slice({"dp", "tp"});
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(*again == *mesh);
  EXPECT_FALSE(*mesh->Flatten() == *mesh);
  MESHD_SKIP_WITHOUT_NCCL();
  auto groups = (*c)->Groups(*mesh);
  ASSERT_TRUE(groups.ok()) << groups.status();
  ASSERT_EQ(groups->size(), 2u);
  EXPECT_EQ((*groups)[0].ids.size(), 1u);
}

TEST_F(ClientTest, Attach_NoAgent_Unavailable) {
  ClientOptions o = Options();
  o.socket = "/nonexistent/agent.sock";
  auto c = Client::Attach(o);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("is meshd running"));
}

TEST_F(ClientTest, Attach_FromEnvironment_TwoLocalWorkers) {
  setenv("MESHD_SOCKET", daemon_.socket.c_str(), 1);
  setenv("MESHD_JOB", "env-job", 1);
  setenv("LOCAL_WORLD_SIZE", "2", 1);
  absl::StatusOr<std::unique_ptr<Client>> other;
  std::thread t([&] {
    ClientOptions o;
    o.local_rank = 1;
    other = Client::Attach(o);
  });
  setenv("LOCAL_RANK", "0", 1);
  auto c = Client::Attach(ClientOptions());
  t.join();
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ((*c)->placement().world_size, 2);
  EXPECT_EQ((*other)->placement().rank, 1);
  EXPECT_TRUE((*other)->placement().gpu_simulated);
  EXPECT_EQ((*other)->placement().gpu_uuid, "SIM-test-node-1");
}

TEST_F(ClientTest, RanksPerId_OneIdPerChunkMintedByItsLeader_SameOnEveryRank) {
  MESHD_SKIP_WITHOUT_NCCL();
  std::vector<std::vector<NcclUniqueId>> ids(2);
  auto rank = [&](int r) {
    ClientOptions o = Options(r, 2);
    o.ranks_per_id = 1;  // a 2-member group gets 2 ids, one minted by each member
    auto c = Client::Attach(o);
    ASSERT_TRUE(c.ok()) << c.status();
    auto mesh = (*c)->InitDeviceMesh({2}, {"dp"});
    ASSERT_TRUE(mesh.ok()) << mesh.status();
    auto group = (*c)->GroupOf(*mesh, 0);
    ASSERT_TRUE(group.ok()) << group.status();
    ids[r] = group->ids;
  };
  std::thread t(rank, 1);
  rank(0);
  t.join();
  ASSERT_EQ(ids[0].size(), 2u);
  EXPECT_EQ(ids[0], ids[1]);
  EXPECT_NE(ids[0][0], ids[0][1]);
}

TEST_F(ClientTest, Mesh_GroupsWithIds_MathsErrorsMatchPlan) {
  MESHD_SKIP_WITHOUT_NCCL();
  auto c = Client::Attach(Options());
  ASSERT_TRUE(c.ok()) << c.status();
  auto mesh = (*c)->InitDeviceMesh({1, 1}, {"dp", "tp"});
  ASSERT_TRUE(mesh.ok()) << mesh.status();
  EXPECT_EQ(mesh->key(), "#0");
  EXPECT_EQ(mesh->coordinate(), (std::vector<int64_t>{0, 0}));
  auto groups = (*c)->Groups(*mesh);
  ASSERT_TRUE(groups.ok()) << groups.status();
  ASSERT_EQ(groups->size(), 2u);
  // A size-1 dim's groups are the single ranks whatever the dim: one group, one key, one id.
  EXPECT_EQ((*groups)[1].key, "#0/():()/0");
  EXPECT_EQ((*groups)[0].key, (*groups)[1].key);
  ASSERT_EQ((*groups)[1].ids.size(), 1u);
  EXPECT_NE((*groups)[1].ids[0], NcclUniqueId{});  // minted by the real ncclGetUniqueId
  EXPECT_EQ((*groups)[0].ids[0], (*groups)[1].ids[0]);
  EXPECT_EQ((*c)->GroupOf(*mesh, 5).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(mesh->Slice({"pp"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(mesh->Slice({"tp", "dp"}).ok());  // size-1 dims are order-free, as in PyTorch
  EXPECT_EQ(mesh->Unflatten(-1, {1}, {"x"}).status().code(), absl::StatusCode::kInvalidArgument);
  auto flat = mesh->Flatten();
  ASSERT_TRUE(flat.ok());
  auto flat_group = (*c)->GroupOf(*flat, 0);
  ASSERT_TRUE(flat_group.ok()) << flat_group.status();
  EXPECT_EQ(flat_group->dims, (std::vector<std::string>{"dp_tp"}));
  // get_group's dims: a name, a negative index, the root's flattened name (from the root).
  auto by_name = (*c)->GroupOf(*mesh, "tp");
  auto by_negative = (*c)->GroupOf(*mesh, -1);
  auto by_flat_name = (*c)->GroupOf(*mesh, "dp_tp");
  ASSERT_TRUE(by_name.ok() && by_negative.ok() && by_flat_name.ok())
      << by_name.status() << by_negative.status() << by_flat_name.status();
  EXPECT_EQ(by_name->key, (*groups)[1].key);
  EXPECT_EQ(by_negative->key, (*groups)[1].key);
  EXPECT_EQ(by_flat_name->key, flat_group->key);
  EXPECT_EQ((*c)->GroupOf(*mesh, "xx").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*c)->GroupOf(*mesh, -3).status().code(), absl::StatusCode::kInvalidArgument);
  auto named = (*c)->InitDeviceMesh({1}, {"w"}, "world-mesh");
  ASSERT_TRUE(named.ok());
  EXPECT_EQ(named->key(), "world-mesh");
  // One name is one mesh: the same again is fine (its groups cached), another is refused here,
  // before its groups' keys could be found cached; names of meshd's own forms are refused.
  EXPECT_TRUE((*c)->InitDeviceMesh({1}, {"w"}, "world-mesh").ok());
  EXPECT_EQ((*c)->InitDeviceMesh({1}, {"v"}, "world-mesh").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*c)->InitDeviceMesh({1}, {"w"}, "#0").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ClientTest, Communicator_WithoutGpu_FailedPreconditionNeverAFake) {
  MESHD_SKIP_WITHOUT_NCCL();
  auto c = Client::Attach(Options());
  ASSERT_TRUE(c.ok());
  auto mesh = (*c)->InitDeviceMesh({1}, {"w"});
  ASSERT_TRUE(mesh.ok());
  auto g = (*c)->GroupOf(*mesh, 0);
  ASSERT_TRUE(g.ok());
  auto comm = (*c)->MakeCommunicator(*g);
  if (comm.ok()) GTEST_SKIP() << "this host has a GPU; tests/gpu covers it";
  EXPECT_EQ(comm.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(comm.status().message()), HasSubstr("GPU"));
}

TEST_F(ClientTest, LeaderWithoutNccl_FailsFastWithTheReason) {
  ClientOptions o = Options();
  o.nccl_library = "/nonexistent/libnccl.so.2";
  auto c = Client::Attach(o);
  ASSERT_TRUE(c.ok()) << c.status();
  const absl::Time start = absl::Now();
  auto mesh = (*c)->InitDeviceMesh({1}, {"w"});
  EXPECT_EQ(mesh.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(mesh.status().message()), HasSubstr("cannot load NCCL"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));  // an answer, not a wait for the deadline
}

TEST_F(ClientTest, GenerationEnd_CallbackAndAbortedCalls) {
  auto c = Client::Attach(Options());
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE((*c)->health().ok());
  absl::Notification ended;
  absl::Status why;
  (*c)->OnGenerationEnd([&](const absl::Status& s) {
    why = s;
    ended.Notify();
  });
  daemon_.process->Signal(SIGTERM);  // the daemon goes: the generation ends (shutdown)
  ASSERT_TRUE(ended.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(why.code(), absl::StatusCode::kAborted);
  EXPECT_THAT(std::string(why.message()), HasSubstr("REASON_SHUTDOWN"));
  EXPECT_EQ((*c)->InitDeviceMesh({1}, {"w"}).status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ((*c)->health().code(), absl::StatusCode::kAborted);
}

TEST_F(ClientTest, CAbi_AttachMeshGroup) {
  MESHD_SKIP_WITHOUT_NCCL();
  char err[256] = {};
  meshd_client* client = nullptr;
  ASSERT_EQ(meshd_attach(daemon_.socket.c_str(), "c-job", 0, 1, 1, 20000, &client, err, sizeof err),
            0)
      << err;
  EXPECT_EQ(meshd_rank(client), 0);
  EXPECT_EQ(meshd_world_size(client), 1);
  EXPECT_EQ(meshd_health(client, err, sizeof err), 0);
  const int64_t shape[] = {1};
  const char* names[] = {"w"};
  meshd_mesh* mesh = nullptr;
  ASSERT_EQ(meshd_init_device_mesh(client, shape, names, 1, nullptr, &mesh, err, sizeof err), 0)
      << err;
  int64_t ranks[4];
  size_t n = 0;
  int64_t group_rank = -1;
  uint8_t id[128] = {};
  ASSERT_EQ(meshd_mesh_group(client, mesh, 0, ranks, 4, &n, &group_rank, id, err, sizeof err), 0)
      << err;
  EXPECT_EQ(n, 1u);
  EXPECT_EQ(ranks[0], 0);
  EXPECT_EQ(group_rank, 0);
  EXPECT_EQ(meshd_mesh_group(client, mesh, 3, ranks, 4, &n, &group_rank, id, err, sizeof err), 3);
  EXPECT_THAT(std::string(err), HasSubstr("out of range"));
  meshd_mesh_free(mesh);
  meshd_detach(client);
  EXPECT_EQ(meshd_attach("/nonexistent.sock", "j", 0, 1, 1, 1000, &client, err, sizeof err), 14);
}

// meshd_mesh_group_ids: every id of a group (meshd_mesh_group gives the first), by index, by name
// and by a flattened name, the same on both members (issue 23).
TEST_F(ClientTest, CAbi_EveryIdOfAGroup) {
  MESHD_SKIP_WITHOUT_NCCL();
  setenv("MESHD_RANKS_PER_ID", "1", 1);  // a 2-member group gets 2 ids
  std::vector<std::vector<uint8_t>> ids(2), flat_ids(2);
  auto rank = [&](int r) {
    char err[256] = {};
    meshd_client* client = nullptr;
    ASSERT_EQ(meshd_attach(daemon_.socket.c_str(), "c-ids", r, 2, 1, 20000, &client, err,
                           sizeof err),
              0)
        << err;
    const int64_t shape[] = {1, 2};
    const char* names[] = {"pp", "dp"};
    meshd_mesh* mesh = nullptr;
    ASSERT_EQ(meshd_init_device_mesh(client, shape, names, 2, nullptr, &mesh, err, sizeof err), 0)
        << err;
    uint8_t buf[3 * 128] = {};
    size_t n = 0;
    ASSERT_EQ(meshd_mesh_group_ids(client, mesh, 1, nullptr, buf, 3, &n, err, sizeof err), 0)
        << err;
    ASSERT_EQ(n, 2u);
    ids[r].assign(buf, buf + 2 * 128);
    uint8_t by_name[2 * 128] = {};
    ASSERT_EQ(meshd_mesh_group_ids(client, mesh, 0, "dp", by_name, 2, &n, err, sizeof err), 0)
        << err;
    EXPECT_EQ(std::vector<uint8_t>(by_name, by_name + 256), ids[r]);
    // Capacity 1: the count still says 2.
    ASSERT_EQ(meshd_mesh_group_ids(client, mesh, -1, nullptr, by_name, 1, &n, err, sizeof err), 0);
    EXPECT_EQ(n, 2u);
    meshd_mesh* flat = nullptr;
    ASSERT_EQ(meshd_mesh_flatten(mesh, nullptr, &flat, err, sizeof err), 0) << err;
    ASSERT_EQ(meshd_mesh_group_ids(client, mesh, 0, "pp_dp", buf, 3, &n, err, sizeof err), 0)
        << err;
    ASSERT_EQ(n, 2u);
    flat_ids[r].assign(buf, buf + 2 * 128);
    EXPECT_EQ(meshd_mesh_group_ids(client, mesh, 2, nullptr, buf, 3, &n, err, sizeof err), 3);
    EXPECT_THAT(std::string(err), HasSubstr("out of range"));
    meshd_mesh_free(flat);
    meshd_mesh_free(mesh);
    meshd_detach(client);
  };
  std::thread t(rank, 1);
  rank(0);
  t.join();
  unsetenv("MESHD_RANKS_PER_ID");
  EXPECT_EQ(ids[0], ids[1]);
  EXPECT_EQ(flat_ids[0], flat_ids[1]);
  EXPECT_NE(std::vector<uint8_t>(ids[0].begin(), ids[0].begin() + 128),
            std::vector<uint8_t>(ids[0].begin() + 128, ids[0].end()));
}

// meshd_init_device_mesh_from_ranks (a permuted table over the job) and meshd_mesh_from_group (a
// group's own ids, no call), on 2 ranks (issue 23).
TEST_F(ClientTest, CAbi_MeshFromRanksAndFromGroup) {
  MESHD_SKIP_WITHOUT_NCCL();
  std::vector<std::vector<uint8_t>> ids(2), from_group_ids(2);
  auto rank = [&](int r) {
    char err[256] = {};
    meshd_client* client = nullptr;
    ASSERT_EQ(meshd_attach(daemon_.socket.c_str(), "c-table", r, 2, 1, 20000, &client, err,
                           sizeof err),
              0)
        << err;
    const int64_t shape[] = {2};
    const int64_t table[] = {1, 0};
    const char* names[] = {"x"};
    meshd_mesh* mesh = nullptr;
    ASSERT_EQ(meshd_init_device_mesh_from_ranks(client, shape, 1, table, 2, names, "t", &mesh, err,
                                                sizeof err),
              0)
        << err;
    int64_t coord[1] = {-1};
    size_t n = 0;
    ASSERT_EQ(meshd_mesh_coordinate(mesh, coord, 1, &n, err, sizeof err), 0);
    EXPECT_EQ(n, 1u);
    EXPECT_EQ(coord[0], 1 - r);  // [1, 0]: rank 0 is at 1
    uint8_t buf[128] = {};
    ASSERT_EQ(meshd_mesh_group_ids(client, mesh, 0, "x", buf, 1, &n, err, sizeof err), 0) << err;
    ids[r].assign(buf, buf + 128);
    meshd_mesh* g = nullptr;
    ASSERT_EQ(meshd_mesh_from_group(client, mesh, 0, "x", "grp", &g, err, sizeof err), 0) << err;
    char text[64];
    meshd_mesh_to_string(g, text, sizeof text);
    EXPECT_STREQ(text, "DeviceMesh((grp=2,), stride=(1,))");
    int64_t members[2] = {};
    ASSERT_EQ(meshd_mesh_group_ranks(g, 0, nullptr, members, 2, &n, nullptr, err, sizeof err), 0);
    EXPECT_EQ(members[0], 1);
    EXPECT_EQ(members[1], 0);
    ASSERT_EQ(meshd_mesh_group_ids(client, g, 0, nullptr, buf, 1, &n, err, sizeof err), 0) << err;
    from_group_ids[r].assign(buf, buf + 128);
    const int64_t dup[] = {1, 1};
    meshd_mesh* bad = nullptr;
    EXPECT_EQ(meshd_init_device_mesh_from_ranks(client, shape, 1, dup, 2, nullptr, nullptr, &bad,
                                                err, sizeof err),
              3);
    EXPECT_THAT(std::string(err), HasSubstr("appears twice"));
    EXPECT_EQ(meshd_init_device_mesh_from_ranks(client, shape, 1, table, 3, nullptr, nullptr, &bad,
                                                err, sizeof err),
              3);
    EXPECT_THAT(std::string(err), HasSubstr("the world's 2 ranks"));
    meshd_mesh_free(g);
    meshd_mesh_free(mesh);
    meshd_detach(client);
  };
  std::thread t(rank, 1);
  rank(0);
  t.join();
  EXPECT_EQ(ids[0], ids[1]);
  EXPECT_EQ(from_group_ids[0], ids[0]);  // the same group: the same id
  EXPECT_EQ(from_group_ids[1], ids[1]);
}

// The library exports its public API and nothing else: its copies of the protocol's messages, of
// gRPC and protobuf templates and of the mesh maths must not clash with (or be interposed by) the
// same names in a training process that brings its own.
TEST(ClientLibrary, ExportsOnlyThePublicApi) {
  const testing::CommandResult nm =
      testing::RunCommand(absl::StrCat("nm -D --defined-only -C ", MESHD_CLIENT_LIBRARY));
  ASSERT_EQ(nm.exit_code, 0) << nm.out;
  EXPECT_THAT(nm.out, HasSubstr("meshd::Client::Attach("));
  EXPECT_THAT(nm.out, HasSubstr("meshd::DeviceMesh::Slice("));
  EXPECT_THAT(nm.out, HasSubstr(" meshd_attach\n"));
  for (const char* internal :
       {"meshd::v1::", "meshd::layout::", "google::protobuf::", "grpc::", "absl::"}) {
    EXPECT_THAT(nm.out, ::testing::Not(HasSubstr(internal)));
  }
}

}  // namespace
}  // namespace meshd
