// meshctl plan as a user runs it: the real binary in a real process, its output and exit status.
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/support/run_command.h"

namespace {

using ::testing::HasSubstr;

using Result = ::meshd::testing::CommandResult;

Result Meshctl(const std::string& args, bool merge_stderr = false,
               const std::string& stdin_text = "") {
  return ::meshd::testing::RunCommand(std::string(MESHCTL_PATH) + " " + args, merge_stderr,
                                      stdin_text);
}

TEST(MeshctlPlan, Shorthand_HumanTables) {
  const Result r = Meshctl("plan --world 64 --shape 2,4,8 --names pp,dp,tp --gpus-per-node 8");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("DeviceMesh((pp=2, dp=4, tp=8), stride=(32, 8, 1))"));
  EXPECT_THAT(r.out, HasSubstr("intra-host"));
  EXPECT_THAT(r.out, HasSubstr("cross-host (4 hosts)"));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("WARNING")));
}

TEST(MeshctlPlan, TpAcrossHosts_Warns) {
  const Result r = Meshctl("plan --shape 8,8 --names tp,dp --gpus-per-node 8");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("WARNING: tp groups span up to 8 hosts"));
}

TEST(MeshctlPlan, Json_MatchesSemantics) {
  const Result r = Meshctl("plan --world 8 --shape 2,2,2 --names dp,cp,tp --json");
  ASSERT_EQ(r.exit_code, 0);
  const auto j = nlohmann::json::parse(r.out);
  const auto& s = j["steps"][0];
  EXPECT_EQ(s["groups"][0], nlohmann::json::parse("[[0,4],[1,5],[2,6],[3,7]]"));
  EXPECT_EQ(s["groups"][1], nlohmann::json::parse("[[0,2],[1,3],[4,6],[5,7]]"));
  EXPECT_EQ(s["coordinate"][6], nlohmann::json::parse("[1,1,0]"));
  EXPECT_EQ(s["local_rank"].size(), 8u);
  EXPECT_EQ(s["view"][3], nlohmann::json::parse("[[[0,1],[2,3]],[[4,5],[6,7]]]"));
}

TEST(MeshctlPlan, ScriptOnStdin_FailingStepExitsOne) {
  const Result r = Meshctl("plan --world 8 --script - --json", false,
                           R"([{"op":"init_device_mesh","shape":[2,4],"names":["dp","tp"]},
                               {"op":"unflatten","on":0,"dim":-1,"sizes":[2,2],"names":["a","b"]}])");
  EXPECT_EQ(r.exit_code, 1);
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["steps"].size(), 2u);
  EXPECT_EQ(j["steps"][1]["error"]["code"], "INVALID_ARGUMENT");
}

TEST(MeshctlPlan, BadInput_ExitsTwoWithMessage) {
  Result r = Meshctl("plan --world 8 --script -", true, "not json");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.out, HasSubstr("not valid JSON"));
  r = Meshctl("plan --shape 2,x", true);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.out, HasSubstr("--shape must be"));
  r = Meshctl("plan --script /nonexistent/steps.json --world 4", true);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.out, HasSubstr("cannot read script"));
  r = Meshctl("plan", true);
  EXPECT_EQ(r.exit_code, 2);
  r = Meshctl("explode", true);
  EXPECT_EQ(r.exit_code, 2);
}

// Shapes whose product overflows, or is past what plan renders, are refused before anything is
// allocated (--shape 2147483647 once took 24 GB and was killed; 2^32 x 2^32 overflowed to 0).
TEST(MeshctlPlan, HugeShapes_RefusedNamingTheLimit) {
  for (const char* args : {"plan --shape 4294967296,4294967296", "plan --shape 2147483647",
                           "plan --shape 1024,1024,2", "plan --world 1048577 --shape 2"}) {
    const Result r = Meshctl(args, true);
    EXPECT_EQ(r.exit_code, 2) << args << ": " << r.out;
    EXPECT_THAT(r.out, HasSubstr("1048576 ranks, the most meshctl plan renders")) << args;
  }
  EXPECT_EQ(Meshctl("plan --shape 1024,1024 --ranks 0", true).exit_code, 0);
}

// --mesh: a rank table in any order over any subset of the world (issue 23); --world defaults to
// its largest rank + 1. The answers are PyTorch's for DeviceMesh("cpu", [[4,6],[5,7]]).
TEST(MeshctlPlan, RankTableShorthand) {
  Result r = Meshctl("plan --mesh '[[4,6],[5,7]]' --names dp,tp --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  const auto& s = j["steps"][0];
  EXPECT_EQ(s["op"], "device_mesh");
  EXPECT_EQ(s["groups"], nlohmann::json::parse("[[[4,5],[6,7]],[[4,6],[5,7]]]"));
  EXPECT_EQ(s["coordinate"].size(), 8u);  // world 8: ranks 0..7
  EXPECT_EQ(s["coordinate"][5], nlohmann::json::parse("[1,0]"));
  EXPECT_EQ(s["coordinate"][3], nlohmann::json());
  r = Meshctl("plan --world 16 --mesh '[3,1,2,0]' --gpus-per-node 2");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("4 of the world's 16 ranks"));
  EXPECT_THAT(r.out, HasSubstr("[3,1,2,0]"));
  EXPECT_THAT(r.out, HasSubstr("cross-host (2 hosts)"));
  // A bad table is a failed step (exit 1) naming the problem; bad usage exits 2.
  r = Meshctl("plan --world 4 --mesh '[[0,1],[1,2]]' --json");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("rank 1 appears twice"));
  r = Meshctl("plan --mesh '[[0,1],[2]]'", true);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.out, HasSubstr("mesh is ragged"));
  r = Meshctl("plan --mesh '0,1'", true);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.out, HasSubstr("--mesh must be a nested JSON list"));
  r = Meshctl("plan --mesh '[1048576]'", true);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.out, HasSubstr("1048576 ranks meshctl plan renders"));
  r = Meshctl("plan --mesh '[0,1]' --shape 2", true);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.out, HasSubstr("give one of --script, --shape and --mesh"));
}

// A script past the size limit is refused after reading one byte more than the limit.
TEST(MeshctlPlan, HugeScript_RefusedNamingTheLimit) {
  const Result r = Meshctl("plan --world 8 --script -", true, std::string((16 << 20) + 10, ' '));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.out, HasSubstr("more than the 16777216 a plan may be"));
}

TEST(MeshctlPlan, Help_ExitsZero) {
  const Result r = Meshctl("plan --help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("--gpus-per-node"));
}

}  // namespace
