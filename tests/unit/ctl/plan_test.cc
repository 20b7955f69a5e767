// meshctl plan as a library: script parsing, step errors, JSON and human output.
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "daemon/ctl/plan_render.h"
#include "daemon/ctl/plan_script.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meshd::ctl {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

std::vector<StepOutcome> RunScript(const std::string& script, int64_t world) {
  absl::StatusOr<json> steps = ParsePlanScript(script);
  EXPECT_TRUE(steps.ok()) << steps.status();
  return RunPlan(*steps, world);
}

nlohmann::ordered_json ToJson(const std::vector<StepOutcome>& outcomes, int64_t world) {
  RenderOptions o;
  o.world_size = world;
  return *PlanToJson(outcomes, o);
}

TEST(ParsePlanScript, NotJson_InvalidArgument) {
  const auto r = ParsePlanScript("[{\"op\":");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("not valid JSON"));
}

TEST(ParsePlanScript, NotArray_InvalidArgument) {
  EXPECT_THAT(std::string(ParsePlanScript("{}").status().message()),
              HasSubstr("JSON array of steps"));
}

TEST(RunPlan, AllOpsInOneScript) {
  const auto out = RunScript(R"([
    {"op":"init_device_mesh","shape":[2,2,2],"names":["dp","cp","tp"]},
    {"op":"slice","on":0,"names":["dp","tp"]},
    {"op":"flatten","on":1,"name":null},
    {"op":"unflatten","on":2,"dim":0,"sizes":[2,2],"names":["a","b"]},
    {"op":"concatenate","of":[3]},
    {"op":"device_mesh","mesh":[[0,2],[1,3]],"names":null}])",
                             8);
  ASSERT_EQ(out.size(), 6u);
  for (const StepOutcome& s : out) EXPECT_TRUE(s.mesh.ok()) << s.op << ": " << s.mesh.status();
  EXPECT_EQ(out[2].mesh->names(), (std::vector<std::string>{"dp_tp"}));
  const auto j = ToJson(out, 8);
  EXPECT_EQ(j["steps"][2]["groups"], json::parse("[[[0,1,4,5],[2,3,6,7]]]"));
  EXPECT_EQ(j["steps"][5]["groups"], json::parse("[[[0,1],[2,3]],[[0,2],[1,3]]]"));
  EXPECT_EQ(j["steps"][5]["names"], json());
}

TEST(RunPlan, StopsAfterFirstFailure) {
  const auto out = RunScript(R"([{"op":"init_device_mesh","shape":[2,4],"names":["dp","tp"]},
                           {"op":"slice","on":0,"names":["tp","dp"]},
                           {"op":"flatten","on":0}])",
                             8);
  ASSERT_EQ(out.size(), 2u);
  const auto j = ToJson(out, 8);
  EXPECT_EQ(j["steps"][1]["error"]["code"], "INVALID_ARGUMENT");
  EXPECT_THAT(j["steps"][1]["error"]["message"].get<std::string>(), HasSubstr("order"));
}

TEST(RunPlan, MalformedSteps_NameStepAndField) {
  struct Case {
    std::string step;
    std::string message;
  };
  const std::vector<Case> cases = {
      {R"({"op":"init_device_mesh","shape":"2,4"})",
       "step 0: \"shape\" must be a list of integers"},
      {R"({"op":"init_device_mesh","shape":[2,4],"names":[1,2]})",
       "\"names\" must be a list of strings or null"},
      {R"({"op":"explode"})", "\"op\" must be one of init_device_mesh"},
      {R"({"shape":[2]})", "\"op\" must be one of"},
      {R"(7)", "step 0 must be an object"},
      {R"({"op":"slice","on":3,"names":["a"]})", "\"on\" must be the index of an earlier step"},
      {R"({"op":"device_mesh","mesh":[[0,1],[2]]})",
       "mesh is ragged: mesh[1] has 1 entries where 2"},
      {R"({"op":"device_mesh","mesh":[[0,1],"x"]})", "mesh[1] must be an integer or a list"},
      {R"({"op":"device_mesh","mesh":[]})", "empty list"},
      {R"({"op":"device_mesh","mesh":5})", "\"mesh\" must be a nested list of ranks"},
      {R"({"op":"device_mesh","mesh":[[0,1],2]})", "mesh[1] is a number where a list"},
      {R"({"op":"concatenate","of":5})", "\"of\" must be a list of earlier step indices"},
  };
  for (const Case& c : cases) {
    const auto out = RunScript("[" + c.step + "]", 8);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].mesh.status().code(), absl::StatusCode::kInvalidArgument) << c.step;
    EXPECT_THAT(std::string(out[0].mesh.status().message()), HasSubstr(c.message)) << c.step;
  }
}

TEST(RunPlan, UnflattenByNameAndErrors) {
  const auto out = RunScript(R"([{"op":"init_device_mesh","shape":[8],"names":["w"]},
                           {"op":"unflatten","on":0,"dim":"w","sizes":[2,4],"names":["dp","tp"]},
                           {"op":"unflatten","on":1,"dim":-1,"sizes":[2,2],"names":["a","b"]}])",
                             8);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_TRUE(out[1].mesh.ok());
  EXPECT_THAT(std::string(out[2].mesh.status().message()), HasSubstr("dim -1 is out of range"));
}

TEST(PlanToJson, PerRankFieldsForNonMembers) {
  const auto out = RunScript(R"([{"op":"init_device_mesh","shape":[2,2],"names":["dp","tp"]},
                           {"op":"slice","on":0,"names":["tp"]}])",
                             6);
  const auto j = ToJson(out, 6);
  EXPECT_EQ(j["steps"][0]["coordinate"][5], json());
  EXPECT_EQ(j["steps"][0]["local_rank"][5], json::parse("[null,null]"));
  EXPECT_EQ(j["steps"][0]["view"][5], json::parse("[[0,1],[2,3]]"));  // one copy: shown to all
  EXPECT_EQ(j["steps"][1]["view"][3], json::parse("[2,3]"));
  EXPECT_EQ(j["steps"][1]["view"][5], json());  // two copies, rank 5 in neither
  EXPECT_EQ(j["steps"][1]["local_rank"][3], json::parse("[1]"));
}

TEST(PlanToJson, TooLarge_AsksForRanks) {
  const auto out = RunScript(R"([{"op":"init_device_mesh","shape":[64]}])", 64);
  RenderOptions o;
  o.world_size = 64;
  EXPECT_THAT(std::string(PlanToJson(out, o, 1000).status().message()), HasSubstr("--ranks"));
  o.ranks = {3};
  const auto j = PlanToJson(out, o, 1000);
  ASSERT_TRUE(j.ok());
  EXPECT_EQ((*j)["steps"][0]["coordinate"], json::parse("[[3]]"));
  EXPECT_EQ((*j)["steps"][0]["ranks"], json::parse("[3]"));
}

TEST(PlanToText, TablesGroupsAndLint) {
  const auto out =
      RunScript(R"([{"op":"init_device_mesh","shape":[2,8],"names":["tp","dp"]}])", 16);
  RenderOptions o;
  o.world_size = 16;
  o.gpus_per_node = 8;
  const std::string text = PlanToText(out, o);
  EXPECT_THAT(text, HasSubstr("DeviceMesh((tp=2, dp=8), stride=(8, 1))"));
  EXPECT_THAT(text, HasSubstr("cross-host (2 hosts)"));
  EXPECT_THAT(text, HasSubstr("WARNING: tp groups span up to 2 hosts"));
  EXPECT_THAT(text, HasSubstr("[0..7] [8..15]"));
}

// ---- Rank tables: subset and permuted meshes, their slices, flattens and groups (issue 23).
// Every expected value is PyTorch's, worked by hand from device_mesh_semantics.md sections 2-9.

TEST(RankTables, SubsetMesh_GroupsViewsAndNonMembers) {
  // DeviceMesh("cpu", [[4,5],[6,7]], mesh_dim_names=("dp","tp")) in a world of 8.
  const auto out = RunScript(R"([{"op":"device_mesh","mesh":[[4,5],[6,7]],"names":["dp","tp"]},
                                 {"op":"slice","on":0,"names":["tp"]},
                                 {"op":"slice","on":0,"names":["dp"]},
                                 {"op":"flatten","on":0}])",
                             8);
  ASSERT_EQ(out.size(), 4u);
  for (const StepOutcome& s : out) ASSERT_TRUE(s.mesh.ok()) << s.op << ": " << s.mesh.status();
  const auto j = ToJson(out, 8);
  const auto& root = j["steps"][0];
  EXPECT_EQ(root["groups"], json::parse("[[[4,6],[5,7]],[[4,5],[6,7]]]"));
  EXPECT_EQ(root["coordinate"][7], json::parse("[1,1]"));
  EXPECT_EQ(root["coordinate"][0], json());  // ranks 0-3 are not in it
  EXPECT_EQ(root["local_rank"][7], json::parse("[1,1]"));
  EXPECT_EQ(root["local_rank"][2], json::parse("[null,null]"));
  // One copy: PyTorch's .mesh shows it to every rank, members or not.
  EXPECT_EQ(root["view"][0], json::parse("[[4,5],[6,7]]"));
  // mesh["tp"]: two copies; rank 6 sees [6,7], rank 0 has no view (RuntimeError in PyTorch).
  EXPECT_EQ(j["steps"][1]["view"][6], json::parse("[6,7]"));
  EXPECT_EQ(j["steps"][1]["view"][0], json());
  EXPECT_EQ(j["steps"][1]["coordinate"][5], json::parse("[1]"));
  EXPECT_EQ(j["steps"][2]["view"][5], json::parse("[5,7]"));
  EXPECT_EQ(j["steps"][2]["groups"], json::parse("[[[4,6],[5,7]]]"));
  // _flatten(): "dp_tp", one group over the table in row-major order.
  EXPECT_EQ(j["steps"][3]["names"], json::parse(R"(["dp_tp"])"));
  EXPECT_EQ(j["steps"][3]["groups"], json::parse("[[[4,5,6,7]]]"));
  EXPECT_EQ(j["steps"][3]["local_rank"][6], json::parse("[2]"));
}

TEST(RankTables, PermutedMesh_CoordinateIsNotLocalRank) {
  // DeviceMesh("cpu", [[3,1],[0,2]], mesh_dim_names=("a","b")).
  const auto out = RunScript(R"([{"op":"device_mesh","mesh":[[3,1],[0,2]],"names":["a","b"]},
                                 {"op":"flatten","on":0},
                                 {"op":"unflatten","on":1,"dim":"a_b","sizes":[2,2],
                                  "names":["x","y"]},
                                 {"op":"slice","on":0,"names":["b"]},
                                 {"op":"slice","on":0,"names":["a_b"]}])",
                             4);
  ASSERT_EQ(out.size(), 5u);
  for (const StepOutcome& s : out) ASSERT_TRUE(s.mesh.ok()) << s.op << ": " << s.mesh.status();
  const auto j = ToJson(out, 4);
  const auto& m = j["steps"][0];
  EXPECT_EQ(m["groups"], json::parse("[[[3,0],[1,2]],[[3,1],[0,2]]]"));
  EXPECT_EQ(m["coordinate"][0], json::parse("[1,0]"));
  EXPECT_EQ(m["local_rank"][0], json::parse("[0,0]"));  // [3,0] and [0,2], sorted
  EXPECT_EQ(m["coordinate"][3], json::parse("[0,0]"));
  EXPECT_EQ(m["local_rank"][3], json::parse("[1,1]"));
  EXPECT_EQ(j["steps"][1]["groups"], json::parse("[[[3,1,0,2]]]"));
  EXPECT_EQ(j["steps"][1]["local_rank"][3], json::parse("[3]"));
  // Unflattening the flattened dim gives the table's layout back, under new names.
  EXPECT_EQ(j["steps"][2]["groups"], m["groups"]);
  EXPECT_EQ(j["steps"][2]["view"][1], json::parse("[[3,1],[0,2]]"));
  EXPECT_EQ(j["steps"][3]["view"][0], json::parse("[0,2]"));
  EXPECT_EQ(j["steps"][3]["view"][1], json::parse("[3,1]"));
  // The flattened name is sliceable from the root mesh, and is the flattened mesh.
  EXPECT_EQ(*out[4].mesh, *out[1].mesh);
}

TEST(RankTables, TransposedArange_FlattenFollowsRankMapOrder) {
  // [[0,4],[1,5],[2,6],[3,7]] flattens to [0,4,1,5,2,6,3,7] (semantics doc, section 8).
  const auto out =
      RunScript(R"([{"op":"device_mesh","mesh":[[0,4],[1,5],[2,6],[3,7]],"names":["x","y"]},
                    {"op":"flatten","on":0,"name":"xy"}])",
                8);
  ASSERT_EQ(out.size(), 2u);
  const auto j = ToJson(out, 8);
  EXPECT_EQ(j["steps"][0]["groups"][0], json::parse("[[0,1,2,3],[4,5,6,7]]"));
  EXPECT_EQ(j["steps"][0]["groups"][1], json::parse("[[0,4],[1,5],[2,6],[3,7]]"));
  EXPECT_EQ(j["steps"][1]["groups"], json::parse("[[[0,4,1,5,2,6,3,7]]]"));
}

TEST(RankTables, FromGroup) {
  const auto out = RunScript(R"([{"op":"from_group","groups":[[4,5,6,7]]},
                                 {"op":"from_group","groups":[[0,1],[0,2]],"mesh":[[0,2],[1,3]],
                                  "names":["a","b"],"rank":0},
                                 {"op":"from_group","groups":[[0,2],[0,1]],"mesh":[[0,2],[1,3]],
                                  "names":["a","b"],"rank":0}])",
                             8);
  ASSERT_EQ(out.size(), 3u);
  ASSERT_TRUE(out[0].mesh.ok()) << out[0].mesh.status();
  ASSERT_TRUE(out[1].mesh.ok()) << out[1].mesh.status();
  const auto j = ToJson(out, 8);
  EXPECT_EQ(j["steps"][0]["view"][0], json::parse("[4,5,6,7]"));
  EXPECT_EQ(j["steps"][0]["coordinate"][6], json::parse("[2]"));
  EXPECT_EQ(j["steps"][1]["groups"], json::parse("[[[0,1],[2,3]],[[0,2],[1,3]]]"));
  EXPECT_EQ(j["steps"][2]["error"]["code"], "INVALID_ARGUMENT");
  EXPECT_THAT(std::string(j["steps"][2]["error"]["message"]),
              HasSubstr("process group 0 [0,2] is not rank 0's group along a"));
}

TEST(RankTables, BadTables_InvalidArgumentNamingTheSpot) {
  for (const auto& [script, message] : std::vector<std::pair<std::string, std::string>>{
           {R"([{"op":"device_mesh","mesh":[[0,1],[1,2]]}])", "rank 1 appears twice"},
           {R"([{"op":"device_mesh","mesh":[[0,8]]}])", "rank 8 at position 1"},
           {R"([{"op":"device_mesh","mesh":[[0,-1]]}])", "rank -1 at position 1"},
           {R"([{"op":"device_mesh","mesh":[0,1,2,3,4,5,6,7,8]}])",
            "mesh[8] is one rank more than the 8 a table may hold"},
           {R"([{"op":"from_group","groups":[[0,1,2,3,4,5,6,7,8]]}])", "of at most the world's 8"},
           {R"([{"op":"from_group","groups":[[0,1],[0,2]]}])", "needs the mesh"},
           {R"([{"op":"from_group","groups":[[0,1]],"mesh":[1,0]}])",
            "mesh [1,0] is not the process group's ranks [0,1]"},
           {R"([{"op":"from_group","groups":[]}])", "\"groups\" must be a list of groups"},
           {R"([{"op":"from_group","groups":[[0,"x"]]}])", "\"groups\" must be a list of groups"},
           {R"([{"op":"from_group","groups":[[0]],"rank":"x"}])", "\"rank\" must be the rank"},
       }) {
    const auto out = RunScript(script, 8);
    ASSERT_EQ(out.size(), 1u) << script;
    EXPECT_EQ(out[0].mesh.status().code(), absl::StatusCode::kInvalidArgument) << script;
    EXPECT_THAT(std::string(out[0].mesh.status().message()), HasSubstr(message)) << script;
  }
}

// ---- Limits: every size is checked before what it bounds is built (issue 23).

TEST(PlanLimits, ScriptSizeDepthAndSteps) {
  EXPECT_THAT(
      std::string(ParsePlanScript(std::string(kMaxScriptBytes + 1, ' ')).status().message()),
      HasSubstr("more than the 16777216 a plan may be"));
  // 100,000 nested lists: refused before parsing (nlohmann's dump and destructors recurse).
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  EXPECT_THAT(std::string(ParsePlanScript(deep).status().message()),
              HasSubstr("nests lists or objects more than 68 deep"));
  // Brackets inside strings do not count.
  EXPECT_TRUE(
      ParsePlanScript(
          R"([{"op":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"["}])")
          .ok());
  std::string many = "[";
  for (size_t i = 0; i <= kMaxPlanSteps; ++i) absl::StrAppend(&many, i ? "," : "", "{}");
  EXPECT_THAT(std::string(ParsePlanScript(many + "]").status().message()),
              HasSubstr("1025 steps, more than the 1024"));
}

TEST(PlanLimits, ListsAndTablesPastTheirBounds) {
  const std::string ones = absl::StrJoin(std::vector<int>(65, 1), ",");
  std::string deep_table = std::string(65, '[') + "0" + std::string(65, ']');
  for (const auto& [script, message] : std::vector<std::pair<std::string, std::string>>{
           {absl::StrCat(R"([{"op":"init_device_mesh","shape":[)", ones, "]}]"),
            "a list of at most 64 integers"},
           {absl::StrCat(R"([{"op":"device_mesh","mesh":)", deep_table, "}]"),
            "nests deeper than 64 dims"},
           {absl::StrCat(R"([{"op":"init_device_mesh","shape":[1]},{"op":"concatenate","of":[)",
                         absl::StrJoin(std::vector<int>(65, 0), ","), "]}]"),
            "at most 64 earlier step indices"},
       }) {
    const auto out = RunScript(script, 8);
    ASSERT_FALSE(out.empty());
    EXPECT_EQ(out.back().mesh.status().code(), absl::StatusCode::kInvalidArgument) << script;
    EXPECT_THAT(std::string(out.back().mesh.status().message()), HasSubstr(message)) << script;
  }
  // A nested value in an error message is described, not dumped.
  const auto out = RunScript(R"([{"op":"init_device_mesh","shape":[[1,2],[3]]}])", 8);
  EXPECT_THAT(std::string(out[0].mesh.status().message()), HasSubstr("got a list of 2 entries"));
}

TEST(PlanLimits, JsonCountsEveryGroupTable) {
  // 16 steps of a 64-rank 1-D mesh: 16 x 64 group members; with --ranks 0, 16 x 66 per-rank fields.
  std::string script = R"([{"op":"init_device_mesh","shape":[64],"names":["w"]})";
  for (int i = 0; i < 15; ++i) absl::StrAppend(&script, R"(,{"op":"slice","on":0,"names":["w"]})");
  const auto out = RunScript(script + "]", 64);
  RenderOptions o;
  o.world_size = 64;
  o.ranks = {0};
  EXPECT_THAT(std::string(PlanToJson(out, o, 1000).status().message()),
              HasSubstr("every group of every step"));
  EXPECT_TRUE(PlanToJson(out, o, 3000).ok());  // 16 x (64 + 1 x (64 + 2))
}

TEST(PlanToText, SubsetMesh_FirstGroupsWithoutTheWholeTable) {
  const auto out =
      RunScript(R"([{"op":"device_mesh","mesh":[[4,5],[6,7]],"names":["dp","tp"]}])", 8);
  RenderOptions o;
  o.world_size = 8;
  o.gpus_per_node = 2;
  const std::string text = PlanToText(out, o);
  EXPECT_THAT(text, HasSubstr("4 of the world's 8 ranks"));
  EXPECT_THAT(text, HasSubstr("[4,6] [5,7]"));
  EXPECT_THAT(text, HasSubstr("[4,5] [6,7]"));
  EXPECT_THAT(text, HasSubstr("intra-host"));
}

TEST(FormatRanks, CompactAndExact) {
  EXPECT_EQ(FormatRanks({0, 1, 2, 3}), "[0..3]");
  EXPECT_EQ(FormatRanks({0, 8, 16, 24}), "[0,8,..,24]");
  EXPECT_EQ(FormatRanks({3, 1, 2, 0}), "[3,1,2,0]");
  EXPECT_EQ(FormatRanks({0, 4}), "[0,4]");
  EXPECT_EQ(FormatRanks({5}), "[5]");
  EXPECT_EQ(FormatRanks({9, 1, 8, 2, 7, 3, 6, 4, 5, 0}), "[9,1,8,2,7,3,6,… (3 more)]");
}

}  // namespace
}  // namespace meshd::ctl
