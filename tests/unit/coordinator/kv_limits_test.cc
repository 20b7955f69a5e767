// KvStore's limits: no job generation's store grows past its keys, bytes or waits; the call that
// would is refused with RESOURCE_EXHAUSTED naming the limit and its flag, and nothing is stored.
// (Before the limits, 100 values of 4 MiB took 483 MB of the coordinator's memory.)
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "daemon/coordinator/kv_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meshd::coordinator {
namespace {

using ::testing::HasSubstr;

KvStore Store(size_t keys, size_t bytes, size_t waits = 100) {
  return KvStore(KvStore::Limits{keys, bytes, waits});
}

TEST(KvLimits, KeysPastTheLimit_ResourceExhausted_NothingStored) {
  KvStore kv = Store(2, 1 << 20);
  Completions out;
  ASSERT_TRUE(kv.Set("a", "1", out).ok());
  ASSERT_TRUE(kv.Set("b", "2", out).ok());
  const absl::Status third = kv.Set("c", "3", out);
  EXPECT_EQ(third.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(third.message(), HasSubstr("--kv-max-keys 2"));
  EXPECT_EQ(kv.Count(), 2);
  EXPECT_FALSE(kv.Check({"c"}));
  // Setting a key that exists is no new key; nor is a counter that exists.
  EXPECT_TRUE(kv.Set("a", "11", out).ok());
  EXPECT_EQ(kv.Add("c", 1, out).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(kv.CompareSet("c", nullptr, "x", out).status().code(),
            absl::StatusCode::kResourceExhausted);
  // A barrier counts as a key.
  absl::Status barrier;
  kv.Barrier("init", "rank0", 2, absl::InfiniteFuture(), [&](absl::Status s) { barrier = s; }, out);
  for (auto& f : out) f();
  out.clear();
  EXPECT_EQ(barrier.code(), absl::StatusCode::kResourceExhausted);
  // Room again once a key is deleted.
  EXPECT_TRUE(kv.Delete("b"));
  EXPECT_TRUE(kv.Set("c", "3", out).ok());
}

TEST(KvLimits, BytesPastTheLimit_ResourceExhausted_GrowingAValueToo) {
  KvStore kv = Store(100, 100);
  Completions out;
  ASSERT_TRUE(kv.Set("k", std::string(50, 'v'), out).ok());  // 51 bytes
  EXPECT_EQ(kv.bytes(), 51u);
  const absl::Status big = kv.Set("j", std::string(50, 'v'), out);
  EXPECT_EQ(big.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(big.message(), HasSubstr("--kv-max-bytes 100"));
  EXPECT_EQ(kv.Set("k", std::string(100, 'v'), out).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(kv.Set("k", std::string(99, 'v'), out).ok());  // exactly the limit
  EXPECT_EQ(kv.bytes(), 100u);
  EXPECT_TRUE(kv.Set("k", "", out).ok());  // shrinking always fits
  EXPECT_EQ(kv.bytes(), 1u);
  EXPECT_TRUE(kv.Delete("k"));
  EXPECT_EQ(kv.bytes(), 0u);
}

TEST(KvLimits, WaitsPastTheLimit_ResourceExhausted_ForGetsWaitsAndBarriers) {
  KvStore kv = Store(100, 1 << 20, /*waits=*/2);
  Completions out;
  std::vector<absl::Status> answers;
  auto record = [&](absl::Status s) { answers.push_back(s); };
  kv.Get("x", true, absl::InfiniteFuture(),
         [&](absl::StatusOr<std::string> v) { answers.push_back(v.status()); }, out);
  kv.Wait({"y"}, absl::InfiniteFuture(), record, out);
  EXPECT_EQ(kv.waiters(), 2u);
  kv.Get("z", true, absl::InfiniteFuture(),
         [&](absl::StatusOr<std::string> v) { answers.push_back(v.status()); }, out);
  kv.Wait({"z"}, absl::InfiniteFuture(), record, out);
  kv.Barrier("b", "p", 2, absl::InfiniteFuture(), record, out);
  for (auto& f : out) f();
  out.clear();
  ASSERT_EQ(answers.size(), 3u);
  for (const absl::Status& s : answers) {
    EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
    EXPECT_THAT(s.message(), HasSubstr("--kv-max-waits 2"));
  }
  EXPECT_EQ(kv.waiters(), 2u);
  // A wait for keys already set holds nothing: answered even at the limit.
  ASSERT_TRUE(kv.Set("w", "1", out).ok());
  answers.clear();
  kv.Wait({"w"}, absl::InfiniteFuture(), record, out);
  for (auto& f : out) f();
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_TRUE(answers[0].ok());
}

TEST(KvLimits, FailAll_ForgetsTheBytes) {
  KvStore kv = Store(100, 100);
  Completions out;
  ASSERT_TRUE(kv.Set("k", std::string(90, 'v'), out).ok());
  kv.FailAll(absl::AbortedError("ended"), out);
  EXPECT_EQ(kv.bytes(), 0u);
  EXPECT_TRUE(kv.Set("k", std::string(90, 'v'), out).ok());
}

}  // namespace
}  // namespace meshd::coordinator
