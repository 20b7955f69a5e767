// The exchange as the coordinator runs it (Coordinator::ResolveGroups, without the job records):
// MeshExchange checks the spec, its MintRules say who may ask for and mint what — a group's ids
// are taken only from the node holding each chunk's leader, a node asks only for groups its ranks
// are in, a key must name a group of the root — and GroupExchange relays the ids group by group.
// A refused report records nothing. The caller (JobRounds) has already checked that a node
// reports only the ranks it holds.
#include "daemon/coordinator/mesh_exchange.h"

#include <optional>

#include "common/layout/mesh_spec.h"
#include "daemon/coordinator/completions.h"
#include "daemon/coordinator/group_exchange.h"
#include "daemon/domain/limits.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meshd::coordinator {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

std::string Id(char c) { return std::string(domain::kIdBytes, c); }

// dp=2 x tp=4 over 8 ranks, two per node: tp groups {0-3} led by 0 and {4-7} led by 4 (layout
// (4):(1)); dp groups {g, g+4} led by g (layout (2):(4)).
constexpr char kMesh2x4[] = "identity(8)|[(2):(4), (4):(1)]|dp,tp";
constexpr char kTp0[] = "m/(4):(1)/0";
constexpr char kTp1[] = "m/(4):(1)/1";
std::string Dp(int g) { return absl::StrCat("m/(2):(4)/", g); }

class MeshExchangeTest : public ::testing::Test {
 protected:
  using Result = std::optional<absl::StatusOr<std::vector<SharedGroupIds>>>;

  explicit MeshExchangeTest(uint32_t world = 8)
      : mesh_("job", "m", world), groups_("job", &counters_) {}

  static std::vector<RankSpec> Ranks(uint32_t first, uint32_t count,
                                     const std::string& fp = kMesh2x4) {
    std::vector<RankSpec> out;
    for (uint32_t r = first; r < first + count; ++r) out.push_back(RankSpec{r, fp, "mesh " + fp});
    return out;
  }
  // Node "n<first/2>"'s report, as Coordinator::ResolveGroups runs it; the answer (or refusal)
  // lands in `got` once given.
  void Report(const std::vector<RankSpec>& ranks, std::vector<GroupRequest> groups, Result& got,
              const std::string& node_prefix = "n", uint32_t per_node = 2) {
    Completions out;
    const std::string node = absl::StrCat(node_prefix, ranks.front().rank / per_node);
    auto done = [&got](auto v) { got = std::move(v); };
    absl::Status status = groups_.Validate(groups);
    if (status.ok()) {
      const MeshExchange::Recorded recorded = mesh_.Record(node, ranks, out);
      status = recorded.status;
      ended_ = ended_ || recorded.end_generation;
    }
    if (status.ok() && groups.empty()) {
      mesh_.HoldCheck(absl::InfiniteFuture(), done, out);
    } else if (status.ok()) {
      std::vector<std::vector<uint32_t>> leaders;
      const absl::StatusOr<MintRules>& rules = mesh_.Rules();
      status = rules.ok() ? rules->Check(node, ranks, groups, &leaders) : rules.status();
      if (status.ok()) status = groups_.CheckMints(groups);
      if (status.ok()) {
        mesh_.WentOn();
        groups_.Report(std::move(groups), std::move(leaders), absl::InfinitePast(), {}, done, out);
      }
    }
    RunAll(out);
    if (!status.ok()) got = status;
  }
  // The 8-rank mesh's other nodes report every group of theirs, the leaders minting.
  void ReportOthers(std::vector<Result>& got) {
    got.resize(4);
    Report(Ranks(2, 2), {{kTp0, 1, {}}, {Dp(2), 1, {{0, Id('2')}}}, {Dp(3), 1, {{0, Id('3')}}}},
           got[1]);
    Report(Ranks(4, 2), {{kTp1, 1, {{0, Id('T')}}}, {Dp(0), 1, {}}, {Dp(1), 1, {}}}, got[2]);
    Report(Ranks(6, 2), {{kTp1, 1, {}}, {Dp(2), 1, {}}, {Dp(3), 1, {}}}, got[3]);
  }
  static const std::string& IdOf(const Result& got, const std::string& key) {
    static const std::string kNone;
    for (const SharedGroupIds& g : **got) {
      if (g->key == key) return g->ids[0];
    }
    return kNone;
  }

  Counters counters_;
  MeshExchange mesh_;
  GroupExchange groups_;
  bool ended_ = false;
};

// The attack: a member that is not the leader mints first. It is refused, nothing of its
// report counts (not even its ranks), and the members get the leader's id.
TEST_F(MeshExchangeTest, NonLeaderMints_PermissionDenied_MembersGetTheLeadersId) {
  Result forged;
  Report(Ranks(2, 2), {{kTp0, 1, {{0, Id('x')}}}}, forged);
  ASSERT_TRUE(forged.has_value());
  EXPECT_EQ(forged->status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(forged->status().message()),
              AllOf(HasSubstr("node 'n1'"), HasSubstr("chunk 0 of group 'm/(4):(1)/0'"),
                    HasSubstr("rank 0 leads"), HasSubstr("only rank 0's node may mint it")));
  Result leader;
  Report(Ranks(0, 2), {{kTp0, 1, {{0, Id('L')}}}, {Dp(0), 1, {{0, Id('0')}}},
                       {Dp(1), 1, {{0, Id('1')}}}},
         leader);
  std::vector<Result> others;
  ReportOthers(others);
  ASSERT_TRUE(leader.has_value() && others[1].has_value());
  ASSERT_TRUE(leader->ok()) << leader->status();
  ASSERT_TRUE(others[1]->ok()) << others[1]->status();
  EXPECT_EQ(IdOf(leader, kTp0), Id('L'));
  EXPECT_EQ(IdOf(others[1], kTp0), Id('L'));
  EXPECT_EQ(IdOf(others[3], Dp(3)), Id('3'));
}

TEST_F(MeshExchangeTest, RefusedReport_RecordsNothing) {
  Result forged, leader;
  // Rank 2 is in dp/2, which it leads, and in tp/0, which it does not: the whole report goes.
  Report(Ranks(2, 2), {{Dp(2), 1, {{0, Id('2')}}}, {kTp0, 1, {{0, Id('x')}}}}, forged);
  EXPECT_EQ(forged->status().code(), absl::StatusCode::kPermissionDenied);
  Report(Ranks(6, 2), {{Dp(2), 1, {}}}, leader);
  EXPECT_FALSE(leader.has_value());  // dp/2's id from the refused report did not count
  Completions out;
  groups_.ExpireWaits(absl::InfiniteFuture(), out);
  RunAll(out);
  ASSERT_TRUE(leader.has_value());
  EXPECT_EQ(leader->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(leader->status().message()),
              HasSubstr("'m/(2):(4)/2' (minted by rank 2)"));
}

TEST_F(MeshExchangeTest, MintErrorOnlyFromTheLeader) {
  Result forged;
  Report(Ranks(2, 2), {{kTp0, 1, {}, "rank 2: cannot load NCCL"}}, forged);
  EXPECT_EQ(forged->status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(forged->status().message()),
              AllOf(HasSubstr("'m/(4):(1)/0'"), HasSubstr("rank 0"), HasSubstr("only a leader's node")));
  Result leader;
  Report(Ranks(0, 2), {{kTp0, 1, {}, "rank 0: cannot load NCCL"}}, leader);
  std::vector<Result> others;
  ReportOthers(others);
  ASSERT_TRUE(leader.has_value() && others[1].has_value());
  for (const Result* r : {&leader, &others[1]}) {
    EXPECT_EQ((*r)->status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(std::string((*r)->status().message()), HasSubstr("rank 0: cannot load NCCL"));
  }
}

TEST_F(MeshExchangeTest, KeyOfNoGroup_InvalidArgumentNamingIt) {
  for (const char* key : {"m/pp/0", "m/(4):(1)/2", "m/(4):(1)/01", "m/(4):(1)/-1", "m/(4):(1)",
                          "other/(4):(1)/0", "world/1", "m/world/0", "(4):(1)/0", "m/(2):(4)/4",
                          "m/(3):(1)/0", "m/(8):(2)/0"}) {
    Result r;
    Report(Ranks(0, 2), {{key, 1, {}}}, r);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status().code(), absl::StatusCode::kInvalidArgument) << key;
    EXPECT_THAT(std::string(r->status().message()), HasSubstr(absl::StrCat("'", key, "'")));
  }
  Result too_many;  // tp/0 has 4 members: at most 4 ids
  Report(Ranks(0, 2), {{kTp0, 5, {}}}, too_many);
  EXPECT_EQ(too_many->status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(MeshExchangeTest, GroupOfNoneOfItsRanks_PermissionDenied) {
  Result r;
  Report(Ranks(4, 2), {{kTp0, 1, {}}}, r);
  EXPECT_EQ(r->status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(r->status().message()),
              AllOf(HasSubstr("'m/(4):(1)/0'"), HasSubstr("none of its ranks 4-5")));
}

TEST_F(MeshExchangeTest, SpecTheCoordinatorCannotRebuild_RefusedOnlyWhenIdsAreAsked) {
  Result ids, spec_only;
  Report(Ranks(0, 2, "opaque"), {{"world/0", 1, {{0, Id('w')}}}}, ids);
  EXPECT_EQ(ids->status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(ids->status().message()), HasSubstr("leaders cannot be known"));
  Report(Ranks(0, 2, "opaque"), {}, spec_only);  // nor can a check know the mesh's ranks
  ASSERT_TRUE(spec_only.has_value());
  EXPECT_EQ(spec_only->status().code(), absl::StatusCode::kInvalidArgument);
}

// A report naming another mesh is refused, the mesh's checks fail with it, and since ranks already
// went on with their ids, the generation must end; the same ranks reported again as another mesh
// are refused.
TEST_F(MeshExchangeTest, OtherSpec_Refused_GenerationEnds_SameRanksAgainRefused) {
  Result a, again;
  Report(Ranks(0, 2), {{kTp0, 1, {{0, Id('L')}}}}, a);
  Report(Ranks(0, 2, "identity(8)|[(8):(1)]|tp"), {{kTp0, 1, {{0, Id('x')}}}}, again);
  EXPECT_EQ(again->status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(again->status().message()), HasSubstr("again as another mesh"));
  EXPECT_FALSE(ended_);
  Result other;
  Report(Ranks(2, 2, "identity(8)|[(8):(1)]|tp"), {{"m/(8):(1)/0", 1, {}}}, other);
  ASSERT_TRUE(other.has_value());
  EXPECT_EQ(other->status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(other->status().message()),
              AllOf(HasSubstr("asked for different meshes"), HasSubstr("ranks 0-1 asked for mesh"),
                    HasSubstr("ranks 2-3 asked for mesh")));
  EXPECT_TRUE(ended_);
  Result later;
  Report(Ranks(4, 2), {}, later);
  EXPECT_EQ(later->status().code(), absl::StatusCode::kFailedPrecondition);
}

// The mismatch message names who asked for which: one rank as "rank 3", several as a range.
TEST_F(MeshExchangeTest, SpecCheck_Mismatch_NamesOneRankInTheSingular) {
  const std::string half = "identity(4)|[(4):(1)]|tp";
  Result a, b;
  Report(Ranks(0, 3, half), {}, a);
  Report(Ranks(3, 1, "identity(4)|[(4):(1)]|dp"), {}, b);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(b->status().message()),
              AllOf(HasSubstr("ranks 0-2 asked for"), HasSubstr(": rank 3 asked for")));
}

// A spec check alone counts only the ranks of the mesh: a mesh of 4 ranks in a world of 8 is
// checked once ranks 0-3 reported, whoever else did not.
TEST_F(MeshExchangeTest, SpecCheck_WaitsForTheMeshsRanksOnly) {
  const std::string half = "identity(4)|[(4):(1)]|tp";
  Result a, b, outside;
  Report(Ranks(6, 2, half), {}, outside);
  Report(Ranks(0, 2, half), {}, a);
  EXPECT_FALSE(a.has_value() || outside.has_value());
  Report(Ranks(2, 2, half), {}, b);
  for (const Result* r : {&a, &b, &outside}) {
    ASSERT_TRUE(r->has_value());
    EXPECT_TRUE((*r)->ok()) << (*r)->status();
  }
}

TEST_F(MeshExchangeTest, WorldGroup_ChunkLeadersAcrossNodes) {
  // 8 ranks, 3 ids: chunks led by ranks 0, 3 and 6 (3, 3 and 2 ranks per id).
  Result bad;
  Report(Ranks(4, 2), {{"world/0", 3, {{1, Id('x')}}}}, bad);  // ranks 4-5 lead nothing
  EXPECT_THAT(std::string(bad->status().message()), HasSubstr("which rank 3 leads"));
  std::vector<Result> got(4);
  Report(Ranks(0, 2), {{"world/0", 3, {{0, Id('0')}}}}, got[0]);
  Report(Ranks(2, 2), {{"world/0", 3, {{1, Id('1')}}}}, got[1]);
  Report(Ranks(4, 2), {{"world/0", 3, {}}}, got[2]);
  Report(Ranks(6, 2), {{"world/0", 3, {{2, Id('2')}}}}, got[3]);
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
    Report(Ranks(first, 4, kMesh), {{"m/(300):(1)/0", 3, std::move(minted)}}, got, "n", 4);
  }
};

TEST_F(BigGroupTest, EachChunkOnlyFromItsLeader) {
  Result r;
  Node(128, {{1, Id('x')}}, r);  // member 128: the leader under "128 per id", not NCCL's
  EXPECT_EQ(r->status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(r->status().message()),
              AllOf(HasSubstr("chunk 1 of group 'm/(300):(1)/0'"), HasSubstr("rank 100 leads")));
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

// GroupExchange alone (its own checks: a key is any key here). While ids keep being minted, a
// request allowing a partial answer is answered in part no later than kPartialCap times its
// partial_after: a steady stream of other groups' reports does not hold it back for ever.
TEST(GroupExchangePartial, StreamOfMints_AnsweredInPartAtTheCap) {
  Counters counters;
  GroupExchange ex("job", &counters);
  const absl::Duration after = absl::Milliseconds(250);
  absl::Time now = absl::UnixEpoch();
  std::optional<absl::StatusOr<std::vector<SharedGroupIds>>> got;
  Completions out;
  ex.Report({{"mine", 1, {{0, Id('m')}}}, {"late", 1, {}}}, {{0}, {9}}, now,
            {absl::InfiniteFuture(), after}, [&got](auto v) { got = std::move(v); }, out);
  RunAll(out);
  const absl::Time cap = now + GroupExchange::kPartialCap * after;
  for (int i = 0; now < cap; ++i) {
    EXPECT_FALSE(got.has_value()) << "at " << absl::FormatDuration(now - absl::UnixEpoch());
    now += absl::Milliseconds(50);  // under the quiet of 62.5 ms
    ex.Report({{absl::StrCat("other", i), 1, {{0, Id('o')}}}}, {{1}}, now, {}, [](auto) {}, out);
    const absl::Time next = ex.ExpireWaits(now, out);
    RunAll(out);
    if (!got.has_value()) {
      EXPECT_LE(next, cap);
    }
  }
  ASSERT_TRUE(got.has_value());
  ASSERT_TRUE(got->ok()) << got->status();
  EXPECT_THAT((**got)[0]->ids, ::testing::ElementsAre(Id('m')));
  EXPECT_THAT((**got)[1]->ids, ::testing::IsEmpty());
  EXPECT_EQ(counters.partial_answers, 1u);
}

}  // namespace
}  // namespace meshd::coordinator
