// Communicators through libmeshd_client against a real `meshd standalone`, on a host without a GPU:
// the arrival keys and the search for the ranks that never arrived (with real clients and the
// generation's real store), the mesh form's answer for a rank outside the mesh, option and C ABI
// errors, and that a communicator is refused (FAILED_PRECONDITION, never a fake) before anything
// is announced. What needs a GPU is in tests/gpu (label `gpu`).
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "client/src/arrivals.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "meshd/client.h"
#include "meshd/client_c.h"
#include "tests/support/nccl.h"
#include "tests/support/standalone.h"

namespace meshd {
namespace {

using client_internal::ArrivalKey;
using client_internal::FindMissing;
using client_internal::Missing;
using client_internal::NeverArrived;
using ::testing::HasSubstr;

class CommunicatorClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* v : {"MESHD_SOCKET", "MESHD_JOB", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                          "MESHD_NNODES", "MESHD_RANKS_PER_ID", "MESHD_ABORT_COMMUNICATORS"}) {
      unsetenv(v);
    }
    ASSERT_NO_FATAL_FAILURE(daemon_.Start(MESHD_PATH, 3));
  }
  ClientOptions Options(int local_rank, int local_world) {
    ClientOptions o;
    o.socket = daemon_.socket;
    o.job = "comm-job";
    o.local_rank = local_rank;
    o.local_world = local_world;
    o.timeout = absl::Seconds(20);
    return o;
  }
  // `n` clients of one job, attached together.
  std::vector<std::unique_ptr<Client>> AttachAll(int n) {
    std::vector<absl::StatusOr<std::unique_ptr<Client>>> got(n);
    std::vector<std::thread> threads;
    for (int i = 0; i < n; ++i)
      threads.emplace_back([&, i] { got[i] = Client::Attach(Options(i, n)); });
    for (auto& t : threads) t.join();
    std::vector<std::unique_ptr<Client>> out;
    for (auto& c : got) {
      EXPECT_TRUE(c.ok()) << c.status();
      if (c.ok()) out.push_back(*std::move(c));
    }
    return out;
  }
  testing::Standalone daemon_;
};

TEST_F(CommunicatorClientTest, ArrivalKeys_TheRanksThatNeverArrivedAreNamed) {
  std::vector<std::unique_ptr<Client>> c = AttachAll(3);
  ASSERT_EQ(c.size(), 3u);
  const std::string group = "#0/dp/0";
  auto key_of = [&](int64_t r) { return ArrivalKey("initrank", 1, group, r); };
  // Ranks 0 and 2 arrive, each through its own client; rank 1 never does.
  for (int r : {0, 2}) ASSERT_TRUE(c[r]->KeySet(key_of(r), "1", absl::Seconds(10)).ok());
  const Missing missing = FindMissing(*c[0], {0, 1, 2}, key_of, absl::Seconds(10));
  EXPECT_TRUE(missing.complete);
  EXPECT_EQ(missing.ranks, std::vector<int64_t>{1});
  EXPECT_EQ(NeverArrived(missing, 3), "rank 1 (1 of 3) never arrived");
  // Another attempt at the same group has keys of its own: nobody arrived at attempt 2 yet.
  auto attempt2 = [&](int64_t r) { return ArrivalKey("initrank", 2, group, r); };
  EXPECT_EQ(FindMissing(*c[1], {0, 1, 2}, attempt2, absl::Seconds(10)).ranks,
            (std::vector<int64_t>{0, 1, 2}));
  ASSERT_TRUE(c[1]->KeySet(key_of(1), "1", absl::Seconds(10)).ok());
  EXPECT_THAT(NeverArrived(FindMissing(*c[2], {0, 1, 2}, key_of, absl::Seconds(10)), 3),
              HasSubstr("all 3 members arrived"));
}

TEST_F(CommunicatorClientTest, ArrivalKeys_ManyMembersFewMissing_FoundByHalving) {
  std::vector<std::unique_ptr<Client>> c = AttachAll(1);
  ASSERT_EQ(c.size(), 1u);
  // A 3000-member group (three KeyCheck chunks) whose key is too long to keep: hashed keys.
  const std::string group(1500, 'g');
  auto key_of = [&](int64_t r) { return ArrivalKey("split", 7, group, r); };
  std::vector<int64_t> members;
  for (int64_t r = 0; r < 3000; ++r) {
    members.push_back(r);
    if (r == 5 || r == 1500 || r == 1501 || r == 2999) continue;
    ASSERT_LE(key_of(r).size(), client_internal::kMaxStoreKey);
    ASSERT_TRUE(c[0]->KeySet(key_of(r), "1", absl::Seconds(10)).ok()) << r;
  }
  const Missing missing = FindMissing(*c[0], members, key_of, absl::Seconds(10));
  EXPECT_TRUE(missing.complete);
  EXPECT_EQ(missing.ranks, (std::vector<int64_t>{5, 1500, 1501, 2999}));
  EXPECT_EQ(NeverArrived(missing, 3000), "ranks 5, 1500-1501, 2999 (4 of 3000) never arrived");
  // A small call budget still answers with what it found, and says it may not be all: 13 calls
  // reach rank 5 (one chunk, then halving 1024 down to one key).
  const Missing partial = FindMissing(*c[0], members, key_of, absl::Seconds(10), /*max_calls=*/14);
  EXPECT_FALSE(partial.complete);
  EXPECT_EQ(NeverArrived(partial, 3000), "at least rank 5 (1 of 3000) never arrived");
  EXPECT_THAT(NeverArrived(FindMissing(*c[0], members, key_of, absl::Seconds(10), 3), 3000),
              HasSubstr("stopped before it could tell"));
}

TEST_F(CommunicatorClientTest, WithoutAGpu_FailedPrecondition_NothingAnnounced) {
  MESHD_SKIP_WITHOUT_NCCL();
  std::vector<std::unique_ptr<Client>> c = AttachAll(1);
  ASSERT_EQ(c.size(), 1u);
  auto mesh = c[0]->InitDeviceMesh({1}, {"w"});
  ASSERT_TRUE(mesh.ok()) << mesh.status();
  auto group = c[0]->GroupOf(*mesh, 0);
  ASSERT_TRUE(group.ok()) << group.status();
  for (CommInit mode : {CommInit::kInitRank, CommInit::kScalable, CommInit::kSplit}) {
    auto comm = c[0]->MakeCommunicator(*group, mode);
    if (comm.ok()) GTEST_SKIP() << "this host has a GPU; tests/gpu covers it";
    EXPECT_EQ(comm.status().code(), absl::StatusCode::kFailedPrecondition) << comm.status();
    EXPECT_THAT(std::string(comm.status().message()), HasSubstr("GPU"));
  }
  EXPECT_EQ(c[0]->SplitNoColor().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(*c[0]->KeyCount(absl::Seconds(10)), 0);  // no arrival key was set
}

TEST_F(CommunicatorClientTest, BadOptions_InvalidArgumentBeforeNcclOrCuda) {
  MESHD_SKIP_WITHOUT_NCCL();
  std::vector<std::unique_ptr<Client>> c = AttachAll(1);
  ASSERT_EQ(c.size(), 1u);
  auto mesh = c[0]->InitDeviceMesh({1}, {"w"});
  ASSERT_TRUE(mesh.ok()) << mesh.status();
  auto group = c[0]->GroupOf(*mesh, 0);
  ASSERT_TRUE(group.ok());
  CommOptions o;
  o.min_ctas = 8;
  o.max_ctas = 2;
  auto comm = c[0]->MakeCommunicator(*group, o);
  EXPECT_EQ(comm.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(comm.status().message()), HasSubstr("min_ctas"));
  o = CommOptions();
  o.timeout = absl::Seconds(-1);
  EXPECT_EQ(c[0]->MakeCommunicator(*group, o).status().code(), absl::StatusCode::kInvalidArgument);
  Group no_ids = *group;
  no_ids.ids.clear();
  EXPECT_EQ(c[0]->MakeCommunicator(no_ids).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c[0]->MakeCommunicator(*mesh, 3).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c[0]->MakeCommunicator(*mesh, std::string("nope")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c[0]->MakeCommunicator(*mesh, std::string("w")).status().code(),
            absl::StatusCode::kFailedPrecondition);  // by name; no GPU here
}

TEST_F(CommunicatorClientTest, MeshSmallerThanTheWorld_ARankOutsideGetsNoCommunicator) {
  MESHD_SKIP_WITHOUT_NCCL();
  std::vector<std::unique_ptr<Client>> c = AttachAll(3);
  ASSERT_EQ(c.size(), 3u);
  // A 2-rank mesh in a 3-rank world: rank 2 is outside. Every rank asks (the exchange is
  // collective); rank 2 needs neither NCCL's init nor a GPU for kInitRank.
  std::vector<absl::StatusOr<std::shared_ptr<Communicator>>> got(3);
  std::vector<std::thread> threads;
  for (int r = 0; r < 3; ++r) {
    threads.emplace_back([&, r] {
      auto mesh = c[r]->InitDeviceMesh({2}, {"dp"});
      if (!mesh.ok()) {
        got[r] = mesh.status();
        return;
      }
      got[r] = c[r]->MakeCommunicator(*mesh, 0, CommInit::kInitRank);
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(got[2].ok()) << got[2].status();
  EXPECT_EQ(*got[2], nullptr);
  for (int r : {0, 1}) {
    if (got[r].ok()) GTEST_SKIP() << "this host has a GPU; tests/gpu covers it";
    EXPECT_EQ(got[r].status().code(), absl::StatusCode::kFailedPrecondition) << got[r].status();
  }
}

TEST_F(CommunicatorClientTest, AbortOption_FromTheEnvironment) {
  setenv("MESHD_ABORT_COMMUNICATORS", "maybe", 1);
  auto c = Client::Attach(Options(0, 1));
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("MESHD_ABORT_COMMUNICATORS"));
  setenv("MESHD_ABORT_COMMUNICATORS", "0", 1);
  c = Client::Attach(Options(0, 1));
  EXPECT_TRUE(c.ok()) << c.status();
  unsetenv("MESHD_ABORT_COMMUNICATORS");
}

TEST_F(CommunicatorClientTest, CAbi_CommunicatorErrorPaths) {
  char err[512] = {};
  meshd_comm_options o;
  meshd_comm_options_init(&o);
  EXPECT_EQ(o.struct_size, sizeof(meshd_comm_options));
  EXPECT_EQ(o.mode, MESHD_COMM_INIT_RANK);
  EXPECT_EQ(o.max_ctas, -1);
  EXPECT_EQ(o.net_name, nullptr);
  meshd_comm* comm = reinterpret_cast<meshd_comm*>(&o);  // must be overwritten or left alone
  EXPECT_EQ(meshd_comm_make(nullptr, nullptr, 0, nullptr, &o, &comm, err, sizeof err), 3);
  EXPECT_THAT(std::string(err), HasSubstr("required"));
  EXPECT_EQ(meshd_comm_abort(nullptr, err, sizeof err), 3);
  EXPECT_EQ(meshd_comm_status(nullptr, err, sizeof err), 3);
  EXPECT_EQ(meshd_comm_nccl(nullptr), nullptr);
  EXPECT_EQ(meshd_comm_size(nullptr), 0);
  meshd_comm_free(nullptr);
  EXPECT_EQ(meshd_comm_split_nocolor(nullptr, nullptr, err, sizeof err), 3);

  MESHD_SKIP_WITHOUT_NCCL();
  meshd_client* client = nullptr;
  ASSERT_EQ(
      meshd_attach(daemon_.socket.c_str(), "c-comm", 0, 1, 1, 20000, &client, err, sizeof err), 0)
      << err;
  const int64_t shape[] = {1};
  const char* names[] = {"w"};
  meshd_mesh* mesh = nullptr;
  ASSERT_EQ(meshd_init_device_mesh(client, shape, names, 1, nullptr, &mesh, err, sizeof err), 0)
      << err;
  meshd_comm_options bad = o;
  bad.struct_size = 0;  // not initialized
  EXPECT_EQ(meshd_comm_make(client, mesh, 0, nullptr, &bad, &comm, err, sizeof err), 3);
  EXPECT_THAT(std::string(err), HasSubstr("meshd_comm_options_init"));
  EXPECT_EQ(comm, nullptr);
  bad = o;
  bad.mode = 7;
  EXPECT_EQ(meshd_comm_make(client, mesh, 0, nullptr, &bad, &comm, err, sizeof err), 3);
  EXPECT_THAT(std::string(err), HasSubstr("mode 7"));
  bad = o;
  bad.min_ctas = 4;
  bad.max_ctas = 1;
  EXPECT_EQ(meshd_comm_make(client, mesh, 0, nullptr, &bad, &comm, err, sizeof err), 3);
  EXPECT_EQ(meshd_comm_make(client, mesh, 2, nullptr, &o, &comm, err, sizeof err), 3);
  EXPECT_THAT(std::string(err), HasSubstr("out of range"));
  EXPECT_EQ(meshd_comm_make(client, mesh, 0, "nope", &o, &comm, err, sizeof err), 3);
  EXPECT_THAT(std::string(err), HasSubstr("nope"));
  const int made = meshd_comm_make(client, mesh, 0, "w", nullptr, &comm, err, sizeof err);
  if (made == 0) {
    // A GPU here: the C handle works like the C++ one.
    EXPECT_NE(meshd_comm_nccl(comm), nullptr);
    EXPECT_EQ(meshd_comm_abort(comm, err, sizeof err), 0);
    EXPECT_EQ(meshd_comm_abort(comm, err, sizeof err), 0);
    EXPECT_EQ(meshd_comm_nccl(comm), nullptr);
    EXPECT_EQ(meshd_comm_status(comm, err, sizeof err), 10);
    meshd_comm_free(comm);
  } else {
    EXPECT_EQ(made, 9);  // FAILED_PRECONDITION: no GPU, never a fake
    EXPECT_THAT(std::string(err), HasSubstr("GPU"));
    EXPECT_EQ(comm, nullptr);
    EXPECT_EQ(meshd_comm_split_nocolor(client, nullptr, err, sizeof err), 9);
  }
  meshd_mesh_free(mesh);
  meshd_detach(client);
}

}  // namespace
}  // namespace meshd
