// StoreRelay: local workers' store calls of a generation go to the coordinator as batches — one
// at once, then what arrived meanwhile as the next — each worker answered with its own result;
// held waits come back pending and go again; a coordinator without KeyBatch gets single calls.
#include "daemon/agent/core/store_relay.h"

#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "daemon/agent/core/resender.h"
#include "daemon/agent/core/timers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/fake_clock.h"
#include "tests/unit/agent/fake_coordinator_client.h"

namespace meshd::agent {
namespace {

using ::testing::HasSubstr;

class StoreRelayTest : public ::testing::Test {
 protected:
  template <typename Req>
  Req Request(const std::string& key) {
    Req req;
    req.set_job("train");
    req.set_generation(3);
    req.set_key(key);
    return req;
  }
  // A worker's add: its answer lands in `out`.
  void Add(const std::string& key, int64_t delta,
           std::optional<absl::StatusOr<v1::KeyAddResponse>>& out) {
    v1::KeyAddRequest req = Request<v1::KeyAddRequest>(key);
    req.set_delta(delta);
    relay_.Relay<v1::KeyAddRequest, v1::KeyAddResponse>(
        req, clock_.Now() + absl::Seconds(10),
        [&out](absl::StatusOr<v1::KeyAddResponse> r) { out = std::move(r); });
  }
  void Get(const std::string& key, std::optional<absl::StatusOr<v1::KeyGetResponse>>& out,
           absl::Duration within = absl::Seconds(10)) {
    v1::KeyGetRequest req = Request<v1::KeyGetRequest>(key);
    req.set_wait(true);
    relay_.Relay<v1::KeyGetRequest, v1::KeyGetResponse>(
        req, clock_.Now() + within,
        [&out](absl::StatusOr<v1::KeyGetResponse> r) { out = std::move(r); });
  }
  static v1::KeyOpResult Added(int64_t value) {
    v1::KeyOpResult r;
    r.mutable_add()->set_value(value);
    return r;
  }
  static v1::KeyOpResult Got(const std::string& value) {
    v1::KeyOpResult r;
    r.mutable_get()->set_value(value);
    return r;
  }
  static v1::KeyOpResult Pending() {
    v1::KeyOpResult r;
    r.set_pending(true);
    return r;
  }
  static v1::KeyBatchResponse Answer(std::vector<v1::KeyOpResult> results) {
    v1::KeyBatchResponse out;
    for (auto& r : results) *out.add_results() = std::move(r);
    return out;
  }

  FakeClock clock_;
  FakeCoordinatorClient client_;
  Timers timers_;
  Resender resender_{&clock_, &timers_, nullptr};
  StoreRelay relay_{&clock_, &client_, &resender_,
                    [](const std::string&, uint64_t, std::optional<uint32_t>) {
                      return absl::OkStatus();
                    }};
};

TEST_F(StoreRelayTest, CallsArrivingWhileABatchIsInFlight_GoTogetherAsTheNext_EachAnsweredAlone) {
  std::optional<absl::StatusOr<v1::KeyAddResponse>> a, b, c;
  Add("count", 1, a);  // alone: sent at once
  auto first = client_.TakeBatch();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->request.job(), "train");
  EXPECT_EQ(first->request.generation(), 3u);
  ASSERT_EQ(first->request.ops_size(), 1);
  EXPECT_EQ(first->request.ops(0).add().key(), "count");
  EXPECT_TRUE(first->request.ops(0).add().job().empty());  // the batch's
  EXPECT_EQ(first->options.wait_for_ready, true);           // an add: sent once, never again
  Add("count", 2, b);
  Add("other", 5, c);
  EXPECT_EQ(client_.batches(), 0u);  // behind the one in flight
  first->done(Answer({Added(1)}));
  ASSERT_TRUE(a.has_value() && a->ok());
  EXPECT_EQ((*a)->value(), 1);
  auto second = client_.TakeBatch();
  ASSERT_TRUE(second.has_value());
  ASSERT_EQ(second->request.ops_size(), 2);
  EXPECT_EQ(second->request.ops(0).add().delta(), 2);
  EXPECT_EQ(second->request.ops(1).add().key(), "other");
  v1::KeyOpResult not_counter;
  not_counter.set_code(static_cast<int>(absl::StatusCode::kInvalidArgument));
  not_counter.set_message("key 'other' holds a value that is not an integer");
  second->done(Answer({Added(3), not_counter}));
  ASSERT_TRUE(b.has_value() && b->ok());
  EXPECT_EQ((*b)->value(), 3);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c->status().message(), HasSubstr("not an integer"));
  const StoreRelay::Counts counts = relay_.counts();
  EXPECT_EQ(counts.calls, 3u);
  EXPECT_EQ(counts.coordinator, 2u);
  EXPECT_EQ(counts.shared, 1u);  // the second batch carried two workers' calls
}

TEST_F(StoreRelayTest, HeldWaits_OneAnswered_ThePendingOneGoesAgainWithTheNewOne) {
  std::optional<absl::StatusOr<v1::KeyGetResponse>> x, x_too, y, z;
  Get("x", x);
  Get("x", x_too);  // identical: joins the first
  auto held = client_.TakeBatch();
  ASSERT_TRUE(held.has_value());
  ASSERT_EQ(held->request.ops_size(), 1);
  EXPECT_EQ(held->options.wait_for_ready, false);  // only waits: may be sent again
  Get("y", y);  // a held batch does not hold back the next: sent at once
  auto held_y = client_.TakeBatch();
  ASSERT_TRUE(held_y.has_value());
  held_y->done(Answer({Pending()}));  // woken for another key: y goes again
  auto again = client_.TakeBatch();
  ASSERT_TRUE(again.has_value());
  ASSERT_EQ(again->request.ops_size(), 1);
  EXPECT_EQ(again->request.ops(0).get().key(), "y");
  held->done(Answer({Got("X")}));
  ASSERT_TRUE(x.has_value() && x->ok());
  ASSERT_TRUE(x_too.has_value() && x_too->ok());
  EXPECT_EQ((*x_too)->value(), "X");
  EXPECT_EQ(relay_.counts().shared, 1u);
  Get("z", z);
  auto with_z = client_.TakeBatch();
  ASSERT_TRUE(with_z.has_value());
  again->done(Answer({Got("Y")}));
  EXPECT_EQ((*y)->value(), "Y");
  with_z->done(Answer({Got("Z")}));
  EXPECT_EQ((*z)->value(), "Z");
  EXPECT_EQ(client_.batches(), 0u);
}

TEST_F(StoreRelayTest, HeldBatchPastItsDeadline_EndsOnlyTheWaitersWhoseDeadlineCame) {
  std::optional<absl::StatusOr<v1::KeyGetResponse>> early, late;
  Get("k", early, absl::Seconds(1));
  auto held = client_.TakeBatch();
  ASSERT_TRUE(held.has_value());
  Get("k", late, absl::Seconds(30));  // joins, with a later deadline
  clock_.Advance(absl::Seconds(1));
  held->done(absl::DeadlineExceededError("none of 1 waiting operations was satisfied in time"));
  ASSERT_TRUE(early.has_value());
  EXPECT_EQ(early->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(early->status().message(), HasSubstr("key 'k' not set in time"));
  EXPECT_FALSE(late.has_value());
  auto again = client_.TakeBatch();  // for the one left, by its own deadline
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->options.timeout, absl::Seconds(29));
  again->done(Answer({Got("v")}));
  ASSERT_TRUE(late.has_value() && late->ok());
  EXPECT_EQ((*late)->value(), "v");
}

TEST_F(StoreRelayTest, CoordinatorWithoutKeyBatch_TheBatchAndLaterCallsGoOneByOne) {
  std::optional<absl::StatusOr<v1::KeyAddResponse>> a, b;
  Add("count", 1, a);
  auto first = client_.TakeBatch();
  ASSERT_TRUE(first.has_value());
  first->done(absl::UnimplementedError("unknown method KeyBatch"));
  auto alone = client_.TakeKey();  // the add, as its own KeyAdd
  ASSERT_TRUE(alone.has_value());
  EXPECT_EQ(alone->request, "KeyAdd");
  alone->done(true);
  ASSERT_TRUE(a.has_value() && a->ok());
  Add("count", 1, b);
  EXPECT_EQ(client_.batches(), 0u);
  auto second = client_.TakeKey();
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->request, "KeyAdd");
}

TEST_F(StoreRelayTest, BatchWithAnAdd_LostOnTheWay_NotSentAgain_WorkersGetTheError) {
  std::optional<absl::StatusOr<v1::KeyAddResponse>> a;
  Add("count", 1, a);
  auto first = client_.TakeBatch();
  ASSERT_TRUE(first.has_value());
  first->done(absl::UnavailableError("connection reset"));
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(client_.batches(), 0u);
}

TEST_F(StoreRelayTest, CallQueuedBehindASlowBatch_EndsAtItsOwnDeadline) {
  std::optional<absl::StatusOr<v1::KeyAddResponse>> slow, queued;
  Add("count", 1, slow);
  auto first = client_.TakeBatch();
  ASSERT_TRUE(first.has_value());
  v1::KeyAddRequest req = Request<v1::KeyAddRequest>("other");
  relay_.Relay<v1::KeyAddRequest, v1::KeyAddResponse>(
      req, clock_.Now() + absl::Seconds(1),
      [&queued](absl::StatusOr<v1::KeyAddResponse> r) { queued = std::move(r); });
  clock_.Advance(absl::Seconds(1));
  relay_.ExpireWaiters(clock_.Now());
  ASSERT_TRUE(queued.has_value());
  EXPECT_EQ(queued->status().code(), absl::StatusCode::kDeadlineExceeded);
  first->done(Answer({Added(1)}));
  EXPECT_TRUE(slow.has_value() && slow->ok());
  EXPECT_EQ(client_.batches(), 0u);  // the expired call is not sent
}

// More waits queued than one batch carries: once the batch in flight returns, they all go, in
// as many held batches as they need.
TEST_F(StoreRelayTest, MoreQueuedWaitsThanOneBatchCarries_AllSent) {
  std::optional<absl::StatusOr<v1::KeyAddResponse>> a;
  Add("count", 1, a);
  auto first = client_.TakeBatch();
  ASSERT_TRUE(first.has_value());
  std::deque<std::optional<absl::StatusOr<v1::KeyGetResponse>>> gets(1030);
  for (size_t i = 0; i < gets.size(); ++i) Get(absl::StrCat("k", i), gets[i]);
  EXPECT_EQ(client_.batches(), 0u);
  first->done(Answer({Added(1)}));
  auto held = client_.TakeBatch();
  auto rest = client_.TakeBatch();
  ASSERT_TRUE(held.has_value() && rest.has_value());
  EXPECT_EQ(held->request.ops_size(), 1024);
  EXPECT_EQ(rest->request.ops_size(), 6);
}

// A call the coordinator would refuse is answered at once with the coordinator's message, and
// never joins a batch (a value past the limit would make the whole batch too large for it).
TEST_F(StoreRelayTest, CallPastTheStoreLimits_RefusedAtOnce_NeverBatched) {
  std::optional<absl::StatusOr<v1::KeyAddResponse>> a;
  Add("count", 1, a);
  auto first = client_.TakeBatch();
  ASSERT_TRUE(first.has_value());
  std::optional<absl::StatusOr<v1::KeySetResponse>> large;
  v1::KeySetRequest set = Request<v1::KeySetRequest>("k");
  set.set_value(std::string((4 << 20) + 1, 'v'));
  relay_.Relay<v1::KeySetRequest, v1::KeySetResponse>(
      set, clock_.Now() + absl::Seconds(10),
      [&large](absl::StatusOr<v1::KeySetResponse> r) { large = std::move(r); });
  ASSERT_TRUE(large.has_value());
  EXPECT_EQ(large->status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(large->status().message(), HasSubstr("larger than the limit of 4194304"));
  std::optional<absl::StatusOr<v1::KeyWaitResponse>> many;
  v1::KeyWaitRequest wait;
  wait.set_job("train");
  wait.set_generation(3);
  for (int i = 0; i < 1025; ++i) wait.add_keys(absl::StrCat("k", i));
  relay_.Relay<v1::KeyWaitRequest, v1::KeyWaitResponse>(
      wait, clock_.Now() + absl::Seconds(10),
      [&many](absl::StatusOr<v1::KeyWaitResponse> r) { many = std::move(r); });
  ASSERT_TRUE(many.has_value());
  EXPECT_EQ(many->status().code(), absl::StatusCode::kInvalidArgument);
  std::optional<absl::StatusOr<v1::KeyGetResponse>> not_text;
  Get("k\xc0\x80", not_text);  // an overlong NUL: not UTF-8
  ASSERT_TRUE(not_text.has_value());
  EXPECT_THAT(not_text->status().message(), HasSubstr("not UTF-8"));
  first->done(Answer({Added(1)}));
  EXPECT_TRUE(a.has_value() && a->ok());
  EXPECT_EQ(client_.batches(), 0u);  // nothing was queued behind the add
  EXPECT_EQ(relay_.counts().coordinator, 1u);
}

TEST_F(StoreRelayTest, AnswerWithTheWrongNumberOfResults_Internal) {
  std::optional<absl::StatusOr<v1::KeyAddResponse>> a;
  Add("count", 1, a);
  auto first = client_.TakeBatch();
  ASSERT_TRUE(first.has_value());
  first->done(Answer({}));
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->status().code(), absl::StatusCode::kInternal);
}

TEST_F(StoreRelayTest, ResultOfAnotherKind_Internal) {
  std::optional<absl::StatusOr<v1::KeyAddResponse>> a;
  Add("count", 1, a);
  auto first = client_.TakeBatch();
  ASSERT_TRUE(first.has_value());
  first->done(Answer({Got("not an add's")}));
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->status().code(), absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace meshd::agent
