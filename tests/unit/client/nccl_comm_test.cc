// libmeshd_client's NCCL layer without a GPU: version codes and feature checks (against the real
// libnccl.so.2 where it is installed), the ncclConfig_t it builds per NCCL version, commName, the
// arrival-key helpers, and NcclComm's bookkeeping — non-blocking init polled to its deadline or a
// stop, abort once and only once, nothing after it, a split stopped through its parent — driven
// through a recording NcclRuntime (the layer's function table), and the CommRegistry's cache and
// abort-all. Labelled `unit`; the same code against real communicators is in tests/gpu.
#include "client/src/nccl_comm.h"

#include <atomic>
#include <climits>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "client/src/arrivals.h"
#include "client/src/comm_registry.h"
#include "client/src/nccl_runtime.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/nccl.h"

namespace meshd::client_internal {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// ---------------------------------------------------------------------------------------------
// A recording NCCL: what each call did, and scripted answers. One test at a time (gtest runs the
// tests of a binary in sequence), reset by the fixture.
struct Fake {
  int init_result = kNcclInProgress;  // what ncclCommInitRankConfig answers
  int polls_in_progress = 0;          // ncclCommGetAsyncError answers InProgress this often...
  int final_async = kNcclSuccess;     // ...then this
  int count = 1;                      // ncclCommCount
  std::vector<void*> aborted, destroyed;
  NcclConfigC last_config{};
  bool had_config = false;
  int inits = 0;
  // A split in flight: where NCCL will write the child, and the child it writes.
  ncclComm_t* split_out = nullptr;
  int split_color = 0;
  int stream_not_ready = INT_MAX;  // cudaStreamQuery answers NotReady this often
  int stream_destroys = 0;
};
Fake g;
int comm_a = 0, comm_child = 0, stream_a = 0;  // their addresses are the handles

int InitConfig(ncclComm_t* comm, int, NcclUniqueIdC, int, NcclConfigC* config) {
  ++g.inits;
  g.last_config = *config;
  g.had_config = true;
  if (g.init_result != kNcclSuccess && g.init_result != kNcclInProgress) {
    *comm = nullptr;  // as the real NCCL without a GPU: an error and no handle
    return g.init_result;
  }
  *comm = &comm_a;
  return g.init_result;
}
int InitRank(ncclComm_t* comm, int, NcclUniqueIdC, int) {
  ++g.inits;
  *comm = &comm_a;
  return kNcclSuccess;
}
int Scalable(ncclComm_t* comm, int, int, int, NcclUniqueIdC*, NcclConfigC* config) {
  ++g.inits;
  g.last_config = *config;
  *comm = &comm_a;
  return kNcclInProgress;
}
void FinishSplit() {
  if (g.split_out != nullptr) {
    __atomic_store_n(g.split_out, g.split_color == kNcclSplitNoColor ? nullptr : &comm_child,
                     __ATOMIC_RELEASE);
    g.split_out = nullptr;
  }
}
int Split(ncclComm_t, int color, int, ncclComm_t* out, NcclConfigC* config) {
  g.split_out = out;
  g.split_color = color;
  g.last_config = *config;
  return kNcclInProgress;
}
int AsyncError(ncclComm_t, int* async) {
  if (g.polls_in_progress > 0) {
    --g.polls_in_progress;
    *async = kNcclInProgress;
    return kNcclSuccess;
  }
  FinishSplit();
  *async = g.final_async;
  return kNcclSuccess;
}
int Abort(ncclComm_t comm) {
  FinishSplit();  // NCCL's abort joins the split's job, which hands the (failed) child out
  g.aborted.push_back(comm);
  return kNcclSuccess;
}
int Destroy(ncclComm_t comm) {
  g.destroyed.push_back(comm);
  return kNcclSuccess;
}
int Count(ncclComm_t, int* n) {
  *n = g.count;
  return kNcclSuccess;
}
int AllReduce(const void*, void*, size_t, int, int, ncclComm_t, cudaStream_t) {
  return kNcclSuccess;
}
const char* ErrorString(int) { return "fake error"; }

int StreamCreate(cudaStream_t* s) {
  *s = &stream_a;
  return 0;
}
int StreamQuery(cudaStream_t) {
  if (g.stream_not_ready > 0) {
    --g.stream_not_ready;
    return kCudaErrorNotReady;
  }
  return 0;
}
int StreamDestroy(cudaStream_t) {
  ++g.stream_destroys;
  return 0;
}
const char* CudaErrorString(int) { return "fake cuda error"; }

NcclRuntime FakeNccl(int version) {
  NcclRuntime rt;
  rt.library = "fake-libnccl.so.2";
  rt.version = version;
  rt.CommInitRank = InitRank;
  rt.CommAbort = Abort;
  rt.CommDestroy = Destroy;
  rt.CommGetAsyncError = AsyncError;
  rt.CommCount = Count;
  rt.AllReduce = AllReduce;
  rt.GetErrorString = ErrorString;
  if (version >= 21400) rt.CommInitRankConfig = InitConfig;
  if (version >= 21800) rt.CommSplit = Split;
  if (version >= 22300) rt.CommInitRankScalable = Scalable;
  return rt;
}

CudaRuntime FakeCuda() {
  CudaRuntime rt;
  rt.device_count = 1;
  rt.StreamCreate = StreamCreate;
  rt.StreamQuery = StreamQuery;
  rt.StreamDestroy = StreamDestroy;
  rt.GetErrorString = CudaErrorString;
  return rt;
}

class NcclCommTest : public ::testing::Test {
 protected:
  void SetUp() override { g = Fake(); }
  NcclRuntime nccl_ = FakeNccl(22809);
  CudaRuntime cuda_ = FakeCuda();
  const absl::Time far_ = absl::Now() + absl::Seconds(60);
};

// ---------------------------------------------------------------------------------------------
// Versions and features.

TEST(NcclVersion, CodesAndStringsFollowNcclsEncoding) {
  EXPECT_EQ(NcclVersionCode(2, 8, 4), 2804);  // the old encoding, up to 2.8
  EXPECT_EQ(NcclVersionCode(2, 9, 6), 20906);
  EXPECT_EQ(NcclVersionCode(2, 28, 9), 22809);
  EXPECT_LT(NcclVersionCode(2, 8, 99), NcclVersionCode(2, 9, 0));  // ordered across the change
  EXPECT_EQ(NcclVersionString(22809), "2.28.9");
  EXPECT_EQ(NcclVersionString(2804), "2.8.4");
  EXPECT_EQ(NcclFeatureVersion(NcclFeature::kScalableInit), 22300);
  EXPECT_EQ(NcclFeatureVersion(NcclFeature::kCommName), 22700);
  EXPECT_EQ(NcclFeatureVersion(NcclFeature::kNonBlockingInit), 21400);
}

TEST(NcclVersion, RequireNamesTheFeatureAndBothVersions) {
  const NcclRuntime old = FakeNccl(22105);
  EXPECT_FALSE(old.Has(NcclFeature::kScalableInit));
  EXPECT_TRUE(old.Has(NcclFeature::kSplit));
  const absl::Status s = old.Require(NcclFeature::kScalableInit, "CommInit::kScalable");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("CommInit::kScalable needs ncclCommInitRankScalable (NCCL >= 2.23); "
                        "fake-libnccl.so.2 is NCCL 2.21.5"));
  // A version new enough without the function (a stripped build) does not have it either.
  NcclRuntime stripped = FakeNccl(22809);
  stripped.CommSplit = nullptr;
  EXPECT_FALSE(stripped.Has(NcclFeature::kSplit));
  EXPECT_TRUE(FakeNccl(21700).Require(NcclFeature::kMaxCtas, "x").ok());
  EXPECT_FALSE(FakeNccl(21603).Has(NcclFeature::kMaxCtas));
}

TEST(NcclVersion, TheRealLibncclHere) {
  MESHD_SKIP_WITHOUT_NCCL();
  absl::StatusOr<const NcclRuntime*> rt = NcclRuntime::Load("libnccl.so.2");
  ASSERT_TRUE(rt.ok()) << rt.status();
  const NcclRuntime& nccl = **rt;
  ASSERT_GE(nccl.version, NcclVersionCode(2, 4, 0)) << NcclVersionString(nccl.version);
  EXPECT_NE(nccl.CommAbort, nullptr);
  EXPECT_NE(nccl.CommGetAsyncError, nullptr);
  // Every feature is there exactly when the version says so (NCCL keeps its functions).
  for (NcclFeature f : {NcclFeature::kNonBlockingInit, NcclFeature::kCgaClusterSize,
                        NcclFeature::kSplit, NcclFeature::kSplitShare, NcclFeature::kScalableInit,
                        NcclFeature::kTrafficClass, NcclFeature::kCommName}) {
    EXPECT_EQ(nccl.Has(f), nccl.version >= NcclFeatureVersion(f))
        << NcclFeatureName(f) << " on NCCL " << NcclVersionString(nccl.version);
  }
  // The same answer from the cache, and a real id.
  EXPECT_EQ(*NcclRuntime::Load("libnccl.so.2"), &nccl);
  absl::StatusOr<NcclUniqueId> id = nccl.MintId();
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_NE(*id, NcclUniqueId{});
}

TEST(NcclVersion, NotAnNccl_FailedPreconditionNamingWhatIsMissing) {
  absl::StatusOr<const NcclRuntime*> none = NcclRuntime::Load("/nonexistent/libnccl.so.2");
  EXPECT_EQ(none.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(none.status().message()), HasSubstr("MESHD_NCCL_LIBRARY"));
  absl::StatusOr<const NcclRuntime*> libz = NcclRuntime::Load("libz.so.1");
  EXPECT_EQ(libz.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(libz.status().message()), HasSubstr("lacks ncclGetVersion"));
}

// ---------------------------------------------------------------------------------------------
// ncclConfig_t per version.

TEST(BuildConfig, NonBlockingWithTheNameAndTheFieldsTheVersionKnows) {
  const std::string net = "IB", name = "job/#0/tp/0/tp/g1";
  CommOptions o;
  o.min_ctas = 2;
  o.max_ctas = 8;
  o.net_name = "IB";
  o.split_share = true;
  absl::StatusOr<NcclConfigC> c = BuildConfig(FakeNccl(22809), o, &net, &name);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->blocking, 0);
  EXPECT_EQ(c->minCTAs, 2);
  EXPECT_EQ(c->maxCTAs, 8);
  EXPECT_EQ(c->netName, net.c_str());
  EXPECT_EQ(c->splitShare, 1);
  EXPECT_EQ(c->commName, name.c_str());
  EXPECT_EQ(c->cgaClusterSize, INT_MIN);  // unset: NCCL's default
  EXPECT_EQ(c->magic, 0xcafebeefu);
  EXPECT_EQ(c->size, sizeof(NcclConfigC));
  // NCCL 2.26 has no commName: not set, and no error (a name is not worth refusing it for).
  c = BuildConfig(FakeNccl(22605), CommOptions(), &net, &name);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->commName, nullptr);
  EXPECT_EQ(c->blocking, 0);
}

TEST(BuildConfig, AFieldTheLoadedNcclLacks_FailedPreconditionNamingVersions) {
  const std::string s;
  CommOptions o;
  o.max_ctas = 4;
  absl::StatusOr<NcclConfigC> c = BuildConfig(FakeNccl(21603), o, &s, &s);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr("CommOptions::max_ctas needs ncclConfig_t.maxCTAs (NCCL >= 2.17)"));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("NCCL 2.16.3"));
  o = CommOptions();
  o.traffic_class = 1;
  EXPECT_THAT(std::string(BuildConfig(FakeNccl(22503), o, &s, &s).status().message()),
              HasSubstr("trafficClass (NCCL >= 2.26)"));
  // Before ncclCommInitRankConfig (2.14) there is no config at all.
  o = CommOptions();
  o.split_share = false;
  EXPECT_EQ(BuildConfig(FakeNccl(21304), o, &s, &s).status().code(),
            absl::StatusCode::kFailedPrecondition);
  c = BuildConfig(FakeNccl(21304), CommOptions(), &s, &s);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->blocking, INT_MIN);
}

TEST(BuildConfig, BadValues_InvalidArgument) {
  const std::string s;
  CommOptions o;
  o.min_ctas = 9;
  o.max_ctas = 8;
  EXPECT_EQ(BuildConfig(FakeNccl(22809), o, &s, &s).status().code(),
            absl::StatusCode::kInvalidArgument);
  o = CommOptions();
  o.cga_cluster_size = -2;
  EXPECT_EQ(BuildConfig(FakeNccl(22809), o, &s, &s).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// commName and the arrival keys.

TEST(CommName, JobKeyDimsGeneration_Bounded) {
  EXPECT_EQ(CommName("train", "#0/tp/1", {"tp"}, 3), "train/#0/tp/1/tp/g3");
  EXPECT_EQ(CommName("j", "m/(2,2):(2,1)/0", {"dp", "cp"}, 12), "j/m/(2,2):(2,1)/0/dp_cp/g12");
  // A long key becomes its hash; the result still names the job, the dims and the generation.
  const std::string key(600, 'k');
  const std::string hashed = CommName("train", key, {"tp"}, 7);
  EXPECT_LE(hashed.size(), kMaxCommName);
  EXPECT_EQ(hashed, "train/#" + StableHash(key) + "/tp/g7");
  EXPECT_EQ(CommName("train", key, {"tp"}, 7), hashed);  // the same on every rank
  EXPECT_NE(CommName("train", std::string(600, 'q'), {"tp"}, 7), hashed);
  // The longest job, a long key and very many dims: cut to the bound, the generation kept.
  const std::string worst =
      CommName(std::string(128, 'j'), key, std::vector<std::string>(100, "dim"), UINT64_MAX);
  EXPECT_EQ(worst.size(), kMaxCommName);
  EXPECT_THAT(worst, ::testing::EndsWith("/g18446744073709551615"));
}

TEST(StableHash, FnvOneA) {
  EXPECT_EQ(StableHash(""), "cbf29ce484222325");  // FNV-1a's offset basis
  EXPECT_EQ(StableHash("a"), "af63dc4c8601ec8c");
}

TEST(ArrivalKey, VerbatimWhenItFits_HashedElse_AlwaysWithinTheStoreLimit) {
  EXPECT_EQ(ArrivalKey("initrank", 1, "#0/tp/0", 5), "meshd/arrive/initrank/1/#0/tp/0/5");
  const std::string key(2000, 'x');
  const std::string hashed = ArrivalKey("split", 3, key, 8191);
  EXPECT_LE(hashed.size(), kMaxStoreKey);
  EXPECT_EQ(hashed, "meshd/arrive#/split/3/" + StableHash(key) + "/8191");
  // The longest key that stays verbatim, and one byte more.
  const std::string prefix = "meshd/arrive/scalable/12/", suffix = "/1";
  const std::string fits(kMaxStoreKey - prefix.size() - suffix.size(), 'f');
  EXPECT_EQ(ArrivalKey("scalable", 12, fits, 1).size(), kMaxStoreKey);
  EXPECT_THAT(ArrivalKey("scalable", 12, fits + "f", 1), ::testing::StartsWith("meshd/arrive#/"));
}

TEST(RankRanges, CompactAndCapped) {
  EXPECT_EQ(RankRanges({9, 3, 5, 6, 7, 12, 8}), "3, 5-9, 12");
  EXPECT_EQ(RankRanges({4}), "4");
  EXPECT_EQ(RankRanges({1, 1, 2}), "1-2");
  std::vector<int64_t> sparse;
  for (int i = 0; i < 40; ++i) sparse.push_back(i * 2);
  EXPECT_EQ(RankRanges(sparse, 3), "0, 2, 4 and 37 more");
  EXPECT_EQ(NeverArrived(Missing{{3, 5, 6}, true}, 16), "ranks 3, 5-6 (3 of 16) never arrived");
  EXPECT_EQ(NeverArrived(Missing{{1}, false}, 2), "at least rank 1 (1 of 2) never arrived");
  EXPECT_THAT(NeverArrived(Missing{{}, true}, 4), HasSubstr("all 4 members arrived"));
}

// ---------------------------------------------------------------------------------------------
// NcclComm.

TEST_F(NcclCommTest, InitPolledUntilReady_DestroyedOnce) {
  g.polls_in_progress = 3;
  {
    NcclComm comm(&nccl_, &cuda_);
    ASSERT_TRUE(comm.Configure(CommOptions(), "job/k/tp/g1").ok());
    ASSERT_TRUE(comm.CreateStream().ok());
    ASSERT_TRUE(comm.StartInitRank(2, 0, NcclUniqueIdC{}).ok());
    EXPECT_EQ(comm.handle(), nullptr);  // not before it is ready
    ASSERT_TRUE(comm.WaitReady(far_, nullptr).ok());
    EXPECT_EQ(comm.handle(), &comm_a);
    EXPECT_TRUE(comm.status().ok());
    EXPECT_EQ(g.last_config.blocking, 0);
    EXPECT_STREQ(g.last_config.commName, "job/k/tp/g1");
  }
  EXPECT_EQ(g.destroyed, std::vector<void*>{&comm_a});
  EXPECT_TRUE(g.aborted.empty());
  EXPECT_EQ(g.stream_destroys, 1);
}

TEST_F(NcclCommTest, Deadline_AbortedOnce_EveryLaterCallAborted_NoDestroy) {
  g.polls_in_progress = INT_MAX;  // a member never arrives
  {
    NcclComm comm(&nccl_, &cuda_);
    ASSERT_TRUE(comm.Configure(CommOptions(), "n").ok());
    ASSERT_TRUE(comm.CreateStream().ok());
    ASSERT_TRUE(comm.StartInitRank(2, 0, NcclUniqueIdC{}).ok());
    const absl::Status s = comm.WaitReady(absl::Now() + absl::Milliseconds(50), nullptr);
    EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded);
    EXPECT_EQ(g.aborted, std::vector<void*>{&comm_a});
    EXPECT_TRUE(comm.aborted());
    EXPECT_EQ(comm.handle(), nullptr);
    EXPECT_EQ(comm.status().code(), absl::StatusCode::kAborted);
    float x = 0;
    EXPECT_EQ(comm.AllReduceSum(&x, 1).code(), absl::StatusCode::kAborted);
    EXPECT_EQ(comm.WaitReady(far_, nullptr).code(), absl::StatusCode::kAborted);
    comm.Abort(absl::AbortedError("again"));
    comm.Abort(absl::AbortedError("and again"));
    EXPECT_EQ(g.aborted.size(), 1u);  // idempotent
  }
  EXPECT_EQ(g.aborted.size(), 1u);   // the destructor does not abort again...
  EXPECT_TRUE(g.destroyed.empty());  // ...nor destroy
}

TEST_F(NcclCommTest, StopCheck_EndsTheInitWithItsStatus) {
  g.polls_in_progress = INT_MAX;
  NcclComm comm(&nccl_, nullptr);
  ASSERT_TRUE(comm.Configure(CommOptions(), "n").ok());
  ASSERT_TRUE(comm.StartInitRank(2, 1, NcclUniqueIdC{}).ok());
  int polls = 0;
  const absl::Status s = comm.WaitReady(far_, [&]() -> absl::Status {
    return ++polls < 3 ? absl::OkStatus() : absl::AbortedError("generation 1 ended");
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted);
  EXPECT_THAT(std::string(s.message()), HasSubstr("generation 1 ended"));
  EXPECT_EQ(g.aborted.size(), 1u);
  EXPECT_EQ(comm.status().code(), absl::StatusCode::kAborted);
}

TEST_F(NcclCommTest, FailedInit_NoHandle_AbortIsIdempotentAndSafe) {
  g.init_result = 1;  // ncclUnhandledCudaError, no handle: what the real NCCL does without a GPU
  NcclComm comm(&nccl_, nullptr);
  ASSERT_TRUE(comm.Configure(CommOptions(), "n").ok());
  const absl::Status s = comm.StartInitRank(2, 0, NcclUniqueIdC{});
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(s.message()), HasSubstr("ncclCommInitRankConfig failed: NCCL error 1"));
  comm.Abort(absl::AbortedError("x"));
  comm.Abort(absl::AbortedError("y"));
  EXPECT_TRUE(g.aborted.empty());  // there was nothing to abort
  EXPECT_EQ(comm.status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(comm.WaitReady(far_, nullptr).code(), absl::StatusCode::kAborted);
}

TEST_F(NcclCommTest, TheRealNcclWithoutAGpu_InitFailsAndAbortIsIdempotent) {
  MESHD_SKIP_WITHOUT_NCCL();
  absl::StatusOr<const NcclRuntime*> real = NcclRuntime::Load("libnccl.so.2");
  ASSERT_TRUE(real.ok());
  absl::StatusOr<NcclUniqueId> id = (*real)->MintId();
  ASSERT_TRUE(id.ok());
  NcclUniqueIdC cid;
  std::memcpy(cid.internal, id->data(), 128);
  NcclComm comm(*real, nullptr);
  ASSERT_TRUE(comm.Configure(CommOptions(), "test/real/g0").ok());
  const absl::Status started = comm.StartInitRank(2, 0, cid);
  absl::Status s =
      started.ok() ? comm.WaitReady(absl::Now() + absl::Seconds(20), nullptr) : started;
  if (s.ok()) GTEST_SKIP() << "this host has a GPU and a peer came: tests/gpu covers it";
  EXPECT_NE(s.code(), absl::StatusCode::kOk);
  EXPECT_EQ(comm.handle(), nullptr);
  comm.Abort(absl::AbortedError("once"));
  comm.Abort(absl::AbortedError("twice"));  // ncclCommAbort is called at most once
  EXPECT_EQ(comm.status().code(), absl::StatusCode::kAborted);
}

TEST_F(NcclCommTest, InitRankBeforeNccl214_BlockingInitNoConfig) {
  const NcclRuntime old = FakeNccl(21304);
  NcclComm comm(&old, nullptr);
  ASSERT_TRUE(comm.Configure(CommOptions(), "n").ok());
  ASSERT_TRUE(comm.StartInitRank(2, 0, NcclUniqueIdC{}).ok());
  EXPECT_FALSE(g.had_config);
  EXPECT_EQ(g.inits, 1);
  ASSERT_TRUE(comm.WaitReady(far_, nullptr).ok());
  EXPECT_EQ(comm.handle(), &comm_a);
  EXPECT_EQ(comm.StartInitScalable(2, 0, {}).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(NcclCommTest, AbortFromAnotherThread_EndsAnAllReduceThatWaits) {
  NcclComm comm(&nccl_, &cuda_);
  ASSERT_TRUE(comm.Configure(CommOptions(), "n").ok());
  ASSERT_TRUE(comm.CreateStream().ok());
  ASSERT_TRUE(comm.StartInitRank(2, 0, NcclUniqueIdC{}).ok());
  ASSERT_TRUE(comm.WaitReady(far_, nullptr).ok());
  g.stream_not_ready = INT_MAX;  // the peer is gone: the kernel never finishes
  absl::Notification done;
  absl::Status result;
  std::thread t([&] {
    float x = 0;
    result = comm.AllReduceSum(&x, 1);
    done.Notify();
  });
  comm.Abort(absl::AbortedError("generation 2 ended (NODE_LEFT)"));
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  t.join();
  EXPECT_EQ(result.code(), absl::StatusCode::kAborted);
  EXPECT_THAT(std::string(result.message()), HasSubstr("NODE_LEFT"));
  EXPECT_EQ(g.aborted, std::vector<void*>{&comm_a});
}

TEST_F(NcclCommTest, AllReduce_WaitsForTheStream) {
  NcclComm comm(&nccl_, &cuda_);
  ASSERT_TRUE(comm.Configure(CommOptions(), "n").ok());
  ASSERT_TRUE(comm.CreateStream().ok());
  ASSERT_TRUE(comm.StartInitRank(1, 0, NcclUniqueIdC{}).ok());
  ASSERT_TRUE(comm.WaitReady(far_, nullptr).ok());
  g.stream_not_ready = 3;
  g.polls_in_progress = 2;  // still queueing it (a non-blocking communicator)
  float x = 0;
  EXPECT_TRUE(comm.AllReduceSum(&x, 1).ok());
  EXPECT_EQ(g.stream_not_ready, 0);
}

TEST_F(NcclCommTest, AsyncErrorAfterInit_StatusSaysIt_DestructorAbortsNotDestroys) {
  {
    NcclComm comm(&nccl_, nullptr);
    ASSERT_TRUE(comm.Configure(CommOptions(), "n").ok());
    ASSERT_TRUE(comm.StartInitRank(2, 0, NcclUniqueIdC{}).ok());
    ASSERT_TRUE(comm.WaitReady(far_, nullptr).ok());
    g.final_async = 6;  // ncclRemoteError: a peer failed
    EXPECT_EQ(comm.status().code(), absl::StatusCode::kInternal);
  }
  EXPECT_EQ(g.aborted, std::vector<void*>{&comm_a});
  EXPECT_TRUE(g.destroyed.empty());
}

TEST_F(NcclCommTest, Split_ChildHandedOutWhenTheParentSaysDone_NoColorGetsNone) {
  NcclComm world(&nccl_, nullptr);
  ASSERT_TRUE(world.Configure(CommOptions(), "w").ok());
  ASSERT_TRUE(world.StartInitRank(4, 0, NcclUniqueIdC{}).ok());
  ASSERT_TRUE(world.WaitReady(far_, nullptr).ok());
  {
    NcclComm member(&nccl_, nullptr);
    CommOptions o;
    o.split_share = true;
    ASSERT_TRUE(member.Configure(o, "job/#0/tp/1/tp/g1").ok());
    g.polls_in_progress = 2;
    ASSERT_TRUE(member.StartSplit(&world, 1, 0).ok());
    EXPECT_EQ(g.split_color, 1);
    EXPECT_EQ(g.last_config.splitShare, 1);
    EXPECT_EQ(g.last_config.blocking, 0);
    ASSERT_TRUE(member.WaitReady(far_, nullptr).ok());
    EXPECT_EQ(member.handle(), &comm_child);
  }
  EXPECT_EQ(g.destroyed, std::vector<void*>{&comm_child});
  NcclComm none(&nccl_, nullptr);
  ASSERT_TRUE(none.Configure(CommOptions(), "").ok());
  ASSERT_TRUE(none.StartSplit(&world, kNcclSplitNoColor, 0).ok());
  ASSERT_TRUE(none.WaitReady(far_, nullptr).ok());
  EXPECT_EQ(none.handle(), nullptr);
  EXPECT_FALSE(world.aborted());
}

TEST_F(NcclCommTest, SplitPastItsDeadline_AbortsTheParentAndTheHalfMadeChild) {
  NcclComm world(&nccl_, nullptr);
  ASSERT_TRUE(world.Configure(CommOptions(), "w").ok());
  ASSERT_TRUE(world.StartInitRank(4, 0, NcclUniqueIdC{}).ok());
  ASSERT_TRUE(world.WaitReady(far_, nullptr).ok());
  NcclComm member(&nccl_, nullptr);
  ASSERT_TRUE(member.Configure(CommOptions(), "m").ok());
  g.polls_in_progress = INT_MAX;  // a rank never splits
  ASSERT_TRUE(member.StartSplit(&world, 0, 0).ok());
  EXPECT_EQ(member.WaitReady(absl::Now() + absl::Milliseconds(30), nullptr).code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(world.aborted());
  // The parent first (NCCL's only way to stop a split), then the child its abort handed out.
  EXPECT_EQ(g.aborted, (std::vector<void*>{&comm_a, &comm_child}));
  EXPECT_EQ(member.handle(), nullptr);
  NcclComm later(&nccl_, nullptr);
  EXPECT_EQ(later.StartSplit(&world, 0, 0).code(), absl::StatusCode::kAborted);
}

TEST_F(NcclCommTest, SplitNeedsNccl218) {
  const NcclRuntime old = FakeNccl(21703);
  NcclComm world(&old, nullptr), member(&old, nullptr);
  const absl::Status s = member.StartSplit(&world, 0, 0);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("ncclCommSplit (NCCL >= 2.18)"));
}

// ---------------------------------------------------------------------------------------------
// CommRegistry.

struct Thing {
  int id = 0;
  std::atomic<int> aborts{0};
  absl::Status why;
};
CommRegistry<Thing> Registry() {
  return CommRegistry<Thing>(
      [](Thing& t, const absl::Status& why) {
        if (t.aborts.fetch_add(1) == 0) t.why = why;
      },
      [](const Thing& t) { return t.aborts.load() == 0; });
}

TEST(CommRegistry, SecondRequestGetsTheSameObject_AttemptsCount) {
  CommRegistry<Thing> r = Registry();
  const absl::Time far = absl::Now() + absl::Seconds(30);
  auto first = r.Acquire("split|k", far);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->cached, nullptr);
  EXPECT_EQ(first->attempt, 1);
  auto made = std::make_shared<Thing>();
  ASSERT_TRUE(r.Release("split|k", made).ok());
  auto second = r.Acquire("split|k", far);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->cached, made);  // the same object: no second communicator
  // Weak: once dropped (or aborted) the next request makes one again, as attempt 2.
  made.reset();
  second->cached.reset();
  auto third = r.Acquire("split|k", far);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->cached, nullptr);
  EXPECT_EQ(third->attempt, 2);
  auto again = std::make_shared<Thing>();
  ASSERT_TRUE(r.Release("split|k", again).ok());
  again->aborts = 1;  // aborted by its owner
  EXPECT_EQ(r.Acquire("split|k", far)->attempt, 3);
  // Other keys are other groups (or modes).
  EXPECT_EQ(r.Acquire("initrank|k", far)->attempt, 1);
}

TEST(CommRegistry, ConcurrentRequests_OneMaker) {
  CommRegistry<Thing> r = Registry();
  std::atomic<int> makes{0};
  std::vector<std::shared_ptr<Thing>> got(8);
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      auto l = r.Acquire("k", absl::Now() + absl::Seconds(30));
      ASSERT_TRUE(l.ok()) << l.status();
      if (l->cached) {
        got[i] = l->cached;
        return;
      }
      makes.fetch_add(1);
      got[i] = std::make_shared<Thing>();
      ASSERT_TRUE(r.Release("k", got[i]).ok());
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(makes.load(), 1);
  for (const auto& p : got) EXPECT_EQ(p, got[0]);
}

TEST(CommRegistry, AnotherMakerPastTheDeadline_DeadlineExceeded) {
  CommRegistry<Thing> r = Registry();
  ASSERT_TRUE(r.Acquire("k", absl::Now() + absl::Seconds(30)).ok());  // held, never released
  auto l = r.Acquire("k", absl::Now() + absl::Milliseconds(20));
  EXPECT_EQ(l.status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST(CommRegistry, AbortAll_LiveOnesOnce_LaterOnesAtOnce_WaitersTold) {
  CommRegistry<Thing> r = Registry();
  const absl::Time far = absl::Now() + absl::Seconds(30);
  auto cached = std::make_shared<Thing>();
  ASSERT_TRUE(r.Acquire("a", far).ok());
  ASSERT_TRUE(r.Release("a", cached).ok());
  auto world = std::make_shared<Thing>();
  ASSERT_TRUE(r.Track(world).ok());
  auto dropped = std::make_shared<Thing>();
  ASSERT_TRUE(r.Track(dropped).ok());
  dropped.reset();                        // gone: nothing to abort
  ASSERT_TRUE(r.Acquire("b", far).ok());  // being made while the generation ends
  EXPECT_EQ(r.live(), 2u);
  absl::Notification waiting_done;
  absl::Status waiter;
  std::thread t([&] {
    waiter = r.Acquire("b", far).status();  // waits for the maker of "b"
    waiting_done.Notify();
  });
  r.AbortAll(absl::AbortedError("generation 1 ended (NODE_LEFT of node 'n2')"));
  r.AbortAll(absl::AbortedError("again"));
  ASSERT_TRUE(waiting_done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  t.join();
  EXPECT_EQ(waiter.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(cached->aborts.load(), 1);
  EXPECT_EQ(world->aborts.load(), 1);
  EXPECT_THAT(std::string(cached->why.message()), HasSubstr("NODE_LEFT"));
  // The one being made is aborted as it is registered, and its maker told.
  auto late = std::make_shared<Thing>();
  EXPECT_EQ(r.Release("b", late).code(), absl::StatusCode::kAborted);
  EXPECT_EQ(late->aborts.load(), 1);
  auto later = std::make_shared<Thing>();
  EXPECT_EQ(r.Track(later).code(), absl::StatusCode::kAborted);
  EXPECT_EQ(later->aborts.load(), 1);
  EXPECT_EQ(r.Acquire("c", far).status().code(), absl::StatusCode::kAborted);
}

}  // namespace
}  // namespace meshd::client_internal
