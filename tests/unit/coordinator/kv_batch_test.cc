// KvStore::Batch: an agent's batch of its workers' store calls runs each as its own call would, in
// order, answers at once unless every operation waits, holds a waiting batch until one operation
// is satisfied, and keeps its answer within its bytes.
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "daemon/coordinator/kv_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meshd::coordinator {
namespace {

using ::testing::HasSubstr;
using Kind = KvOp::Kind;

KvOp Op(Kind kind, std::vector<std::string> keys, std::string value = "", int64_t delta = 0) {
  KvOp op;
  op.kind = kind;
  op.keys = std::move(keys);
  op.value = std::move(value);
  op.delta = delta;
  return op;
}
KvOp WaitingGet(const std::string& key) {
  KvOp op = Op(Kind::kGet, {key});
  op.wait = true;
  return op;
}

// Runs a batch; its answer once the completions ran (nullopt: still held).
class Batches {
 public:
  void Send(KvStore& kv, std::vector<KvOp> ops, absl::Time deadline = absl::InfiniteFuture()) {
    answer_.reset();
    kv.Batch(std::move(ops), deadline,
             [this](absl::StatusOr<std::vector<KvOpResult>> r) { answer_ = std::move(r); }, out_);
    Run();
  }
  void Run() {
    RunAll(out_);
  }
  Completions& out() { return out_; }
  const std::optional<absl::StatusOr<std::vector<KvOpResult>>>& answer() const { return answer_; }
  const std::vector<KvOpResult>& results() const { return **answer_; }

 private:
  Completions out_;
  std::optional<absl::StatusOr<std::vector<KvOpResult>>> answer_;
};

// GetJob's view: what the store holds, and the keys most waited for — held gets, waits (once per
// key) and held batches' operations — most operations first, then by key, at most as many as
// asked; none when none are asked for.
TEST(KvStoreView, KeysMostWaitedForFirst) {
  KvStore kv;
  Completions out;
  ASSERT_TRUE(kv.Set("set", "12345", out).ok());
  for (int i = 0; i < 3; ++i) {
    kv.Get("b", true, absl::InfiniteFuture(), [](absl::StatusOr<std::string>) {}, out);
  }
  kv.Wait({"a", "b"}, absl::InfiniteFuture(), [](absl::Status) {}, out);
  Batches held;
  held.Send(kv, {WaitingGet("a"), WaitingGet("a"), WaitingGet("c")});
  ASSERT_FALSE(held.answer().has_value());
  domain::StoreView v = kv.View(2);
  EXPECT_EQ(v.keys, 1u);
  EXPECT_EQ(v.bytes, kv.bytes());
  EXPECT_EQ(v.waiting, 3u + 1u + 3u);  // 3 gets, 1 wait, 3 held operations
  ASSERT_EQ(v.most_waited.size(), 2u);
  EXPECT_EQ(v.most_waited[0].key, "b");
  EXPECT_EQ(v.most_waited[0].waiting, 4u);  // 3 gets and the wait
  EXPECT_EQ(v.most_waited[1].key, "a");
  EXPECT_EQ(v.most_waited[1].waiting, 3u);  // the wait and the batch's two gets
  EXPECT_EQ(kv.View(8).most_waited.size(), 3u);  // and c
  EXPECT_TRUE(kv.View(0).most_waited.empty());
  EXPECT_EQ(kv.View(0).waiting, v.waiting);
  ASSERT_TRUE(kv.Set("b", "B", out).ok());
  RunAll(out);
  v = kv.View(8);
  ASSERT_EQ(v.most_waited.size(), 2u);  // b set: a (the wait, the batch) and c
  EXPECT_EQ(v.most_waited[0].key, "a");
}

// A recovered generation's "not set" answers say the restart lost the keys, in a batch too; the
// next generation's store (after FailAll) no longer does.
TEST(KvStoreRecovered, NotSetSaysWhy_UntilTheGenerationEnds) {
  KvStore kv;
  kv.MarkRecovered();
  Batches b;
  b.Send(kv, {Op(Kind::kGet, {"gone"})});
  ASSERT_TRUE(b.answer().has_value() && b.answer()->ok());
  EXPECT_EQ(b.results()[0].status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(b.results()[0].status.message()),
              ::testing::HasSubstr("keys set before the restart are lost"));
  Completions out;
  kv.FailAll(absl::AbortedError("ended"), out);
  RunAll(out);
  b.Send(kv, {Op(Kind::kGet, {"gone"})});
  EXPECT_EQ(std::string(b.results()[0].status.message()), "key 'gone' is not set");
}

TEST(KvBatch, OpsRunInOrder_EachAnsweredAsItsOwnCall_AnErrorIsItsOwn) {
  KvStore kv;
  Batches b;
  KvOp cas = Op(Kind::kCompareSet, {"leader"}, "rank0");  // expected absent
  KvOp get_missing = Op(Kind::kGet, {"missing"});
  b.Send(kv, {Op(Kind::kSet, {"word"}, "hello"), Op(Kind::kAdd, {"n"}, "", 2),
              Op(Kind::kAdd, {"n"}, "", 3), Op(Kind::kAdd, {"word"}, "", 1), cas, cas,
              Op(Kind::kGet, {"word"}), get_missing, Op(Kind::kCheck, {"word", "n"}),
              Op(Kind::kDelete, {"word"}), Op(Kind::kCount, {}), Op(Kind::kSet, {""}, "x")});
  ASSERT_TRUE(b.answer().has_value());
  ASSERT_TRUE(b.answer()->ok());
  const std::vector<KvOpResult>& r = b.results();
  ASSERT_EQ(r.size(), 12u);
  EXPECT_TRUE(r[0].status.ok());
  EXPECT_EQ(r[1].number, 2);
  EXPECT_EQ(r[2].number, 5);  // after the first add, as one call after another
  EXPECT_EQ(r[3].status.code(), absl::StatusCode::kInvalidArgument);  // "hello" is no counter
  EXPECT_THAT(r[3].status.message(), HasSubstr("not an integer"));
  EXPECT_TRUE(r[4].yes);  // swapped
  EXPECT_FALSE(r[5].yes);
  EXPECT_EQ(r[5].value, "rank0");
  EXPECT_TRUE(r[5].present);
  EXPECT_EQ(r[6].value, "hello");
  EXPECT_EQ(r[7].status.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(r[8].yes);
  EXPECT_TRUE(r[9].yes);
  EXPECT_EQ(r[10].number, 2);  // n and leader
  EXPECT_EQ(r[11].status.code(), absl::StatusCode::kInvalidArgument);  // the empty key alone
  for (const KvOpResult& each : r) EXPECT_FALSE(each.pending);
}

TEST(KvBatch, WaitsBesideOtherOps_AnsweredAtOnce_AfterTheOthers_UnsetOnesPending) {
  KvStore kv;
  Batches b;
  // The waits are looked at once the set ran, wherever they stand in the batch.
  b.Send(kv, {WaitingGet("a"), Op(Kind::kSet, {"a"}, "1"), WaitingGet("b"), Op(Kind::kWait, {"a"}),
              Op(Kind::kWait, {"a", "b"})});
  ASSERT_TRUE(b.answer().has_value() && b.answer()->ok());
  const std::vector<KvOpResult>& r = b.results();
  EXPECT_EQ(r[0].value, "1");
  EXPECT_FALSE(r[0].pending);
  EXPECT_TRUE(r[2].pending);
  EXPECT_FALSE(r[3].pending);
  EXPECT_TRUE(r[4].pending);
  EXPECT_EQ(kv.waiters(), 0u);  // nothing held
}

TEST(KvBatch, AllWaiting_HeldUntilOneIsSatisfied_ThenEverySatisfiedOneAnswered) {
  KvStore kv;
  Batches b;
  b.Send(kv, {WaitingGet("x"), Op(Kind::kWait, {"x", "y"}), WaitingGet("z"), WaitingGet("x")});
  EXPECT_FALSE(b.answer().has_value());
  EXPECT_EQ(kv.waiters(), 4u);  // each waiting operation counts
  Completions out;
  ASSERT_TRUE(kv.Set("y", "Y", out).ok());  // half of the wait: not satisfied yet
  b.out().insert(b.out().end(), out.begin(), out.end());
  b.Run();
  EXPECT_FALSE(b.answer().has_value());
  out.clear();
  ASSERT_TRUE(kv.Set("x", "X", out).ok());
  for (auto& f : out) f();
  ASSERT_TRUE(b.answer().has_value() && b.answer()->ok());
  const std::vector<KvOpResult>& r = b.results();
  EXPECT_EQ(r[0].value, "X");
  EXPECT_FALSE(r[1].pending);  // x and y are set now
  EXPECT_TRUE(r[2].pending);
  EXPECT_EQ(r[3].value, "X");
  EXPECT_EQ(kv.waiters(), 0u);
  out.clear();
  ASSERT_TRUE(kv.Set("z", "Z", out).ok());  // the answered batch is no longer woken
  EXPECT_TRUE(out.empty());
}

// A batch that sets several keys a held batch waits on answers it once, with all of them.
TEST(KvBatch, HeldBatchWokenByABatchOfSets_AnsweredWithEveryKeyItSet) {
  KvStore kv;
  Batches held, sets;
  held.Send(kv, {WaitingGet("a"), WaitingGet("b"), WaitingGet("c")});
  EXPECT_FALSE(held.answer().has_value());
  sets.Send(kv, {Op(Kind::kSet, {"a"}, "A"), Op(Kind::kSet, {"b"}, "B")});  // runs both's answers
  ASSERT_TRUE(held.answer().has_value() && held.answer()->ok());
  EXPECT_EQ(held.results()[0].value, "A");
  EXPECT_EQ(held.results()[1].value, "B");
  EXPECT_TRUE(held.results()[2].pending);
}

// A set and a delete of one key in one batch: its waiters see it set, as they would apart, and
// nothing is left of it.
TEST(KvBatch, SetThenDeleteInOneBatch_WaitersSeeTheSet_NothingLeft) {
  KvStore kv;
  Completions out;
  std::optional<absl::StatusOr<std::string>> single;
  kv.Get("a", true, absl::InfiniteFuture(),
         [&single](absl::StatusOr<std::string> v) { single = std::move(v); }, out);
  Batches held, both;
  held.Send(kv, {WaitingGet("a"), Op(Kind::kWait, {"a", "b"})});
  both.Send(kv, {Op(Kind::kSet, {"a"}, "v"), Op(Kind::kDelete, {"a"})});
  ASSERT_TRUE(single.has_value() && single->ok());
  EXPECT_EQ(**single, "v");
  ASSERT_TRUE(held.answer().has_value() && held.answer()->ok());
  EXPECT_EQ(held.results()[0].value, "v");
  EXPECT_TRUE(held.results()[1].pending);
  EXPECT_EQ(kv.Count(), 0);
  EXPECT_FALSE(kv.Check({"a"}));
  EXPECT_EQ(kv.bytes(), 0u);
  EXPECT_EQ(kv.waiters(), 0u);
}

// A held wait of several keys is satisfied once each was set, even if one went again meanwhile
// (as a KeyWait is).
TEST(KvBatch, HeldWait_KeySetThenDeleted_StillCountsAsSet) {
  KvStore kv;
  Batches held;
  held.Send(kv, {Op(Kind::kWait, {"a", "b"})});
  Completions out;
  ASSERT_TRUE(kv.Set("a", "1", out).ok());
  EXPECT_TRUE(kv.Delete("a"));
  ASSERT_TRUE(kv.Set("b", "2", out).ok());
  for (auto& f : out) f();
  ASSERT_TRUE(held.answer().has_value() && held.answer()->ok());
  EXPECT_FALSE(held.results()[0].pending);
  EXPECT_EQ(kv.waiters(), 0u);
}

TEST(KvBatch, HeldPastItsDeadline_DeadlineExceededNamingTheKeys) {
  KvStore kv;
  Batches b;
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  b.Send(kv, {WaitingGet("slow"), Op(Kind::kWait, {"late"})}, t0 + absl::Seconds(5));
  EXPECT_EQ(kv.ExpireWaits(t0, b.out()), t0 + absl::Seconds(5));
  b.Run();
  EXPECT_FALSE(b.answer().has_value());
  kv.ExpireWaits(t0 + absl::Seconds(5), b.out());
  b.Run();
  ASSERT_TRUE(b.answer().has_value());
  EXPECT_EQ(b.answer()->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(b.answer()->status().message(), HasSubstr("'late', 'slow'"));
  EXPECT_EQ(kv.waiters(), 0u);
  Completions out;
  ASSERT_TRUE(kv.Set("slow", "1", out).ok());
  EXPECT_TRUE(out.empty());
}

TEST(KvBatch, GenerationEnds_HeldBatchGetsTheStatus) {
  KvStore kv;
  Batches b;
  b.Send(kv, {WaitingGet("k")});
  kv.FailAll(absl::AbortedError("generation 1 ended"), b.out());
  b.Run();
  ASSERT_TRUE(b.answer().has_value());
  EXPECT_EQ(b.answer()->status().code(), absl::StatusCode::kAborted);
}

TEST(KvBatch, AnswerFull_LaterOpsPendingAndNotRun) {
  KvStore kv;
  Completions out;
  const std::string big(3 << 20, 'v');
  ASSERT_TRUE(kv.Set("a", big, out).ok());
  ASSERT_TRUE(kv.Set("b", big, out).ok());
  Batches b;
  b.Send(kv, {Op(Kind::kGet, {"a"}), Op(Kind::kGet, {"b"}), Op(Kind::kSet, {"c"}, "1")});
  ASSERT_TRUE(b.answer().has_value() && b.answer()->ok());
  const std::vector<KvOpResult>& r = b.results();
  EXPECT_EQ(r[0].value.size(), big.size());
  EXPECT_TRUE(r[1].pending);
  EXPECT_TRUE(r[1].value.empty());
  EXPECT_TRUE(r[2].pending);
  EXPECT_FALSE(kv.Check({"c"}));  // not run: the agent sends it again
  // One value is always answered, however large.
  b.Send(kv, {Op(Kind::kGet, {"b"})});
  EXPECT_EQ(b.results()[0].value.size(), big.size());
}

TEST(KvBatch, HeldPastTheWaitsLimit_ResourceExhausted_EachOperationCounts) {
  KvStore kv(KvStore::Limits{100, 1 << 20, /*waits=*/2});
  Batches first, second;
  first.Send(kv, {WaitingGet("a")});
  EXPECT_FALSE(first.answer().has_value());
  EXPECT_EQ(kv.waiters(), 1u);
  second.Send(kv, {WaitingGet("b"), Op(Kind::kWait, {"c"})});  // two more: three of two
  ASSERT_TRUE(second.answer().has_value());
  EXPECT_EQ(second.answer()->status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(second.answer()->status().message(), HasSubstr("--kv-max-waits 2"));
}

}  // namespace
}  // namespace meshd::coordinator
