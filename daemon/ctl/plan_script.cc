// Script parsing and execution for meshctl plan (see plan_script.h).
#include "daemon/ctl/plan_script.h"

#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/layout/mesh_ops.h"

namespace meshd::ctl {
namespace {

using json = nlohmann::json;
using layout::DeviceMesh;

// A value for an error message: at most 80 characters, and no deep dump (a scalar or a container's
// size when nested; the script's depth is bounded, this keeps messages short).
std::string Shown(const json& v) {
  std::string out;
  if (v.is_array() || v.is_object()) {
    bool flat = true;
    for (const json& e : v) flat = flat && !e.is_structured();
    out = flat ? v.dump()
               : absl::StrCat(v.is_array() ? "a list" : "an object", " of ", v.size(), " entries");
  } else {
    out = v.dump();
  }
  if (out.size() > 80) out = out.substr(0, 77) + "...";
  return out;
}

// The byte at which `text` nests lists or objects more than `max_depth` deep, outside strings;
// nullopt when it does not.
std::optional<size_t> TooDeep(absl::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return i;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return std::nullopt;
}

// Reads the fields of one step; every error names the step, the field and what is expected.
class StepReader {
 public:
  StepReader(const json& step, size_t index) : step_(step), index_(index) {}

  absl::Status Error(absl::string_view field, absl::string_view expected) const {
    std::string got = step_.contains(field) ? Shown(step_[field]) : "nothing";
    return absl::InvalidArgumentError(
        absl::StrCat("step ", index_, ": \"", field, "\" must be ", expected, ", got ", got));
  }

  absl::StatusOr<int64_t> Int(absl::string_view field) const {
    if (!step_.contains(field) || !step_[field].is_number_integer()) {
      return Error(field, "an integer");
    }
    return step_[field].get<int64_t>();
  }

  // At most kMaxMeshDims entries (shapes, sizes): checked before reading them.
  absl::StatusOr<std::vector<int64_t>> IntList(absl::string_view field) const {
    if (!step_.contains(field) || !step_[field].is_array()) {
      return Error(field, "a list of integers");
    }
    if (step_[field].size() > static_cast<size_t>(layout::kMaxMeshDims)) {
      return Error(field, absl::StrCat("a list of at most ", layout::kMaxMeshDims, " integers"));
    }
    std::vector<int64_t> out;
    for (const json& v : step_[field]) {
      if (!v.is_number_integer()) return Error(field, "a list of integers");
      out.push_back(v.get<int64_t>());
    }
    return out;
  }

  // At most kMaxMeshDims entries (dim names): checked before reading them.
  absl::StatusOr<std::vector<std::string>> StringList(absl::string_view field) const {
    if (!step_.contains(field) || !step_[field].is_array()) {
      return Error(field, "a list of strings");
    }
    if (step_[field].size() > static_cast<size_t>(layout::kMaxMeshDims)) {
      return Error(field, absl::StrCat("a list of at most ", layout::kMaxMeshDims, " strings"));
    }
    std::vector<std::string> out;
    for (const json& v : step_[field]) {
      if (!v.is_string()) return Error(field, "a list of strings");
      out.push_back(v.get<std::string>());
    }
    return out;
  }

  // Absent or null -> nullopt.
  absl::StatusOr<layout::DimNames> OptionalNames(absl::string_view field) const {
    if (!step_.contains(field) || step_[field].is_null()) return layout::DimNames();
    absl::StatusOr<std::vector<std::string>> names = StringList(field);
    if (!names.ok()) return Error(field, "a list of strings or null");
    return layout::DimNames(*std::move(names));
  }

  // A reference to an earlier step that succeeded.
  absl::StatusOr<DeviceMesh> Earlier(const json& ref, absl::string_view field,
                                     const std::vector<StepOutcome>& done) const {
    if (!ref.is_number_integer() || ref.get<int64_t>() < 0 ||
        ref.get<int64_t>() >= static_cast<int64_t>(done.size())) {
      return Error(field, absl::StrCat("the index of an earlier step (0..",
                                       static_cast<int64_t>(done.size()) - 1, ")"));
    }
    return *done[ref.get<size_t>()].mesh;  // earlier steps all succeeded
  }

 private:
  const json& step_;
  size_t index_;
};

// Turns a nested JSON list into a rank table; errors name the ragged or non-integer spot. At most
// kMaxMeshDims levels deep (so the recursion is bounded) and `max_ranks` ranks (checked before each
// one is stored).
absl::Status ReadRankTable(const json& v, size_t depth, int64_t max_ranks,
                           layout::RankTensor& table, std::string& path) {
  if (v.is_number_integer()) {
    if (depth != table.shape.size()) {
      return absl::InvalidArgumentError(absl::StrCat("mesh", path, " is a number where a list of ",
                                                     table.shape.size() - depth,
                                                     " more levels is expected"));
    }
    if (static_cast<int64_t>(table.values.size()) >= max_ranks) {
      return absl::InvalidArgumentError(
          absl::StrCat("mesh", path, " is one rank more than the ", max_ranks,
                       " a table may hold (each rank of the world once)"));
    }
    table.values.push_back(v.get<int64_t>());
    return absl::OkStatus();
  }
  if (!v.is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat("mesh", path, " must be an integer or a list, got ", Shown(v)));
  }
  if (depth == table.shape.size()) {
    if (!table.values.empty()) {  // a number was seen at this depth before
      return absl::InvalidArgumentError(
          absl::StrCat("mesh", path, " is a list where a rank is expected"));
    }
    if (depth >= static_cast<size_t>(layout::kMaxMeshDims)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "mesh", path, " nests deeper than ", layout::kMaxMeshDims, " dims, the most a mesh has"));
    }
    table.shape.push_back(static_cast<int64_t>(v.size()));
  } else if (static_cast<int64_t>(v.size()) != table.shape[depth]) {
    return absl::InvalidArgumentError(absl::StrCat("mesh is ragged: mesh", path, " has ", v.size(),
                                                   " entries where ", table.shape[depth],
                                                   " are expected"));
  }
  if (v.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("mesh", path, " is an empty list"));
  }
  for (size_t i = 0; i < v.size(); ++i) {
    const size_t keep = path.size();
    absl::StrAppend(&path, "[", i, "]");
    if (absl::Status s = ReadRankTable(v[i], depth + 1, max_ranks, table, path); !s.ok()) return s;
    path.resize(keep);
  }
  return absl::OkStatus();
}

// The step's "op", or "" when it has none (or is not an object).
std::string OpOf(const json& step) {
  return step.is_object() && step.contains("op") && step["op"].is_string()
             ? step["op"].get<std::string>()
             : "";
}

absl::StatusOr<DeviceMesh> RunStep(const json& step, const std::string& op, size_t index,
                                   int64_t world, const std::vector<StepOutcome>& done) {
  if (!step.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("step ", index, " must be an object with an \"op\", got ", Shown(step)));
  }
  StepReader in(step, index);

  if (op == "init_device_mesh") {
    absl::StatusOr<std::vector<int64_t>> shape = in.IntList("shape");
    if (!shape.ok()) return shape.status();
    absl::StatusOr<layout::DimNames> names = in.OptionalNames("names");
    if (!names.ok()) return names.status();
    return DeviceMesh::Create(*shape, *std::move(names), world);
  }
  if (op == "device_mesh") {
    if (!step.contains("mesh") || !step["mesh"].is_array()) {
      return in.Error("mesh", "a nested list of ranks, e.g. [[0,2],[1,3]]");
    }
    absl::StatusOr<layout::RankTensor> table = ParseRankTable(step["mesh"], world);
    if (!table.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("step ", index, ": ", table.status().message()));
    }
    absl::StatusOr<layout::DimNames> names = in.OptionalNames("names");
    if (!names.ok()) return names.status();
    return DeviceMesh::FromRankTable(*table, *std::move(names), world);
  }
  if (op == "from_group") {
    constexpr absl::string_view kGroups = "a list of groups, each a list of ranks, e.g. [[0,1]]";
    if (!step.contains("groups") || !step["groups"].is_array() || step["groups"].empty() ||
        step["groups"].size() > static_cast<size_t>(layout::kMaxMeshDims)) {
      return in.Error("groups", absl::StrCat(kGroups, ", at most ", layout::kMaxMeshDims));
    }
    std::vector<std::vector<int64_t>> groups;
    for (const json& g : step["groups"]) {
      if (!g.is_array() || static_cast<int64_t>(g.size()) > world) {
        return in.Error("groups", absl::StrCat(kGroups, ", of at most the world's ", world));
      }
      std::vector<int64_t> ranks;
      for (const json& r : g) {
        if (!r.is_number_integer()) return in.Error("groups", kGroups);
        ranks.push_back(r.get<int64_t>());
      }
      groups.push_back(std::move(ranks));
    }
    std::optional<layout::RankTensor> table;
    if (step.contains("mesh") && !step["mesh"].is_null()) {
      if (!step["mesh"].is_array()) {
        return in.Error("mesh", "a nested list of ranks, e.g. [[0,2],[1,3]], or null");
      }
      absl::StatusOr<layout::RankTensor> t = ParseRankTable(step["mesh"], world);
      if (!t.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("step ", index, ": ", t.status().message()));
      }
      table = *std::move(t);
    }
    absl::StatusOr<layout::DimNames> names = in.OptionalNames("names");
    if (!names.ok()) return names.status();
    std::optional<int64_t> rank;
    if (step.contains("rank") && !step["rank"].is_null()) {
      absl::StatusOr<int64_t> r = in.Int("rank");
      if (!r.ok()) return in.Error("rank", "the rank whose groups these are, or null");
      rank = *r;
    }
    return DeviceMesh::FromGroups(groups, table, *std::move(names), world, rank);
  }
  if (op == "slice" || op == "flatten" || op == "unflatten") {
    if (!step.contains("on")) return in.Error("on", "the index of an earlier step");
    absl::StatusOr<DeviceMesh> on = in.Earlier(step["on"], "on", done);
    if (!on.ok()) return on.status();
    if (op == "slice") {
      absl::StatusOr<std::vector<std::string>> names = in.StringList("names");
      if (!names.ok()) return names.status();
      return layout::Slice(*on, *names);
    }
    if (op == "flatten") {
      std::optional<std::string> name;
      if (step.contains("name") && !step["name"].is_null()) {
        if (!step["name"].is_string()) return in.Error("name", "a string or null");
        name = step["name"].get<std::string>();
      }
      return layout::Flatten(*on, name);
    }
    layout::DimRef dim;
    if (step.contains("dim") && step["dim"].is_string()) {
      dim = step["dim"].get<std::string>();
    } else {
      absl::StatusOr<int64_t> d = in.Int("dim");
      if (!d.ok()) return in.Error("dim", "a dim index or a dim name");
      if (*d < INT32_MIN || *d > INT32_MAX) return in.Error("dim", "a dim index or a dim name");
      dim = static_cast<int>(*d);
    }
    absl::StatusOr<std::vector<int64_t>> sizes = in.IntList("sizes");
    if (!sizes.ok()) return sizes.status();
    absl::StatusOr<std::vector<std::string>> names = in.StringList("names");
    if (!names.ok()) return names.status();
    return layout::Unflatten(*on, dim, *sizes, *names);
  }
  if (op == "concatenate") {
    if (!step.contains("of") || !step["of"].is_array()) {
      return in.Error("of", "a list of earlier step indices");
    }
    if (step["of"].size() > static_cast<size_t>(layout::kMaxMeshDims)) {
      return in.Error(
          "of", absl::StrCat("a list of at most ", layout::kMaxMeshDims, " earlier step indices"));
    }
    std::vector<DeviceMesh> meshes;
    for (const json& ref : step["of"]) {
      absl::StatusOr<DeviceMesh> m = in.Earlier(ref, "of", done);
      if (!m.ok()) return m.status();
      meshes.push_back(*std::move(m));
    }
    return layout::Concatenate(meshes);
  }
  return in.Error("op",
                  "one of init_device_mesh, device_mesh, from_group, slice, flatten, unflatten, "
                  "concatenate");
}

}  // namespace

absl::StatusOr<json> ParsePlanScript(absl::string_view text) {
  if (text.size() > kMaxScriptBytes) {
    return absl::InvalidArgumentError(absl::StrCat("the script is ", text.size(),
                                                   " bytes, more than the ", kMaxScriptBytes,
                                                   " a plan may be"));
  }
  // Nesting is bounded before parsing: nlohmann's dump and destructors recurse.
  if (const std::optional<size_t> at = TooDeep(text, kMaxScriptDepth)) {
    return absl::InvalidArgumentError(absl::StrCat("the script nests lists or objects more than ",
                                                   kMaxScriptDepth, " deep (at byte ", *at, ")"));
  }
  json doc;
  try {  // nlohmann reports the position only through its exception; it stops here
    doc = json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("the script is not valid JSON: ", e.what()));
  }
  if (!doc.is_array()) {
    return absl::InvalidArgumentError(
        "the script must be a JSON array of steps, e.g. "
        "[{\"op\":\"init_device_mesh\",\"shape\":[2,4],\"names\":[\"dp\",\"tp\"]}]");
  }
  if (doc.size() > kMaxPlanSteps) {
    return absl::InvalidArgumentError(absl::StrCat("the script has ", doc.size(),
                                                   " steps, more than the ", kMaxPlanSteps,
                                                   " a plan may have"));
  }
  return doc;
}

std::vector<StepOutcome> RunPlan(const json& steps, int64_t world_size) {
  std::vector<StepOutcome> done;
  for (size_t i = 0; i < steps.size(); ++i) {
    const json& step = steps[i];
    std::string op = OpOf(step);
    absl::StatusOr<DeviceMesh> mesh = RunStep(step, op, i, world_size, done);
    const bool failed = !mesh.ok();
    done.push_back(StepOutcome{std::move(op), std::move(mesh)});
    if (failed) break;
  }
  return done;
}

absl::StatusOr<layout::RankTensor> ParseRankTable(const json& table, int64_t max_ranks) {
  layout::RankTensor out;
  std::string path;
  if (absl::Status s = ReadRankTable(table, 0, max_ranks, out, path); !s.ok()) return s;
  return out;
}

json TableStep(const json& table, const std::vector<std::string>& names) {
  json step = {{"op", "device_mesh"}, {"mesh", table}};
  step["names"] = names.empty() ? json() : json(names);
  return step;
}

json InitStep(const std::vector<int64_t>& shape, const std::vector<std::string>& names) {
  json step = {{"op", "init_device_mesh"}, {"shape", shape}};
  step["names"] = names.empty() ? json() : json(names);
  return step;
}

}  // namespace meshd::ctl
