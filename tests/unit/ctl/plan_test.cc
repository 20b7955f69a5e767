// meshctl plan as a library: script parsing, step errors, JSON and human output.
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
