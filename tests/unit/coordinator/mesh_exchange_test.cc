// MeshExchange's rules on who mints: a group's ids are taken only from the node holding each
// chunk's leader (as the mesh its ranks reported says), a node asks only for groups its ranks are
// in, and a key must name a group of the mesh. A refused report records nothing. No coordinator:
// the caller (JobRounds) has already checked that a node reports only the ranks it holds.
#include "daemon/coordinator/mesh_exchange.h"

#include <optional>

#include "common/layout/mesh_spec.h"
#include "daemon/coordinator/completions.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meshd::coordinator {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

std::string Id(char c) { return std::string(MeshExchange::kIdBytes, c); }

// dp=2 x tp=4 over 8 ranks, two per node: tp groups {0-3} led by 0 and {4-7} led by 4; dp groups
// {g, g+4} led by g.
constexpr char kMesh2x4[] = "identity(8)|[(2):(4), (4):(1)]|dp,tp";

class MeshExchangeTest : public ::testing::Test {
 protected:
  using Result = std::optional<absl::StatusOr<std::vector<SharedGroupIds>>>;

  explicit MeshExchangeTest(uint32_t world = 8) : exchange_("job", "m", world, &counters_) {}

  static std::vector<RankSpec> Ranks(uint32_t first, uint32_t count,
                                     const std::string& fp = kMesh2x4) {
    std::vector<RankSpec> out;
    for (uint32_t r = first; r < first + count; ++r) out.push_back(RankSpec{r, fp, "mesh " + fp});
    return out;
  }
  // Node "n<first/2>"'s report; the answer (or refusal) lands in `got` once given.
  void Report(const std::vector<RankSpec>& ranks, std::vector<GroupRequest> groups, Result& got) {
    Completions out;
    exchange_.Report(absl::StrCat("n", ranks.front().rank / 2), ranks, std::move(groups),
                     absl::InfiniteFuture(), [&got](auto v) { got = std::move(v); }, out);
    RunAll(out);
  }
  // The 8-rank mesh's other nodes report every group of theirs, the leaders minting.
  void ReportOthers(std::vector<Result>& got) {
    got.resize(4);
    Report(Ranks(2, 2), {{"m/tp/0", 1, {}}, {"m/dp/2", 1, {{0, Id('2')}}},
                         {"m/dp/3", 1, {{0, Id('3')}}}},
           got[1]);
    Report(Ranks(4, 2), {{"m/tp/1", 1, {{0, Id('T')}}}, {"m/dp/0", 1, {}}, {"m/dp/1", 1, {}}},
           got[2]);
    Report(Ranks(6, 2), {{"m/tp/1", 1, {}}, {"m/dp/2", 1, {}}, {"m/dp/3", 1, {}}}, got[3]);
  }
  static const std::string& IdOf(const Result& got, const std::string& key) {
    static const std::string kNone;
    for (const SharedGroupIds& g : **got) {
      if (g->key == key) return g->ids[0];
    }
    return kNone;
  }

  Counters counters_;
  MeshExchange exchange_;
};

// The attack: a member that is not the leader mints first. It is refused, nothing of its
// report counts (not even its ranks), and the members get the leader's id.
TEST_F(MeshExchangeTest, NonLeaderMints_PermissionDenied_MembersGetTheLeadersId) {
  Result forged;
  Report(Ranks(2, 2), {{"m/tp/0", 1, {{0, Id('x')}}}}, forged);
  ASSERT_TRUE(forged.has_value());
  EXPECT_EQ(forged->status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(forged->status().message()),
              AllOf(HasSubstr("node 'n1'"), HasSubstr("chunk 0 of group 'm/tp/0'"),
                    HasSubstr("rank 0 leads"), HasSubstr("only rank 0's node may mint it")));
  Result leader;
  Report(Ranks(0, 2), {{"m/tp/0", 1, {{0, Id('L')}}}, {"m/dp/0", 1, {{0, Id('0')}}},
                       {"m/dp/1", 1, {{0, Id('1')}}}},
         leader);
  std::vector<Result> others;
  ReportOthers(others);
  ASSERT_TRUE(leader.has_value() && others[1].has_value());
  ASSERT_TRUE(leader->ok()) << leader->status();
  ASSERT_TRUE(others[1]->ok()) << others[1]->status();
  EXPECT_EQ(IdOf(leader, "m/tp/0"), Id('L'));
  EXPECT_EQ(IdOf(others[1], "m/tp/0"), Id('L'));
  EXPECT_EQ(IdOf(others[3], "m/dp/3"), Id('3'));
}

TEST_F(MeshExchangeTest, RefusedReport_RecordsNothing_NotEvenItsRanks) {
  Result forged, leader;
  Report(Ranks(0, 2), {{"m/tp/0", 1, {{0, Id('L')}}}, {"m/dp/0", 1, {{0, Id('0')}}},
                       {"m/dp/1", 1, {{0, Id('1')}}}},
         leader);
  // Rank 2 is in dp/2, which it leads, and in tp/0, which it does not: the whole report goes.
  Report(Ranks(2, 2), {{"m/dp/2", 1, {{0, Id('2')}}}, {"m/tp/0", 1, {{0, Id('x')}}}}, forged);
  EXPECT_EQ(forged->status().code(), absl::StatusCode::kPermissionDenied);
  Result n2, n3;
  Report(Ranks(4, 2), {{"m/tp/1", 1, {{0, Id('T')}}}}, n2);
  Report(Ranks(6, 2), {}, n3);
  EXPECT_FALSE(leader.has_value());  // ranks 2-3 never counted: still waiting for them
  Completions out;
  exchange_.ExpireWaits(absl::InfiniteFuture(), out);
  RunAll(out);
  ASSERT_TRUE(leader.has_value());
  EXPECT_EQ(leader->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(leader->status().message()),
              AllOf(HasSubstr("6 of 8 ranks"), HasSubstr("missing ranks 2-3")));
}

TEST_F(MeshExchangeTest, MintErrorOnlyFromTheLeader) {
  Result forged;
  Report(Ranks(2, 2), {{"m/tp/0", 1, {}, "rank 2: cannot load NCCL"}}, forged);
  EXPECT_EQ(forged->status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(forged->status().message()),
              AllOf(HasSubstr("'m/tp/0'"), HasSubstr("rank 0"), HasSubstr("only a leader's node")));
  Result leader;
  Report(Ranks(0, 2), {{"m/tp/0", 1, {}, "rank 0: cannot load NCCL"}}, leader);
  std::vector<Result> others;
  ReportOthers(others);
  ASSERT_TRUE(leader.has_value() && others[1].has_value());
  for (const Result* r : {&leader, &others[1]}) {
    EXPECT_EQ((*r)->status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(std::string((*r)->status().message()), HasSubstr("rank 0: cannot load NCCL"));
  }
}

TEST_F(MeshExchangeTest, KeyOfNoGroup_InvalidArgumentNamingIt) {
  for (const char* key : {"m/pp/0", "m/tp/2", "m/tp/01", "m/tp/-1", "m/tp", "other/tp/0",
                          "m/world/1", "tp/0", "m/dp/4"}) {
    Result r;
    Report(Ranks(0, 2), {{key, 1, {}}}, r);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status().code(), absl::StatusCode::kInvalidArgument) << key;
    EXPECT_THAT(std::string(r->status().message()), HasSubstr(absl::StrCat("'", key, "'")));
  }
  Result too_many;  // tp/0 has 4 members: at most 4 ids
  Report(Ranks(0, 2), {{"m/tp/0", 5, {}}}, too_many);
  EXPECT_EQ(too_many->status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(MeshExchangeTest, GroupOfNoneOfItsRanks_PermissionDenied) {
  Result r;
  Report(Ranks(4, 2), {{"m/tp/0", 1, {}}}, r);
  EXPECT_EQ(r->status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(r->status().message()),
              AllOf(HasSubstr("'m/tp/0'"), HasSubstr("none of its ranks 4-5")));
}

TEST_F(MeshExchangeTest, SpecTheCoordinatorCannotRebuild_RefusedOnlyWhenIdsAreAsked) {
  Result ids, spec_only;
  Report(Ranks(0, 2, "opaque"), {{"m/world/0", 1, {{0, Id('w')}}}}, ids);
  EXPECT_EQ(ids->status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(ids->status().message()), HasSubstr("leaders cannot be known"));
  Report(Ranks(0, 2, "opaque"), {}, spec_only);  // the spec check alone needs no mesh
  EXPECT_FALSE(spec_only.has_value());
}

// A report naming another mesh fails the whole exchange (its ids are never relayed); the same ranks
// reported again as another mesh are refused.
TEST_F(MeshExchangeTest, OtherSpec_ExchangeFails_SameRanksAgainRefused) {
  Result a, again;
  Report(Ranks(0, 2), {{"m/tp/0", 1, {{0, Id('L')}}}}, a);
  Report(Ranks(0, 2, "identity(8)|[(8):(1)]|tp"), {{"m/tp/0", 1, {{0, Id('x')}}}}, again);
  EXPECT_EQ(again->status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(a.has_value());
  Result other;
  Report(Ranks(2, 2, "identity(8)|[(8):(1)]|tp"), {{"m/tp/0", 1, {{0, Id('x')}}}}, other);
  for (const Result* r : {&a, &other}) {
    ASSERT_TRUE(r->has_value());
    EXPECT_EQ((*r)->status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(std::string((*r)->status().message()), HasSubstr("asked for different meshes"));
  }
}

TEST_F(MeshExchangeTest, WorldGroup_ChunkLeadersAcrossNodes) {
  // 8 ranks, 3 ids: chunks led by ranks 0, 3 and 6 (3, 3 and 2 ranks per id).
  Result bad;
  Report(Ranks(4, 2), {{"m/world/0", 3, {{1, Id('x')}}}}, bad);  // ranks 4-5 lead nothing
  EXPECT_THAT(std::string(bad->status().message()), HasSubstr("which rank 3 leads"));
  std::vector<Result> got(4);
  Report(Ranks(0, 2), {{"m/world/0", 3, {{0, Id('0')}}}}, got[0]);
  Report(Ranks(2, 2), {{"m/world/0", 3, {{1, Id('1')}}}}, got[1]);
  Report(Ranks(4, 2), {{"m/world/0", 3, {}}}, got[2]);
  Report(Ranks(6, 2), {{"m/world/0", 3, {{2, Id('2')}}}}, got[3]);
  ASSERT_TRUE(got[2].has_value() && got[2]->ok()) << got[2]->status();
  EXPECT_EQ((**got[2])[0]->ids, (std::vector<std::string>{Id('0'), Id('1'), Id('2')}));
}

// A group of 300 ranks in 3 chunks (ncclCommInitRankScalable at 128 ranks per id): chunk i is led
// by member 100*i. Nodes of 4 ranks.
class BigGroupTest : public MeshExchangeTest {
 protected:
  BigGroupTest() : MeshExchangeTest(300) {}
  static constexpr char kMesh[] = "identity(300)|[(300):(1)]|dp";
  void Node(uint32_t first, std::vector<std::pair<uint32_t, std::string>> minted, Result& got) {
    Completions out;
    exchange_.Report(absl::StrCat("n", first / 4), Ranks(first, 4, kMesh),
                     {{"m/dp/0", 3, std::move(minted)}}, absl::InfiniteFuture(),
                     [&got](auto v) { got = std::move(v); }, out);
    RunAll(out);
  }
};

TEST_F(BigGroupTest, EachChunkOnlyFromItsLeader) {
  Result r;
  Node(128, {{1, Id('x')}}, r);  // member 128: the leader under "128 per id", not NCCL's
  EXPECT_EQ(r->status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(r->status().message()),
              AllOf(HasSubstr("chunk 1 of group 'm/dp/0'"), HasSubstr("rank 100 leads")));
  Node(0, {{2, Id('x')}}, r);
  EXPECT_THAT(std::string(r->status().message()), HasSubstr("rank 200 leads"));
  std::vector<Result> got(75);
  for (uint32_t n = 0; n < 75; ++n) {
    std::vector<std::pair<uint32_t, std::string>> minted;
    if (n * 4 % 100 == 0) minted.emplace_back(n * 4 / 100, Id(static_cast<char>('a' + n * 4 / 100)));
    Node(n * 4, std::move(minted), got[n]);
  }
  ASSERT_TRUE(got[74].has_value() && got[74]->ok()) << got[74]->status();
  EXPECT_EQ((**got[74])[0]->ids, (std::vector<std::string>{Id('a'), Id('b'), Id('c')}));
}

}  // namespace
}  // namespace meshd::coordinator
