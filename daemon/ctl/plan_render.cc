// JSON and human renderings of a plan (see plan_render.h).
#include "daemon/ctl/plan_render.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/topology/placement_lint.h"

namespace meshd::ctl {
namespace {

using json = nlohmann::ordered_json;
using layout::DeviceMesh;

// Nests a row-major tensor's values into JSON lists.
json Nest(const layout::RankTensor& t, size_t dim, size_t& next) {
  json out = json::array();
  for (int64_t i = 0; i < t.shape[dim]; ++i) {
    if (dim + 1 == t.shape.size()) {
      out.push_back(t.values[next++]);
    } else {
      out.push_back(Nest(t, dim + 1, next));
    }
  }
  return out;
}

std::vector<int64_t> ReportedRanks(const RenderOptions& o) {
  if (!o.ranks.empty()) return o.ranks;
  std::vector<int64_t> all(o.world_size);
  for (int64_t r = 0; r < o.world_size; ++r) all[r] = r;
  return all;
}

json MeshToJson(const DeviceMesh& mesh, const std::vector<int64_t>& ranks) {
  json out;
  out["mesh"] = mesh.ToString();
  out["ndim"] = mesh.ndim();
  out["shape"] = mesh.shape();
  out["names"] = mesh.names() ? json(*mesh.names()) : json();
  json groups = json::array();
  for (int d = 0; d < mesh.ndim(); ++d) {
    const layout::GroupTable t = mesh.Groups(d);
    json rows = json::array();
    for (int64_t g = 0; g < t.num_groups(); ++g) {
      rows.push_back(std::vector<int64_t>(t.row(g).begin(), t.row(g).end()));
    }
    groups.push_back(std::move(rows));
  }
  out["groups"] = std::move(groups);
  json coordinate = json::array(), local_rank = json::array(), view = json::array();
  for (int64_t r : ranks) {
    const std::optional<std::vector<int64_t>> c = mesh.coordinate(r);
    coordinate.push_back(c ? json(*c) : json());
    json locals = json::array();
    for (int d = 0; d < mesh.ndim(); ++d) {
      absl::StatusOr<layout::RankGroup> g = mesh.GroupOf(r, d);
      locals.push_back(g.ok() ? json(g->local_rank) : json());
    }
    local_rank.push_back(std::move(locals));
    absl::StatusOr<layout::RankTensor> v = mesh.View(r);
    size_t next = 0;
    view.push_back(v.ok() ? Nest(*v, 0, next) : json());
  }
  out["coordinate"] = std::move(coordinate);
  out["local_rank"] = std::move(local_rank);
  out["view"] = std::move(view);
  return out;
}

std::string Pad(const std::string& s, size_t width) {
  return s.size() >= width ? s : std::string(width - s.size(), ' ') + s;
}

// A 2-D block (or a single row) of the view: rows = second-to-last dim, columns = last dim.
void AppendTable(const DeviceMesh& mesh, const layout::RankTensor& view, size_t offset,
                 const std::string& indent, std::string& out) {
  const int nd = mesh.ndim();
  const int64_t cols = view.shape[nd - 1];
  const int64_t rows = nd >= 2 ? view.shape[nd - 2] : 1;
  size_t width = 1;
  for (int64_t v : view.values) width = std::max(width, absl::StrCat(v).size());
  const std::string col_label = mesh.DimLabel(nd - 1);
  const std::string row_label = nd >= 2 ? mesh.DimLabel(nd - 2) : "";
  std::vector<std::string> row_names;
  for (int64_t r = 0; r < rows; ++r) {
    row_names.push_back(nd >= 2 ? absl::StrCat(row_label, "=", r) : "");
  }
  size_t left = 0;
  for (const std::string& n : row_names) left = std::max(left, n.size());
  std::string header = absl::StrCat(indent, std::string(left, ' '), "  ", col_label, ":");
  for (int64_t c = 0; c < cols; ++c) absl::StrAppend(&header, " ", Pad(absl::StrCat(c), width));
  absl::StrAppend(&out, header, "\n");
  const size_t label_width = col_label.size() + 1;
  for (int64_t r = 0; r < rows; ++r) {
    std::string line =
        absl::StrCat(indent, row_names[r], std::string(left - row_names[r].size(), ' '), "  ",
                     std::string(label_width, ' '));
    for (int64_t c = 0; c < cols; ++c) {
      absl::StrAppend(&line, " ", Pad(absl::StrCat(view.values[offset + r * cols + c]), width));
    }
    absl::StrAppend(&out, line, "\n");
  }
}

void AppendView(const DeviceMesh& mesh, const layout::RankTensor& view, std::string& out) {
  const int nd = mesh.ndim();
  constexpr int64_t kMaxColumns = 16;
  if (view.shape[nd - 1] > kMaxColumns) {
    // Too wide for a table: one compact rank list per row of the last dim.
    const int64_t cols = view.shape[nd - 1];
    for (int64_t row = 0; row * cols < mesh.size(); ++row) {
      std::vector<int64_t> ranks(view.values.begin() + row * cols,
                                 view.values.begin() + (row + 1) * cols);
      std::vector<std::string> parts;  // the row's coordinates over the leading dims
      int64_t rest = row;
      for (int d = nd - 2; d >= 0; --d) {
        parts.push_back(absl::StrCat(mesh.DimLabel(d), "=", rest % view.shape[d]));
        rest /= view.shape[d];
      }
      std::reverse(parts.begin(), parts.end());
      parts.push_back(absl::StrCat(mesh.DimLabel(nd - 1), ": ", FormatRanks(ranks)));
      absl::StrAppend(&out, "    ", absl::StrJoin(parts, ", "), "\n");
    }
    return;
  }
  const int64_t block = nd >= 2 ? view.shape[nd - 1] * view.shape[nd - 2] : view.shape[0];
  const int64_t blocks = mesh.size() / block;
  for (int64_t b = 0; b < blocks; ++b) {
    std::string indent = "    ";
    if (nd > 2) {
      // Decompose the block index over the leading dims.
      std::vector<std::string> parts;
      int64_t rest = b;
      for (int d = nd - 3; d >= 0; --d) {
        parts.push_back(absl::StrCat(mesh.DimLabel(d), "=", rest % view.shape[d]));
        rest /= view.shape[d];
      }
      std::reverse(parts.begin(), parts.end());
      absl::StrAppend(&out, "    ", absl::StrJoin(parts, ", "), "\n");
      indent = "      ";
    }
    AppendTable(mesh, view, b * block, indent, out);
  }
}

// The placement lint walks every group of every dim: a plan lints at most this many group members
// in all (128 steps of a 2^20-rank 1-D mesh), and says so past it.
constexpr int64_t kMaxLintedMembers = int64_t{1} << 27;

void AppendMeshText(const DeviceMesh& mesh, const RenderOptions& o, int64_t& lint_budget,
                    std::string& out) {
  const int64_t copies = mesh.rank_map().size() / mesh.size();
  absl::StrAppend(&out, "  ", mesh.size(), " of the world's ", o.world_size, " ranks",
                  copies > 1 ? absl::StrCat(", in ", copies,
                                            " copies (one per group of the "
                                            "sliced-off dims); rank 0's copy shown")
                             : "",
                  "\n");
  constexpr int64_t kMaxTable = 1024;
  const int64_t shown_rank = mesh.rank_map().at(0);
  absl::StatusOr<layout::RankTensor> view =
      mesh.size() <= kMaxTable ? mesh.View(shown_rank)
                               : absl::StatusOr<layout::RankTensor>(absl::OutOfRangeError("big"));
  if (view.ok()) {
    AppendView(mesh, *view, out);
  } else {
    absl::StrAppend(&out, "    (", mesh.size(), " ranks: too many to draw; use --json)\n");
  }

  std::optional<std::vector<topology::DimPlacement>> lint;
  bool lint_skipped = false;
  if (o.gpus_per_node) {
    const int64_t cost = mesh.ndim() * mesh.rank_map().size();
    if (cost <= lint_budget) {
      lint_budget -= cost;
      absl::StatusOr<std::vector<topology::DimPlacement>> l =
          topology::LintPlacement(mesh, *o.gpus_per_node);
      if (l.ok()) lint = *std::move(l);
    } else {
      lint_skipped = true;
    }
  }
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"dim", "size", "groups", "placement", "first groups"});
  if (!lint) rows[0].erase(rows[0].begin() + 3);
  for (int d = 0; d < mesh.ndim(); ++d) {
    // Only the groups shown are computed (GroupMember is O(ndim)), not the dim's whole table.
    const int64_t num_groups = mesh.num_groups(d);
    std::vector<std::string> shown;
    constexpr int64_t kMaxGroups = 4;
    for (int64_t g = 0; g < std::min(num_groups, kMaxGroups); ++g) {
      std::vector<int64_t> members(mesh.size(d));
      for (int64_t m = 0; m < mesh.size(d); ++m) members[m] = mesh.GroupMember(d, g, m);
      shown.push_back(FormatRanks(members));
    }
    std::string groups = absl::StrJoin(shown, " ");
    if (num_groups > kMaxGroups) {
      absl::StrAppend(&groups, " … (", num_groups - kMaxGroups, " more)");
    }
    std::vector<std::string> row = {mesh.DimLabel(d), absl::StrCat(mesh.size(d)),
                                    absl::StrCat(num_groups)};
    if (lint) {
      const topology::DimPlacement& p = (*lint)[d];
      row.push_back(p.max_hosts == 1
                        ? topology::PlacementName(p.placement)
                        : absl::StrCat(topology::PlacementName(p.placement), " (",
                                       p.min_hosts == p.max_hosts
                                           ? absl::StrCat(p.max_hosts)
                                           : absl::StrCat(p.min_hosts, "-", p.max_hosts),
                                       " hosts)"));
    }
    row.push_back(groups);
    rows.push_back(std::move(row));
  }
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  absl::StrAppend(&out, "  groups",
                  lint ? absl::StrCat(" (hosts of ", *o.gpus_per_node, " GPUs)") : "", ":\n");
  for (const auto& row : rows) {
    std::string line = "   ";
    for (size_t c = 0; c < row.size(); ++c) {
      absl::StrAppend(&line, " ", row[c],
                      c + 1 < row.size() ? std::string(width[c] - row[c].size() + 1, ' ') : "");
    }
    absl::StrAppend(&out, line, "\n");
  }
  if (lint) {
    for (const topology::DimPlacement& p : *lint) {
      if (!p.warning.empty()) absl::StrAppend(&out, "  WARNING: ", p.warning, "\n");
    }
  }
  if (lint_skipped) {
    absl::StrAppend(&out, "  (placement not checked: the plan's earlier steps used the ",
                    kMaxLintedMembers, " group members it checks in all; plan fewer steps)\n");
  }
}

}  // namespace

std::string CodeName(const absl::Status& status) { return absl::StatusCodeToString(status.code()); }

std::string FormatRanks(const std::vector<int64_t>& ranks) {
  const size_t n = ranks.size();
  if (n >= 3) {
    const int64_t step = ranks[1] - ranks[0];
    bool progression = step > 0;
    for (size_t i = 2; progression && i < n; ++i) progression = ranks[i] - ranks[i - 1] == step;
    if (progression && step == 1) return absl::StrCat("[", ranks[0], "..", ranks[n - 1], "]");
    if (progression && n >= 4) {
      return absl::StrCat("[", ranks[0], ",", ranks[1], ",..,", ranks[n - 1], "]");
    }
  }
  constexpr size_t kMaxListed = 8;
  if (n > kMaxListed) {
    return absl::StrCat("[", absl::StrJoin(ranks.begin(), ranks.begin() + kMaxListed - 1, ","),
                        ",… (", n - kMaxListed + 1, " more)]");
  }
  return absl::StrCat("[", absl::StrJoin(ranks, ","), "]");
}

absl::StatusOr<json> PlanToJson(const std::vector<StepOutcome>& outcomes,
                                const RenderOptions& options, int64_t max_values) {
  const std::vector<int64_t> ranks = ReportedRanks(options);
  int64_t values = 0;
  for (const StepOutcome& s : outcomes) {
    if (s.mesh.ok()) {
      values += static_cast<int64_t>(ranks.size()) * (s.mesh->size() + int64_t{2} * s.mesh->ndim());
      values += s.mesh->ndim() * s.mesh->rank_map().size();  // every group of every dim
    }
  }
  if (values > max_values) {
    return absl::InvalidArgumentError(
        absl::StrCat("the plan's JSON would hold ", values,
                     " numbers (every group of every step, and a view for each of ", ranks.size(),
                     " ranks); pass --ranks with the ranks you want, e.g. --ranks 0,1, or plan "
                     "fewer steps"));
  }
  json steps = json::array();
  for (const StepOutcome& s : outcomes) {
    json r;
    r["op"] = s.op;
    if (s.mesh.ok()) {
      json m = MeshToJson(*s.mesh, ranks);
      for (auto it = m.begin(); it != m.end(); ++it) r[it.key()] = std::move(it.value());
      if (!options.ranks.empty()) r["ranks"] = options.ranks;
    } else {
      const std::string message(s.mesh.status().message());
      r["error"] = {{"code", CodeName(s.mesh.status())}, {"message", message}};
    }
    steps.push_back(std::move(r));
  }
  json out;
  out["steps"] = std::move(steps);
  return out;
}

std::string PlanToText(const std::vector<StepOutcome>& outcomes, const RenderOptions& options) {
  std::string out;
  int64_t lint_budget = kMaxLintedMembers;
  for (size_t i = 0; i < outcomes.size(); ++i) {
    const StepOutcome& s = outcomes[i];
    const std::string op = s.op.empty() ? "?" : s.op;
    if (!s.mesh.ok()) {
      absl::StrAppend(&out, "step ", i, "  ", op, "  FAILED ", CodeName(s.mesh.status()), "\n  ",
                      s.mesh.status().message(), "\n");
      continue;
    }
    absl::StrAppend(&out, "step ", i, "  ", op, "  ", s.mesh->ToString(), "\n");
    AppendMeshText(*s.mesh, options, lint_budget, out);
    if (i + 1 < outcomes.size()) absl::StrAppend(&out, "\n");
  }
  return out;
}

}  // namespace meshd::ctl
